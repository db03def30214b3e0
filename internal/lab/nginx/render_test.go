package nginx

import (
	"strings"
	"testing"
	"time"
)

func TestRenderRefusesBadConfig(t *testing.T) {
	cases := map[string]Config{
		"name":          {Pools: []Pool{{Name: "a b", Listen: "127.0.0.1:1"}}},
		"defined twice": {Pools: []Pool{{Name: "a", Listen: "127.0.0.1:1"}, {Name: "a", Listen: "127.0.0.1:2"}}},
		"listen":        {Pools: []Pool{{Name: "a", Listen: "nope"}}},
		"server":        {Pools: []Pool{{Name: "a", Listen: "127.0.0.1:1", Servers: []string{"x"}}}},
		"workers":       {Workers: 99, Pools: []Pool{{Name: "a", Listen: "127.0.0.1:1"}}},
		"next upstream": {NextUpstream: "off; evil", Pools: []Pool{{Name: "a", Listen: "127.0.0.1:1"}}},
		"no listen":     {Pools: []Pool{{Name: "a"}}},
	}
	for want, cfg := range cases {
		if _, err := Render(cfg, "/d", "/d/u.conf"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestRenderSetsTheSafetyDirectives(t *testing.T) {
	b, err := Render(Config{ShutdownTimeout: 3 * time.Second, Pools: []Pool{{Name: "app", Listen: "127.0.0.1:8080"}}}, "/d", "/d/upstreams.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"master_process on;", "daemon off;", "worker_shutdown_timeout 3000ms;", "pid /d/nginx.pid;", "include /d/upstreams.conf;", "proxy_pass http://app;", "proxy_next_upstream off;", "listen 127.0.0.1:8080;"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
	if u := string(RenderUpstreams([]Pool{{Name: "app"}})); !strings.Contains(u, "server 127.0.0.1:9 down; # zerodrop placeholder") {
		t.Errorf("empty pool without placeholder:\n%s", u)
	}
}
