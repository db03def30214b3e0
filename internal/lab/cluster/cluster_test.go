package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
	"zerodrop.dev/zerodrop/internal/lab/labtest"
)

// Scenario: a lab cluster behaves like a cluster without kubelets. A
// Deployment gets a ReplicaSet and a Pod from the real controllers; the Pod
// stays Pending, marked unschedulable by the real scheduler (there is no
// node); a Service gets a ClusterIP from the lab's range. Stop leaves no
// process and no work directory behind.
func TestClusterRunsControllersAndStopsEverything(t *testing.T) {
	bins := labtest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	c, err := Start(ctx, Options{Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.Stop()
		}
	})
	procs := c.Processes()
	if len(procs) != 4 {
		t.Fatalf("processes = %+v, want etcd, kube-apiserver, kube-controller-manager, kube-scheduler", procs)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ver, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if ver.GitVersion != k8sbin.KubernetesVersion {
		t.Errorf("server version %s, want %s", ver.GitVersion, k8sbin.KubernetesVersion)
	}

	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "zerodrop-lab/app:v1",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	created, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, svcNet, _ := net.ParseCIDR(DefaultServiceCIDR)
	if ip := net.ParseIP(created.Spec.ClusterIP); ip == nil || !svcNet.Contains(ip) {
		t.Errorf("Service ClusterIP %q not in %s", created.Spec.ClusterIP, DefaultServiceCIDR)
	}

	waitFor(ctx, t, "a ReplicaSet owned by the Deployment", func() (bool, error) {
		rss, err := cs.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, rs := range rss.Items {
			if ref := metav1.GetControllerOf(&rs); ref != nil && ref.Kind == "Deployment" && ref.Name == "web" {
				return true, nil
			}
		}
		return false, nil
	})
	waitFor(ctx, t, "2 Pending pods marked unschedulable", func() (bool, error) {
		return pendingUnschedulable(ctx, cs, 2)
	})
	waitFor(ctx, t, "an EndpointSlice for the Service", func() (bool, error) {
		sl, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		return err == nil && len(sl.Items) > 0, err
	})

	dir := c.Dir
	c.Stop()
	stopped = true
	for _, p := range procs {
		if err := syscall.Kill(p.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Stop (kill 0: %v)", p.Name, p.PID, err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("work directory %s still exists after Stop (stat: %v)", dir, err)
	}
}

// Scenario: a control-plane process that cannot start makes Start fail with
// its log, and stops everything already started.
func TestStartFailureStopsWhatStarted(t *testing.T) {
	bins := labtest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// An invalid flag for kube-controller-manager: etcd and the apiserver
	// start, then the controller-manager exits at once.
	_, err := Start(ctx, Options{Binaries: bins, Dir: dir, ControllerManagerArgs: []string{"--no-such-flag=1"}})
	if err == nil {
		t.Fatal("Start succeeded with an invalid controller-manager flag")
	}
	if !strings.Contains(err.Error(), "kube-controller-manager") {
		t.Errorf("error does not name the failed process: %v", err)
	}
	// Every process of this start is gone: find them by their logs' dir.
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if pidsRunningIn(t, dir, name) {
			t.Errorf("%s of the failed start is still running", name)
		}
	}
}

// pidsRunningIn reports whether a process of binary name runs with dir in
// its command line.
func pidsRunningIn(t *testing.T, dir, name string) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := string(raw)
		if strings.Contains(cmd, dir) && strings.Contains(cmd, name) {
			st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
			if !strings.Contains(string(st), ") Z") {
				return true
			}
		}
	}
	return false
}

func pendingUnschedulable(ctx context.Context, cs kubernetes.Interface, n int) (bool, error) {
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return false, err
	}
	count := 0
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				count++
			}
		}
	}
	return count == n, nil
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestFirstServiceIP(t *testing.T) {
	for _, c := range []struct{ cidr, want string }{
		{"10.96.0.0/16", "10.96.0.1"},
		{"10.0.0.0/24", "10.0.0.1"},
	} {
		ip, err := firstServiceIP(c.cidr)
		if err != nil || ip.String() != c.want {
			t.Errorf("firstServiceIP(%q) = %v, %v; want %s", c.cidr, ip, err, c.want)
		}
	}
	for _, bad := range []string{"", "10.96.0.0", "fd00::/108"} {
		if _, err := firstServiceIP(bad); err == nil {
			t.Errorf("firstServiceIP(%q): want an error", bad)
		}
	}
}
