package lab

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/netns"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// Scenario: one listener answers a whole range from the host, as HAProxy
// checks it: every address of the range reaches it, the addresses Fail
// names answer 503 and the others 200; Close removes the route and the
// namespace. (Root, no cluster.)
func TestBulkNetAnswersEveryAddress(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	pid := os.Getpid()
	n, err := netns.Create(fmt.Sprintf("zdb%d", pid%100000), netns.PrefixForPID(pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Destroy() })
	prefix := netip.MustParsePrefix(fmt.Sprintf("10.81.%d.0/24", pid%256))
	b, err := StartBulkNet(n, prefix)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close()
		}
	})
	hc := &http.Client{Timeout: 5 * time.Second}
	status := func(host byte) int {
		t.Helper()
		a := prefix.Addr().As4()
		a[3] = host
		resp, err := hc.Get(fmt.Sprintf("http://%s:%d/healthz", netip.AddrFrom4(a), BulkPort))
		if err != nil {
			t.Fatalf("GET .%d: %v", host, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, h := range []byte{1, 7, 200, 254} {
		if got := status(h); got != http.StatusOK {
			t.Fatalf(".%d answered %d, want 200", h, got)
		}
	}
	bad := prefix.Addr().As4()
	bad[3] = 7
	b.Fail(netip.AddrFrom4(bad))
	if got := status(7); got != http.StatusServiceUnavailable {
		t.Fatalf("failed address answered %d, want 503", got)
	}
	if got := status(8); got != http.StatusOK {
		t.Fatalf("neighbour of the failed address answered %d, want 200", got)
	}
	if _, err := StartBulkNet(n, prefix); err == nil || !strings.Contains(err.Error(), "already routes") {
		t.Fatalf("a second harness on the same range: %v, want a refusal naming the route", err)
	}
	ns := b.pod.Namespace
	closed = true
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := checkRouteFree(prefix); err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), ns+" ") || strings.HasSuffix(strings.TrimSpace(string(out)), ns) {
		t.Fatalf("namespace %s left after Close:\n%s", ns, out)
	}
}
