package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/testenv"
)

// The test binary doubles as the pod programs: re-exec'd with
// NETNS_TEST_ROLE set, it serves or fetches instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("NETNS_TEST_ROLE") {
	case "serve":
		// Answers with the address the request arrived on, proving it
		// served from inside the pod.
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
		})
		if err := http.ListenAndServe(":8080", nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "fetch":
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(os.Stdout, resp.Body)
		os.Exit(0)
	default:
		os.Exit(m.Run())
	}
}

func requireNetns(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
}

func newTestNetwork(t *testing.T) *Network {
	t.Helper()
	n, err := Create(fmt.Sprintf("zdn%d", os.Getpid()%100000), PrefixForPID(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Destroy() })
	return n
}

func TestTwoPodsReachEachOtherAndTheHost(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	a, err := n.AddPod("pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddPod("pod-b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr == b.Addr || a.Addr == n.HostAddr || !n.Prefix.Contains(a.Addr) || !n.Prefix.Contains(b.Addr) {
		t.Fatalf("addresses: host %s, a %s, b %s in %s: want distinct addresses inside the range", n.HostAddr, a.Addr, b.Addr, n.Prefix)
	}

	server := a.Command(context.Background(), os.Args[0])
	server.Env = append(os.Environ(), "NETNS_TEST_ROLE=serve")
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Process.Kill(); _ = server.Wait() })
	url := "http://" + netip.AddrPortFrom(a.Addr, 8080).String() + "/"
	want := netip.AddrPortFrom(a.Addr, 8080).String()

	// From the host, through the bridge. The server needs a moment to listen.
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: time.Second}).Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host -> pod a at %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != want {
		t.Errorf("host -> pod a answered %q, want the pod's own address %q", body, want)
	}

	// From pod b, through its veth and the bridge.
	fetch := b.Command(context.Background(), os.Args[0], url)
	fetch.Env = append(os.Environ(), "NETNS_TEST_ROLE=fetch")
	out, err := fetch.Output()
	if err != nil {
		t.Fatalf("pod b -> pod a at %s: %v (%s)", url, err, exitStderr(err))
	}
	if string(out) != want {
		t.Errorf("pod b -> pod a answered %q, want %q", out, want)
	}
}

// Scenario: a pod that is unplugged (its node lost its power) falls
// silent: when its server then dies, a connection the host holds to it
// sees neither FIN nor RST, and a new connection is not refused but
// unanswered; Remove still removes what is left.
func TestUnpluggedPodFallsSilent(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	a, err := n.AddPod("pod-a")
	if err != nil {
		t.Fatal(err)
	}
	server := a.Command(context.Background(), os.Args[0])
	server.Env = append(os.Environ(), "NETNS_TEST_ROLE=serve")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Process.Kill(); _ = server.Wait() })
	addr := netip.AddrPortFrom(a.Addr, 8080).String()
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host -> pod at %s: %v", addr, err)
		}
	}
	defer conn.Close()

	if err := a.Unplug(); err != nil {
		t.Fatal(err)
	}
	if err := a.Unplug(); err != nil {
		t.Fatalf("second Unplug: %v, want nil (idempotent)", err)
	}
	// The server dies after the cut: its kernel would send a FIN (or RST)
	// for the open connection, which must not reach the host.
	_ = server.Process.Kill()
	_ = server.Wait()
	_ = conn.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("read on the open connection after the cut and the server's death: %v, want a timeout (no FIN or RST)", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection to %s succeeded after the cut", addr)
	} else if !isTimeout(err) && !strings.Contains(err.Error(), "no route to host") {
		t.Errorf("new connection to %s after the cut: %v, want a timeout (no answer), not a refusal", addr, err)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, Names{Bridge: "-", Namespaces: []string{a.Namespace}}, []*PodNet{a})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestDestroyLeavesNothingBehind(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	var pods []*PodNet
	for i := range 3 {
		p, err := n.AddPod(fmt.Sprint("pod-", i))
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	// One pod removed on its own first, as a deleted pod is.
	if err := pods[0].Remove(); err != nil {
		t.Fatal(err)
	}
	if err := n.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := n.Destroy(); err != nil {
		t.Fatalf("second Destroy: %v, want nil (idempotent)", err)
	}
	assertGone(t, n.Names(), pods)
}

func TestCleanupRemovesWhatACrashedProcessRecorded(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	var pods []*PodNet
	for i := range 2 {
		p, err := n.AddPod(fmt.Sprint("pod-", i))
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	names := n.Names()
	// The process "crashes": nobody calls Destroy; a later one has only names.
	if err := Cleanup(names); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(names); err != nil {
		t.Fatalf("second Cleanup: %v, want nil", err)
	}
	assertGone(t, names, pods)
}

func TestCleanupFindsNamespacesCreatedAfterTheRecord(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	recorded := n.Names() // recorded at start, before any pod
	var pods []*PodNet
	for i := range 2 {
		p, err := n.AddPod(fmt.Sprint("pod-", i))
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	if err := Cleanup(recorded); err != nil {
		t.Fatal(err)
	}
	assertGone(t, n.Names(), pods)
}

func TestAddressesAreNotReusedAtOnce(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	a, err := n.AddPod("a")
	if err != nil {
		t.Fatal(err)
	}
	old := a.Addr
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	b, err := n.AddPod("b")
	if err != nil {
		t.Fatal(err)
	}
	if b.Addr == old {
		t.Errorf("new pod got %s, the address of the pod just removed; want the next one", b.Addr)
	}
}

func TestCreateRefusesAnOverlappingRange(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	_, err := Create(fmt.Sprintf("zdo%d", os.Getpid()%100000), n.Prefix)
	if err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("Create on %s while %s holds it: err %v, want an overlap error", n.Prefix, n.Bridge, err)
	}
}

func TestBadInputIsRejected(t *testing.T) {
	for _, tc := range []struct {
		name, bridge string
		prefix       netip.Prefix
	}{
		{"name too long for veth suffixes", "abcdefghijkl", PrefixForPID(1)},
		{"empty name", "", PrefixForPID(1)},
		{"name with a slash", "a/b", PrefixForPID(1)},
		{"IPv6 range", "zdok", netip.MustParsePrefix("fd00::/64")},
		{"range too small", "zdok", netip.MustParsePrefix("10.78.0.0/31")},
		{"no range", "zdok", netip.Prefix{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Create(tc.bridge, tc.prefix); err == nil {
				t.Fatalf("Create(%q, %s): nil error", tc.bridge, tc.prefix)
			}
		})
	}
}

func TestPrefixForPIDIsInsideTheTestRange(t *testing.T) {
	seen := map[netip.Prefix]int{}
	for pid := range 512 {
		p := PrefixForPID(pid)
		if !testRange.Contains(p.Addr()) || p.Bits() != 24 || p.Overlaps(DefaultPrefix) {
			t.Fatalf("PrefixForPID(%d) = %s: want a /24 inside %s", pid, p, testRange)
		}
		if other, ok := seen[p]; ok {
			t.Fatalf("PrefixForPID(%d) = PrefixForPID(%d) = %s", pid, other, p)
		}
		seen[p] = pid
	}
}

func assertGone(t *testing.T, names Names, pods []*PodNet) {
	t.Helper()
	// The kernel finishes tearing a namespace's devices down in a workqueue,
	// so a link can stay listed for a moment after its removal returned.
	// Poll (bounded) before calling it left behind.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left = left[:0]
		nsList, _ := exec.Command("ip", "netns", "list").Output()
		for _, ns := range names.Namespaces {
			for _, line := range strings.Split(string(nsList), "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
					left = append(left, "namespace "+ns+" still listed by `ip netns list`")
				}
			}
		}
		links, _ := exec.Command("ip", "-o", "link").Output()
		for _, l := range append([]string{names.Bridge}, vethsOf(pods)...) {
			if strings.Contains(string(links), " "+l+":") || strings.Contains(string(links), " "+l+"@") {
				left = append(left, "link "+l+" still listed by `ip link`:\n"+string(links))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, msg := range left {
		t.Error(msg)
	}
}

func vethsOf(pods []*PodNet) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.HostVeth)
	}
	return out
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// Scenario: an extra host address on the bridge (a ClusterIP of the lab's
// Service proxy) is reachable from the host and from a pod, lives on the
// bridge only, can be added and removed twice without error, and goes with
// the bridge.
func TestHostAddressOnTheBridge(t *testing.T) {
	requireNetns(t)
	n := newTestNetwork(t)
	pod, err := n.AddPod("pod-a")
	if err != nil {
		t.Fatal(err)
	}
	// Outside every lab range (10.77.0.0/16, 10.78.0.0/15) and chosen by
	// pid, as the ranges are.
	pid := os.Getpid()
	addr := netip.AddrFrom4([4]byte{10, 80, byte(pid / 250 % 256), byte(pid%250 + 1)})
	for range 2 {
		if err := n.AddHostAddr(addr); err != nil {
			t.Fatal(err)
		}
	}
	if devs := devicesWith(t, addr); len(devs) != 1 || devs[0] != n.Bridge {
		t.Fatalf("%s is on %v, want only bridge %s", addr, devs, n.Bridge)
	}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(addr, 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "host") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/"
	fetch := pod.Command(context.Background(), os.Args[0], url)
	fetch.Env = append(os.Environ(), "NETNS_TEST_ROLE=fetch")
	if out, err := fetch.Output(); err != nil || string(out) != "host" {
		t.Fatalf("pod -> %s: %q, %v (%s)", url, out, err, exitStderr(err))
	}
	for range 2 {
		if err := n.RemoveHostAddr(addr); err != nil {
			t.Fatal(err)
		}
	}
	if devs := devicesWith(t, addr); len(devs) != 0 {
		t.Fatalf("%s still on %v after RemoveHostAddr", addr, devs)
	}
	if err := n.AddHostAddr(addr); err != nil {
		t.Fatal(err)
	}
	if err := n.Destroy(); err != nil {
		t.Fatal(err)
	}
	if devs := devicesWith(t, addr); len(devs) != 0 {
		t.Fatalf("%s still on %v after Destroy", addr, devs)
	}
	if err := n.AddHostAddr(n.Prefix.Addr().Next().Next()); err == nil {
		t.Errorf("AddHostAddr accepted an address of the pod range %s", n.Prefix)
	}
}

// devicesWith lists the host's devices holding addr.
func devicesWith(t *testing.T, addr netip.Addr) []string {
	t.Helper()
	devs, err := AddrHolders(addr)
	if err != nil {
		t.Fatal(err)
	}
	return devs
}
