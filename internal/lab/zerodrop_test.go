package lab

import (
	"strings"
	"testing"
	"time"
)

// Scenario: the zerodrop scenario — the naive app, which exits at once on
// SIGTERM, behind zerodrop-controller's readiness gate and drain gate, with
// two HAProxy instances — drops no request while the Deployment is rolled
// under 1,000 requests/s: not in plain rollouts, not when every HAProxy is
// reloaded in the middle of a rollout (one after the other, or all at the
// same moment), and not when the controller's
// reconciler is killed (SIGKILL) in the middle of one. The gates are
// measured too: every new pod passed the gate after both instances said UP,
// and every deleted pod was observed.
func TestZerodropScenarioDropsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	ctx, l, opts := controllerLab(t)

	const replicas = 3
	for _, tc := range []struct {
		fault    Fault
		rollouts int
	}{
		{FaultNone, 3},
		{FaultReload, 2},
		{FaultReloadAll, 2},
		{FaultKillController, 2},
	} {
		res, err := Run(ctx, l.Target(), ZerodropScenario, RunOptions{
			Rollouts: tc.rollouts, Rate: 1000, Replicas: replicas, Settle: 2 * time.Second, Fault: tc.fault, Logger: opts.Logger,
			// The shipped alerts in a real Prometheus stay quiet through
			// rollouts without a fault.
			Prometheus: tc.fault == FaultNone,
		})
		requireNoneFailed(t, res, err)
		// At 1,000/s a rollout of 3 pods takes well over 10 s.
		if min := uint64(tc.rollouts) * 10000; res.Requests < min {
			t.Errorf("%s: only %d requests sent, want at least %d", res.Name(), res.Requests, min)
		}
		if want := boolInt(tc.fault != FaultNone) * tc.rollouts; len(res.Faults) != want {
			t.Errorf("%s: faults %+v, want one per rollout", res.Name(), res.Faults)
		}
		for _, f := range res.Faults {
			if f.Err != "" {
				t.Errorf("%s: fault in rollout %d: %s", res.Name(), f.Rollout, f.Err)
			}
		}
		if p := res.Prometheus; tc.fault == FaultNone {
			// Both controller processes and both HAProxy exporters.
			if p == nil || p.Targets != 4 || p.TargetsUp != 4 {
				t.Errorf("%s: Prometheus %+v, want 4 of 4 targets scraped", res.Name(), p)
			} else if len(p.Alerts) != 0 {
				t.Errorf("%s: alerts pending or firing after clean rollouts: %v", res.Name(), p.Alerts)
			}
		}
		g := res.Gates
		if g == nil || g.DrainSamples < tc.rollouts*replicas {
			t.Errorf("%s: gate timings %+v, want a drain sample per replaced pod (%d)", res.Name(), g, tc.rollouts*replicas)
		} else if tc.fault == FaultNone && g.GateSamples < tc.rollouts*replicas {
			t.Errorf("%s: %d gate samples, want one per new pod (%d)", res.Name(), g.GateSamples, tc.rollouts*replicas)
		}
	}
}

// requireNoneFailed logs the run's table and fails the test when the run
// failed or any request did.
func requireNoneFailed(t *testing.T, res Result, err error) {
	t.Helper()
	var sb strings.Builder
	PrintTable(&sb, []Result{res})
	t.Logf("%s:\n%s", res.Name(), sb.String())
	if err != nil {
		t.Fatalf("%s: %v", res.Name(), err)
	}
	if res.Failed != 0 {
		t.Errorf("%s: %d of %d requests failed (%v, per rollout %v)", res.Name(), res.Failed, res.Requests, res.FailuresByClass, res.FailedPerRollout)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
