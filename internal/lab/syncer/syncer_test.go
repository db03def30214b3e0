package syncer

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	lab "zerodrop.dev/zerodrop/internal/lab/haproxy"
	"zerodrop.dev/zerodrop/internal/testenv"
	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// app is a pod stand-in on 127.0.0.1: /ready answers 200, /slow blocks
// until released, anything else answers the app's name.
type app struct {
	name    string
	port    int
	served  atomic.Int64
	slowIn  atomic.Int64
	release chan struct{}
	once    sync.Once
}

func startApp(t *testing.T, name string) *app {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{name: name, port: l.Addr().(*net.TCPAddr).Port, release: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready":
			return
		case "/slow":
			a.slowIn.Add(1)
			<-a.release
		}
		a.served.Add(1)
		fmt.Fprintln(w, a.name)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { a.unblock(); srv.Close() })
	return a
}

func (a *app) unblock() { a.once.Do(func() { close(a.release) }) }

// sliceFor is one EndpointSlice of Service "web" holding the app on
// 127.0.0.1 (the fake clientset does not reject loopback, the real
// apiserver does: the lab uses pod addresses).
func sliceFor(a *app, ready bool) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-" + a.name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(a.port))}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"127.0.0.1"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(true), Terminating: ptr.To(!ready)},
		}},
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // hang guard only
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func servers(t *testing.T, c *hapi.Client) map[string]hapi.ServerState {
	t.Helper()
	st, err := c.ShowServersState(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]hapi.ServerState{}
	for _, s := range st {
		out[s.Name] = s
	}
	return out
}

// Scenario: the baseline syncer in front of a real haproxy, fed by a fake
// clientset. Expectation: Ready endpoints become servers that serve,
// changes arrive no sooner than the propagation delay, a terminating
// endpoint is removed only once its last request finished (maint, then
// del retried), and a reload is repaired by the resync.
func TestSyncerKeepsBackendEqualToReadyEndpoints(t *testing.T) {
	testenv.RequireBinary(t, "haproxy")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, err := lab.Start(ctx, lab.Config{Backends: []lab.Backend{{Name: "app", Check: lab.Check{HTTPPath: "/ready", Interval: 100 * time.Millisecond}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	c := in.Client()
	a, b := startApp(t, "a"), startApp(t, "b")
	nameA, nameB := ServerName("127.0.0.1", a.port), ServerName("127.0.0.1", b.port)
	client := fake.NewClientset(sliceFor(a, true), sliceFor(b, true))
	const delay = 300 * time.Millisecond
	var mu sync.Mutex
	var actions []string
	s, err := New(Config{
		Client: client, Namespace: "default", Service: "web", Backend: "app",
		Instances:        []string{in.Socket()},
		Check:            hapi.ServerOptions{Inter: 100 * time.Millisecond, Rise: 2, Fall: 2},
		PropagationDelay: delay, Resync: 300 * time.Millisecond,
		OnAction: func(_ string, act Action, err error) {
			mu.Lock()
			actions = append(actions, fmt.Sprintf("%s err=%v", act, err))
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("syncer: %v", err)
		}
	})
	httpc := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (string, error) {
		resp, err := httpc.Get("http://" + in.Addr() + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d", resp.StatusCode)
		}
		return strings.TrimSpace(string(body)), nil
	}

	t.Run("ready endpoints become servers that serve", func(t *testing.T) {
		eventually(t, "both apps served through haproxy", func() bool {
			get("/")
			return a.served.Load() > 0 && b.served.Load() > 0
		})
	})

	t.Run("terminating endpoint: removed after the delay, once its request finished", func(t *testing.T) {
		// Pin a long request on b (a answers /slow at once).
		a.unblock()
		slowDone := make(chan error, 10)
		for i := 0; b.slowIn.Load() == 0; i++ {
			if i == 20 {
				t.Fatal("no /slow request landed on b")
			}
			go func() { _, err := get("/slow"); slowDone <- err }()
			select {
			case err := <-slowDone: // landed on a (a does not block: released)
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(300 * time.Millisecond):
			}
		}
		changed := time.Now()
		if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, sliceFor(b, false), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b in maintenance", func() bool { return servers(t, c)[nameB].Admin.Maint() })
		if waited := time.Since(changed); waited < delay {
			t.Fatalf("change applied after %s, before the propagation delay %s", waited, delay)
		}
		// del server is refused while the request is open; it stays.
		time.Sleep(3 * 300 * time.Millisecond)
		if _, ok := servers(t, c)[nameB]; !ok {
			t.Fatal("b deleted while a request was still open on it")
		}
		b.unblock()
		if err := <-slowDone; err != nil {
			t.Fatalf("the open request failed when b went to maintenance: %v", err)
		}
		eventually(t, "b deleted", func() bool { _, ok := servers(t, c)[nameB]; return !ok })
		mu.Lock()
		defer mu.Unlock()
		busy := false
		for _, s := range actions {
			busy = busy || strings.HasPrefix(s, "remove "+nameB) && strings.Contains(s, "still has connections")
		}
		if !busy {
			t.Errorf("no removal of b was refused for open connections; actions: %v", actions)
		}
	})

	t.Run("reload loses the servers; resync adds them back", func(t *testing.T) {
		if err := in.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a re-added after reload", func() bool { _, ok := servers(t, c)[nameA]; return ok })
		if _, ok := servers(t, c)[nameB]; ok {
			t.Fatal("b (not ready) re-added")
		}
		before := a.served.Load()
		eventually(t, "a serves after reload", func() bool { get("/"); return a.served.Load() > before })
	})

	t.Run("slice deleted: servers removed", func(t *testing.T) {
		if err := client.DiscoveryV1().EndpointSlices("default").Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a removed", func() bool { _, ok := servers(t, c)[nameA]; return !ok })
	})
}
