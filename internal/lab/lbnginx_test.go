package lab

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/lab/labtest"
	labnginx "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/lab/nginxsync"
	"zerodrop.dev/zerodrop/internal/nginxproc"
)

// Scenario: "servers up" through a real NGINX. Expectation: not while the
// upstream holds fewer servers than wanted, a draining (down) one, or a
// server that does not answer, nor before the workers reloaded the file;
// yes once every current worker loaded n answering servers. Clearing the
// pool leaves the placeholder only, loaded.
func TestNGINXServersUp(t *testing.T) {
	labtest.RequireNGINX(t)
	app := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return l.Addr().String()
	}
	a, b := app(), app()
	gone := func() string { // a port nobody listens on
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}()
	in, err := labnginx.Start(context.Background(), labnginx.Config{Pools: []labnginx.Pool{{Name: BackendName}}, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	st := NGINXState{Name: "nginx-0", Pool: BackendName, UpstreamFile: in.UpstreamFile(), PidFile: in.PidFile(), ErrorLog: in.ErrorLog()}
	ni := nginxsync.Instance{UpstreamFile: st.UpstreamFile, PidFile: st.PidFile}
	ctx := context.Background()
	write := func(text string) {
		t.Helper()
		if _, err := nginxsync.Write(ni, []byte(text)); err != nil {
			t.Fatal(err)
		}
	}
	eventually := func(n int, want bool, why string) {
		t.Helper()
		var ok bool
		var got string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if ok, got = nginxServersUp(ctx, st, n); ok == want && (want || strings.Contains(got, why)) {
				return
			}
		}
		if ok != want {
			t.Fatalf("%s: up=%v (%s), want %v", why, ok, got, want)
		}
		if !want && !strings.Contains(got, why) {
			t.Fatalf("not up because %q, want it to say %q", got, why)
		}
	}
	write("upstream app {\n    server " + a + ";\n}\n")
	eventually(1, true, "one server loaded")
	eventually(2, false, "1 servers in rotation, 0 down")
	write("upstream app {\n    server " + a + ";\n    server " + b + " down;\n}\n")
	eventually(1, false, "1 servers in rotation, 1 down")
	write("upstream app {\n    server " + a + ";\n    server " + gone + ";\n}\n")
	eventually(2, false, "server "+gone)
	write("upstream app {\n    server " + a + ";\n    server " + b + ";\n}\n")
	eventually(2, true, "two servers loaded")

	// A write no reload followed: the workers predate it.
	time.Sleep(2 * nginxproc.Tick)
	raw, _ := os.ReadFile(st.UpstreamFile)
	if err := os.WriteFile(st.UpstreamFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(2, false, "reload pending")
	if err := reloadNGINX(ctx, st); err != nil {
		t.Fatal(err)
	}
	eventually(2, true, "reloaded")

	if err := clearNGINXPools(ctx, []NGINXState{st}); err != nil {
		t.Fatal(err)
	}
	eventually(0, true, "cleared")
}

// Scenario: the LoadBalancer of zerodrop-nginx and the adapter's command
// line. Expectation: provider external with a loopback http URL allowed
// insecure, no instances (the adapter reports them), reloadGrace 0, the
// lab's pool granted; one --nginx-instance per instance naming its upstream
// file and pid file.
func TestNGINXLoadBalancerAndAdapterArgs(t *testing.T) {
	lb := nginxLoadBalancer("http://127.0.0.1:9999")
	if lb.Spec.Provider != zv1.ProviderExternal || lb.Spec.External == nil || !lb.Spec.External.AllowInsecure ||
		lb.Spec.External.URL != "http://127.0.0.1:9999" || len(lb.Spec.Instances) != 0 {
		t.Fatalf("spec %+v breaks the CRD's rules for provider external", lb.Spec)
	}
	if lb.Spec.ReloadGrace == nil || lb.Spec.ReloadGrace.Duration != 0 || len(lb.Spec.Pools) != 1 || lb.Spec.Pools[0].Name != BackendName {
		t.Fatalf("spec %+v: want reloadGrace 0 and pool %s granted", lb.Spec, BackendName)
	}
	args := strings.Join(adapterArgs("127.0.0.1:9999", []NGINXState{
		{Name: "nginx-0", UpstreamFile: "/r/nginx-0/upstreams.conf", PidFile: "/r/nginx-0/nginx.pid"},
		{Name: "nginx-1", UpstreamFile: "/r/nginx-1/upstreams.conf", PidFile: "/r/nginx-1/nginx.pid"},
	}), " ")
	want := "--provider nginx --listen 127.0.0.1:9999 --allow-insecure" +
		" --nginx-instance nginx-0=/r/nginx-0/upstreams.conf,/r/nginx-0/nginx.pid" +
		" --nginx-instance nginx-1=/r/nginx-1/upstreams.conf,/r/nginx-1/nginx.pid"
	if args != want {
		t.Fatalf("adapter args\n%s\nwant\n%s", args, want)
	}
}
