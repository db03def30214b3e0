package checkbench

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"zerodrop.dev/zerodrop/internal/check"
	"zerodrop.dev/zerodrop/internal/check/load"
	"zerodrop.dev/zerodrop/internal/check/report"
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

// BenchmarkCheckText measures what `zerodrop check FILE` does on 10,000
// objects: load, analyse and write the text report.
func BenchmarkCheckText(b *testing.B) {
	var buf bytes.Buffer
	if err := Generate(&buf, 10000); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	rules := check.Rules()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		res := load.Bytes("gen.yaml", data)
		rep := check.Analyze(res.Objects, check.Options{})
		in := report.Input{Report: rep, Warnings: res.Warnings, Rules: rules, FailOn: check.SeverityError}
		if err := report.Write(io.Discard, report.FormatText, in, false); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGenerateFlow_SameObjectsAndFindingsAsBlock(t *testing.T) {
	var block, flow bytes.Buffer
	if err := Generate(&block, 200); err != nil {
		t.Fatal(err)
	}
	if err := GenerateFlow(&flow, 200); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(flow.Bytes(), []byte("\n")) >= bytes.Count(block.Bytes(), []byte("\n"))/2 {
		t.Errorf("flow style is not much shorter than block style: %d lines against %d", bytes.Count(flow.Bytes(), []byte("\n")), bytes.Count(block.Bytes(), []byte("\n")))
	}
	b, f := load.Bytes("gen.yaml", block.Bytes()), load.Bytes("gen.yaml", flow.Bytes())
	if len(f.Errors) > 0 || len(f.Warnings) > 0 || len(f.Objects) != 200 {
		t.Fatalf("flow style: %d objects, errors %v, warnings %v", len(f.Objects), f.Errors, f.Warnings)
	}
	for i := range b.Objects {
		if !reflect.DeepEqual(b.Objects[i].Typed, f.Objects[i].Typed) {
			t.Fatalf("object %d differs: %v, flow style %v", i, b.Objects[i].Ref, f.Objects[i].Ref)
		}
	}
	fb := check.Analyze(b.Objects, check.Options{}).Findings
	ff := check.Analyze(f.Objects, check.Options{}).Findings
	if len(fb) != len(ff) || len(fb) == 0 {
		t.Fatalf("%d findings on block style, %d on flow style", len(fb), len(ff))
	}
	for i := range fb {
		x, y := fb[i], ff[i]
		if x.RuleID != y.RuleID || x.Field != y.Field || x.Message != y.Message || x.Fix != y.Fix || (x.Source.Line > 0) != (y.Source.Line > 0) {
			t.Errorf("finding %d: %s %s %q line %d, flow style %s %s %q line %d", i, x.RuleID, x.Field, x.Message, x.Source.Line, y.RuleID, y.Field, y.Message, y.Source.Line)
		}
	}
}
