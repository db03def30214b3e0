package graceful_test

// The server mains that the process tests run in a child process: the test
// binary re-executes itself with GRACEFUL_TEST_CHILD set to a mode, and the
// child configures graceful from the ZERODROP_* environment, as a real
// service does.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"zerodrop.dev/zerodrop/graceful"
)

const childEnv = "GRACEFUL_TEST_CHILD"

// Exit codes of the child.
const (
	exitClean    = 0
	exitForced   = 1 // graceful's default ForceExit
	exitError    = 2
	exitDeadline = 3
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	os.Exit(m.Run())
}

func childMain(mode string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Error("listen", "err", err)
			os.Exit(exitError)
		}
		return ln
	}
	var err error
	switch mode {
	case "http":
		err = childHTTP(log, listen(), listen())
	case "grpc":
		err = childGRPC(log, listen(), listen())
	case "plain":
		err = childPlain(log, listen())
	default:
		log.Error("unknown child mode", "mode", mode)
		return exitError
	}
	switch {
	case err == nil:
		return exitClean
	case errors.Is(err, graceful.ErrDeadline):
		log.Error("run", "err", err)
		return exitDeadline
	default:
		log.Error("run", "err", err)
		return exitError
	}
}

// announce tells the parent where the child listens.
func announce(addrs ...string) {
	fmt.Printf("LISTEN %s\n", strings.Join(addrs, " "))
}

// appHandler is the service under test: "/" answers (after ?sleep=), "/hijack"
// takes the connection over, "/events" streams server-sent events.
func appHandler(g *graceful.Group, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if s := r.URL.Query().Get("sleep"); s != "" {
			d, _ := time.ParseDuration(s)
			log.Info("slow request started", "sleep", d)
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "ok pid=%d\n", os.Getpid())
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		ignore := r.URL.Query().Get("ignore") != ""
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			log.Error("hijack", "err", err)
			return
		}
		buf.WriteString("hello\n")
		buf.Flush()
		log.Info("hijacked connection open", "ignores_stop", ignore)
		if ignore {
			// A connection whose handler never ends it: only the deadline does.
			rd := bufio.NewReader(conn)
			for {
				if _, err := rd.ReadByte(); err != nil {
					return
				}
			}
		}
		<-g.Stopping()
		buf.WriteString("bye\n")
		buf.Flush()
		conn.Close()
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		log.Info("event stream open")
		for {
			select {
			case <-tick.C:
				fmt.Fprint(w, "data: tick\n\n")
				rc.Flush()
			case <-g.Stopping():
				fmt.Fprint(w, "event: bye\ndata: server stopping\n\n")
				return
			case <-r.Context().Done():
				return
			}
		}
	})
	return mux
}

// childHTTP: a public server and an admin server (readiness) in one Group.
func childHTTP(log *slog.Logger, public, admin net.Listener) error {
	g, err := graceful.New(graceful.WithLogger(log))
	if err != nil {
		return err
	}
	adminMux := http.NewServeMux()
	adminMux.Handle("/ready", g.ReadinessHandler())
	g.AddHTTP("public", &http.Server{Handler: appHandler(g, log)}, public)
	g.AddHTTP("admin", &http.Server{Handler: adminMux}, admin)
	announce("public="+public.Addr().String(), "admin="+admin.Addr().String())
	return g.Run(context.Background())
}

// childPlain is the "before": http.Server.Shutdown right at SIGTERM.
func childPlain(log *slog.Logger, public net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/", appHandler(nil, log))
	ready := true
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	srv := &http.Server{Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Info("SIGTERM: calling http.Server.Shutdown")
		srv.Shutdown(context.Background())
	}()
	announce("public="+public.Addr().String(), "admin="+public.Addr().String())
	if err := srv.Serve(public); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// slowService is a gRPC service with one unary method, Sleep, written without
// generated code: it sleeps for the duration it is sent and echoes it.
var slowService = grpc.ServiceDesc{
	ServiceName: "zerodrop.test.Slow",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Sleep",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(durationpb.Duration)
			if err := dec(in); err != nil {
				return nil, err
			}
			select {
			case <-time.After(in.AsDuration()):
				return in, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}},
}

const slowSleepMethod = "/zerodrop.test.Slow/Sleep"

// childGRPC: a gRPC server (health + Slow) and an HTTP admin server.
func childGRPC(log *slog.Logger, grpcLn, admin net.Listener) error {
	g, err := graceful.New(graceful.WithLogger(log))
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	gs.RegisterService(&slowService, struct{}{})
	g.OnNotReady(func() { hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING) })
	adminMux := http.NewServeMux()
	adminMux.Handle("/ready", g.ReadinessHandler())
	g.AddGRPC("grpc", gs, grpcLn)
	g.AddHTTP("admin", &http.Server{Handler: adminMux}, admin)
	announce("grpc="+grpcLn.Addr().String(), "admin="+admin.Addr().String())
	return g.Run(context.Background())
}
