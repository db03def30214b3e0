// Package labtest gives tests what the lab needs from the machine, in one
// place: the Kubernetes binaries, root, ip, haproxy and nginx, and the
// programs of this repository the lab runs. A missing piece skips the test locally and fails it in CI
// (package testenv).
package labtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// Binaries returns the cached Kubernetes binaries (`zerodrop lab binaries`
// builds them) or calls testenv.Unavailable.
func Binaries(t testing.TB) k8sbin.Binaries {
	t.Helper()
	bins, ok := k8sbin.Present()
	if !ok {
		testenv.Unavailable(t, "kubernetes binaries not built in %s (run `zerodrop lab binaries`)", k8sbin.EnvtestAssets())
	}
	return bins
}

// App returns the sample app's program: $ZERODROP_APP, or a build of
// cmd/zerodrop-app from this module into a temporary directory.
func App(t testing.TB) string {
	t.Helper()
	if app := os.Getenv("ZERODROP_APP"); app != "" {
		return app
	}
	app := filepath.Join(t.TempDir(), "zerodrop-app")
	out, err := exec.Command("go", "build", "-o", app, "zerodrop.dev/zerodrop/cmd/zerodrop-app").CombinedOutput()
	if err != nil {
		t.Fatalf("build zerodrop-app: %v\n%s", err, out)
	}
	return app
}

// Controller returns the zerodrop-controller program: $ZERODROP_CONTROLLER,
// or a build of cmd/zerodrop-controller into a temporary directory. It also
// sets $ZERODROP_CONTROLLER for the test, so that the lab finds it.
func Controller(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ZERODROP_CONTROLLER"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "zerodrop-controller")
	out, err := exec.Command("go", "build", "-o", p, "zerodrop.dev/zerodrop/cmd/zerodrop-controller").CombinedOutput()
	if err != nil {
		t.Fatalf("build zerodrop-controller: %v\n%s", err, out)
	}
	t.Setenv("ZERODROP_CONTROLLER", p)
	return p
}

// Adapter returns the zerodrop-adapter program (the reference provider
// adapter): $ZERODROP_ADAPTER, or a build of cmd/zerodrop-adapter into a
// temporary directory. It also sets $ZERODROP_ADAPTER for the test, so that
// the lab finds it.
func Adapter(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ZERODROP_ADAPTER"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "zerodrop-adapter")
	out, err := exec.Command("go", "build", "-o", p, "zerodrop.dev/zerodrop/cmd/zerodrop-adapter").CombinedOutput()
	if err != nil {
		t.Fatalf("build zerodrop-adapter: %v\n%s", err, out)
	}
	t.Setenv("ZERODROP_ADAPTER", p)
	return p
}

// RequireNGINX checks for the nginx program the lab's NGINX instances run.
func RequireNGINX(t testing.TB) {
	t.Helper()
	testenv.RequireBinary(t, "nginx")
}

// Require checks everything a whole lab needs (root, ip, haproxy, the
// Kubernetes binaries) and returns the binaries and the app's program.
func Require(t testing.TB) (k8sbin.Binaries, string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	testenv.RequireBinary(t, "haproxy")
	return Binaries(t), App(t)
}
