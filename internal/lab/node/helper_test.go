package node

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the programs the agent runs: with
// ZD_NODE_HELPER=1 in its environment (the test image's env) it runs
// helperMain instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("ZD_NODE_HELPER") == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	code := m.Run()
	stopLab()
	os.Exit(code)
}

// labStop stops the shared lab (lab_test.go) after the tests, if started.
var labStop func()

func stopLab() {
	if labStop != nil {
		labStop()
	}
}

// helperMain is the test program.
//
//	serve [--port N] [--record FILE] [--ignore-term] [--heartbeat] [--ready-file F] [--live-file F]
//	    HTTP on :N. /ready answers 200 while F exists (or always without
//	    --ready-file), /live 500 while F exists, /env the environment as
//	    JSON, /prestop records "prestop-http". Records "start", "sigterm" on
//	    SIGTERM and, with --heartbeat, "alive" every 20 ms. Exits 0 on
//	    SIGTERM unless --ignore-term.
//	record EVENT FILE
//	    appends "EVENT <unix nanoseconds>" to FILE (for exec hooks).
//	--role=... [controller flags]
//	    stands for the controller's image run by config/manager's
//	    Deployments (controllerStandIn).
func helperMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "helper: want serve or record")
		return 2
	}
	switch args[0] {
	case "record":
		if len(args) != 3 {
			fmt.Fprintln(os.Stderr, "helper: record EVENT FILE")
			return 2
		}
		if err := appendRecord(args[2], args[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "serve":
		return serve(args[1:])
	}
	if strings.HasPrefix(args[0], "--role=") {
		return controllerStandIn(args)
	}
	fmt.Fprintf(os.Stderr, "helper: unknown role %q\n", args[0])
	return 2
}

var recordMu sync.Mutex

func appendRecord(file, event string) error {
	recordMu.Lock()
	defer recordMu.Unlock()
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %d\n", event, time.Now().UnixNano())
	return err
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	port := fs.Int("port", 8080, "port")
	rec := fs.String("record", "", "file recording events")
	ignoreTerm := fs.Bool("ignore-term", false, "ignore SIGTERM")
	heartbeat := fs.Bool("heartbeat", false, "record alive every 20ms")
	readyFile := fs.String("ready-file", "", "ready while this file exists")
	liveFile := fs.String("live-file", "", "not live while this file exists")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	note := func(event string) {
		if *rec != "" {
			_ = appendRecord(*rec, event)
		}
	}
	exists := func(f string) bool { _, err := os.Stat(f); return err == nil }
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if *readyFile != "" && !exists(*readyFile) {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/live", func(w http.ResponseWriter, r *http.Request) {
		if *liveFile != "" && exists(*liveFile) {
			http.Error(w, "dead", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "live")
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		_ = json.NewEncoder(w).Encode(env)
	})
	mux.HandleFunc("/prestop", func(w http.ResponseWriter, r *http.Request) {
		note("prestop-http")
	})
	// The handler is in place before the port opens, so a pod that passed
	// a tcp or http probe records its SIGTERM.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	note("start")
	go func() { _ = http.Serve(ln, mux) }()
	if *heartbeat {
		go func() {
			for {
				note("alive")
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	for range sigs {
		note("sigterm")
		if !*ignoreTerm {
			return 0
		}
	}
	return 0
}

// controllerStandIn plays the controller's image under the flags its
// Deployments pass: it serves /healthz and /readyz on
// --health-probe-bind-address, and /readyz answers 200 only when the pod
// gives it what the controller needs from a kubelet: it runs as the
// image's user 65532:65532, GOMEMLIMIT is the memory limit in bytes, the
// service-account token, CA and namespace are readable at the in-cluster
// paths, KUBERNETES_SERVICE_HOST is set, the root file system refuses a
// write and the webhook certificate directory (an emptyDir) takes one.
func controllerStandIn(args []string) int {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	probes := fs.String("health-probe-bind-address", ":8081", "")
	for _, f := range []string{"role", "metrics-bind-address", "drain-bind-address", "provider-poll-interval"} {
		fs.String(f, "", "")
	}
	fs.Int("webhook-port", 9443, "")
	fs.Bool("leader-elect", false, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	problems := func() []string {
		var out []string
		if os.Getuid() != 65532 || os.Getgid() != 65532 {
			out = append(out, fmt.Sprintf("runs as %d:%d, want the image's 65532:65532", os.Getuid(), os.Getgid()))
		}
		if v := os.Getenv("GOMEMLIMIT"); v != "268435456" {
			out = append(out, fmt.Sprintf("GOMEMLIMIT=%q, want 268435456 (limits.memory 256Mi)", v))
		}
		if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
			out = append(out, "no KUBERNETES_SERVICE_HOST")
		}
		for _, f := range []string{"token", "ca.crt", "namespace"} {
			if b, err := os.ReadFile(sa + f); err != nil || len(b) == 0 {
				out = append(out, fmt.Sprintf("%s%s: %v (%d bytes)", sa, f, err, len(b)))
			}
		}
		if err := os.WriteFile("/tmp/zd-controller-root-probe", nil, 0o644); err == nil {
			_ = os.Remove("/tmp/zd-controller-root-probe")
			out = append(out, "the root file system took a write")
		}
		if dir := "/tmp/k8s-webhook-server/serving-certs"; fileExists(dir) {
			if err := os.WriteFile(dir+"/tls.crt", []byte("cert"), 0o600); err != nil {
				out = append(out, "webhook certificate directory: "+err.Error())
			}
		}
		return out
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if p := problems(); len(p) > 0 {
			http.Error(w, strings.Join(p, "; "), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	ln, err := net.Listen("tcp", *probes)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = http.Serve(ln, mux) }()
	<-sigs
	return 0
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
