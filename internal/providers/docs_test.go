package providers

import (
	"os"
	"strings"
	"testing"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
)

// Builtin returns the capability matrix of the built-in providers as
// docs/providers.md shows it.
func builtinMatrix(t *testing.T) string {
	t.Helper()
	caps := map[string]provider.Capabilities{}
	for name, c := range BuiltinCapabilities() {
		caps[name] = c
	}
	return provider.CapabilityMatrix(caps)
}

// The capability matrix in docs/providers.md is the providers' own
// declaration, not a hand-kept copy.
func TestCapabilityMatrixInDocs(t *testing.T) {
	raw, err := os.ReadFile("../../docs/providers.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, MatrixBegin), strings.Index(doc, MatrixEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/providers.md: markers %q ... %q not found", MatrixBegin, MatrixEnd)
	}
	got := strings.TrimSpace(doc[i+len(MatrixBegin) : j])
	want := strings.TrimSpace(builtinMatrix(t))
	if got != want {
		t.Fatalf("docs/providers.md capability matrix is stale; run `make docs`; want:\n%s", want)
	}
}

func TestBuiltinCoversEveryInTreeProviderType(t *testing.T) {
	f := Builtin(Options{})
	if _, ok := f[zv1.ProviderHAProxy]; !ok {
		t.Fatal("no haproxy factory")
	}
	if _, ok := BuiltinCapabilities()[string(zv1.ProviderHAProxy)]; !ok {
		t.Fatal("no haproxy capabilities")
	}
}
