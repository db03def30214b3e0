package check

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// benchObjects generates n objects in namespaces of 20: 5 Deployments (all
// sharing a "team" label, so selectors must not scan by it), 5 Services, 3
// Ingresses (ALB, nginx, GCE), 3 PDBs, 2 HPAs, a BackendConfig and the
// Namespace.
func benchObjects(n int) []*Object {
	var objs []runtime.Object
	for ns := 0; len(objs) < n; ns++ {
		nsName := fmt.Sprintf("team-%04d", ns)
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("svc-%d", i)
			d := goodDeployment(name)
			d.Namespace = nsName
			d.Spec.Template.Labels["team"] = nsName
			if i%2 == 0 {
				container(d).Lifecycle = nil
			}
			s := svcObj(name)
			s.Namespace = nsName
			if i == 4 {
				s.Annotations = map[string]string{"cloud.google.com/neg": `{"ingress": true}`, "cloud.google.com/backend-config": `{"default": "bc"}`}
			}
			objs = append(objs, d, s)
		}
		for i, class := range []string{"alb", "nginx", "gce"} {
			ing := ingress(fmt.Sprintf("ing-%d", i), fmt.Sprintf("svc-%d", i*2), class, map[string]string{"alb.ingress.kubernetes.io/target-type": "ip"})
			ing.Namespace = nsName
			objs = append(objs, ing)
		}
		for i := 0; i < 3; i++ {
			p := pdb(fmt.Sprintf("svc-%d", i))
			p.Namespace = nsName
			objs = append(objs, p)
		}
		for i := 0; i < 2; i++ {
			h := hpa(fmt.Sprintf("svc-%d", i), &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](60)}})
			h.Namespace = nsName
			objs = append(objs, h)
		}
		bc := &unstructured.Unstructured{}
		bc.SetAPIVersion("cloud.google.com/v1")
		bc.SetKind("BackendConfig")
		bc.SetName("bc")
		bc.SetNamespace(nsName)
		_ = unstructured.SetNestedField(bc.Object, int64(30), "spec", "connectionDraining", "drainingTimeoutSec")
		objs = append(objs, bc, namespace(nsName, nil))
	}
	return wrapAll(objs[:n]...)
}

func BenchmarkAnalyze(b *testing.B) {
	objs := benchObjects(10000)
	b.ReportAllocs()
	b.ResetTimer()
	var r *Report
	for i := 0; i < b.N; i++ {
		r = Analyze(objs, Options{})
	}
	b.ReportMetric(float64(len(objs)), "objects")
	b.ReportMetric(float64(len(r.Findings)), "findings")
}

func TestBenchObjectsAreAnalysed(t *testing.T) {
	objs := benchObjects(2000)
	r := Analyze(objs, Options{})
	if r.Objects != 2000 || len(r.Skipped) != 0 {
		t.Fatalf("objects %d skipped %v", r.Objects, r.Skipped)
	}
	if len(r.Explanations) != 500 {
		t.Errorf("explanations %d, want one per Deployment (500)", len(r.Explanations))
	}
	// Every namespace yields the same findings: the index relates objects
	// only within their namespace.
	per := map[string]int{}
	for _, f := range r.Findings {
		if f.Object.Kind != "Namespace" {
			per[f.Object.Namespace]++
		}
	}
	want := per["team-0000"]
	if want == 0 {
		t.Fatal("no findings in team-0000")
	}
	for ns, n := range per {
		if n != want {
			t.Errorf("%s: %d findings, team-0000 has %d", ns, n, want)
		}
	}
	_ = appsv1.Deployment{}
	_ = corev1.Service{}
}
