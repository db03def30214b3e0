package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// krewPlugin is the part of krew's v1alpha2 Plugin that krew validates
// (pkg/index/validation): name, version, platforms with a selector, uri,
// sha256 and bin, files to copy.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
		} `json:"platforms"`
	} `json:"spec"`
}

// The rendered manifest is a krew Plugin whose every platform names its
// archive's URL and real checksum and installs kubectl-zerodrop.
func TestManifestFromArchives(t *testing.T) {
	dir := t.TempDir()
	sums := map[string]string{}
	var files []string
	for _, p := range []string{"linux_amd64", "linux_arm64"} {
		name := "zerodrop_v1.2.3_" + p + ".tar.gz"
		data := []byte("archive " + p)
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		sums[name] = hex.EncodeToString(s[:])
		files = append(files, f)
	}
	var out bytes.Buffer
	if err := run(append([]string{"-version", "v1.2.3", "-url", "https://dl.example.com/v1.2.3/{{.Archive}}"}, files...), &out); err != nil {
		t.Fatal(err)
	}
	var p krewPlugin
	if err := yaml.UnmarshalStrict(out.Bytes(), &p); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" || p.Metadata.Name != "zerodrop" || p.Spec.Version != "v1.2.3" || p.Spec.ShortDescription == "" {
		t.Errorf("manifest head %+v", p)
	}
	if len(p.Spec.Platforms) != 2 {
		t.Fatalf("%d platforms, want 2", len(p.Spec.Platforms))
	}
	for _, pl := range p.Spec.Platforms {
		name := filepath.Base(pl.URI)
		if pl.SHA256 != sums[name] {
			t.Errorf("%s: sha256 %s, want %s", name, pl.SHA256, sums[name])
		}
		if !strings.HasPrefix(pl.URI, "https://dl.example.com/v1.2.3/") || pl.Bin != "kubectl-zerodrop" {
			t.Errorf("platform %+v", pl)
		}
		want := "zerodrop_v1.2.3_" + pl.Selector.MatchLabels["os"] + "_" + pl.Selector.MatchLabels["arch"] + ".tar.gz"
		if name != want {
			t.Errorf("selector %v installs %s", pl.Selector.MatchLabels, name)
		}
		if len(pl.Files) == 0 || pl.Files[0].From != "kubectl-zerodrop" {
			t.Errorf("files %+v do not copy kubectl-zerodrop", pl.Files)
		}
	}
}

func TestManifestRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "zerodrop_v1.0.0_linux_amd64.tar.gz")
	other := filepath.Join(dir, "zerodrop_v0.9.0_linux_arm64.tar.gz")
	odd := filepath.Join(dir, "zerodrop-linux.tgz")
	for _, f := range []string{good, other, odd} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	url := "https://dl.example.com/{{.Archive}}"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-version", "1.0.0", "-url", url, good}, "want vX.Y.Z"},
		{[]string{"-version", "v1.0.0", "-url", url}, "no archives"},
		{[]string{"-version", "v1.0.0", "-url", url, good, other}, "not v1.0.0"},
		{[]string{"-version", "v1.0.0", "-url", url, good, good}, "two archives for linux/amd64"},
		{[]string{"-version", "v1.0.0", "-url", url, odd}, "not a release archive name"},
		{[]string{"-version", "v1.0.0", "-url", "http://dl.example.com/{{.Archive}}", good}, "want an https URL"},
		{[]string{"-version", "v1.0.0", "-url", "https://dl.example.com/{{.Nope}}", good}, "-url"},
	} {
		err := run(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
