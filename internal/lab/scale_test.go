package lab

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"zerodrop.dev/zerodrop/internal/lab/labtest"
)

// Scenario (issue 12, the scale harness in CI): 500 light pods over 5
// bindings behind 2 real HAProxy instances and the real controller. Every
// gate ends correct: a pod is Ready only after every instance said UP, and
// the pods whose addresses the listener fails stay not Ready. A 10 %
// rollout (50 pods deleted, 50 created) drains every deleted pod on every
// instance and removes its servers; the new pods pass their gates. The
// test asserts correctness, not speed (bench/scale measures).
func TestScaleGatesAndDrainsStayCorrect(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	opts := requireLab(t)
	labtest.Controller(t)
	const pods, bindings, failing = 500, 5, 10
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	s, err := StartScale(ctx, ScaleOptions{Lab: opts, Pods: pods, Bindings: bindings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})

	// What the API server accepts as an endpoint: the bulk range yes,
	// loopback no (the reason the harness routes a range of its own).
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"10.80.255.250", true}, {"127.0.0.5", false}} {
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{GenerateName: "probe-", Namespace: ScaleNamespace},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{tc.addr}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(BulkPort))}},
		}
		created, err := s.Client.DiscoveryV1().EndpointSlices(ScaleNamespace).Create(ctx, slice, metav1.CreateOptions{})
		if (err == nil) != tc.ok {
			t.Fatalf("EndpointSlice with %s: accepted %v (err %v), want accepted %v", tc.addr, err == nil, err, tc.ok)
		}
		if err == nil {
			_ = s.Client.DiscoveryV1().EndpointSlices(ScaleNamespace).Delete(ctx, created.Name, metav1.DeleteOptions{})
		}
	}

	// The light node hands out the range in order: the first pods get
	// the first addresses, so failing some of those fails that many pods.
	var bad []netip.Addr
	a := s.Net.Prefix.Addr()
	for i := 1; i <= pods; i++ {
		a = a.Next()
		if i%(pods/failing) == 0 {
			bad = append(bad, a)
		}
	}
	s.Net.Fail(bad...)

	times, stop, err := s.RecordTimes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	start := time.Now()
	names, err := s.CreatePods(ctx, pods)
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.WaitSettled(ctx, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(head(g.Wrong, 20), "\n"))
	}
	t.Logf("%d pods settled in %s: %d Ready, %d failing", pods, time.Since(start).Round(time.Second), g.Ready, g.Failing)
	if g.Failing != failing || g.Ready != pods-failing {
		t.Fatalf("%d Ready and %d failing, want %d and %d", g.Ready, g.Failing, pods-failing, failing)
	}
	// The failing pods stay out: three fall×interval later they are still
	// not Ready (CheckGates would list them).
	time.Sleep(3 * s.Lab.Check.Interval * time.Duration(s.Lab.Check.Rise))
	if g, err = s.CheckGates(ctx, nil); err != nil || len(g.Wrong) > 0 || g.Failing != failing {
		t.Fatalf("after waiting: %v, %d failing, wrong:\n%s", err, g.Failing, strings.Join(head(g.Wrong, 20), "\n"))
	}
	servers, err := s.Servers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for inst, byAddr := range servers {
		for _, b := range bad {
			if st, ok := byAddr[b]; !ok || st.Up() {
				t.Errorf("%s: failing address %s: %s, want a registered server that is DOWN", inst, b, describeServer(st, ok))
			}
		}
	}

	// A 10 % rollout: 50 old pods deleted (their drain hooks held until
	// every instance drained them), 50 new ones created.
	r, err := s.Replace(ctx, pods/10)
	if err != nil {
		t.Fatal(err)
	}
	if g, err = s.WaitReplaced(ctx, r); err != nil {
		t.Fatalf("after the rollout: %v\n%s", err, strings.Join(head(g.Wrong, 20), "\n"))
	}
	if g.Ready != pods-failing || g.Failing != failing {
		t.Fatalf("after the rollout: %d Ready and %d failing, want %d and %d", g.Ready, g.Failing, pods-failing, failing)
	}

	gate, early, missing := times.GateLatencies(append(names, r.New...))
	if len(early) > 0 {
		t.Errorf("%d pods Ready before every instance said UP:\n%s", len(early), strings.Join(head(early, 20), "\n"))
	}
	drain, undrained := times.DrainLatencies(r.Deleted, r.Addrs)
	if len(undrained) > 0 {
		t.Errorf("%d deleted pods never set to drain on every instance: %v", len(undrained), undrained[:min(20, len(undrained))])
	}
	t.Logf("gate latency p50 %s p99 %s (%d pods; %d without an UP event from every instance); drain latency p50 %s p99 %s (%d pods); %d events not attributed to an address",
		Quantile(gate, 0.5), Quantile(gate, 0.99), len(gate), len(missing), Quantile(drain, 0.5), Quantile(drain, 0.99), len(drain), len(times.Attribution().Unattributed))
	if err := s.Controller.Forbidden(); err != nil {
		t.Error(err)
	}
}

func head(xs []string, n int) []string {
	if len(xs) > n {
		return append(xs[:n:n], "...")
	}
	return xs
}
