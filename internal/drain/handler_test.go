package drain

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// fixture: namespace shop, Service web (app=web) bound by web-edge (drain
// timeout 30s), Service slow (app=slow) bound by slow-edge (drain timeout
// 500ms). Pods: web-1 and web-3 being deleted, web-2 alive, slow-1 being
// deleted, batch-1 bound by nothing, twin-a and twin-b sharing one token
// (copied by a template).
func fixture(opts ...interceptor.Funcs) client.WithWatch {
	s := kruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = zv1.AddToScheme(s)
	web := map[string]string{"app": "web"}
	slow := map[string]string{"app": "slow"}
	now := metav1.Now()
	p := func(name string, labels map[string]string, token string, deleting bool) *corev1.Pod {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels}}
		if token != "" {
			pod.Annotations = map[string]string{TokenAnnotation: token}
		}
		if deleting {
			pod.DeletionTimestamp, pod.Finalizers = &now, []string{"test.zerodrop.dev/keep"}
		}
		return pod
	}
	b := func(name, service string, timeout time.Duration) *zv1.TargetBinding {
		return &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: service, Port: intstr.FromInt32(80)}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: "be",
			Drain: zv1.DrainSpec{Timeout: &metav1.Duration{Duration: timeout}}}}
	}
	cb := fake.NewClientBuilder().WithScheme(s).WithRuntimeObjects(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: web}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "slow"}, Spec: corev1.ServiceSpec{Selector: slow}},
		b("web-edge", "web", 30*time.Second), b("slow-edge", "slow", 500*time.Millisecond),
		p("web-1", web, "tok123", true), p("web-2", web, "tok456", false), p("web-3", web, "", true),
		p("slow-1", slow, "", true), p("batch-1", map[string]string{"app": "batch"}, "", false),
		p("twin-a", web, "shared", true), p("twin-b", web, "shared", false),
	).WithIndex(&corev1.Pod{}, TokenIndex, TokenIndexValues)
	for _, o := range opts {
		cb = cb.WithInterceptorFuncs(o)
	}
	return cb.Build()
}

func server(t *testing.T) (*httptest.Server, *Handler, chan event.GenericEvent) {
	t.Helper()
	nudges := make(chan event.GenericEvent, 10)
	h := &Handler{Reader: fixture(), Drains: NewRegistry(), Nudge: nudges, NudgeInterval: time.Hour}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, h, nudges
}

func get(t *testing.T, url string) (int, Answer) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a Answer
	_ = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a
}

type result struct {
	code  int
	a     Answer
	took  time.Duration
	retry string
	close bool // the server closes the connection
}

// async GETs url in the background.
func async(url string) <-chan result {
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			done <- result{code: -1}
			return
		}
		defer resp.Body.Close()
		var a Answer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		done <- result{resp.StatusCode, a, time.Since(start), resp.Header.Get("Retry-After"), resp.Close}
	}()
	return done
}

func nudged(nudges chan event.GenericEvent) []string {
	var out []string
	for {
		select {
		case e := <-nudges:
			out = append(out, e.Object.GetName())
		default:
			return out
		}
	}
}

func TestDrainEndpoint(t *testing.T) {
	srv, h, nudges := server(t)
	pod := types.NamespacedName{Namespace: "shop", Name: "web-1"}

	if code, _ := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/batch-1?wait=0s"); code != http.StatusNotFound {
		t.Fatalf("pod no binding selects: %d, want 404", code)
	}
	if code, _ := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/gone?wait=0s"); code != http.StatusNotFound {
		t.Fatalf("unknown pod: %d, want 404", code)
	}
	if code, _ := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=soon"); code != http.StatusBadRequest {
		t.Fatalf("bad wait: %d, want 400", code)
	}
	code, a := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0")
	if code != http.StatusServiceUnavailable || a.Drained || a.Reason != "NotDrained" {
		t.Fatalf("bound pod not draining yet: %d %+v, want 503 NotDrained", code, a)
	}
	if n := nudged(nudges); len(n) != 1 || n[0] != "web-edge" {
		t.Fatalf("the request for a deleting, undrained pod nudged %v, want [web-edge]", n)
	}

	h.Drains.Report(pod, "web-edge", State{Reason: "Draining"})
	done := async(srv.URL + "/drain/v1/namespaces/shop/tokens/tok123?wait=30s")
	select {
	case r := <-done:
		t.Fatalf("answered %d while draining", r.code)
	case <-time.After(100 * time.Millisecond):
	}
	h.Drains.Report(pod, "web-edge", State{Drained: true, Reason: "Drained"})
	select {
	case r := <-done:
		if r.code != http.StatusOK || !r.a.Drained || r.a.Reason != "Drained" {
			t.Fatalf("drained, by token: %d %+v", r.code, r.a)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("long poll did not wake when the pod was reported drained")
	}
}

// Scenario: the binding whose gate web-1 carries is being deleted (its
// finalizer drains the targets first). Expectation: the hook still waits
// for that binding's verdict instead of being let go at once as unbound.
func TestDrainWaitsForBindingBeingDeleted(t *testing.T) {
	s := kruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = zv1.AddToScheme(s)
	now := metav1.Now()
	c := fake.NewClientBuilder().WithScheme(s).WithRuntimeObjects(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}},
		&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-edge", DeletionTimestamp: &now, Finalizers: []string{"zerodrop.dev/targets"}},
			Spec: zv1.TargetBindingSpec{ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromInt32(80)}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: "be"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: corev1.PodConditionType(zv1.GateConditionType("web-edge"))}}}},
	).Build()
	reg := NewRegistry()
	mux := http.NewServeMux()
	(&Handler{Reader: c, Drains: reg}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	pod := types.NamespacedName{Namespace: "shop", Name: "web-1"}
	reg.Report(pod, "web-edge", State{Reason: "Draining"})
	if code, a := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0s"); code != http.StatusServiceUnavailable {
		t.Fatalf("pod of a binding being deleted, draining: %d %+v, want 503", code, a)
	}
	reg.Report(pod, "web-edge", State{Drained: true, Reason: "Drained"})
	if code, a := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0s"); code != http.StatusOK {
		t.Fatalf("drained: %d %+v, want 200", code, a)
	}
}

// TestAlivePodIsNotHeld: a pod that is not being deleted has no drain to
// wait for; its request is answered within AliveHold (the cache may lag the
// deletion by a moment), not held for the full wait (H1).
func TestAlivePodIsNotHeld(t *testing.T) {
	srv, _, nudges := server(t)
	r := <-async(srv.URL + "/drain/v1/namespaces/shop/pods/web-2?wait=30s")
	if r.code != http.StatusServiceUnavailable || r.took > DefaultAliveHold+time.Second {
		t.Fatalf("alive pod, wait=30s: %d after %s, want 503 within %s", r.code, r.took, DefaultAliveHold)
	}
	if n := nudged(nudges); len(n) != 0 {
		t.Fatalf("a request for an alive pod nudged %v, want no nudge (M8)", n)
	}
}

// TestWaitCappedAtDrainTimeout: the hold never exceeds the longest
// drain.timeout of the pod's bindings, whatever wait asks (H1).
func TestWaitCappedAtDrainTimeout(t *testing.T) {
	srv, _, _ := server(t)
	r := <-async(srv.URL + "/drain/v1/namespaces/shop/pods/slow-1?wait=10m")
	if r.code != http.StatusServiceUnavailable || r.took > 2*time.Second {
		t.Fatalf("binding drain.timeout 500ms, wait=10m: %d after %s, want 503 within ~500ms", r.code, r.took)
	}
}

// TestHeldRequestsAreCapped: beyond MaxHeldPerPod for one pod, or MaxHeld
// in total, a request is answered 503 with Retry-After at once (H1).
func TestHeldRequestsAreCapped(t *testing.T) {
	srv, h, _ := server(t)
	h.MaxHeld, h.MaxHeldPerPod = 3, 2
	url := func(pod string) string { return srv.URL + "/drain/v1/namespaces/shop/pods/" + pod + "?wait=30s" }
	held := []<-chan result{async(url("web-1")), async(url("web-1"))}
	waitHeld(t, h, 2)
	r := <-async(url("web-1"))
	if r.code != http.StatusServiceUnavailable || r.retry == "" || !r.close || r.took > time.Second {
		t.Fatalf("third request for one pod (cap 2): %d Retry-After %q close %v after %s, want 503 with Retry-After at once, closing the connection", r.code, r.retry, r.close, r.took)
	}
	held = append(held, async(url("web-3")))
	waitHeld(t, h, 3)
	r = <-async(url("web-3"))
	if r.code != http.StatusServiceUnavailable || r.retry == "" || r.took > time.Second {
		t.Fatalf("fourth request in total (cap 3): %d Retry-After %q after %s, want 503 with Retry-After at once", r.code, r.retry, r.took)
	}
	h.Drains.Report(types.NamespacedName{Namespace: "shop", Name: "web-1"}, "web-edge", State{Drained: true, Reason: "Drained"})
	for _, c := range held[:2] {
		if r := <-c; r.code != http.StatusOK {
			t.Fatalf("held request after the drain: %d, want 200", r.code)
		}
	}
	waitHeld(t, h, 1)
	again := async(url("web-3"))
	waitHeld(t, h, 2)
	h.Drains.Report(types.NamespacedName{Namespace: "shop", Name: "web-3"}, "web-edge", State{Drained: true, Reason: "Drained"})
	for _, c := range []<-chan result{held[2], again} {
		if r := <-c; r.code != http.StatusOK {
			t.Fatalf("web-3 after the drain: %d, want 200", r.code)
		}
	}
}

func waitHeld(t *testing.T, h *Handler, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Held() != n {
		if time.Now().After(deadline) {
			t.Fatalf("held requests %d, want %d", h.Held(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSharedTokenIsRefused: a token two pods carry names neither; the
// answer is 409, not the first pod's verdict (M1).
func TestSharedTokenIsRefused(t *testing.T) {
	srv, h, _ := server(t)
	h.Drains.Report(types.NamespacedName{Namespace: "shop", Name: "twin-a"}, "web-edge", State{Drained: true, Reason: "Drained"})
	if code, a := get(t, srv.URL+"/drain/v1/namespaces/shop/tokens/shared?wait=0"); code != http.StatusConflict {
		t.Fatalf("token shared by twin-a (drained) and twin-b: %d %+v, want 409", code, a)
	}
}

// TestNudgeOnlyWhenItHelps: a request nudges the binding's reconcile only
// for a deleting pod not drained yet, and at most once per NudgeInterval
// per binding (M8).
func TestNudgeOnlyWhenItHelps(t *testing.T) {
	srv, h, nudges := server(t)
	get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0")
	get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0")
	get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-3?wait=0")
	if n := nudged(nudges); len(n) != 1 {
		t.Fatalf("three requests within NudgeInterval: nudges %v, want one", n)
	}
	h.NudgeInterval = time.Nanosecond
	h.Drains.Report(types.NamespacedName{Namespace: "shop", Name: "web-1"}, "web-edge", State{Drained: true, Reason: "Drained"})
	if code, _ := get(t, srv.URL+"/drain/v1/namespaces/shop/pods/web-1?wait=0"); code != http.StatusOK {
		t.Fatalf("drained pod: %d, want 200", code)
	}
	if n := nudged(nudges); len(n) != 0 {
		t.Fatalf("request for a drained pod nudged %v, want none", n)
	}
}

// TestErrorsDoNotLeak: a 500 says that something failed, not what the
// cache or API server said (L1).
func TestErrorsDoNotLeak(t *testing.T) {
	broken := fixture(interceptor.Funcs{Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
		return errors.New("etcdserver: internal detail 10.0.0.7")
	}})
	mux := http.NewServeMux()
	(&Handler{Reader: broken, Drains: NewRegistry()}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/drain/v1/namespaces/shop/pods/web-1?wait=0")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), "10.0.0.7") || strings.Contains(string(body), "etcdserver") {
		t.Fatalf("reader error: %d %q, want 500 without the internal error text", resp.StatusCode, body)
	}
}

// TestServerLimits: the drain server cuts oversized headers and idle
// connections, and lets a hold of MaxWait finish (H1).
func TestServerLimits(t *testing.T) {
	s := NewServer(http.NewServeMux())
	if s.MaxHeaderBytes != 8<<10 || s.IdleTimeout <= 0 || s.ReadTimeout <= 0 || s.ReadHeaderTimeout <= 0 || s.WriteTimeout <= MaxWait {
		t.Fatalf("drain server limits: header %d idle %s read %s readHeader %s write %s; want 8 KiB, >0, >0, >0, > MaxWait %s",
			s.MaxHeaderBytes, s.IdleTimeout, s.ReadTimeout, s.ReadHeaderTimeout, s.WriteTimeout, MaxWait)
	}
	if s.TLSNextProto == nil {
		t.Fatalf("drain server: HTTP/2 not disabled")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/drain/v1/namespaces/shop/pods/web-1", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header: %d, want 431", resp.StatusCode)
	}
}

// TestHeldRequestCost measures the memory of one held drain request on the
// server side (raw TCP clients, so the client's own buffers do not count),
// read through the fake client (BenchmarkHeldDrainRequests compares with
// net/http's own cost): go test -run HeldRequestCost -v ./internal/drain/
func TestHeldRequestCost(t *testing.T) {
	const n = 1000
	h := &Handler{Reader: fixture(), Drains: NewRegistry(), MaxHeld: 2 * n, MaxHeldPerPod: 2 * n}
	mux := http.NewServeMux()
	h.Register(mux)
	c := holdOpen(t, n, mux, func(int) string { return "/drain/v1/namespaces/shop/pods/web-1?wait=30s" }, h.Held)
	per := c.bytes / 1024
	t.Logf("%d held drain requests: %.1f KiB and %.1f goroutines each (heap in use + stacks, server side)", n, per, c.goroutines)
	if per > 40 {
		t.Fatalf("a held request costs %.1f KiB, want under 40 KiB", per)
	}
}

// TestForgetVerdictKeepsOtherBindings: one binding forgetting a pod (its
// target is gone from that binding) leaves the pod's verdicts of other
// bindings as they were.
func TestForgetVerdictKeepsOtherBindings(t *testing.T) {
	reg := NewRegistry()
	pod := types.NamespacedName{Namespace: "shop", Name: "web-1"}
	reg.Report(pod, "web-edge", State{Reason: "Draining"})
	reg.Report(pod, "web-internal", State{Drained: true, Reason: "Drained"})
	reg.ForgetVerdict(pod, "web-edge")
	if _, ok := reg.Lookup(pod, "web-edge"); ok {
		t.Fatalf("web-edge's verdict still known after ForgetVerdict")
	}
	if s, ok := reg.Lookup(pod, "web-internal"); !ok || !s.Drained {
		t.Fatalf("web-internal's verdict after web-edge forgot the pod: %+v (known %v), want kept", s, ok)
	}
}

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAnswerRevealsOnlyTheVerdict (L1): the endpoint needs no
// authentication, and its callers read only the status (the kubelet's
// httpGet hook discards the body; the graceful package reads the status,
// and a body only to quote an unexpected one). So the body says drained or
// not and why in one of four words, and nothing else: no binding name, no
// plan message (sessions per instance), not the pod a token names, not the
// namespace. The detail goes to the Debug log for operators.
func TestAnswerRevealsOnlyTheVerdict(t *testing.T) {
	srv, h, _ := server(t)
	logs := &lockedBuffer{}
	h.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	web1 := types.NamespacedName{Namespace: "shop", Name: "web-1"}
	h.Drains.Report(web1, "web-edge", State{Reason: "Draining", Message: "draining, 3 session(s) left"})

	ask := func(path string, wantCode int, wantReason string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var fields map[string]any
		if err := json.Unmarshal(body, &fields); err != nil {
			t.Fatalf("%s: body %q is not JSON: %v", path, body, err)
		}
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if resp.StatusCode != wantCode || fields["reason"] != wantReason || strings.Join(keys, ",") != "drained,reason" {
			t.Fatalf("%s: %d %s, want %d with only drained and reason (%s)", path, resp.StatusCode, body, wantCode, wantReason)
		}
		for _, secret := range []string{"web-edge", "session", "web-1", "shop"} {
			if strings.Contains(string(body), secret) {
				t.Fatalf("%s: body %s reveals %q", path, body, secret)
			}
		}
	}
	ask("/drain/v1/namespaces/shop/pods/web-1?wait=0s", http.StatusServiceUnavailable, "NotDrained")
	ask("/drain/v1/namespaces/shop/tokens/tok123?wait=0s", http.StatusServiceUnavailable, "NotDrained")
	ask("/drain/v1/namespaces/shop/pods/batch-1?wait=0s", http.StatusNotFound, "NotBound")
	if log := logs.String(); !strings.Contains(log, "web-edge") || !strings.Contains(log, "3 session(s) left") || !strings.Contains(log, "level=DEBUG") {
		t.Fatalf("the Debug log does not carry the binding's verdict:\n%s", log)
	}
	h.MaxHeldPerPod = 1
	held := async(srv.URL + "/drain/v1/namespaces/shop/pods/web-1?wait=30s")
	waitHeld(t, h, 1)
	ask("/drain/v1/namespaces/shop/pods/web-1?wait=30s", http.StatusServiceUnavailable, "TooManyRequests")
	h.Drains.Report(web1, "web-edge", State{Drained: true, Reason: "DrainTimeout", Message: "drain timeout 30s passed with 3 session(s) left"})
	if r := <-held; r.code != http.StatusOK {
		t.Fatalf("held request once drained: %d, want 200", r.code)
	}
	ask("/drain/v1/namespaces/shop/tokens/tok123?wait=0s", http.StatusOK, "Drained")
}
