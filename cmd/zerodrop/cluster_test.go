package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Scenario: `zerodrop lab run ...` with zerodrop-cluster next to zerodrop
// (a stand-in that prints its arguments and standard input and exits 3).
// Expectation: it runs with the same arguments and streams, and its exit
// code is zerodrop's.
func TestHandOverRunsZerodropClusterWithTheArguments(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"args: $*\"\nread line; echo \"stdin: $line\"\necho oops >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, clusterBinary), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetIn(strings.NewReader("hello\n"))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := handOver(cmd, filepath.Join(dir, "zerodrop"), []string{"lab", "run", "--html", "out dir", "--help"})
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("err = %v, want exit status 3", err)
	}
	if want := "args: lab run --html out dir --help\nstdin: hello\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if errOut.String() != "oops\n" {
		t.Errorf("stderr %q", errOut.String())
	}
}

// Scenario: zerodrop-cluster is neither next to zerodrop nor on PATH.
// Expectation: an error naming the command, the missing program and how to
// build it.
func TestHandOverWithoutZerodropClusterSaysWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := handOver(&cobra.Command{}, filepath.Join(t.TempDir(), "zerodrop"), []string{"verify", "http://x/"})
	if err == nil || !strings.Contains(err.Error(), "verify: zerodrop-cluster is not next to") || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("err = %v", err)
	}
}

// Scenario: the packages the zerodrop binary links. Expectation: none of
// the cluster commands' heavy dependencies, whose package initialisation
// would come back as start-up time on every `zerodrop check`.
func TestCheckBinaryLinksNoClusterCommandPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "zerodrop.dev/zerodrop/cmd/zerodrop").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	heavy := []string{
		"sigs.k8s.io/controller-runtime/",
		"github.com/prometheus/client_golang/",
		"k8s.io/client-go/kubernetes/typed/",
		"k8s.io/client-go/informers/",
		"zerodrop.dev/zerodrop/internal/verify",
		"zerodrop.dev/zerodrop/internal/lab",
		"zerodrop.dev/zerodrop/internal/controller",
		"zerodrop.dev/zerodrop/provider/",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, h := range heavy {
			if strings.HasPrefix(pkg, h) || pkg+"/" == h {
				t.Errorf("cmd/zerodrop links %s: move what needs it to cmd/zerodrop-cluster", pkg)
			}
		}
	}
}
