package svcproxy

import (
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ServicePort is one TCP port of a Service as the proxy serves it: the
// ClusterIP address it listens on and the endpoints it forwards to.
type ServicePort struct {
	// Service is the Service's namespace and name.
	Service types.NamespacedName
	// Name is the Service port's name ("" for a single unnamed port).
	Name string
	// Frontend is ClusterIP:port.
	Frontend netip.AddrPort
	// Backends are the endpoints a connection may go to, sorted. Empty
	// means connections are refused.
	Backends []netip.AddrPort
	// Terminating says Backends are serving-and-terminating endpoints,
	// used because no endpoint is ready (kube-proxy's
	// ProxyTerminatingEndpoints).
	Terminating bool
	// Override says Backends come from Options.Overrides, not from
	// EndpointSlices.
	Override bool

	// Set by Proxy.Endpoints:

	// Listening says the proxy listens on Frontend (it does not while
	// there are no Backends, or when listening failed).
	Listening bool
	// Connections counts connections forwarded to an endpoint.
	Connections int64
	// DialFailures counts dials of an endpoint that failed.
	DialFailures int64
}

// Key names the port for logs and maps: "namespace/name:port".
func (p ServicePort) Key() string {
	name := p.Name
	if name == "" {
		name = strconv.Itoa(int(p.Frontend.Port()))
	}
	return p.Service.String() + ":" + name
}

// Plan computes what the proxy serves from the Services and EndpointSlices
// in the cluster: one ServicePort per TCP port of every Service with an IPv4
// ClusterIP (not headless, not ExternalName), sorted by Frontend, and the
// ClusterIPs those Services hold (the addresses to put on the bridge; a
// Service whose ports all lack endpoints still holds its address, so that a
// connection to it is refused rather than left unanswered). A Service named
// in overrides forwards every TCP port to the override address instead of
// its endpoints.
func Plan(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, overrides map[types.NamespacedName]netip.AddrPort) ([]ServicePort, []netip.Addr) {
	byService := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, s := range endpointSlices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		k := types.NamespacedName{Namespace: s.Namespace, Name: name}
		byService[k] = append(byService[k], s)
	}
	var ports []ServicePort
	var addrs []netip.Addr
	for _, svc := range services {
		ip, ok := clusterIP(svc)
		if !ok {
			continue
		}
		k := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		addrs = append(addrs, ip)
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			p := ServicePort{Service: k, Name: sp.Name, Frontend: netip.AddrPortFrom(ip, uint16(sp.Port))}
			if o, ok := overrides[k]; ok {
				p.Backends, p.Override = []netip.AddrPort{o}, true
			} else {
				p.Backends, p.Terminating = Endpoints(byService[k], sp.Name)
			}
			ports = append(ports, p)
		}
	}
	slices.SortFunc(ports, func(a, b ServicePort) int { return a.Frontend.Compare(b.Frontend) })
	slices.SortFunc(addrs, netip.Addr.Compare)
	return ports, slices.Compact(addrs)
}

// clusterIP returns the Service's IPv4 ClusterIP, if it has one the proxy
// serves.
func clusterIP(svc *corev1.Service) (netip.Addr, bool) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return netip.Addr{}, false
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
			return ip, true // "None" (headless) does not parse
		}
	}
	return netip.Addr{}, false
}

// Endpoints returns the endpoints of a Service port named portName from the
// Service's EndpointSlices, as kube-proxy chooses them: those whose ready
// condition is true (unset counts as ready); when there are none, those
// serving and terminating (terminating is then true). The target port is
// each slice's port of the same name and protocol TCP, so slices may
// disagree on it (pods of two versions listening on different ports).
// Duplicates (an endpoint in two slices while the controller moves it) are
// listed once.
func Endpoints(endpointSlices []*discoveryv1.EndpointSlice, portName string) (backends []netip.AddrPort, terminating bool) {
	var ready, serving []netip.AddrPort
	for _, s := range endpointSlices {
		port, ok := SlicePort(s, portName)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			c := ep.Conditions
			isReady := c.Ready == nil || *c.Ready
			// Serving unset means it follows Ready (the API's rule for
			// old writers).
			isServing := isReady
			if c.Serving != nil {
				isServing = *c.Serving
			}
			isTerminating := c.Terminating != nil && *c.Terminating
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				ap := netip.AddrPortFrom(ip, port)
				switch {
				case isReady:
					ready = append(ready, ap)
				case isServing && isTerminating:
					serving = append(serving, ap)
				}
			}
		}
	}
	if len(ready) > 0 {
		return sortedUnique(ready), false
	}
	if len(serving) > 0 {
		return sortedUnique(serving), true
	}
	return nil, false
}

// SlicePort returns the port number a slice gives the Service port named
// name (TCP only), as kube-proxy matches them: by name, "" matching the
// unnamed port of a single-port Service.
func SlicePort(s *discoveryv1.EndpointSlice, name string) (uint16, bool) {
	for _, p := range s.Ports {
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if ptrOr(p.Name, "") == name {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func sortedUnique(a []netip.AddrPort) []netip.AddrPort {
	slices.SortFunc(a, func(x, y netip.AddrPort) int { return x.Compare(y) })
	return slices.Compact(a)
}

// order returns the order in which a connection tries the backends: a
// random first choice (kube-proxy picks at random), then the others in
// random order, so that a backend refusing the dial is skipped.
// perm is rand.Perm, or a seeded generator's in tests.
func order(backends []netip.AddrPort, perm func(int) []int) []netip.AddrPort {
	out := make([]netip.AddrPort, len(backends))
	for i, j := range perm(len(backends)) {
		out[i] = backends[j]
	}
	return out
}

// diff returns what is in want and not in have, and what is in have and not
// in want.
func diff[T comparable](have map[T]bool, want []T) (add, remove []T) {
	w := map[T]bool{}
	for _, x := range want {
		w[x] = true
		if !have[x] {
			add = append(add, x)
		}
	}
	for x := range have {
		if !w[x] {
			remove = append(remove, x)
		}
	}
	return add, remove
}
