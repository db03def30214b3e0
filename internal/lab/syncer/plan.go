package syncer

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"

	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

// ServerPrefix starts the name of every server the syncer manages; servers
// without it (e.g. from the configuration file) are never touched.
const ServerPrefix = "ep-"

// ServerName is the HAProxy server name for an endpoint address and port,
// e.g. "ep-10-0-0-5-8080". The address is in the name so that a pod that
// comes back with another IP is another server.
func ServerName(ip string, port int) string {
	r := strings.NewReplacer(".", "-", ":", "-")
	return ServerPrefix + r.Replace(ip) + "-" + strconv.Itoa(port)
}

// Desired returns the servers a backend should have for a Service's
// EndpointSlices: one per address of every endpoint whose Ready condition
// is true (unset counts as true, as the API says), on the port named or
// numbered port ("" takes each slice's first port). Keys are server names,
// values "ip:port".
func Desired(slices []*discoveryv1.EndpointSlice, port string) map[string]string {
	out := map[string]string{}
	for _, s := range slices {
		if s == nil || s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		p, ok := slicePort(s, port)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, ip := range ep.Addresses {
				if net.ParseIP(ip) == nil {
					continue
				}
				out[ServerName(ip, p)] = net.JoinHostPort(ip, strconv.Itoa(p))
			}
		}
	}
	return out
}

func slicePort(s *discoveryv1.EndpointSlice, want string) (int, bool) {
	for _, p := range s.Ports {
		if p.Port == nil {
			continue
		}
		if want == "" || p.Name != nil && *p.Name == want || strconv.Itoa(int(*p.Port)) == want {
			return int(*p.Port), true
		}
	}
	return 0, false
}

// ActionKind is what the syncer does to one server.
type ActionKind string

// Actions, in the order Plan returns them.
const (
	// Remove: `set server state maint`, then `del server` (retried while
	// HAProxy still has connections to it).
	Remove ActionKind = "remove"
	// Add: `add server ... check`, `enable health`, `set server state
	// ready` — the naive order: UP at once, before any check.
	Add ActionKind = "add"
	// Enable: `set server state ready` for a wanted server left in
	// maintenance or drain (a removal that was undone, a half-done add).
	Enable ActionKind = "enable"
)

// Action is one change to one server.
type Action struct {
	Kind   ActionKind
	Server string
	Addr   string // ip:port, for Add
}

func (a Action) String() string {
	if a.Addr != "" {
		return fmt.Sprintf("%s %s (%s)", a.Kind, a.Server, a.Addr)
	}
	return fmt.Sprintf("%s %s", a.Kind, a.Server)
}

// Plan computes the actions that make the backend's managed servers
// (actual, from `show servers state`) equal to desired. It is pure: the
// syncer applies the result. Removals come first so a moved address frees
// its name before it is added again.
func Plan(desired map[string]string, actual []hapi.ServerState) []Action {
	have := map[string]hapi.ServerState{}
	for _, s := range actual {
		if strings.HasPrefix(s.Name, ServerPrefix) {
			have[s.Name] = s
		}
	}
	var removes, adds, enables []Action
	for name, s := range have {
		addr, want := desired[name]
		switch {
		case !want:
			removes = append(removes, Action{Kind: Remove, Server: name})
		case net.JoinHostPort(s.Addr, strconv.Itoa(s.Port)) != addr:
			removes = append(removes, Action{Kind: Remove, Server: name})
			adds = append(adds, Action{Kind: Add, Server: name, Addr: addr})
		case s.Admin.Maint() || s.Admin.Drain():
			enables = append(enables, Action{Kind: Enable, Server: name})
		}
	}
	for name, addr := range desired {
		if _, ok := have[name]; !ok {
			adds = append(adds, Action{Kind: Add, Server: name, Addr: addr})
		}
	}
	for _, l := range [][]Action{removes, adds, enables} {
		sort.Slice(l, func(i, j int) bool { return l[i].Server < l[j].Server })
	}
	return append(append(removes, adds...), enables...)
}
