package drain

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// heldCost is what n requests held open by a server cost it, per request.
type heldCost struct {
	bytes      float64 // heap in use + goroutine stacks
	goroutines float64
}

// holdOpen serves handler with the drain endpoint's server (NewServer) on
// loopback, opens n raw TCP connections (so that no client buffer counts),
// sends each one HTTP/1.1 request for path(i), waits until held() is n,
// and measures the server process's growth: heap in use and stacks after
// four GCs (each halves stacks that use under a quarter: a long-running
// process's steady state), and goroutines. It then closes everything.
func holdOpen(b testing.TB, n int, handler http.Handler, path func(i int) string, held func() int) heldCost {
	b.Helper()
	return holdOpenServer(b, n, handler, nil, path, held)
}

// heldProfile, when set (HELD_PROFILE=dir), names a directory where each
// measurement writes the heap profile of the requests held, sampled
// finely, and logs heap and stacks apart.
var heldProfile = os.Getenv("HELD_PROFILE")

func init() {
	if heldProfile != "" {
		runtime.MemProfileRate = 512
	}
}

// holdOpenServer is holdOpen with the server configured by setup first.
func holdOpenServer(b testing.TB, n int, handler http.Handler, setup func(*http.Server), path func(i int) string, held func() int) heldCost {
	b.Helper()
	s := NewServer(handler)
	if setup != nil {
		setup(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	for i := range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			// Not a skip: a cost nobody measured is a cost nobody bounds.
			// Go raises the soft open-file limit to the hard one at start,
			// so only a hard limit under ~2n+100 gets here.
			b.Fatalf("dial connection %d of %d: %v: the measurement holds %d connections, two file descriptors each; raise the hard open-file limit (ulimit -Hn) to at least %d",
				i+1, n, err, n, 2*n+100)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: drain\r\n\r\n", path(i)); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for held() != n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d requests held after 60s", held(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 4 {
		runtime.GC()
	}
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	grown := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	if heldProfile != "" {
		name := filepath.Join(heldProfile, strings.NewReplacer("/", "_", "*", "").Replace(fmt.Sprintf("%s-%T.heap", b.Name(), handler)))
		b.Logf("%s: heap %d B, stacks %d B per request", name, (int64(after.HeapInuse)-int64(before.HeapInuse))/int64(n), (int64(after.StackInuse)-int64(before.StackInuse))/int64(n))
		if f, err := os.Create(name); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	return heldCost{bytes: float64(grown) / float64(n), goroutines: float64(g1-g0) / float64(n)}
}

// cacheLike reads what podsFixture holds the way the controller's cache
// reader does: a deep copy of the stored object (no JSON round trip, as
// the fake client makes, whose deep call chain grows the goroutine's stack
// that the request then holds).
type cacheLike struct {
	pods    map[string]*corev1.Pod
	svc     *corev1.Service
	binding *zv1.TargetBinding
}

func (c *cacheLike) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	switch o := obj.(type) {
	case *corev1.Pod:
		if p, ok := c.pods[key.Name]; ok && key.Namespace == p.Namespace {
			p.DeepCopyInto(o)
			return nil
		}
	case *corev1.Service:
		if key.Namespace == c.svc.Namespace && key.Name == c.svc.Name {
			c.svc.DeepCopyInto(o)
			return nil
		}
	}
	return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
}

func (c *cacheLike) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	l, ok := list.(*zv1.TargetBindingList)
	if !ok {
		return fmt.Errorf("cacheLike lists TargetBindings only, not %T", list)
	}
	l.Items = []zv1.TargetBinding{*c.binding.DeepCopy()}
	return nil
}

// podsFixture: Service web in namespace shop, bound by web-edge (drain
// timeout 30s), and n pods web-0... of it, each being deleted, read as
// from the controller's cache.
func podsFixture(n int) client.Reader {
	web := map[string]string{"app": "web"}
	now := metav1.Now()
	c := &cacheLike{pods: map[string]*corev1.Pod{},
		svc: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: web}},
		binding: &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-edge"}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromInt32(80)}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: "be",
			Drain: zv1.DrainSpec{Timeout: &metav1.Duration{Duration: 30 * time.Second}}}}}
	for i := range n {
		name := fmt.Sprintf("web-%d", i)
		c.pods[name] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: web,
			DeletionTimestamp: &now, Finalizers: []string{"test.zerodrop.dev/keep"}}}
	}
	return c
}

// fakeFixture is podsFixture in controller-runtime's fake client.
func fakeFixture(n int) client.Reader {
	s := kruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = zv1.AddToScheme(s)
	web := map[string]string{"app": "web"}
	now := metav1.Now()
	objs := []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: web}},
		&zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-edge"}, Spec: zv1.TargetBindingSpec{
			ServiceRef: zv1.ServiceReference{Name: "web", Port: intstr.FromInt32(80)}, LoadBalancerRef: zv1.LoadBalancerReference{Name: "edge"}, Pool: "be",
			Drain: zv1.DrainSpec{Timeout: &metav1.Duration{Duration: 30 * time.Second}}}},
	}
	for i := range n {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("web-%d", i), Labels: web,
			DeletionTimestamp: &now, Finalizers: []string{"test.zerodrop.dev/keep"}}})
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

// parked is the peer: a plain net/http handler that holds every request
// until the client leaves, and does nothing else.
type parked struct{ n atomic.Int64 }

func (p *parked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.n.Add(1)
	defer p.n.Add(-1)
	<-r.Context().Done()
}

// idleConns counts a server's connections idle between keep-alive
// requests (http.StateIdle).
type idleConns struct{ n atomic.Int64 }

func (c *idleConns) track(s *http.Server) {
	s.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateIdle {
			c.n.Add(1)
		}
	}
}

// BenchmarkHeldDrainRequests holds n drain hook requests open at once (n
// pods being deleted, one request each, wait=30s, nothing drained: the
// handler holds them all) through the real drain server over loopback, the
// pods read as from the controller's cache and, apart, from the fake
// client TestHeldRequestCost uses. Beside them, in the same run and with
// the same server settings, it measures two peers: n requests held by a
// plain net/http handler that only waits, and n idle keep-alive
// connections (one request answered each). It reports bytes (heap in use +
// stacks) and goroutines per held request, and the ratio to each peer
// (x-peer, x-idle); docs/controller.md has the figures:
//
//	chrt --idle 0 go test -run '^$' -bench HeldDrainRequests -benchtime 3x ./internal/drain/
func BenchmarkHeldDrainRequests(b *testing.B) {
	for _, rd := range []struct {
		name    string
		fixture func(n int) client.Reader
	}{{"cache", podsFixture}, {"fakeclient", fakeFixture}} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("reader=%s/n=%d", rd.name, n), func(b *testing.B) { benchHeld(b, n, rd.fixture(n)) })
		}
	}
}

// maxPeerRatio bounds what a held drain request may cost over a request
// net/http holds by itself (measured 1.4 from the cache, 1.8-2.0 from the
// fake client): beyond it, the handler keeps something it should not.
const maxPeerRatio = 2.5

func benchHeld(b *testing.B, n int, reader client.Reader) {
	var drain, peer, idle heldCost
	for range b.N {
		h := &Handler{Reader: reader, Drains: NewRegistry(), MaxHeld: n, MaxHeldPerPod: 1}
		mux := http.NewServeMux()
		h.Register(mux)
		d := holdOpen(b, n, mux, func(i int) string { return fmt.Sprintf("/drain/v1/namespaces/shop/pods/web-%d?wait=30s", i) }, h.Held)
		p := &parked{}
		q := holdOpen(b, n, p, func(int) string { return "/" }, func() int { return int(p.n.Load()) })
		ic := &idleConns{}
		answer := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
		k := holdOpenServer(b, n, answer, ic.track, func(int) string { return "/" }, func() int { return int(ic.n.Load()) })
		drain.bytes += d.bytes
		drain.goroutines += d.goroutines
		peer.bytes += q.bytes
		peer.goroutines += q.goroutines
		idle.bytes += k.bytes
	}
	N := float64(b.N)
	b.ReportMetric(drain.bytes/N, "B/held")
	b.ReportMetric(drain.goroutines/N, "goroutines/held")
	b.ReportMetric(peer.bytes/N, "peer-B/held")
	b.ReportMetric(peer.goroutines/N, "peer-goroutines/held")
	b.ReportMetric(idle.bytes/N, "idle-B/conn")
	b.ReportMetric(drain.bytes/peer.bytes, "x-peer")
	b.ReportMetric(drain.bytes/idle.bytes, "x-idle")
	if drain.goroutines > peer.goroutines+0.05*N {
		b.Errorf("%.2f goroutines per held drain request, net/http holds one with %.2f", drain.goroutines/N, peer.goroutines/N)
	}
	if r := drain.bytes / peer.bytes; r > maxPeerRatio {
		b.Errorf("a held drain request costs %.0f B, %.2f times what net/http holds one with (%.0f B), want at most %.1f", drain.bytes/N, r, peer.bytes/N, maxPeerRatio)
	}
}
