// Command gendocs writes docs/checks.md, the reference of zerodrop check's
// rules, from the rules' data (internal/check). Run from the repository
// root: go run ./hack/gendocs [-o docs/checks.md].
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"zerodrop.dev/zerodrop/internal/check"
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
}
