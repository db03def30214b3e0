package check

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
)

// The timelines model a surge rollout; a workload whose strategy deletes
// pods earlier must not read as if it surged.
func TestExplainSaysWhenTheStrategyIsNotASurge(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(d *appsv1.Deployment)
		note string // substring of the note; "" = no note
	}{
		{name: "maxUnavailable 0, maxSurge 1", mod: nil},
		{name: "Recreate", mod: func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}, note: "(ZD104: Deployment prod/web uses strategy Recreate"},
		{name: "default 25%", mod: func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{}
			d.Spec.Replicas = ptr.To[int32](4)
		}, note: "maxUnavailable 25% (= 1 of 4 replicas)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Analyze(wrapAll(baseline(c.mod)...), Options{})
			var b strings.Builder
			if err := WriteExplain(&b, r); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if strings.Contains(out, "maxSurge 1, maxUnavailable 0):\n") && c.note != "" {
				t.Errorf("startup timeline claims a surge for a workload that does not surge:\n%s", out)
			}
			hasNote := strings.Contains(out, "note: the timelines below model a surge rollout")
			if c.note == "" && hasNote {
				t.Errorf("note on a surging workload:\n%s", out)
			}
			if c.note != "" && (!hasNote || !strings.Contains(out, c.note)) {
				t.Errorf("want a note with %q:\n%s", c.note, out)
			}
		})
	}
}
