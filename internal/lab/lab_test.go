package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"zerodrop.dev/zerodrop/internal/lab/labtest"
	"zerodrop.dev/zerodrop/internal/lab/netns"
)

// requireLab returns the options of a lab for this test process (names and
// pod range carry the pid so parallel test packages do not meet); it skips
// (fails in CI) unless everything a lab needs is here (package labtest).
// controllerLab starts the lab the controller's scenarios run in: two
// nodes, two HAProxy instances, zerodrop-controller built; bounded to 20
// minutes, closed when the test ends.
func controllerLab(t *testing.T) (context.Context, *Lab, Options) {
	t.Helper()
	opts := requireLab(t)
	labtest.Controller(t)
	opts.Nodes = 2
	opts.HAProxyInstances = 2
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	l, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return ctx, l, opts
}

func requireLab(t *testing.T) Options {
	t.Helper()
	bins, app := labtest.Require(t)
	pid := os.Getpid()
	return Options{
		Dir:         fmt.Sprintf("%s/lab", t.TempDir()),
		Nodes:       1,
		Bridge:      fmt.Sprintf("zdt%d", pid%100000),
		PodCIDR:     netns.PrefixForPID(pid),
		ServiceCIDR: ServiceCIDRForPID(pid),
		AppBinary:   app,
		Binaries:    bins,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// Scenario: the lab comes up whole (control plane, a Ready node, HAProxy
// answering on its frontend), records what it runs, and Close removes it
// all: no recorded process left, no bridge, no run directory.
func TestLabUpAndClose(t *testing.T) {
	opts := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	st := l.State()
	if !st.Ready || len(st.HAProxy) != 1 || len(st.Nodes) != 1 {
		t.Fatalf("state after Up: %+v", st)
	}
	onDisk, err := ReadState(opts.Dir)
	if err != nil || !onDisk.Ready {
		t.Fatalf("state file after Up: %+v, %v", onDisk, err)
	}
	nodes, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 || !nodeReady(&nodes.Items[0]) {
		t.Fatalf("nodes: %+v, %v", nodes, err)
	}
	// No server yet: HAProxy answers 503 itself, which proves it serves
	// the frontend.
	resp, err := http.Get("http://" + st.HAProxy[0].Frontend + "/")
	if err != nil {
		t.Fatalf("frontend: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("frontend without servers answered %d, want 503", resp.StatusCode)
	}

	// The kubernetes Service's ClusterIP leads to the API server, whose
	// certificate verifies for it against the cluster CA.
	k, err := l.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readyzVia(t, k.Spec.ClusterIP, l.Cluster.CACert); got != "200 ok" {
		t.Errorf("https://%s:443/readyz answered %q, want 200 ok", k.Spec.ClusterIP, got)
	}

	procs := st.Processes
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed = true
	for _, p := range procs {
		if err := syscall.Kill(p.PID, 0); !errors.Is(err, syscall.ESRCH) && isExe(p.PID, p.Exe) {
			t.Errorf("%s (pid %d) still runs after Close", p.Name, p.PID)
		}
	}
	if out, _ := exec.Command("ip", "link", "show", opts.Bridge).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("bridge %s still exists after Close: %s", opts.Bridge, out)
	}
	if _, err := os.Stat(opts.Dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s still exists after Close", opts.Dir)
	}
}

// readyzVia gets /readyz from https://ip:443, verifying the server against
// the CA file, and returns "<status> <body>".
func readyzVia(t *testing.T, ip, caFile string) string {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + net.JoinHostPort(ip, "443") + "/readyz")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

func isExe(pid int, exe string) bool {
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.TrimSuffix(got, " (deleted)") == exe
}

// Scenario: the naive scenario run end to end with small K counts requests
// through a real HAProxy while the Deployment is rolled, with every request
// accounted for (failed <= requests, classes sum to failed) and a duration
// per rollout; and it reproduces the seeds' drops: an app that exits at
// once while the LB still routes to it (the syncer's propagation delay is
// 1 s, at 100 requests/s) fails requests.
func TestNaiveScenarioEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	opts := requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s, _ := ScenarioByName("naive")
	res, err := Run(ctx, l.Target(), s, RunOptions{Rollouts: 2, Rate: 100, Replicas: 2, Settle: 2 * time.Second, Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 100 {
		t.Errorf("only %d requests sent at 100/s over two rollouts", res.Requests)
	}
	var sum uint64
	for _, n := range res.FailuresByClass {
		sum += n
	}
	if sum != res.Failed || res.Failed > res.Requests {
		t.Errorf("failures do not add up: %+v", res)
	}
	if res.Failed == 0 {
		t.Errorf("naive scenario dropped no request: the lab does not reproduce the seeds (%+v)", res)
	}
	if len(res.RolloutSeconds) != 2 {
		t.Errorf("rollout durations %v, want 2", res.RolloutSeconds)
	}
	var sb strings.Builder
	PrintTable(&sb, []Result{res})
	t.Logf("\n%s", sb.String())
}
