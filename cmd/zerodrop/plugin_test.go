package main

import (
	"bytes"
	"strings"
	"testing"
)

// Installed as kubectl-zerodrop (krew, or bin/kubectl-zerodrop), the CLI is
// `kubectl zerodrop`: its help and usage say so, and it runs the same
// commands.
func TestRunsAsAKubectlPlugin(t *testing.T) {
	for argv0, want := range map[string]string{
		"/usr/local/bin/kubectl-zerodrop":    "kubectl zerodrop check",
		"/home/u/.krew/bin/kubectl-zerodrop": "kubectl zerodrop check",
		"bin/zerodrop":                       "zerodrop check",
	} {
		old := invokedAs
		invokedAs = argv0
		var out bytes.Buffer
		code := runIO([]string{"check", "--help"}, strings.NewReader(""), &out, &out)
		invokedAs = old
		if code != 0 {
			t.Fatalf("%s check --help: exit %d\n%s", argv0, code, out.String())
		}
		usage := out.String()
		if !strings.Contains(usage, "Usage:\n  "+want) {
			t.Errorf("%s: usage does not name %q:\n%s", argv0, want, usage)
		}
		if want == "zerodrop check" && strings.Contains(usage, "kubectl zerodrop") {
			t.Errorf("%s: usage names kubectl:\n%s", argv0, usage)
		}
	}
}
