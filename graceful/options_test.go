package graceful

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func envMap(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func newSettings(t *testing.T, env map[string]string, opts ...Option) (settings, error) {
	t.Helper()
	s := defaultSettings()
	s.lookupEnv = envMap(env)
	for _, o := range opts {
		o(&s)
	}
	if s.useEnv {
		if err := s.applyEnv(); err != nil {
			return s, err
		}
	}
	return s, s.validate()
}

func TestConfig_DefaultsWithoutEnvOrOptions(t *testing.T) {
	s, err := newSettings(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.DrainWait != DefaultDrainWait || s.GracePeriod != DefaultGracePeriod ||
		s.GraceMargin != DefaultGraceMargin || s.ShutdownReserve != DefaultShutdownReserve || s.DrainURL != "" {
		t.Errorf("defaults: %+v", s.Config)
	}
	if len(s.Signals) != 2 {
		t.Errorf("default signals %v, want SIGTERM and SIGINT", s.Signals)
	}
}

func TestConfig_EnvironmentWinsOverCode(t *testing.T) {
	// The pod spec (or zerodrop's webhook) knows the real grace period and
	// the controller's address; code gives the defaults.
	env := map[string]string{
		EnvDrainWait:       "7",
		EnvGracePeriod:     "45s",
		EnvGraceMargin:     "1.5",
		EnvShutdownReserve: "3s",
		EnvDrainMaxWait:    "20s",
		EnvDrainMinWait:    "500ms",
		EnvDrainURL:        "http://zerodrop-controller.zerodrop-system:8082",
		EnvPodName:         "web-abc",
		EnvPodNamespace:    "shop",
	}
	s, err := newSettings(t, env, WithDrainWait(time.Second), WithGracePeriod(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DrainWait: 7 * time.Second, GracePeriod: 45 * time.Second, GraceMargin: 1500 * time.Millisecond,
		ShutdownReserve: 3 * time.Second, DrainMaxWait: 20 * time.Second, DrainMinWait: 500 * time.Millisecond,
		DrainURL: "http://zerodrop-controller.zerodrop-system:8082/drain/v1/namespaces/shop/pods/web-abc",
		PodName:  "web-abc", PodNamespace: "shop",
	}
	got := s.Config
	got.Signals = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config\n got %+v\nwant %+v", got, want)
	}
}

func TestConfig_WithoutEnvIgnoresEnvironment(t *testing.T) {
	s, err := newSettings(t, map[string]string{EnvDrainWait: "99"}, WithoutEnv(), WithDrainWait(0))
	if err != nil {
		t.Fatal(err)
	}
	if s.DrainWait != 0 {
		t.Errorf("drain wait %s, want 0 from code", s.DrainWait)
	}
}

func TestConfig_BadInputNamesTheVariable(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		opts []Option
		want string
	}{
		{"not a duration", map[string]string{EnvDrainWait: "five"}, nil, "ZERODROP_DRAIN_WAIT=\"five\""},
		{"negative env", map[string]string{EnvGracePeriod: "-3"}, nil, "ZERODROP_GRACE_PERIOD"},
		{"zero grace", nil, []Option{WithGracePeriod(0)}, "grace period"},
		{"margin eats grace", map[string]string{EnvGracePeriod: "2", EnvGraceMargin: "2"}, nil, "grace margin 2s must be shorter"},
		{"negative option", nil, []Option{WithDrainWait(-time.Second)}, "drain wait -1s is negative"},
		{"bad scheme", map[string]string{EnvDrainURL: "ftp://c/drain"}, nil, "scheme must be http or https"},
		{"no host", map[string]string{EnvDrainURL: "http:///drain"}, nil, "no host"},
		{"base URL without pod", map[string]string{EnvDrainURL: "http://c:8082"}, nil, "POD_NAMESPACE and POD_NAME"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newSettings(t, tc.env, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	cases := map[string]time.Duration{
		"30":    30 * time.Second,
		"2.5":   2500 * time.Millisecond,
		"0":     0,
		" 5s ":  5 * time.Second,
		"1m30s": 90 * time.Second,
		"250ms": 250 * time.Millisecond,
	}
	for in, want := range cases {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "-1s", "abc", "NaN", "1e300", "5 s"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30", "2.5", "5s", "1m30s", "-1", "NaN", "Inf", "1e400", "", "9223372036s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Errorf("ParseDuration(%q) = %s: negative accepted", s, d)
		}
	})
}

func TestDrainEndpoint(t *testing.T) {
	cases := []struct{ raw, ns, pod, want string }{
		{"http://c:8082", "shop", "web-1", "http://c:8082/drain/v1/namespaces/shop/pods/web-1"},
		{"http://c:8082/", "shop", "web-1", "http://c:8082/drain/v1/namespaces/shop/pods/web-1"},
		{"https://c/drain/v1/namespaces/a/pods/b?x=1", "", "", "https://c/drain/v1/namespaces/a/pods/b?x=1"},
	}
	for _, tc := range cases {
		got, err := DrainEndpoint(tc.raw, tc.ns, tc.pod)
		if err != nil || got != tc.want {
			t.Errorf("DrainEndpoint(%q, %q, %q) = %q, %v; want %q", tc.raw, tc.ns, tc.pod, got, err, tc.want)
		}
	}
}

func FuzzDrainEndpoint(f *testing.F) {
	f.Add("http://c:8082", "shop", "web-1")
	f.Add("https://c/drain/v1/namespaces/a/pods/b?wait=3s", "", "")
	f.Add("%zz", "a", "b")
	f.Add("http://[::1", "a", "b")
	f.Fuzz(func(t *testing.T, raw, ns, pod string) {
		u, err := DrainEndpoint(raw, ns, pod)
		if err == nil && !strings.HasPrefix(u, "http") {
			t.Errorf("DrainEndpoint(%q) = %q: not an http URL", raw, u)
		}
	})
}
