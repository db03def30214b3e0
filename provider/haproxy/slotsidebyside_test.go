package haproxy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Scenario: slot mode, 8 new targets registered at once (a cycle's
// Registers side by side), with 8 free slots. The claim lock is held only
// for the choice and claim of a slot, not for the steps after it.
// Expectation: every Register succeeds, each target holds a slot of its
// own, and every one turns UP by its checks.
func TestSlotRegistersSideBySideTakeOneSlotEach(t *testing.T) {
	in := startSlotHAProxy(t, 8, true)
	p := newProvider(t, in)
	var targets []provider.Target
	var ids []provider.TargetID
	for i := range 8 {
		pr := startProbe(t, fmt.Sprintf("pod-%d", i))
		pr.release()
		targets = append(targets, pr.target())
		ids = append(ids, pr.target().ID)
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() { errs[i] = p.Register(context.Background(), "app", tg) })
	}
	wg.Wait()
	slots := map[string]provider.TargetID{}
	for i, tg := range targets {
		if errs[i] != nil {
			t.Fatalf("Register %s: %v", tg.ID, errs[i])
		}
		s, ok := slotOf(t, in, tg.Addr())
		if !ok {
			t.Fatalf("%s (%s) holds no slot", tg.ID, tg.Addr())
		}
		if other, taken := slots[s.Name]; taken {
			t.Fatalf("%s and %s both in slot %s", other, tg.ID, s.Name)
		}
		slots[s.Name] = tg.ID
	}
	eventually(t, 30*time.Second, healthyOn(p, ids...))
}
