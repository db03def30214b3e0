package cluster

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"zerodrop.dev/zerodrop/internal/lab/labtest"
)

// Scenario: etcd killed (SIGKILL) and kube-apiserver stopped (SIGTERM) are
// each started again on the same ports, certificates and data: an object
// written before is read back through the same client afterwards, and the
// new pids are what Processes reports.
func TestRestartKeepsDataPortsAndCertificates(t *testing.T) {
	bins := labtest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pid := func(name string) int {
		for _, p := range c.Processes() {
			if p.Name == name {
				return p.PID
			}
		}
		return 0
	}
	for _, tc := range []struct {
		name string
		kill bool
	}{{Etcd, true}, {KubeAPIServer, false}} {
		before := pid(tc.name)
		if err := c.Restart(ctx, tc.name, tc.kill, 500*time.Millisecond); err != nil {
			t.Fatalf("restart %s: %v", tc.name, err)
		}
		if after := pid(tc.name); after == before || after == 0 {
			t.Errorf("%s: pid %d before and %d after the restart", tc.name, before, after)
		}
		// The apiserver reconnects to a restarted etcd by itself.
		var got *corev1.ConfigMap
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err = cs.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{})
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil || got.Data["k"] != "v" {
			t.Fatalf("after restarting %s: ConfigMap %+v, %v", tc.name, got, err)
		}
	}
	if err := c.Restart(ctx, "kubelet", false, 0); err == nil {
		t.Error("restart of an unknown process: no error")
	}
}
