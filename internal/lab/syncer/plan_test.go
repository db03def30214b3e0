package syncer

import (
	"reflect"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	hapi "zerodrop.dev/zerodrop/provider/haproxy"
)

func endpoint(ready *bool, terminating bool, ips ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: ips, Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: ptr.To(terminating)}}
}

func slice(ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps}
}

func port(name string, n int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(n)}
}

func TestDesiredKeepsReadyEndpointsOnly(t *testing.T) {
	http := []discoveryv1.EndpointPort{port("http", 8080), port("metrics", 9090)}
	slices := []*discoveryv1.EndpointSlice{
		slice(http,
			endpoint(ptr.To(true), false, "10.0.0.1"),
			endpoint(nil, false, "10.0.0.2"),           // unknown counts as ready (API contract)
			endpoint(ptr.To(false), false, "10.0.0.3"), // not ready: startup
			endpoint(ptr.To(false), true, "10.0.0.4"),  // terminating: removed
			endpoint(ptr.To(true), false, "not-an-ip"),
		),
		slice(http, endpoint(ptr.To(true), false, "10.0.0.1")), // duplicate across slices
		{AddressType: discoveryv1.AddressTypeFQDN, Ports: http, Endpoints: []discoveryv1.Endpoint{endpoint(nil, false, "example.com")}},
		nil,
	}
	cases := []struct {
		port string
		want map[string]string
	}{
		{"", map[string]string{"ep-10-0-0-1-8080": "10.0.0.1:8080", "ep-10-0-0-2-8080": "10.0.0.2:8080"}},
		{"metrics", map[string]string{"ep-10-0-0-1-9090": "10.0.0.1:9090", "ep-10-0-0-2-9090": "10.0.0.2:9090"}},
		{"9090", map[string]string{"ep-10-0-0-1-9090": "10.0.0.1:9090", "ep-10-0-0-2-9090": "10.0.0.2:9090"}},
		{"grpc", map[string]string{}},
	}
	for _, tc := range cases {
		if got := Desired(slices, tc.port); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("port %q: got %v, want %v", tc.port, got, tc.want)
		}
	}
}

func TestServerNameIsUniquePerAddressAndPort(t *testing.T) {
	if a, b := ServerName("10.0.0.1", 80), ServerName("10.0.0.1", 8080); a == b {
		t.Fatal("ports collide")
	}
	if got := ServerName("fd00::1", 80); got != "ep-fd00--1-80" {
		t.Fatalf("IPv6 name %q", got)
	}
}

func TestPlan(t *testing.T) {
	srv := func(name, addr string, port int, admin hapi.AdminFlags) hapi.ServerState {
		return hapi.ServerState{Name: name, Addr: addr, Port: port, Admin: admin}
	}
	cases := []struct {
		name    string
		desired map[string]string
		actual  []hapi.ServerState
		want    []Action
	}{
		{
			name:    "new ready endpoint is added",
			desired: map[string]string{"ep-a": "10.0.0.1:80"},
			want:    []Action{{Kind: Add, Server: "ep-a", Addr: "10.0.0.1:80"}},
		},
		{
			name:    "in sync: nothing to do, whatever the health",
			desired: map[string]string{"ep-a": "10.0.0.1:80"},
			actual:  []hapi.ServerState{srv("ep-a", "10.0.0.1", 80, 0)},
		},
		{
			name:   "endpoint gone: removed",
			actual: []hapi.ServerState{srv("ep-a", "10.0.0.1", 80, 0)},
			want:   []Action{{Kind: Remove, Server: "ep-a"}},
		},
		{
			name:   "removal that failed (busy) is retried",
			actual: []hapi.ServerState{srv("ep-a", "10.0.0.1", 80, hapi.AdminForcedMaint)},
			want:   []Action{{Kind: Remove, Server: "ep-a"}},
		},
		{
			name:    "wanted again while in maintenance: enabled",
			desired: map[string]string{"ep-a": "10.0.0.1:80"},
			actual:  []hapi.ServerState{srv("ep-a", "10.0.0.1", 80, hapi.AdminForcedMaint)},
			want:    []Action{{Kind: Enable, Server: "ep-a"}},
		},
		{
			name:    "address changed under the same name: remove, then add",
			desired: map[string]string{"ep-a": "10.0.0.2:80"},
			actual:  []hapi.ServerState{srv("ep-a", "10.0.0.1", 80, 0)},
			want:    []Action{{Kind: Remove, Server: "ep-a"}, {Kind: Add, Server: "ep-a", Addr: "10.0.0.2:80"}},
		},
		{
			name:   "servers from the configuration file are not ours",
			actual: []hapi.ServerState{srv("anchor", "127.0.0.1", 80, 0)},
		},
		{
			name:    "after a reload everything is added again, removals first, sorted",
			desired: map[string]string{"ep-b": "10.0.0.2:80", "ep-a": "10.0.0.1:80"},
			actual:  []hapi.ServerState{srv("ep-z", "10.0.0.9", 80, 0), srv("anchor", "127.0.0.1", 80, 0)},
			want: []Action{{Kind: Remove, Server: "ep-z"}, {Kind: Add, Server: "ep-a", Addr: "10.0.0.1:80"},
				{Kind: Add, Server: "ep-b", Addr: "10.0.0.2:80"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(tc.desired, tc.actual)
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}
