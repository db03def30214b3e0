// Command gendocs writes docs/checks.md, the reference of zerodrop check's
// rules, from the rules' data (internal/check), and the capability matrix
// of docs/providers.md from the built-in providers' Capabilities. Run from
// the repository root: go run ./hack/gendocs [-o docs/checks.md].
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"zerodrop.dev/zerodrop/internal/check"
	"zerodrop.dev/zerodrop/internal/providers"
	"zerodrop.dev/zerodrop/provider"
)

func main() {
	out := flag.String("o", "docs/checks.md", "file to write")
	flag.Parse()
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, []byte(check.RulesMarkdown()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
	if err := matrix("docs/providers.md"); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

// matrix replaces the capability matrix between its markers in file.
func matrix(file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	doc := string(raw)
	i, j := strings.Index(doc, providers.MatrixBegin), strings.Index(doc, providers.MatrixEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: capability matrix markers not found", file)
	}
	doc = doc[:i+len(providers.MatrixBegin)] + "\n" + provider.CapabilityMatrix(providers.BuiltinCapabilities()) + doc[j:]
	return os.WriteFile(file, []byte(doc), 0o644)
}
