package ociimage

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// hello builds a small static program that prints its uid.
func hello(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nimport (\"fmt\";\"os\")\nfunc main(){fmt.Println(\"hello uid\", os.Getuid())}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestImageIsNonRootStaticAndReproducible: each platform's image runs its
// binary as 65532 from /NAME with no shell beside it; the index lists
// every platform; the tarball loads back as the same image; building twice
// gives the same digests.
func TestImageIsNonRootStaticAndReproducible(t *testing.T) {
	bin := hello(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	spec := Spec{Name: "zerodrop-controller", Binaries: []Binary{
		{OS: "linux", Arch: runtime.GOARCH, Path: bin},
		{OS: "linux", Arch: other, Path: bin}, // contents do not matter here
	}, Labels: map[string]string{"org.opencontainers.image.title": "zerodrop-controller"}}
	dir := t.TempDir()
	b, err := Build(spec, dir, "zerodrop-controller:test")
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(spec, t.TempDir(), "zerodrop-controller:test")
	if err != nil {
		t.Fatal(err)
	}
	if again.Index != b.Index || again.Images[0].Digest != b.Images[0].Digest {
		t.Fatalf("two builds of the same binaries differ: %s vs %s", b.Index, again.Index)
	}

	// The OCI layout holds an index with both platforms.
	p, err := layout.FromPath(b.Layout)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil || len(tm.Manifests) != 1 {
		t.Fatalf("layout: %v, %d entries, want the one index", err, len(tm.Manifests))
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d != b.Index {
		t.Fatalf("layout's index %s, Build said %s", d, b.Index)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, m := range im.Manifests {
		plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	if len(plats) != 2 || plats[0] != "linux/"+runtime.GOARCH || plats[1] != "linux/"+other {
		t.Fatalf("index platforms %v", plats)
	}

	// The host platform's tarball loads back; its config and files.
	tag, _ := name.NewTag("zerodrop-controller:test")
	img, err := tarball.ImageFromPath(b.Tarballs[0], &tag)
	if err != nil {
		t.Fatal(err)
	}
	// A docker tarball carries Docker media types (another manifest
	// digest); the config, which names the layers' contents, is the same.
	built, err := Image(spec, spec.Binaries[0])
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := img.ConfigName(); func() bool { b, _ := built.ConfigName(); return a != b }() {
		t.Fatalf("tarball image's config %s differs from the built image's", a)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != NonRootUser || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/zerodrop-controller" ||
		cf.OS != "linux" || cf.Architecture != runtime.GOARCH || cf.Config.Labels["org.opencontainers.image.title"] != "zerodrop-controller" {
		t.Fatalf("config: user %q entrypoint %v platform %s/%s labels %v", cf.Config.User, cf.Config.Entrypoint, cf.OS, cf.Architecture, cf.Config.Labels)
	}
	files := map[string]*tar.Header{}
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if h.Name == "zerodrop-controller" {
			data, _ := io.ReadAll(tr)
			if err := os.WriteFile(filepath.Join(root, h.Name), data, os.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range []string{"zerodrop-controller", "etc/passwd", "etc/group", "tmp"} {
		if files[f] == nil {
			t.Errorf("image lacks /%s; has %v", f, files)
		}
	}
	for _, shell := range []string{"bin/sh", "bin/bash", "bin/busybox"} {
		if files[shell] != nil {
			t.Errorf("image has a shell: /%s", shell)
		}
	}
	if h := files["zerodrop-controller"]; h == nil || h.Mode&0o111 == 0 || !h.ModTime.Equal(Epoch) {
		t.Fatalf("binary's header %+v: want executable, time %v", h, Epoch)
	}
	// The binary taken out of the image runs (it is static).
	out, err := exec.Command(filepath.Join(root, "zerodrop-controller")).CombinedOutput()
	if err != nil || len(out) == 0 {
		t.Fatalf("binary from the image: %v %s", err, out)
	}
}

// TestBuildNamesBadInput: a bad reference and a missing binary are errors
// that say which.
func TestBuildNamesBadInput(t *testing.T) {
	if _, err := Build(Spec{Name: "x"}, t.TempDir(), "UPPER:tag!"); err == nil {
		t.Error("a bad reference was accepted")
	}
	_, err := Build(Spec{Name: "x", Binaries: []Binary{{OS: "linux", Arch: "amd64", Path: "/nonexistent/bin"}}}, t.TempDir(), "x:y")
	if err == nil || !contains(err.Error(), "linux/amd64") || !contains(err.Error(), "/nonexistent/bin") {
		t.Errorf("missing binary: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
