package svcproxy

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

type cond struct{ ready, serving, terminating *bool }

var (
	readyEP       = cond{ready: ptr(true), serving: ptr(true), terminating: ptr(false)}
	notReadyEP    = cond{ready: ptr(false), serving: ptr(false), terminating: ptr(false)}
	terminatingEP = cond{ready: ptr(false), serving: ptr(true), terminating: ptr(true)}
	goneEP        = cond{ready: ptr(false), serving: ptr(false), terminating: ptr(true)}
	unsetEP       = cond{}
)

func slice(ns, svc, name string, ports map[string]int32, eps map[string]cond) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for addr, c := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: c.ready, Serving: c.serving, Terminating: c.terminating},
		})
	}
	return s
}

func aps(s ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, x := range s {
		out = append(out, netip.MustParseAddrPort(x))
	}
	return out
}

func TestEndpointsFollowKubeProxysChoice(t *testing.T) {
	web := map[string]int32{"http": 8080}
	for _, tc := range []struct {
		name            string
		slices          []*discoveryv1.EndpointSlice
		port            string
		want            []netip.AddrPort
		wantTerminating bool
	}{
		{
			name: "ready endpoints only, not-ready and terminating ones left out",
			slices: []*discoveryv1.EndpointSlice{slice("d", "web", "web-1", web, map[string]cond{
				"10.0.0.1": readyEP, "10.0.0.2": notReadyEP, "10.0.0.3": terminatingEP,
			})},
			port: "http", want: aps("10.0.0.1:8080"),
		},
		{
			name: "unset conditions count as ready (the API's rule)",
			slices: []*discoveryv1.EndpointSlice{slice("d", "web", "web-1", web, map[string]cond{
				"10.0.0.1": unsetEP,
			})},
			port: "http", want: aps("10.0.0.1:8080"),
		},
		{
			name: "no ready endpoint: serving-and-terminating ones (ProxyTerminatingEndpoints)",
			slices: []*discoveryv1.EndpointSlice{slice("d", "web", "web-1", web, map[string]cond{
				"10.0.0.2": notReadyEP, "10.0.0.3": terminatingEP, "10.0.0.4": goneEP,
			})},
			port: "http", want: aps("10.0.0.3:8080"), wantTerminating: true,
		},
		{
			name: "nothing ready or serving: no endpoint",
			slices: []*discoveryv1.EndpointSlice{slice("d", "web", "web-1", web, map[string]cond{
				"10.0.0.2": notReadyEP, "10.0.0.4": goneEP,
			})},
			port: "http", want: nil,
		},
		{
			name: "target port by name per slice, duplicates across slices once",
			slices: []*discoveryv1.EndpointSlice{
				slice("d", "web", "web-1", map[string]int32{"http": 8080, "metrics": 9090}, map[string]cond{"10.0.0.1": readyEP}),
				slice("d", "web", "web-2", map[string]int32{"http": 8081}, map[string]cond{"10.0.0.2": readyEP, "10.0.0.1": readyEP}),
			},
			port: "http", want: aps("10.0.0.1:8080", "10.0.0.1:8081", "10.0.0.2:8081"),
		},
		{
			name: "a slice without the port name serves nothing for it",
			slices: []*discoveryv1.EndpointSlice{
				slice("d", "web", "web-1", map[string]int32{"metrics": 9090}, map[string]cond{"10.0.0.1": readyEP}),
			},
			port: "http", want: nil,
		},
		{
			name: "unnamed port of a single-port Service",
			slices: []*discoveryv1.EndpointSlice{
				slice("d", "web", "web-1", map[string]int32{"": 8080}, map[string]cond{"10.0.0.1": readyEP}),
			},
			port: "", want: aps("10.0.0.1:8080"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, term := Endpoints(tc.slices, tc.port)
			if !slices.Equal(got, tc.want) || term != tc.wantTerminating {
				t.Errorf("Endpoints(%q) = %v terminating=%v, want %v terminating=%v", tc.port, got, term, tc.want, tc.wantTerminating)
			}
		})
	}
}

func TestSlicePortIsTCPOnlyAndByName(t *testing.T) {
	s := &discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{
		{Name: ptr("dns"), Port: ptr(int32(53)), Protocol: ptr(corev1.ProtocolUDP)},
		{Name: ptr("dns"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolTCP)},
		{Name: ptr("nil-port")},
		{Name: ptr("web"), Port: ptr(int32(8080))}, // protocol unset is TCP
	}}
	for name, want := range map[string]uint16{"dns": 5353, "web": 8080} {
		if got, ok := SlicePort(s, name); !ok || got != want {
			t.Errorf("SlicePort(%q) = %d, %v, want %d", name, got, ok, want)
		}
	}
	for _, name := range []string{"nil-port", "absent", ""} {
		if got, ok := SlicePort(s, name); ok {
			t.Errorf("SlicePort(%q) = %d, want no port", name, got)
		}
	}
}

func service(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports},
	}
}

func TestPlanServesClusterIPServicesTCPPortsAndOverrides(t *testing.T) {
	tcp := func(name string, port int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(9999), Protocol: corev1.ProtocolTCP}
	}
	external := service("d", "ext", "")
	external.Spec.Type, external.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
	udp := service("d", "dns", "10.96.0.10", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, tcp("dns-tcp", 53))
	services := []*corev1.Service{
		service("d", "web", "10.96.0.20", tcp("http", 80), tcp("metrics", 9090)),
		service("d", "headless", "None", tcp("http", 80)),
		external,
		udp,
		service("default", "kubernetes", "10.96.0.1", tcp("https", 443)),
		service("d", "empty", "10.96.0.30", tcp("http", 80)),
	}
	es := []*discoveryv1.EndpointSlice{
		slice("d", "web", "web-1", map[string]int32{"http": 8080}, map[string]cond{"10.0.0.1": readyEP}),
		slice("d", "dns", "dns-1", map[string]int32{"dns-tcp": 5353}, map[string]cond{"10.0.0.9": readyEP}),
		// Same Service name, other namespace: not web's.
		slice("other", "web", "web-1", map[string]int32{"http": 8080}, map[string]cond{"10.0.0.2": readyEP}),
	}
	api := netip.MustParseAddrPort("127.0.0.1:6443")
	ports, addrs := Plan(services, es, map[types.NamespacedName]netip.AddrPort{{Namespace: "default", Name: "kubernetes"}: api})

	type row struct {
		key      string
		frontend string
		backends []netip.AddrPort
		override bool
	}
	var got []row
	for _, p := range ports {
		got = append(got, row{p.Key(), p.Frontend.String(), p.Backends, p.Override})
	}
	want := []row{
		{"default/kubernetes:https", "10.96.0.1:443", []netip.AddrPort{api}, true},
		{"d/dns:dns-tcp", "10.96.0.10:53", aps("10.0.0.9:5353"), false},
		{"d/web:http", "10.96.0.20:80", aps("10.0.0.1:8080"), false},
		{"d/web:metrics", "10.96.0.20:9090", nil, false},
		{"d/empty:http", "10.96.0.30:80", nil, false},
	}
	if len(got) != len(want) {
		t.Fatalf("Plan ports = %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i].key != want[i].key || got[i].frontend != want[i].frontend || !slices.Equal(got[i].backends, want[i].backends) || got[i].override != want[i].override {
			t.Errorf("port %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	wantAddrs := []netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.96.0.20"), netip.MustParseAddr("10.96.0.30")}
	if !slices.Equal(addrs, wantAddrs) {
		t.Errorf("Plan addresses = %v, want %v (every ClusterIP, also of a Service without endpoints)", addrs, wantAddrs)
	}
}

func TestOrderTriesEveryBackendOnceStartingAnywhere(t *testing.T) {
	backends := aps("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
	r := rand.New(rand.NewPCG(1, 2))
	first := map[netip.AddrPort]int{}
	for range 300 {
		o := order(backends, r.Perm)
		sorted := slices.Clone(o)
		slices.SortFunc(sorted, netip.AddrPort.Compare)
		if !slices.Equal(sorted, backends) {
			t.Fatalf("order = %v, want each of %v once", o, backends)
		}
		first[o[0]]++
	}
	for _, b := range backends {
		if first[b] < 60 {
			t.Errorf("%s chosen first %d times of 300, want about 100 (random choice): %v", b, first[b], first)
		}
	}
	if o := order(nil, r.Perm); len(o) != 0 {
		t.Errorf("order(nil) = %v", o)
	}
}

func TestDiff(t *testing.T) {
	add, remove := diff(map[string]bool{"a": true, "b": true}, []string{"b", "c"})
	if !slices.Equal(add, []string{"c"}) || !slices.Equal(remove, []string{"a"}) {
		t.Errorf("diff = add %v remove %v, want add [c] remove [a]", add, remove)
	}
}
