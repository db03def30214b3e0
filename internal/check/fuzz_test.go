package check

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// FuzzAnnotations feeds arbitrary values to every annotation the analysis
// reads (zerodrop's, the AWS, GKE and ingress controllers') and to the
// preStop command: Analyze must not panic, and its report must stay
// JSON-serializable (no NaN or infinite seconds).
func FuzzAnnotations(f *testing.F) {
	for _, s := range []string{"20", "1m30s", "-1", "NaN", "1e309", "", "ZD201,ZD305", `{"ingress": true}`, "deregistration_delay.timeout_seconds=x", "sleep 1e400", "999999999999", "sleep " + strings.Repeat("9", 400), "sleep 99999999h"} {
		f.Add(s, s)
	}
	keys := []string{AnnotationShutdown, AnnotationPropagation, AnnotationLongestRequest, AnnotationBuffer, AnnotationStartup,
		AnnotationRegistration, AnnotationConnectionDrain, AnnotationDrainLatency, AnnotationALBDrainStart, AnnotationPreStop, AnnotationLongLived, AnnotationIgnore,
		AnnotationHAProxyBackend}
	lbKeys := []string{"alb.ingress.kubernetes.io/target-type", "alb.ingress.kubernetes.io/healthcheck-interval-seconds",
		"alb.ingress.kubernetes.io/healthy-threshold-count", "alb.ingress.kubernetes.io/target-group-attributes",
		"alb.ingress.kubernetes.io/load-balancer-attributes", "nginx.ingress.kubernetes.io/proxy-read-timeout",
		"haproxy.org/timeout-server", "cloud.google.com/neg", "cloud.google.com/backend-config"}
	f.Fuzz(func(t *testing.T, v, cmd string) {
		ann := map[string]string{}
		for _, k := range keys {
			ann[k] = v
		}
		lbAnn := map[string]string{}
		for _, k := range lbKeys {
			lbAnn[k] = v
		}
		var objs []runtime.Object
		for _, class := range []string{"alb", "gce", "nginx", "haproxy"} {
			objs = append(objs, baseline(func(d *appsv1.Deployment) {
				d.Name = "w-" + class
				d.Spec.Template.Labels = map[string]string{"app": d.Name}
				d.Annotations = ann
				container(d).Lifecycle.PreStop.Sleep = nil
				container(d).Lifecycle.PreStop.Exec = &corev1.ExecAction{Command: []string{"sh", "-c", cmd}}
			})[0])
			s := svcObj("w-" + class)
			s.Annotations = lbAnn
			objs = append(objs, s, ingress("i-"+class, "w-"+class, class, lbAnn))
		}
		r := Analyze(wrapAll(objs...), Options{})
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("report not serializable: %v", err)
		}
		var b strings.Builder
		if err := WriteExplain(&b, r); err != nil {
			t.Fatal(err)
		}
	})
}
