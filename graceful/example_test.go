package graceful_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"zerodrop.dev/zerodrop/graceful"
)

// A service with a public and an admin port. On SIGTERM readiness fails at
// once, both servers keep serving for the drain wait, then they stop and let
// in-flight requests finish before the grace period ends. Here the context
// plays the signal, so that the example runs on its own.
func Example() {
	g, err := graceful.New(
		graceful.WithDrainWait(200*time.Millisecond), // ZERODROP_DRAIN_WAIT wins when set
		graceful.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		log.Fatal(err)
	}
	public := http.NewServeMux()
	public.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	admin := http.NewServeMux()
	admin.Handle("/ready", g.ReadinessHandler())

	publicLn, _ := net.Listen("tcp", "127.0.0.1:0") // in a real service: nil, and Addr ":8080"
	adminLn, _ := net.Listen("tcp", "127.0.0.1:0")
	g.AddHTTP("public", &http.Server{Handler: public}, publicLn)
	g.AddHTTP("admin", &http.Server{Handler: admin}, adminLn)

	ctx, cancel := context.WithCancel(context.Background())
	g.OnNotReady(func() {
		// Still serving: the load balancers have not yet seen readiness fail.
		fmt.Println("ready:", get("http://"+adminLn.Addr().String()+"/ready"),
			"public:", get("http://"+publicLn.Addr().String()+"/"))
	})
	go func() {
		for !g.Ready() {
			time.Sleep(time.Millisecond)
		}
		fmt.Println("ready:", get("http://"+adminLn.Addr().String()+"/ready"))
		cancel() // SIGTERM
	}()
	err = g.Run(ctx)
	fmt.Println("stopped, error:", err)
	// Output:
	// ready: 200
	// ready: 503 public: 200
	// stopped, error: <nil>
}

func get(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The exact drain wait: the servers keep serving until zerodrop-controller
// reports this pod drained from every load balancer, and fall back to the
// fixed wait when the controller cannot be reached. In Kubernetes the webhook
// sets ZERODROP_DRAIN_URL, POD_NAMESPACE and POD_NAME instead.
func Example_drainEndpoint() {
	g, err := graceful.New(
		graceful.WithDrainURL("http://zerodrop-controller.zerodrop-system:8082"),
		graceful.WithPod("shop", "web-7d9f-abcde"),
		graceful.WithDrainWait(10*time.Second), // fallback
		graceful.WithGracePeriod(60*time.Second),
		graceful.WithoutEnv(),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(g.Config().DrainURL)
	// Output: http://zerodrop-controller.zerodrop-system:8082/drain/v1/namespaces/shop/pods/web-7d9f-abcde
}

// A gRPC server next to an HTTP admin port: the gRPC health service turns
// NOT_SERVING at the signal, and the server gets GracefulStop after the drain
// wait, with Stop at the deadline.
func Example_grpc() {
	g, err := graceful.New()
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	g.OnNotReady(func() { hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING) })

	ln, err := net.Listen("tcp", ":9090")
	if err != nil {
		log.Fatal(err)
	}
	g.AddGRPC("grpc", gs, ln)
	admin := http.NewServeMux()
	admin.Handle("/ready", g.ReadinessHandler())
	g.AddHTTP("admin", &http.Server{Addr: ":8081", Handler: admin}, nil)
	if err := g.Run(context.Background()); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// Prometheus metrics of the shutdown phases, served on the admin port.
func ExampleWithMetrics() {
	reg := prometheus.NewRegistry()
	g, err := graceful.New(graceful.WithMetrics(reg))
	if err != nil {
		log.Fatal(err)
	}
	admin := http.NewServeMux()
	admin.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	admin.Handle("/ready", g.ReadinessHandler())
	g.AddHTTP("admin", &http.Server{Addr: ":8081", Handler: admin}, nil)
}

// A server-sent-event stream ends itself when the drain wait is over, so the
// client reconnects to a pod that is not going away.
func ExampleGroup_Stopping() {
	g, _ := graceful.New()
	http.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case t := <-tick.C:
				fmt.Fprintf(w, "data: %s\n\n", t.Format(time.RFC3339))
				http.NewResponseController(w).Flush()
			case <-g.Stopping():
				fmt.Fprint(w, "event: reconnect\ndata: server stopping\n\n")
				return
			case <-r.Context().Done():
				return
			}
		}
	})
}

func ExampleParseDuration() {
	for _, v := range []string{"30", "2.5", "1m30s"} {
		d, _ := graceful.ParseDuration(v)
		fmt.Println(v, "=", d)
	}
	// Output:
	// 30 = 30s
	// 2.5 = 2.5s
	// 1m30s = 1m30s
}
