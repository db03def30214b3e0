package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"zerodrop.dev/zerodrop/internal/lab/netns"
)

// DefaultBulkPrefix is the address range of the scale harness's light pods:
// outside the lab's pod range (10.77.0.0/16) and the test ranges
// (10.78.0.0/15, netns.PrefixForPID), and not loopback, link-local or
// unspecified, which the API server refuses in endpoints
// (TestAPIServerAcceptsBulkAddresses).
var DefaultBulkPrefix = netip.MustParsePrefix("10.80.0.0/16")

// BulkPort is the port every light pod "listens" on.
const BulkPort = 8080

// BulkNet answers for every light pod at once: one network namespace on the
// lab's bridge with the whole range routed to its loopback (AnyIP: `ip
// route add local <range> dev lo`), the host routing the range to it, and
// one HTTP listener on 0.0.0.0:BulkPort inside it. A TCP connection to any
// address of the range reaches the listener, which answers /healthz with
// 200, or 503 for an address Fail named: HAProxy's real health checks pass
// or fail per pod.
type BulkNet struct {
	// Prefix is the range answered.
	Prefix netip.Prefix
	// Gateway is the namespace's own address on the bridge, the host's
	// next hop for Prefix.
	Gateway netip.Addr

	pod     *netns.PodNet
	bridge  string
	srv     *http.Server
	served  chan struct{}
	failing sync.Map // netip.Addr -> struct{}
	checks  atomic.Int64
}

// StartBulkNet sets up the namespace, the routes and the listener on
// network n. Close removes them.
func StartBulkNet(n *netns.Network, prefix netip.Prefix) (b *BulkNet, err error) {
	prefix = prefix.Masked()
	if !prefix.Addr().Is4() || prefix.Overlaps(n.Prefix) || prefix.Addr().IsLoopback() || prefix.Addr().IsLinkLocalUnicast() {
		return nil, fmt.Errorf("lab: bulk range %s: want an IPv4 range outside the pod range %s, not loopback or link-local", prefix, n.Prefix)
	}
	if err := checkRouteFree(prefix); err != nil {
		return nil, err
	}
	pod, err := n.AddPod("zerodrop-bulk")
	if err != nil {
		return nil, fmt.Errorf("lab: bulk namespace: %w", err)
	}
	b = &BulkNet{Prefix: prefix, Gateway: pod.Addr, pod: pod, bridge: n.Bridge, served: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = b.Close()
			b = nil
		}
	}()
	for _, args := range [][]string{
		{"-n", pod.Namespace, "route", "add", "local", prefix.String(), "dev", "lo"},
		{"route", "add", prefix.String(), "via", pod.Addr.String(), "dev", n.Bridge},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return b, fmt.Errorf("lab: bulk route: ip %v: %w: %s", args, err, out)
		}
	}
	ln, err := listenIn(pod.Namespace, "tcp4", "0.0.0.0:"+strconv.Itoa(BulkPort))
	if err != nil {
		return b, fmt.Errorf("lab: bulk listener in %s: %w", pod.Namespace, err)
	}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.answer), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(b.served)
		_ = b.srv.Serve(ln)
	}()
	return b, nil
}

// answer is every light pod's HTTP server: 503 for a failing address, 200
// otherwise.
func (b *BulkNet) answer(w http.ResponseWriter, r *http.Request) {
	b.checks.Add(1)
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			if _, bad := b.failing.Load(ap.Addr().Unmap()); bad {
				http.Error(w, "failing on purpose (lab scale harness)", http.StatusServiceUnavailable)
				return
			}
		}
	}
	w.Header().Set("Connection", "close")
	_, _ = w.Write([]byte("ok\n"))
}

// Fail makes the listener answer 503 at addrs from now on.
func (b *BulkNet) Fail(addrs ...netip.Addr) {
	for _, a := range addrs {
		b.failing.Store(a, struct{}{})
	}
}

// Heal undoes Fail for addrs.
func (b *BulkNet) Heal(addrs ...netip.Addr) {
	for _, a := range addrs {
		b.failing.Delete(a)
	}
}

// Requests is how many requests the listener has answered.
func (b *BulkNet) Requests() int64 { return b.checks.Load() }

// Close stops the listener and removes the host route and the namespace.
func (b *BulkNet) Close() error {
	var errs []error
	if b.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.srv.Shutdown(ctx)
		cancel()
		_ = b.srv.Close()
		<-b.served
	}
	if out, err := exec.Command("ip", "route", "del", b.Prefix.String(), "dev", b.bridge).CombinedOutput(); err != nil && !routeMissing(out) {
		errs = append(errs, fmt.Errorf("lab: remove bulk route %s: %w: %s", b.Prefix, err, out))
	}
	if b.pod != nil {
		errs = append(errs, b.pod.Remove())
	}
	return errors.Join(errs...)
}

func routeMissing(out []byte) bool {
	s := string(out)
	return s == "" || strings.Contains(s, "No such process") || strings.Contains(s, "Cannot find device")
}

// checkRouteFree refuses a range the host already routes somewhere
// specific (a leftover scale lab, another network).
func checkRouteFree(p netip.Prefix) error {
	out, err := exec.Command("ip", "-4", "route", "show", "to", "match", p.Addr().String()).Output()
	if err != nil {
		return fmt.Errorf("lab: ip route show: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		if r, err := netip.ParsePrefix(f[0]); err == nil && r.Overlaps(p) {
			return fmt.Errorf("lab: bulk range %s: the host already routes %s (%q): a leftover lab? `zerodrop lab down`, or pick another range", p, r, line)
		}
	}
	return nil
}

// listenIn opens a listening socket inside network namespace ns: the one
// socket is created by a thread that enters ns and comes back. A socket
// keeps the namespace it was created in, so the listener serves ns while
// every goroutine of this process stays in the host's namespace. If the
// thread cannot come back, it stays locked and dies with its goroutine.
func listenIn(ns, network, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer home.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		ln, lerr := net.Listen(network, addr)
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			// Locked for good: the goroutine's end takes the thread along.
			ch <- result{ln: ln, err: lerr}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln: ln, err: lerr}
	}()
	r := <-ch
	return r.ln, r.err
}
