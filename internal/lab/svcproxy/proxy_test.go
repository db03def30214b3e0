package svcproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"zerodrop.dev/zerodrop/internal/lab/cluster"
	"zerodrop.dev/zerodrop/internal/lab/labtest"
	"zerodrop.dev/zerodrop/internal/lab/netns"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// The test binary doubles as the pods' programs: re-exec'd inside a pod's
// namespace with SVCPROXY_TEST_ROLE set, it serves or connects instead of
// running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("SVCPROXY_TEST_ROLE") {
	case "serve":
		// Answers every connection with its name and closes: which
		// endpoint a connection reached is the first line read.
		ln, err := net.Listen("tcp4", os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			fmt.Fprintln(c, os.Args[2])
			c.Close()
		}
	case "webhook":
		fmt.Fprintln(os.Stderr, serveWebhook())
		os.Exit(1)
	case "dial":
		// Prints what the address answered, or "error: ..." (exit 0
		// either way: the test reads the outcome).
		fmt.Print(dialName(os.Args[1]))
		os.Exit(0)
	case "readyz":
		// GET os.Args[1] verifying the server against the CA file
		// os.Args[2]; prints "<status> <body>".
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(os.Args[2])
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			fmt.Printf("error: CA %s: %v", os.Args[2], err)
			os.Exit(0)
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get(os.Args[1])
		if err != nil {
			fmt.Printf("error: %v", err)
			os.Exit(0)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, body)
		os.Exit(0)
	default:
		os.Exit(m.Run())
	}
}

// dialName connects to addr and returns the name the server sent, or
// "error: ..." with the error.
func dialName(addr string) string {
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "error: read: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// env is a real control plane, a real pod network and the proxy between
// them, as the lab runs them.
type env struct {
	ctx     context.Context
	cluster *cluster.Cluster
	client  kubernetes.Interface
	net     *netns.Network
	proxy   *Proxy
	self    string // this test binary
}

// testServiceCIDR is a ClusterIP range for this test process, apart from
// the lab's 10.96.0.0/16 and its pod ranges, so that a running lab and
// parallel test processes do not meet.
func testServiceCIDR(pid int) string {
	i := pid % 512
	return fmt.Sprintf("10.%d.%d.0/24", 112+i/256, i%256)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	bins := labtest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pid := os.Getpid()
	c, err := cluster.Start(ctx, cluster.Options{Binaries: bins, ServiceCIDR: testServiceCIDR(pid), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	n, err := netns.Create(fmt.Sprintf("zds%d", pid%100000), netns.PrefixForPID(pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Destroy() })
	api, err := netip.ParseAddrPort(strings.TrimPrefix(c.Server, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(ctx, Options{
		Client: cs, Addrs: n,
		Overrides: map[types.NamespacedName]netip.AddrPort{{Namespace: "default", Name: "kubernetes"}: api},
		// Debug: one line per failed connection, in the test's output.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &env{ctx: ctx, cluster: c, client: cs, net: n, proxy: p, self: self}
}

// pod makes a pod namespace; with a name it runs a server answering name
// on port 9000 inside it.
func (e *env) pod(t *testing.T, id, name string) *netns.PodNet {
	t.Helper()
	p, err := e.net.AddPod(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Remove() })
	if name == "" {
		return p
	}
	addr := netip.AddrPortFrom(p.Addr, 9000).String()
	cmd := p.Command(context.Background(), e.self, addr, name)
	cmd.Env = append(os.Environ(), "SVCPROXY_TEST_ROLE=serve")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "server "+name+" at "+addr, func() bool { return dialName(addr) == name })
	return p
}

// inPod runs this binary in role inside the pod's namespace and returns
// what it printed.
func (e *env) inPod(t *testing.T, p *netns.PodNet, role string, args ...string) string {
	t.Helper()
	cmd := p.Command(context.Background(), e.self, args...)
	cmd.Env = append(os.Environ(), "SVCPROXY_TEST_ROLE="+role)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s in %s: %v", role, p.Namespace, err)
	}
	return string(out)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// served returns the proxy's view of a Service port.
func (e *env) served(key string) (ServicePort, bool) {
	for _, sp := range e.proxy.Endpoints() {
		if sp.Key() == key {
			return sp, true
		}
	}
	return ServicePort{}, false
}

// onBridge reports whether addr is on the test bridge.
func (e *env) onBridge(t *testing.T, addr netip.Addr) bool {
	t.Helper()
	return slices.Contains(devicesWith(t, addr), e.net.Bridge)
}

// devicesWith lists the host's devices holding addr.
func devicesWith(t *testing.T, addr netip.Addr) []string {
	t.Helper()
	devs, err := netns.AddrHolders(addr)
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

// handSlice is an EndpointSlice written by hand for selector-less Service
// svc in default: one TCP port named portName.
func handSlice(svc, portName string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "svcproxy-test",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(portName), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

func endpoint(p *netns.PodNet, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses: []string{p.Addr.String()},
		Conditions: discoveryv1.EndpointConditions{
			Ready: ptr(ready), Serving: ptr(ready), Terminating: ptr(false),
		},
	}
}

// Scenario: a selector-less Service with a hand-written EndpointSlice, as
// the lab's Services for the controller are reached: through its ClusterIP,
// from the host and from another pod, to the pods the slice names; a port
// without a ready endpoint refuses at once; a deleted Service takes its
// address with it; the `kubernetes` Service reaches the API server with its
// certificate verified against the cluster CA; the API server reaches an
// admission webhook by Service reference; Stop leaves no address.
func TestProxyRoutesClusterIPsToEndpoints(t *testing.T) {
	e := newEnv(t)
	a := e.pod(t, "pod-a", "a")
	b := e.pod(t, "pod-b", "b")
	client := e.pod(t, "client", "")

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "echo"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP,
			// The slice's port decides, as for kube-proxy; this one is
			// deliberately wrong.
			TargetPort: intstr.FromInt32(1),
		}}},
	}
	svc, err := e.client.CoreV1().Services("default").Create(e.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterIP := netip.MustParseAddr(svc.Spec.ClusterIP)
	frontend := netip.AddrPortFrom(clusterIP, 80).String()
	es := handSlice("echo", "tcp", 9000, endpoint(a, true))
	sliceClient := e.client.DiscoveryV1().EndpointSlices("default")
	if es, err = sliceClient.Create(e.ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setEndpoints := func(eps ...discoveryv1.Endpoint) {
		t.Helper()
		es.Endpoints = eps
		if es, err = sliceClient.Update(e.ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitServed := func(what string, want ...netip.AddrPort) {
		t.Helper()
		waitFor(t, "default/echo:tcp "+what, func() bool {
			sp, ok := e.served("default/echo:tcp")
			return ok && slices.Equal(sp.Backends, want) && sp.Listening == (len(want) > 0)
		})
	}
	aEP, bEP := netip.AddrPortFrom(a.Addr, 9000), netip.AddrPortFrom(b.Addr, 9000)

	t.Run("reachable from the host and from another pod", func(t *testing.T) {
		waitServed("to a", aEP)
		if devs := devicesWith(t, clusterIP); !slices.Equal(devs, []string{e.net.Bridge}) {
			t.Fatalf("ClusterIP %s is on devices %v, want only bridge %s", clusterIP, devs, e.net.Bridge)
		}
		if got := dialName(frontend); got != "a" {
			t.Errorf("host -> %s: %q, want a", frontend, got)
		}
		if got := e.inPod(t, client, "dial", frontend); got != "a" {
			t.Errorf("pod %s -> %s: %q, want a", client.Addr, frontend, got)
		}
	})

	t.Run("no ready endpoint: refused at once", func(t *testing.T) {
		setEndpoints(endpoint(a, false))
		waitServed("without endpoints")
		start := time.Now()
		_, err := net.DialTimeout("tcp4", frontend, 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("host -> %s without endpoints: %v, want connection refused", frontend, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("refusal took %v, want at once", d)
		}
		if got := e.inPod(t, client, "dial", frontend); !strings.Contains(got, "connection refused") {
			t.Errorf("pod -> %s without endpoints: %q, want connection refused", frontend, got)
		}
	})

	t.Run("no ready endpoint but a terminating one still serving: it is used", func(t *testing.T) {
		term := endpoint(a, false)
		term.Conditions.Serving, term.Conditions.Terminating = ptr(true), ptr(true)
		setEndpoints(term, endpoint(b, false))
		waitServed("to terminating a", aEP)
		if sp, _ := e.served("default/echo:tcp"); !sp.Terminating {
			t.Errorf("served %+v, want Terminating", sp)
		}
		if got := dialName(frontend); got != "a" {
			t.Errorf("host -> %s with only terminating a serving: %q, want a", frontend, got)
		}
	})

	t.Run("two endpoints: both used", func(t *testing.T) {
		setEndpoints(endpoint(a, true), endpoint(b, true))
		waitServed("to a and b", aEP, bEP)
		seen := map[string]int{}
		for range 40 {
			seen[dialName(frontend)]++
		}
		if seen["a"] == 0 || seen["b"] == 0 || seen["a"]+seen["b"] != 40 {
			t.Errorf("40 connections reached %v, want both a and b and nothing else", seen)
		}
	})

	t.Run("an endpoint that refuses is skipped", func(t *testing.T) {
		// c is in the slice but nothing listens there: every connection
		// still reaches a or b, and the failed dials are counted.
		c := e.pod(t, "pod-c", "")
		setEndpoints(endpoint(a, true), endpoint(b, true), endpoint(c, true))
		waitServed("to a, b and c", aEP, bEP, netip.AddrPortFrom(c.Addr, 9000))
		for range 30 {
			if got := dialName(frontend); got != "a" && got != "b" {
				t.Fatalf("host -> %s with a dead endpoint: %q, want a or b", frontend, got)
			}
		}
		if sp, _ := e.served("default/echo:tcp"); sp.DialFailures == 0 {
			t.Errorf("DialFailures = 0 after 30 connections with one endpoint refusing: %+v", sp)
		}
	})

	t.Run("a ClusterIP:port held by someone else: retried until free", func(t *testing.T) {
		// Another lab on the machine holding the port looks like this.
		busy := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "busy"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP}}},
		}
		busy, err := e.client.CoreV1().Services("default").Create(e.ctx, busy, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr(busy.Spec.ClusterIP)
		busyFrontend := netip.AddrPortFrom(ip, 80).String()
		waitFor(t, "default/busy's address on the bridge", func() bool { return e.onBridge(t, ip) })
		squatter, err := net.Listen("tcp4", busyFrontend)
		if err != nil {
			t.Fatal(err)
		}
		defer squatter.Close()
		if _, err := sliceClient.Create(e.ctx, handSlice("busy", "tcp", 9000, endpoint(a, true)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "default/busy:tcp with endpoint a, not listening", func() bool {
			sp, ok := e.served("default/busy:tcp")
			return ok && slices.Equal(sp.Backends, []netip.AddrPort{aEP})
		})
		time.Sleep(1500 * time.Millisecond) // a retry or two
		if sp, _ := e.served("default/busy:tcp"); sp.Listening {
			t.Fatalf("proxy claims to listen on %s, which the test holds: %+v", busyFrontend, sp)
		}
		squatter.Close()
		waitFor(t, "default/busy:tcp listening once the port is free", func() bool {
			sp, ok := e.served("default/busy:tcp")
			return ok && sp.Listening
		})
		if got := dialName(busyFrontend); got != "a" {
			t.Errorf("host -> %s after the retry: %q, want a", busyFrontend, got)
		}
		if err := e.client.CoreV1().Services("default").Delete(e.ctx, "busy", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the kubernetes Service reaches the API server, TLS verified", func(t *testing.T) {
		k, err := e.client.CoreV1().Services("default").Get(e.ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		u := (&url.URL{Scheme: "https", Host: net.JoinHostPort(k.Spec.ClusterIP, "443"), Path: "/readyz"}).String()
		waitFor(t, "default/kubernetes:https listening", func() bool {
			sp, ok := e.served("default/kubernetes:https")
			return ok && sp.Listening && sp.Override
		})
		if got := e.inPod(t, client, "readyz", u, e.cluster.CACert); got != "200 ok" {
			t.Errorf("pod -> %s: %q, want 200 ok", u, got)
		}
	})

	t.Run("the API server calls a webhook through its Service", func(t *testing.T) {
		webhookThroughService(t, e)
	})

	t.Run("Service deleted: listener and address gone", func(t *testing.T) {
		if err := e.client.CoreV1().Services("default").Delete(e.ctx, "echo", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "default/echo gone", func() bool { _, ok := e.served("default/echo:tcp"); return !ok })
		if e.onBridge(t, clusterIP) {
			t.Errorf("ClusterIP %s still on bridge %s after the Service was deleted", clusterIP, e.net.Bridge)
		}
		if slices.Contains(e.proxy.Addrs(), clusterIP) {
			t.Errorf("proxy still holds %s: %v", clusterIP, e.proxy.Addrs())
		}
	})

	t.Run("Stop removes every address", func(t *testing.T) {
		held := e.proxy.Addrs()
		if len(held) == 0 {
			t.Fatal("proxy holds no address before Stop (the kubernetes Service's at least)")
		}
		if err := e.proxy.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, a := range held {
			if e.onBridge(t, a) {
				t.Errorf("%s still on bridge %s after Stop", a, e.net.Bridge)
			}
		}
	})
}
