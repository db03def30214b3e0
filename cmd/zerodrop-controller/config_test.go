package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigAcceptedByAPIServer: everything `kubectl apply -k config/default`
// would create passes a real API server's validation (server-side dry run):
// CRDs, RBAC, the Deployment, Services and the webhook configuration.
func TestConfigAcceptedByAPIServer(t *testing.T) {
	requireSuite(t)
	kubectl := filepath.Join(suite.assets, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Skipf("kubectl not in %s", suite.assets)
	}
	kc := suite.env.ControlPlane.KubeCtl()
	kc.Path = kubectl
	root, _ := filepath.Abs("../..")
	stdout, stderr, err := kc.Run("apply", "--dry-run=server", "-k", filepath.Join(root, "config", "default"))
	out, _ := io.ReadAll(stdout)
	errOut, _ := io.ReadAll(stderr)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k config/default: %v\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/loadbalancers.zerodrop.dev",
		"clusterrole.rbac.authorization.k8s.io/zerodrop-controller",
		"deployment.apps/zerodrop-controller",
		"service/zerodrop-drain",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/zerodrop-controller",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run output lacks %s:\n%s", want, out)
		}
	}
}
