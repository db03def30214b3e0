package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/webhook"
)

var binary struct {
	once sync.Once
	path string
	err  error
}

// controllerBinary builds zerodrop-controller once per test run.
func controllerBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		dir, err := os.MkdirTemp("", "zerodrop-controller-bin")
		if err != nil {
			binary.err = err
			return
		}
		binary.path = filepath.Join(dir, "zerodrop-controller")
		if out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// procMemory reads a process's resident memory now and at its peak.
func procMemory(pid int) (rss, peak int64) {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// TestDrainFloodServeRole: 10,000 drain requests held open at once against
// a serve-role process (the real binary, the Deployment's 256 MiB limit as
// GOMEMLIMIT, a real API server) for pods being deleted. The process holds
// at most --drain-max-held of them and answers the rest 503 with
// Retry-After at once; its memory stays below the limit; its webhook keeps
// answering admission requests meanwhile; its /metrics refuses an
// anonymous caller (H1, M13).
func TestDrainFloodServeRole(t *testing.T) {
	requireSuite(t)
	const (
		requests = 10000
		pods     = 100
		limit    = 256 << 20 // config/manager/serve.yaml
	)
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err == nil && nofile.Cur < nofile.Max {
		nofile.Cur = nofile.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nofile)
	}
	if nofile.Cur < requests+1000 {
		t.Fatalf("RLIMIT_NOFILE %d: the flood needs %d connections", nofile.Cur, requests)
	}
	bin := controllerBinary(t)
	ctx := context.Background()

	// 100 bound pods, being deleted (a finalizer keeps them): every
	// request for them may be held.
	ns := fmt.Sprintf("flood-%d", suite.nsSeq.Add(1))
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-edge"}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromString("http")}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"},
			Pool: pool, Drain: zv1.DrainSpec{Timeout: &metav1.Duration{Duration: 40 * time.Second}}}},
	}
	for _, o := range objs {
		if err := suite.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for i := range pods {
		p := newPod(ns, fmt.Sprintf("web-%d", i), map[string]string{"app": "web"})
		p.Finalizers = []string{"test.zerodrop.dev/hold"}
		if err := suite.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := suite.c.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range pods {
			_ = suite.c.Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%d", i)}},
				client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
		}
	})

	dir := t.TempDir()
	kcFile := mastersKubeconfig(t, suite.env, "flood", dir)
	wo := &suite.env.WebhookInstallOptions
	drainAddr, probeAddr, metricsAddr := freeAddr(), freeAddr(), freeAddr()
	_, webhookPort, _ := net.SplitHostPort(freeAddr())
	cmd := exec.Command(bin, "--role=serve", "--namespace="+controllerNS, "--webhook-cert-mode=external",
		"--webhook-cert-dir="+wo.LocalServingCertDir, "--webhook-bind-host=127.0.0.1", "--webhook-port="+webhookPort,
		"--drain-hook-host=127.0.0.1", "--drain-bind-address="+drainAddr, "--drain-shutdown-delay=0s",
		"--metrics-bind-address="+metricsAddr, "--health-probe-bind-address="+probeAddr, "--log-level=warn")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kcFile, "GOMEMLIMIT="+strconv.Itoa(limit))
	logFile, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("serve log:\n%s", out)
		}
	})
	eventually(t, "serve /readyz", func() (bool, string) {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	eventually(t, "the serve cache holds the deleting pods", func() (bool, string) {
		code, a, err := getDrain("http://"+drainAddr, fmt.Sprintf("/drain/v1/namespaces/%s/pods/web-%d?wait=0s", ns, pods-1))
		return err == nil && code == http.StatusServiceUnavailable && a.Reason == "NotDrained", fmt.Sprint(code, a, err)
	})
	rssBefore, _ := procMemory(cmd.Process.Pid)

	start := time.Now()
	conns := make([]net.Conn, requests)
	var next atomic.Int64
	var wg sync.WaitGroup
	var dialErr atomic.Value
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				c, err := net.DialTimeout("tcp", drainAddr, 10*time.Second)
				if err != nil {
					dialErr.Store(err)
					return
				}
				conns[i] = c
				fmt.Fprintf(c, "GET /drain/v1/namespaces/%s/pods/web-%d?wait=10m HTTP/1.1\r\nHost: drain\r\n\r\n", ns, i%pods)
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err, _ := dialErr.Load().(error); err != nil {
		t.Fatalf("flood: %v", err)
	}
	sent := time.Since(start)

	// The webhook answers during the flood.
	pod := newPod(ns, "", map[string]string{"app": "web"})
	pod.GenerateName = "web-"
	raw, _ := json.Marshal(pod)
	review, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "flood-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: ns, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}}})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(wo.LocalServingCAData)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	webhookStart := time.Now()
	resp, err := hc.Post("https://127.0.0.1:"+webhookPort+webhook.Path, "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatalf("webhook during the flood: %v", err)
	}
	var got admissionv1.AdmissionReview
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got.Response == nil || !got.Response.Allowed {
		t.Fatalf("webhook during the flood: %s %+v, want an allowed admission response", resp.Status, got.Response)
	}
	webhookTook := time.Since(webhookStart)

	// Held requests have no answer yet; refused ones have a 503 with
	// Retry-After waiting in their socket.
	// Two passes: a request accepted last may still be on its way.
	held, refused := 0, 0
	pending := conns
	for pass := range 2 {
		var still []net.Conn
		for _, c := range pending {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				still = append(still, c)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("refused request: %s Retry-After %q, want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
			}
			refused++
		}
		pending = still
		if pass == 0 {
			time.Sleep(time.Second)
		}
	}
	held = len(pending)
	t.Logf("answers read after %s", time.Since(start).Round(time.Millisecond))
	rss, peak := procMemory(cmd.Process.Pid)
	t.Logf("%d requests sent in %s: %d held, %d refused at once; webhook answered in %s; serve RSS %d MiB before, %d MiB now, peak %d MiB (limit %d MiB); %.1f KiB per held request",
		requests, sent.Round(time.Millisecond), held, refused, webhookTook.Round(time.Millisecond), rssBefore>>20, rss>>20, peak>>20, limit>>20,
		float64(rss-rssBefore)/float64(max(held, 1))/1024)
	if held != drain.DefaultMaxHeld || refused != requests-drain.DefaultMaxHeld {
		t.Errorf("held %d, refused %d: want %d held (--drain-max-held) and the rest refused", held, refused, drain.DefaultMaxHeld)
	}
	if peak >= limit {
		t.Errorf("serve process peak RSS %d MiB, want below its %d MiB limit", peak>>20, limit>>20)
	}

	phase := time.Now()
	// Metrics are HTTPS and refuse a caller without a token.
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	mresp, err := insecure.Get("https://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics over HTTPS: %v", err)
	}
	mresp.Body.Close()
	if mresp.StatusCode != http.StatusUnauthorized && mresp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous GET /metrics: %s, want 401 or 403", mresp.Status)
	}
	// HTTP/2 is off on both TLS servers (L2).
	for what, addr := range map[string]string{"webhook": "127.0.0.1:" + webhookPort, "metrics": metricsAddr} {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("%s TLS: %v", what, err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p == "h2" {
			t.Errorf("%s server negotiated HTTP/2", what)
		}
		c.Close()
	}
	t.Logf("metrics and TLS checks took %s", time.Since(phase).Round(time.Millisecond))
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("flood took %s, want under 60 s", took)
	}
}
