// Command krew renders the krew plugin manifest of `kubectl zerodrop` from
// the release archives `make dist` writes (dist/zerodrop_VERSION_OS_ARCH.tar.gz,
// each holding kubectl-zerodrop and zerodrop-cluster):
//
//	go run ./hack/krew -version v0.1.0 -url 'https://example.com/releases/v0.1.0/{{.Archive}}' dist/*.tar.gz > zerodrop.yaml
//
// Each platform's uri is -url with the archive's file name, its sha256 the
// archive's. The manifest is checked before it is written: one platform per
// os/arch, https URIs, the version in every archive's name.
package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

//go:embed zerodrop.yaml.tmpl
var manifestTemplate string

// Platform is one release archive in the manifest.
type Platform struct {
	OS, Arch, URI, SHA256 string
}

// Manifest is what the template renders.
type Manifest struct {
	Version, Homepage string
	Platforms         []Platform
}

var archiveName = regexp.MustCompile(`^zerodrop_(v\d+\.\d+\.\d+[^_]*)_([a-z0-9]+)_([a-z0-9]+)\.tar\.gz$`)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "krew:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("krew", flag.ContinueOnError)
	version := fs.String("version", "", "release version, vX.Y.Z")
	url := fs.String("url", "", "download URL template of an archive; {{.Archive}} is its file name")
	homepage := fs.String("homepage", "https://zerodrop.dev", "the plugin's homepage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := build(*version, *url, *homepage, fs.Args())
	if err != nil {
		return err
	}
	return render(out, m)
}

// build reads the archives and fills the manifest.
func build(version, urlTemplate, homepage string, archives []string) (Manifest, error) {
	m := Manifest{Version: version, Homepage: homepage}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+`).MatchString(version) {
		return m, fmt.Errorf("-version %q: want vX.Y.Z (krew requires a semantic version with the v)", version)
	}
	if len(archives) == 0 {
		return m, fmt.Errorf("no archives given (make dist writes dist/zerodrop_%s_OS_ARCH.tar.gz)", version)
	}
	ut, err := template.New("url").Option("missingkey=error").Parse(urlTemplate)
	if err != nil {
		return m, fmt.Errorf("-url: %w", err)
	}
	seen := map[string]string{}
	for _, a := range archives {
		name := filepath.Base(a)
		g := archiveName.FindStringSubmatch(name)
		if g == nil {
			return m, fmt.Errorf("%s: not a release archive name (zerodrop_VERSION_OS_ARCH.tar.gz)", a)
		}
		if g[1] != version {
			return m, fmt.Errorf("%s: archive of version %s, not %s", a, g[1], version)
		}
		key := g[2] + "/" + g[3]
		if prev, dup := seen[key]; dup {
			return m, fmt.Errorf("%s and %s: two archives for %s", prev, a, key)
		}
		seen[key] = a
		data, err := os.ReadFile(a)
		if err != nil {
			return m, err
		}
		sum := sha256.Sum256(data)
		var u bytes.Buffer
		if err := ut.Execute(&u, map[string]string{"Archive": name}); err != nil {
			return m, fmt.Errorf("-url: %w", err)
		}
		if !strings.HasPrefix(u.String(), "https://") || !strings.HasSuffix(u.String(), name) {
			return m, fmt.Errorf("-url %q gives %q for %s: want an https URL ending in the archive's name", urlTemplate, u.String(), name)
		}
		m.Platforms = append(m.Platforms, Platform{OS: g[2], Arch: g[3], URI: u.String(), SHA256: hex.EncodeToString(sum[:])})
	}
	sort.Slice(m.Platforms, func(i, j int) bool {
		return m.Platforms[i].OS+m.Platforms[i].Arch < m.Platforms[j].OS+m.Platforms[j].Arch
	})
	return m, nil
}

func render(w io.Writer, m Manifest) error {
	t, err := template.New("manifest").Option("missingkey=error").Parse(manifestTemplate)
	if err != nil {
		return err
	}
	return t.Execute(w, m)
}
