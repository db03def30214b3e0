package haproxy

import "testing"

// Scenario: the addr column of `show stat` in the shapes HAProxy prints.
// Expectation: host and port apart, IPv6 with or without brackets.
func TestSplitStatAddr(t *testing.T) {
	for in, want := range map[string][2]string{
		"10.0.0.1:8080": {"10.0.0.1", "8080"},
		"0.0.0.0:1":     {"0.0.0.0", "1"},
		"[::1]:80":      {"::1", "80"},
		"fd00::5:80":    {"fd00::5", "80"},
		"10.0.0.1:+80":  {"10.0.0.1", "80"},
		"":              {"", ""},
	} {
		if h, p := splitStatAddr(in); h != want[0] || p != want[1] {
			t.Errorf("splitStatAddr(%q) = %q, %q; want %q, %q", in, h, p, want[0], want[1])
		}
	}
}
