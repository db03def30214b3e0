package providers

import (
	"os/exec"
	"strings"
	"testing"
)

// Nothing of the controller outside the registry names a provider's
// implementation: the HAProxy provider is imported only by the registry,
// the reference adapter and the lab (and its own tests).
func TestOnlyTheRegistryAdapterAndLabImportTheHAProxyProvider(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "zerodrop.dev/zerodrop/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"zerodrop.dev/zerodrop/internal/providers":    true,
		"zerodrop.dev/zerodrop/cmd/zerodrop-adapter":  true,
		"zerodrop.dev/zerodrop/internal/lab":          true,
		"zerodrop.dev/zerodrop/internal/lab/haproxy":  true,
		"zerodrop.dev/zerodrop/internal/lab/syncer":   true,
		"zerodrop.dev/zerodrop/provider/providertest": true, // the kit's own HAProxy harness
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == "zerodrop.dev/zerodrop/provider/haproxy" && !allowed[fields[0]] {
				t.Errorf("%s imports the HAProxy provider: go through the registry (internal/providers) or an adapter", fields[0])
			}
		}
	}
}
