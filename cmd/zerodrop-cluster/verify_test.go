package main

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerodrop.dev/zerodrop/internal/verify"
)

// runVerifyCmd runs `zerodrop verify args...` and returns stdout, stderr
// and the exit code main would use.
func runVerifyCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := newVerifyCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	code := 0
	var ee exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case err != nil:
		errb.WriteString(err.Error())
		code = 2
	}
	return out.String(), errb.String(), code
}

func TestVerifyCLIExitCodes(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(502) }))
	defer bad.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"healthy target passes", []string{"--rate", "200", "--duration", "200ms", ok.URL}, 0, "verdict: PASS: all 40 requests succeeded"},
		{"502s fail the verdict", []string{"--rate", "200", "--duration", "200ms", bad.URL}, 1, "http_502  40"},
		{"502s within --max-failures pass", []string{"--rate", "200", "--duration", "200ms", "--max-failures", "100%", bad.URL}, 0, "within the 100% allowed"},
		{"closed model", []string{"--connections", "2", "--duration", "200ms", ok.URL}, 0, "over 2 connections (closed model)"},
		{"count bound", []string{"--rate", "1000", "--requests", "7", "--duration", "1m", ok.URL}, 0, "all 7 requests succeeded"},
		{"rate and connections conflict", []string{"--rate", "5", "--connections", "2", ok.URL}, 2, "choose the open model"},
		{"bad URL", []string{"ftp://x"}, 2, `URL "ftp://x"`},
		{"bad threshold", []string{"--max-failures", "lots", ok.URL}, 2, `max failures "lots"`},
		{"set-image needs container=image", []string{"--set-image", "deployment/web", ok.URL}, 2, "container=image"},
		{"only deployments roll out", []string{"--restart", "statefulset/db", ok.URL}, 2, "only deployments"},
		{"stray argument", []string{ok.URL, "app=x"}, 2, "go with --set-image"},
		{"bad header", []string{"-H", "nocolon", ok.URL}, 2, `--header "nocolon"`},
		{"POST stream counted apart", []string{"--rate", "200", "--duration", "500ms", "--post-share", "0.2", ok.URL}, 0, "POST at 40/s"},
		{"POST share out of range", []string{"--post-share", "1", ok.URL}, 2, "--post-share 1: want a share"},
		{"POST stream needs the open model", []string{"--connections", "2", "--post-share", "0.1", ok.URL}, 2, "needs the open model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runVerifyCmd(t, append([]string{"--progress", "never"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d (want %d); output lacks %q:\n%s\n%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}

func TestVerifyCLIWritesJSONHTMLAndResults(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer srv.Close()
	dir := t.TempDir()
	htmlPath, resultsPath := filepath.Join(dir, "r.html"), filepath.Join(dir, "r.jsonl")
	out, errOut, code := runVerifyCmd(t, "--progress", "never", "--rate", "100", "--duration", "300ms", "-o", "json",
		"-H", "X-Probe: zerodrop", "--html", htmlPath, "--results", resultsPath, srv.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rep, err := verify.ReadJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 30 || rep.Config.Rate != 100 || !rep.Verdict.Pass {
		t.Fatalf("report: %d requests, rate %v, verdict %+v", rep.Requests, rep.Config.Rate, rep.Verdict)
	}
	if got.Get("X-Probe") != "zerodrop" {
		t.Errorf("header not sent: %v", got)
	}
	h, err := os.ReadFile(htmlPath)
	if err != nil || !bytes.Contains(h, []byte("<svg")) {
		t.Fatalf("HTML report: %v", err)
	}
	f, err := os.Open(resultsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		if !strings.Contains(sc.Text(), `"class":"ok"`) {
			t.Errorf("result line %q", sc.Text())
		}
	}
	if lines != 30 {
		t.Errorf("%d result lines, want 30", lines)
	}
}
