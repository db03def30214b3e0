// Command genprotocol writes docs/provider-protocol.openapi.yaml from the
// provider protocol's wire types (provider/adapter/wire.go). Run from the
// repository root: go run ./hack/genprotocol [-o docs/provider-protocol.openapi.yaml].
package main

import (
	"flag"
	"fmt"
	"os"

	"zerodrop.dev/zerodrop/internal/protocoldoc"
)

func main() {
	out := flag.String("o", "docs/provider-protocol.openapi.yaml", "file to write")
	flag.Parse()
	src, err := os.ReadFile(protocoldoc.WireFile)
	if err == nil {
		var doc []byte
		if doc, err = protocoldoc.OpenAPI(src); err == nil {
			err = os.WriteFile(*out, doc, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genprotocol:", err)
		os.Exit(1)
	}
}
