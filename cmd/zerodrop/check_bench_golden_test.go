package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	checkbench "zerodrop.dev/zerodrop/bench/check"
)

// benchGoldenObjects is the size of the bench generator's input whose
// outputs TestCheckBenchInput_SameOutput pins: 60 applications, enough for
// every combination of grace, preStop, minReadySeconds, probes, gates and
// Ingress class the generator varies together.
const benchGoldenObjects = 300

// TestCheckBenchInput_SameOutput pins the output of zerodrop check on the
// bench generator's input (block and flow style) in every format, with and
// without --explain, by SHA-256: performance work on the loader, the
// analysis and the reporters must not change one byte. The full outputs
// are too large to keep as golden files; on a mismatch, compare with the
// output of the previous commit (git stash; go run ./bench/check/gen -n 300
// | go run ./cmd/zerodrop check - ...). -update rewrites the digests.
func TestCheckBenchInput_SameOutput(t *testing.T) {
	dir := t.TempDir()
	var got strings.Builder
	for _, style := range []string{"block", "flow"} {
		var in bytes.Buffer
		generate := checkbench.Generate
		if style == "flow" {
			generate = checkbench.GenerateFlow
		}
		if err := generate(&in, benchGoldenObjects); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "objects-"+style+".yaml")
		if err := os.WriteFile(path, in.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"--color", "never"},
			{"--color", "never", "--explain"},
			{"-o", "compact"},
			{"-o", "json"},
			{"-o", "json", "--explain"},
			{"-o", "sarif"},
		} {
			var out, errOut bytes.Buffer
			code := runIO(append(append([]string{"check"}, args...), path), strings.NewReader(""), &out, &errOut)
			if errOut.Len() > 0 {
				t.Errorf("%s %v: stderr %s", style, args, errOut.String())
			}
			// The input's temporary path appears in the output: name it as
			// the generator's stdout would be.
			text := strings.ReplaceAll(out.String(), path, "objects-"+style+".yaml")
			fmt.Fprintf(&got, "%s %s exit %d %d bytes sha256 %x\n", style, strings.Join(args, " "), code, len(text), sha256.Sum256([]byte(text)))
		}
	}
	golden := filepath.Join("testdata", "bench-output.sha256")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/zerodrop -run BenchInput -update writes it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("output on the bench input changed:\n--- got:\n%s--- want:\n%s", got.String(), want)
	}
}
