package k8sbin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/testenv"
)

// A k8s.io/kubernetes go.mod lists its staging modules as replace lines into
// ./staging; those and only those become the throwaway module's replaces.
func TestParseStagingReadsOnlyStagingReplaces(t *testing.T) {
	const goMod = `module k8s.io/kubernetes

require (
	k8s.io/api v0.0.0
	github.com/foo/bar v1.2.3
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	github.com/foo/bar => github.com/foo/bar v1.2.4
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
`
	got, err := parseStaging(strings.NewReader(goMod))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"k8s.io/api", "k8s.io/client-go", "k8s.io/kubectl"}
	if !slices.Equal(got, want) {
		t.Fatalf("staging modules = %v, want %v", got, want)
	}
}

// A go.mod without staging replaces is not a Kubernetes go.mod: say so
// rather than build a module that cannot resolve.
func TestParseStagingRejectsGoModWithoutStaging(t *testing.T) {
	if _, err := parseStaging(strings.NewReader("module x\n\nrequire k8s.io/api v0.37.1\n")); err == nil {
		t.Fatal("want an error for a go.mod without staging replaces")
	}
}

func FuzzParseStaging(f *testing.F) {
	f.Add("replace k8s.io/api => ./staging/src/k8s.io/api\n")
	f.Add("replace (\n\tk8s.io/a => ./staging/x\n)\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		mods, err := parseStaging(strings.NewReader(s))
		if err == nil && len(mods) == 0 {
			t.Fatal("no error and no modules")
		}
		for _, m := range mods {
			if !strings.HasPrefix(m, "k8s.io/") {
				t.Fatalf("module %q outside k8s.io", m)
			}
		}
	})
}

// The generated module replaces every staging module with the published
// v0.Y.Z of the pinned release.
func TestGoModReplacesStagingWithPublishedVersion(t *testing.T) {
	got := goMod([]string{"k8s.io/api", "k8s.io/kubectl"})
	for _, want := range []string{
		"require k8s.io/kubernetes " + KubernetesVersion,
		"k8s.io/api => k8s.io/api " + stagingVersion(),
		"k8s.io/kubectl => k8s.io/kubectl " + stagingVersion(),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("go.mod lacks %q:\n%s", want, got)
		}
	}
	if !strings.HasPrefix(stagingVersion(), "v0.") {
		t.Errorf("staging version %q, want v0.Y.Z", stagingVersion())
	}
}

// The cache directory follows ZERODROP_CACHE, then XDG_CACHE_HOME, then HOME.
func TestCacheDirPrecedence(t *testing.T) {
	t.Setenv("ZERODROP_CACHE", "/x/zc")
	t.Setenv("XDG_CACHE_HOME", "/x/xdg")
	t.Setenv("HOME", "/x/home")
	if d, _ := CacheDir(); d != "/x/zc" {
		t.Errorf("with ZERODROP_CACHE: %q", d)
	}
	t.Setenv("ZERODROP_CACHE", "")
	if d, _ := CacheDir(); d != "/x/xdg/zerodrop" {
		t.Errorf("with XDG_CACHE_HOME: %q", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	if d, _ := CacheDir(); d != "/x/home/.cache/zerodrop" {
		t.Errorf("with HOME only: %q", d)
	}
}

// A directory without a complete stamp is not a build: Present ignores it,
// so a build killed halfway is redone rather than trusted.
func TestPresentIgnoresIncompleteDirectory(t *testing.T) {
	t.Setenv("ZERODROP_CACHE", t.TempDir())
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{KubeAPIServer, Etcd} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := Present(); ok {
		t.Fatal("Present accepted a directory without stamp and with binaries missing")
	}
}

// The cached binaries run and report the pinned versions.
func TestCachedBinariesReportPinnedVersion(t *testing.T) {
	b, ok := Present()
	if !ok {
		testenv.Unavailable(t, "kubernetes binaries not built in %s (run `zerodrop lab binaries`)", EnvtestAssets())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		bin  string
		args []string
		want string
	}{
		{KubeAPIServer, []string{"--version"}, "Kubernetes " + KubernetesVersion},
		{KubeControllerManager, []string{"--version"}, "Kubernetes " + KubernetesVersion},
		{KubeScheduler, []string{"--version"}, "Kubernetes " + KubernetesVersion},
		{Kubectl, []string{"version", "--client"}, KubernetesVersion},
		{Etcd, []string{"--version"}, strings.TrimPrefix(EtcdVersion, "v")},
	} {
		out, err := exec.CommandContext(ctx, b.Path(c.bin), c.args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s %v: %v\n%s", c.bin, c.args, err, out)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s %v printed %q, want it to contain %q", c.bin, c.args, out, c.want)
		}
	}
}
