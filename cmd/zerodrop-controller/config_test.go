package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerodrop.dev/zerodrop/internal/testenv"
)

// TestConfigAcceptedByAPIServer: everything `kubectl apply -k config/default`
// would create passes a real API server's validation (server-side dry run):
// CRDs, RBAC, the Deployment, Services and the webhook configuration.
func TestConfigAcceptedByAPIServer(t *testing.T) {
	requireSuite(t)
	kubectl := filepath.Join(suite.assets, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		testenv.Unavailable(t, "kubectl in %s", suite.assets)
	}
	kc := suite.env.ControlPlane.KubeCtl()
	kc.Path = kubectl
	root, _ := filepath.Abs("../..")
	stdout, stderr, err := kc.Run("kustomize", filepath.Join(root, "config", "default"))
	rendered, _ := io.ReadAll(stdout)
	if err != nil {
		msg, _ := io.ReadAll(stderr)
		t.Fatalf("kubectl kustomize config/default: %v\n%s", err, msg)
	}
	// The suite runs its own copy of the webhook configuration under the
	// same name (envtest points it at a URL); dry-run ours under another
	// name so that apply does not merge the two.
	docs := strings.Split(string(rendered), "\n---\n")
	for i, d := range docs {
		if strings.Contains(d, "kind: MutatingWebhookConfiguration") {
			docs[i] = strings.Replace(d, "  name: zerodrop-controller\n", "  name: zerodrop-controller-dryrun\n", 1)
		}
	}
	file := filepath.Join(t.TempDir(), "default.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = kc.Run("apply", "--dry-run=server", "-f", file)
	out, _ := io.ReadAll(stdout)
	errOut, _ := io.ReadAll(stderr)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server (config/default): %v\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/loadbalancers.zerodrop.dev",
		"clusterrole.rbac.authorization.k8s.io/zerodrop-controller",
		"deployment.apps/zerodrop-controller",
		"service/zerodrop-drain",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/zerodrop-controller-dryrun",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run output lacks %s:\n%s", want, out)
		}
	}
}
