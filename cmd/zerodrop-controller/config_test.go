package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"zerodrop.dev/zerodrop/internal/testenv"
)

// TestConfigAcceptedByAPIServer: everything `kubectl apply -k config/default`
// would create passes a real API server's validation (server-side dry run):
// CRDs, RBAC, the Deployment, Services and the webhook configuration.
func TestConfigAcceptedByAPIServer(t *testing.T) {
	rendered := renderConfig(t)
	kc := suite.env.ControlPlane.KubeCtl()
	kc.Path = filepath.Join(suite.assets, "kubectl")
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
	stdout, stderr, err := kc.Run("apply", "--dry-run=server", "-f", file)
	out, _ := io.ReadAll(stdout)
	errOut, _ := io.ReadAll(stderr)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server (config/default): %v\n%s\n%s", err, out, errOut)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/loadbalancers.zerodrop.dev",
		"clusterrole.rbac.authorization.k8s.io/zerodrop-controller",
		"deployment.apps/zerodrop-controller",
		"deployment.apps/zerodrop-serve",
		"clusterrole.rbac.authorization.k8s.io/zerodrop-serve",
		"poddisruptionbudget.policy/zerodrop-serve",
		"service/zerodrop-drain",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/zerodrop-controller-dryrun",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run output lacks %s:\n%s", want, out)
		}
	}
}

// renderConfig returns `kubectl kustomize config/default`.
func renderConfig(t *testing.T) []byte {
	t.Helper()
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
	return rendered
}

// TestConfigRoles: config/default runs the reconcile role and the serve
// role as separate Deployments; the webhook and drain Services reach only
// the serve pods; the serve role's RBAC only reads.
func TestConfigRoles(t *testing.T) {
	objs := map[string]map[string]any{}
	for _, d := range strings.Split(string(renderConfig(t)), "\n---\n") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(d), &o); err != nil {
			t.Fatalf("rendered config: %v\n%s", err, d)
		}
		if o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		objs[fmt.Sprint(o["kind"], "/", md["name"])] = o
	}
	get := func(kind, name string) map[string]any {
		t.Helper()
		o, ok := objs[kind+"/"+name]
		if !ok {
			t.Fatalf("config/default has no %s %s", kind, name)
		}
		return o
	}
	dig := func(o any, path ...string) any {
		for _, p := range path {
			m, _ := o.(map[string]any)
			o = m[p]
		}
		return o
	}
	selects := func(selector, labels any) bool {
		sel, _ := selector.(map[string]any)
		lab, _ := labels.(map[string]any)
		for k, v := range sel {
			if lab[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	podLabels := func(dep string) any { return dig(get("Deployment", dep), "spec", "template", "metadata", "labels") }
	args := func(dep string) string {
		cs, _ := dig(get("Deployment", dep), "spec", "template", "spec", "containers").([]any)
		return fmt.Sprint(dig(cs[0], "args"))
	}
	if a := args("zerodrop-controller"); !strings.Contains(a, "--role=reconcile") || !strings.Contains(a, "--leader-elect") {
		t.Errorf("zerodrop-controller args %s: want --role=reconcile --leader-elect", a)
	}
	if a := args("zerodrop-serve"); !strings.Contains(a, "--role=serve") {
		t.Errorf("zerodrop-serve args %s: want --role=serve", a)
	}
	if n := dig(get("Deployment", "zerodrop-serve"), "spec", "replicas"); fmt.Sprint(n) == "1" {
		t.Errorf("zerodrop-serve has %v replica: a killed replica fails the hooks it holds, run 2+", n)
	}
	for _, svc := range []string{"zerodrop-webhook", "zerodrop-drain"} {
		sel := dig(get("Service", svc), "spec", "selector")
		if !selects(sel, podLabels("zerodrop-serve")) || selects(sel, podLabels("zerodrop-controller")) {
			t.Errorf("Service %s selects %v: want the serve pods only", svc, sel)
		}
	}
	for _, pair := range [][2]string{{"zerodrop-controller", "zerodrop-serve"}, {"zerodrop-serve", "zerodrop-controller"}} {
		if selects(dig(get("Deployment", pair[0]), "spec", "selector", "matchLabels"), podLabels(pair[1])) {
			t.Errorf("Deployment %s's selector matches %s's pods", pair[0], pair[1])
		}
	}
	if sa := dig(get("Deployment", "zerodrop-serve"), "spec", "template", "spec", "serviceAccountName"); sa != "zerodrop-serve" {
		t.Errorf("zerodrop-serve runs as %v, want its own ServiceAccount zerodrop-serve", sa)
	}
	for _, kind := range []string{"ClusterRole", "Role"} {
		rules, _ := dig(get(kind, "zerodrop-serve"), "rules").([]any)
		for _, r := range rules {
			for _, v := range dig(r, "verbs").([]any) {
				if v != "get" && v != "list" && v != "watch" {
					t.Errorf("%s zerodrop-serve grants %v on %v: the serve role only reads", kind, v, dig(r, "resources"))
				}
			}
		}
	}
}

// TestReconcileRoleLeastPrivilege (M7): the reconcile role's generated RBAC
// (config/rbac/role.yaml and, for the self-managed webhook certificate,
// config/rbac/certs/role.yaml, from the +kubebuilder:rbac markers) grants no verb
// the code does not use. Each entry is a verb that was granted once and is
// not called: a regression here widens what a compromised controller can
// do.
func TestReconcileRoleLeastPrivilege(t *testing.T) {
	var raw []byte
	for _, f := range []string{"../../config/rbac/role.yaml", "../../config/rbac/certs/role.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(append(raw, b...), "\n---\n"...)
	}
	type rule struct {
		Resources []string `json:"resources"`
		Verbs     []string `json:"verbs"`
	}
	granted := map[string]map[string]bool{} // resource -> verbs, over both roles
	for _, d := range strings.Split(string(raw), "\n---\n") {
		var role struct {
			Rules []rule `json:"rules"`
		}
		if err := yaml.Unmarshal([]byte(d), &role); err != nil {
			t.Fatalf("generated roles: %v", err)
		}
		for _, r := range role.Rules {
			for _, res := range r.Resources {
				if granted[res] == nil {
					granted[res] = map[string]bool{}
				}
				for _, v := range r.Verbs {
					granted[res][v] = true
				}
			}
		}
	}
	for res, unused := range map[string][]string{
		"mutatingwebhookconfigurations":   {"update", "create", "delete", "list", "watch"},
		"validatingwebhookconfigurations": {"update", "create", "delete", "list", "watch"},
		"targetbindings":                  {"patch", "create", "delete"},
		"targetbindings/status":           {"get", "update"},
		"loadbalancers/status":            {"get", "update"},
		"leases":                          {"list", "watch", "patch", "delete"},
	} {
		for _, v := range unused {
			if granted[res][v] {
				t.Errorf("generated roles grant %s on %s, which the controller never does", v, res)
			}
		}
	}
	for res, used := range map[string][]string{
		"mutatingwebhookconfigurations":   {"get", "patch"},
		"validatingwebhookconfigurations": {"get", "patch"},
		"targetbindings":                  {"get", "list", "watch", "update"},
		"targetbindings/status":           {"patch"},
		"loadbalancers/status":            {"patch"},
		"leases":                          {"get", "create", "update"},
		"namespaces":                      {"get", "list", "watch"},
	} {
		for _, v := range used {
			if !granted[res][v] {
				t.Errorf("generated roles lack %s on %s, which the controller needs", v, res)
			}
		}
	}
}
