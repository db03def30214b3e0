// Command image builds zerodrop-controller's container image without a
// container engine (`make image`): it cross-compiles the controller as a
// static binary for each platform and writes an OCI image layout and
// docker-loadable tarballs (internal/ociimage), then prints the index
// digest and each image's digest and size.
//
//	go run ./hack/image [-o bin/image] [-ref zerodrop-controller:dev] [-platforms linux/amd64,linux/arm64]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"zerodrop.dev/zerodrop/internal/ociimage"
)

func main() {
	out := flag.String("o", "bin/image", "output directory")
	ref := flag.String("ref", "zerodrop-controller:dev", "the image reference the tarballs are tagged with")
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "comma-separated OS/ARCH list")
	pkg := flag.String("pkg", "./cmd/zerodrop-controller", "the Go package to build")
	flag.Parse()
	if err := run(*out, *ref, *platforms, *pkg); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(out, ref, platforms, pkg string) error {
	name := filepath.Base(pkg)
	spec := ociimage.Spec{Name: name, Labels: map[string]string{
		"org.opencontainers.image.title":  name,
		"org.opencontainers.image.source": "https://zerodrop.dev/zerodrop",
	}}
	if v := os.Getenv("VERSION"); v != "" {
		spec.Labels["org.opencontainers.image.version"] = v
	}
	for _, p := range strings.Split(platforms, ",") {
		osName, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok || osName == "" || arch == "" {
			return fmt.Errorf("-platforms: %q is not OS/ARCH", p)
		}
		bin := filepath.Join(out, "build", osName+"-"+arch, name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+osName, "GOARCH="+arch)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s for %s: %w", pkg, p, err)
		}
		spec.Binaries = append(spec.Binaries, ociimage.Binary{OS: osName, Arch: arch, Path: bin})
	}
	b, err := ociimage.Build(spec, out, ref)
	if err != nil {
		return err
	}
	fmt.Printf("index  %s  %s\n", b.Index, b.Layout)
	for i, img := range b.Images {
		fmt.Printf("image  %s  %s  %.1f MiB  %s\n", img.Platform, img.Digest, float64(img.Size)/(1<<20), b.Tarballs[i])
	}
	fmt.Printf("user   %s, entrypoint /%s, no shell\n", ociimage.NonRootUser, name)
	return nil
}
