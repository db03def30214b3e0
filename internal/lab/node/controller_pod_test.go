package node

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// manifestObjects reads the objects of kind from a multi-document manifest.
func manifestObjects[T any](t *testing.T, file, kind string) []T {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for i, doc := range strings.Split(string(data), "\n---") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s document %d: %v", file, i+1, err)
		}
		if meta.Kind != kind {
			continue
		}
		var obj T
		if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
			t.Fatalf("%s document %d (%s): %v", file, i+1, kind, err)
		}
		out = append(out, obj)
	}
	return out
}

// TestControllerDeploymentsPodsRunAsAKubeletWouldRunThem runs the pod
// templates of the shipped Deployments (config/manager) as they are, with
// the controller's image standing for a program (controllerStandIn) whose
// readiness needs what the real controller needs from its node: the image's
// non-root user under runAsNonRoot, GOMEMLIMIT from limits.memory, the
// in-cluster service-account files, a read-only root and a writable
// webhook-certificate emptyDir.
func TestControllerDeploymentsPodsRunAsAKubeletWouldRunThem(t *testing.T) {
	l := requireLab(t)
	ctx := context.Background()
	ns := "zd-controller-" + strconv.FormatInt(time.Now().UnixNano()%100000, 36)
	if _, err := l.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	for _, pc := range manifestObjects[schedulingv1.PriorityClass](t, "../../../config/manager/priorityclass.yaml", "PriorityClass") {
		if _, err := l.client.SchedulingV1().PriorityClasses().Create(ctx, &pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	var deployments []appsv1.Deployment
	for _, f := range []string{"manager.yaml", "serve.yaml"} {
		deployments = append(deployments, manifestObjects[appsv1.Deployment](t, "../../../config/manager/"+f, "Deployment")...)
	}
	if len(deployments) != 2 {
		t.Fatalf("found %d Deployments in config/manager, want the reconcile and serve ones", len(deployments))
	}
	for _, d := range deployments {
		t.Run(d.Name, func(t *testing.T) {
			tmpl := d.Spec.Template
			sa := &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tmpl.Spec.ServiceAccountName, Namespace: ns}}
			if _, err := l.client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			for i, c := range tmpl.Spec.Containers {
				if !strings.HasPrefix(c.Image, controllerImage) {
					t.Fatalf("container %s runs image %s, want %s", c.Name, c.Image, controllerImage)
				}
				tmpl.Spec.Containers[i].Image = controllerImage
			}
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-0", Namespace: ns, Labels: tmpl.Labels}, Spec: tmpl.Spec}
			pod = l.create(t, pod)
			t.Cleanup(func() {
				if !t.Failed() {
					return
				}
				list, _ := l.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
				for _, e := range list.Items {
					t.Logf("event %s %s: %s", e.Type, e.Reason, e.Message)
				}
			})
			p := l.waitPod(t, pod, startTimeout, "Ready (the stand-in found what the controller needs)", isReady)
			for _, s := range p.Status.ContainerStatuses {
				if s.RestartCount != 0 {
					t.Errorf("container %s restarted %d times", s.Name, s.RestartCount)
				}
			}
		})
	}
}
