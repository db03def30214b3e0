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
