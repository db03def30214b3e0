package graceful_test

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func sleepRPC(ctx context.Context, conn *grpc.ClientConn, d time.Duration) error {
	out := new(durationpb.Duration)
	return conn.Invoke(ctx, slowSleepMethod, durationpb.New(d), out)
}

func TestGRPC_GracefulStop_InFlightRPCCompletes(t *testing.T) {
	c := startChild(t, "grpc", "ZERODROP_DRAIN_WAIT=1s", "ZERODROP_GRACE_PERIOD=60s")
	conn := dialGRPC(t, c.addr["grpc"])
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before the signal: %v, %v", r, err)
	}
	c.signal(syscall.SIGTERM)

	// gRPC health turns NOT_SERVING (the OnNotReady hook) while RPCs are
	// still served: the drain wait.
	for {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("health check failed during the drain wait: %v", err)
		}
		if r.Status == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ready, err := guardClient.Get(c.url("admin", "/ready"))
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("admin readiness %s after SIGTERM, want 503", ready.Status)
	}

	// An RPC that outlasts the drain wait: GracefulStop lets it finish.
	if err := sleepRPC(ctx, conn, 2*time.Second); err != nil {
		t.Errorf("RPC in flight across GracefulStop failed: %v", err)
	}
	if code := c.waitExit(); code != exitClean {
		t.Errorf("exit code %d, want %d", code, exitClean)
	}
	if strings.Contains(c.stderr.String(), "falling back to Stop") {
		t.Errorf("fell back to Stop although every RPC finished")
	}
}

func TestGRPC_StreamIgnoringShutdown_FallsBackToStop(t *testing.T) {
	// A health Watch stream never ends by itself: GracefulStop would wait for
	// it until SIGKILL. At the deadline the Group calls Stop.
	c := startChild(t, "grpc", "ZERODROP_DRAIN_WAIT=200ms", "ZERODROP_GRACE_PERIOD=3s",
		"ZERODROP_GRACE_MARGIN=500ms", "ZERODROP_SHUTDOWN_RESERVE=1s")
	conn := dialGRPC(t, c.addr["grpc"])
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch update: %v, %v", r, err)
	}
	c.signal(syscall.SIGTERM)

	if r, err := stream.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch update after SIGTERM: %v, %v; want NOT_SERVING", r, err)
	}
	_, err = stream.Recv()
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("stream ended with %v, want Unavailable (closed by Stop)", err)
	}
	if code := c.waitExit(); code != exitDeadline {
		t.Errorf("exit code %d, want %d (ErrDeadline)", code, exitDeadline)
	}
	if !strings.Contains(c.stderr.String(), "falling back to Stop") {
		t.Errorf("log lacks the fallback to Stop")
	}
}
