// Package ociimage builds zerodrop-controller's container image without a
// container engine: one layer holding the static binary and the passwd
// entry of a non-root user on an empty base (no shell, no package
// manager), one image per platform, an OCI image index over them, written
// as an OCI image layout and as one docker-loadable tarball per platform.
// The build is reproducible: file times and the creation time are fixed,
// so the same binaries give the same digests.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRootUser is the image's user and group: the distroless "nonroot"
// IDs, which config/manager's runAsNonRoot accepts.
const NonRootUser = "65532:65532"

// Epoch is every file's time and the image's creation time (reproducible
// builds).
var Epoch = time.Unix(0, 0).UTC()

// Binary is one platform's program.
type Binary struct {
	OS, Arch string
	// Path is the static binary on disk.
	Path string
}

// Spec says what to build.
type Spec struct {
	// Name is the program's file name in the image (/Name) and its
	// entrypoint.
	Name string
	// Binaries, one per platform.
	Binaries []Binary
	// Labels go into each image's config (org.opencontainers.image.*).
	Labels map[string]string
}

// Image builds the image of one platform's binary.
func Image(s Spec, b Binary) (v1.Image, error) {
	data, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, fmt.Errorf("image: %s/%s binary: %w", b.OS, b.Arch, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(rootfs(s.Name, data))), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = b.OS, b.Arch
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = v1.Config{
		User:       NonRootUser,
		Entrypoint: []string{"/" + s.Name},
		WorkingDir: "/",
		Env:        []string{"PATH=/"},
		Labels:     s.Labels,
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the layer: /etc/passwd and /etc/group with root and nonroot
// (some libraries look the user up), an empty /tmp, and the binary.
func rootfs(name string, bin []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(p string, mode int64) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: mode, ModTime: Epoch, Format: tar.FormatPAX})
	}
	file := func(p string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: Epoch, Format: tar.FormatPAX})
		_, _ = tw.Write(data)
	}
	dir("etc/", 0o755)
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n"))
	dir("tmp/", 0o1777)
	file(name, 0o755, bin)
	_ = tw.Close()
	return buf.Bytes()
}

// Built is what Build wrote.
type Built struct {
	// Index is the OCI image index's digest (what a registry would
	// serve for the tag).
	Index v1.Hash
	// Images: each platform's manifest digest and compressed size.
	Images []BuiltImage
	// Layout is the OCI image layout directory; Tarballs the
	// docker-loadable archives, one per platform.
	Layout   string
	Tarballs []string
}

// BuiltImage is one platform's image.
type BuiltImage struct {
	Platform string
	Digest   v1.Hash
	Size     int64 // manifest, config and layers as stored
}

// Build builds every platform's image, the index over them, and writes
// dir/oci (an OCI image layout: `crane push --index`, `skopeo copy
// oci:DIR` or a registry's import take it) and dir/NAME-OS-ARCH.tar
// (`docker load` / `podman load`, tagged ref).
func Build(s Spec, dir, ref string) (Built, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return Built{}, fmt.Errorf("image: reference %q: %w", ref, err)
	}
	var out Built
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range s.Binaries {
		img, err := Image(s, b)
		if err != nil {
			return Built{}, err
		}
		d, err := img.Digest()
		if err != nil {
			return Built{}, err
		}
		size, err := storedSize(img)
		if err != nil {
			return Built{}, err
		}
		out.Images = append(out.Images, BuiltImage{Platform: b.OS + "/" + b.Arch, Digest: d, Size: size})
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: b.OS, Architecture: b.Arch}}})
		tb := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.tar", s.Name, b.OS, b.Arch))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return Built{}, err
		}
		if err := tarball.WriteToFile(tb, tag, img); err != nil {
			return Built{}, fmt.Errorf("image: %s: %w", tb, err)
		}
		out.Tarballs = append(out.Tarballs, tb)
	}
	if out.Index, err = idx.Digest(); err != nil {
		return Built{}, err
	}
	out.Layout = filepath.Join(dir, "oci")
	if err := os.RemoveAll(out.Layout); err != nil {
		return Built{}, err
	}
	p, err := layout.Write(out.Layout, empty.Index)
	if err != nil {
		return Built{}, fmt.Errorf("image: OCI layout %s: %w", out.Layout, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag.TagStr()})); err != nil {
		return Built{}, fmt.Errorf("image: OCI layout %s: %w", out.Layout, err)
	}
	return out, nil
}

func storedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
