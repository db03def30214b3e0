// Package graceful shuts a Go service down without dropping a request when
// Kubernetes (or anything else) sends it SIGTERM.
//
// When a pod is deleted, the kubelet runs the preStop hook and sends SIGTERM
// while load balancers, ingress controllers and kube-proxy are still sending
// the pod new requests: they learn about the deletion seconds later. A service
// that calls http.Server.Shutdown at once closes its listener under them
// (connection refused, reported as 502); one that exits cuts requests in
// flight. A Group does the steps in the right order:
//
//  1. not_ready: at the signal, readiness fails (ReadinessHandler, Ready,
//     OnNotReady for the service's own health endpoints, such as gRPC health).
//  2. drain_wait: the servers keep accepting and serving while the data paths
//     stop sending, and answer with "Connection: close" so that kept-alive
//     clients reconnect elsewhere. The wait is fixed (WithDrainWait, the
//     preStop-sleep equivalent for images without a shell), or exact
//     (WithDrainURL): it lasts until zerodrop-controller's drain endpoint
//     reports the pod drained from every load balancer, falling back to the
//     fixed wait when the endpoint cannot be reached.
//  3. stop: listeners close; in-flight requests finish; OnStop hooks and
//     Stopping tell long-lived connections (WebSocket, SSE, gRPC streams) to
//     end; gRPC servers get GracefulStop. All of it is bounded by a deadline,
//     the signal plus the grace period minus a margin; at the deadline what is
//     left is closed (gRPC: Stop).
//  4. stopped: Run returns.
//
// A second signal ends the process at once. Every phase is logged with
// log/slog with its duration, and WithMetrics exports Prometheus metrics.
// One Group runs several servers (public and admin ports, HTTP and gRPC).
//
// Configuration comes from options in code and, winning over them, from
// environment variables that a pod spec or zerodrop's webhook sets:
// ZERODROP_DRAIN_WAIT, ZERODROP_DRAIN_URL, ZERODROP_DRAIN_MAX_WAIT,
// ZERODROP_DRAIN_MIN_WAIT, ZERODROP_GRACE_PERIOD, ZERODROP_GRACE_MARGIN,
// ZERODROP_SHUTDOWN_RESERVE, POD_NAME and POD_NAMESPACE. docs/graceful.md in
// the zerodrop repository has the timeline, the table of settings, the drain
// endpoint protocol and the metrics.
//
// The smallest use:
//
//	mux := http.NewServeMux()
//	mux.HandleFunc("/", hello)
//	g, err := graceful.New()
//	if err != nil { ... }
//	mux.Handle("/ready", g.ReadinessHandler())
//	g.AddHTTP("public", &http.Server{Addr: ":8080", Handler: mux}, nil)
//	if err := g.Run(context.Background()); err != nil { ... }
package graceful
