package checkbench

import (
	"bytes"
	"testing"

	"zerodrop.dev/zerodrop/internal/check"
	"zerodrop.dev/zerodrop/internal/check/load"
)

func TestGenerate_AllObjectsLoadWithoutProblems(t *testing.T) {
	var b bytes.Buffer
	if err := Generate(&b, 100); err != nil {
		t.Fatal(err)
	}
	res := load.Bytes("gen.yaml", b.Bytes())
	if len(res.Errors) > 0 || len(res.Warnings) > 0 || len(res.Skipped) > 0 {
		t.Fatalf("generated manifests are not clean: errors %v warnings %v skipped %v", res.Errors, res.Warnings, res.Skipped)
	}
	if len(res.Objects) != 100 {
		t.Errorf("objects = %d, want 100", len(res.Objects))
	}
}

// BenchmarkLoadAnalyze measures zerodrop check's work on 10,000 objects:
// parsing the YAML, decoding into k8s.io/api types and running every rule.
func BenchmarkLoadAnalyze(b *testing.B) {
	var buf bytes.Buffer
	if err := Generate(&buf, 10000); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		res := load.Bytes("gen.yaml", data)
		rep := check.Analyze(res.Objects, check.Options{})
		if len(res.Objects) != 10000 || rep == nil {
			b.Fatalf("loaded %d objects", len(res.Objects))
		}
	}
}

// BenchmarkLoad measures the loader alone.
func BenchmarkLoad(b *testing.B) {
	var buf bytes.Buffer
	if err := Generate(&buf, 10000); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		load.Bytes("gen.yaml", data)
	}
}
