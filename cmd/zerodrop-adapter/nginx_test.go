package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	labnginx "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/testenv"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/nginx"
	"zerodrop.dev/zerodrop/provider/remote"
)

// Scenario: the binary with --provider nginx in front of a real NGINX, and
// the controller's client. Expectation: the capabilities are NGINX's; a
// target registered through the wire becomes Healthy (every worker loaded
// it) and is drained and deregistered; readyz is ready.
func TestAdapterBinaryServesNGINX(t *testing.T) {
	testenv.RequireBinary(t, "nginx")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	in, err := labnginx.Start(ctx, labnginx.Config{ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })}
	go app.Serve(l)
	t.Cleanup(func() { app.Close() })

	addr := make(chan string, 1)
	done := make(chan error, 1)
	sctx, stop := context.WithCancel(context.Background())
	defer func() { stop(); <-done }()
	go func() {
		done <- run(sctx, []string{"--provider", "nginx", "--listen", "127.0.0.1:0", "--allow-insecure",
			"--nginx-instance", "nginx-a=" + in.UpstreamFile() + "," + in.PidFile()}, io.Discard, func(a string) { addr <- a })
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case err := <-done:
		t.Fatalf("adapter exited: %v", err)
	}
	c, err := remote.New(remote.Config{URL: url, AllowInsecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Capabilities(), new(nginx.Provider).Capabilities(); got != want {
		t.Fatalf("capabilities %+v, want NGINX's %+v", got, want)
	}
	if r, err := c.Ready(ctx); err != nil || r.Status != "ok" {
		t.Fatalf("readyz: %+v %v", r, err)
	}
	ta := provider.Target{ID: "pod-a", IP: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port}
	pool := provider.Pool{Name: "app", Known: []provider.Target{ta}}
	if err := c.Register(ctx, pool, ta); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Status(ctx, pool)
		if ok, _, _ := st.Healthy("pod-a"); ok && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not Healthy through the adapter: %v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.SetDraining(ctx, pool, ta); err != nil {
		t.Fatal(err)
	}
	for {
		err := c.Deregister(ctx, pool, ta)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Deregister through the adapter: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
