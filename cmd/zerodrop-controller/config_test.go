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

// TestConfigHardening: config/default ships the data path's bounds: a
// NetworkPolicy letting the drain port be reached from nodes (the kubelet)
// and labelled graceful clients, the webhook port from the API server and
// metrics from monitoring only; GOMEMLIMIT from each container's memory
// limit; and the RBAC that secure metrics need (H1, M13).
func TestConfigHardening(t *testing.T) {
	rendered := string(renderConfig(t))
	docs := map[string]map[string]any{}
	for _, d := range strings.Split(rendered, "\n---\n") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(d), &o); err != nil || o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		docs[fmt.Sprint(o["kind"], "/", md["name"])] = o
	}
	np, ok := docs["NetworkPolicy/zerodrop-serve"]
	if !ok {
		t.Fatalf("config/default has no NetworkPolicy zerodrop-serve")
	}
	ports := map[string]bool{}
	for _, rule := range np["spec"].(map[string]any)["ingress"].([]any) {
		for _, p := range rule.(map[string]any)["ports"].([]any) {
			ports[fmt.Sprint(p.(map[string]any)["port"])] = true
		}
	}
	for _, p := range []string{"8082", "9443", "8080"} {
		if !ports[p] {
			t.Errorf("NetworkPolicy zerodrop-serve does not admit port %s", p)
		}
	}
	if _, ok := docs["NetworkPolicy/zerodrop-controller"]; !ok {
		t.Errorf("config/default has no NetworkPolicy zerodrop-controller")
	}
	for _, dep := range []string{"zerodrop-controller", "zerodrop-serve"} {
		d, ok := docs["Deployment/"+dep]
		if !ok {
			t.Fatalf("no Deployment %s", dep)
		}
		ctr := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		found := false
		for _, e := range ctr["env"].([]any) {
			e := e.(map[string]any)
			if e["name"] == "GOMEMLIMIT" && strings.Contains(fmt.Sprint(e["valueFrom"]), "limits.memory") {
				found = true
			}
		}
		if !found {
			t.Errorf("Deployment %s: no GOMEMLIMIT from resourceFieldRef limits.memory", dep)
		}
	}
	for _, want := range []string{"tokenreviews", "subjectaccessreviews"} {
		if !strings.Contains(rendered, want) {
			t.Errorf("config/default grants no %s: secure metrics cannot authenticate callers", want)
		}
	}
	if _, ok := docs["ClusterRole/zerodrop-metrics-reader"]; !ok {
		t.Errorf("config/default has no ClusterRole zerodrop-metrics-reader for Prometheus")
	}
}
