// Package testenv decides what a test does when something it needs from the
// machine (a binary, root, network namespaces) is missing: outside CI it
// skips with the reason; in CI (CI=true) it fails, because a skipped test in
// CI is a failed test. `make deps` installs everything the tests need.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI.
func InCI() bool { return os.Getenv("CI") != "" && os.Getenv("CI") != "false" }

// Unavailable skips the test outside CI and fails it in CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("required by this test but missing in CI (run `make deps`): "+format, args...)
	}
	t.Skipf("missing (run `make deps`): "+format, args...)
}

// RequireBinary returns the path of a binary on PATH or calls Unavailable.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "binary %q not on PATH", name)
	}
	return p
}

// RequireRoot calls Unavailable unless the test runs as root (network
// namespaces, bridges and veth pairs need it).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "root (network namespaces)")
	}
}
