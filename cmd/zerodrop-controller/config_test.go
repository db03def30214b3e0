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
	out := dryRunApply(t, kc, rendered, "config/default")
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/loadbalancers.zerodrop.dev",
		"clusterrole.rbac.authorization.k8s.io/zerodrop-controller",
		"deployment.apps/zerodrop-controller",
		"deployment.apps/zerodrop-serve",
		"clusterrole.rbac.authorization.k8s.io/zerodrop-serve",
		"poddisruptionbudget.policy/zerodrop-serve",
		"service/zerodrop-drain",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/zerodrop-controller-dryrun",
		"validatingwebhookconfiguration.admissionregistration.k8s.io/zerodrop-controller-dryrun",
		"priorityclass.scheduling.k8s.io/zerodrop-data-path",
		"clusterrole.rbac.authorization.k8s.io/zerodrop-certs",
		"validatingadmissionpolicy.admissionregistration.k8s.io/zerodrop-webhook-cabundle-only",
		"validatingadmissionpolicybinding.admissionregistration.k8s.io/zerodrop-webhook-cabundle-only",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run output lacks %s:\n%s", want, out)
		}
	}
}

// dryRunApply runs `kubectl apply --dry-run=server` on rendered manifests
// and returns its output. The suite runs its own copies of the webhook
// configurations under the same name (envtest points them at a URL);
// ours are dry-run under another name so that apply does not merge them.
// Objects of kinds in skip (CRDs the API server lacks) are left out.
func dryRunApply(t *testing.T, kc interface {
	Run(args ...string) (io.Reader, io.Reader, error)
}, rendered []byte, what string, skip ...string) []byte {
	t.Helper()
	var docs []string
	for _, d := range strings.Split(string(rendered), "\n---\n") {
		skipped := false
		for _, k := range skip {
			skipped = skipped || strings.Contains(d, "\nkind: "+k+"\n")
		}
		if skipped {
			continue
		}
		if strings.Contains(d, "kind: MutatingWebhookConfiguration") || strings.Contains(d, "kind: ValidatingWebhookConfiguration") {
			d = strings.Replace(d, "  name: zerodrop-controller\n", "  name: zerodrop-controller-dryrun\n", 1)
		}
		docs = append(docs, d)
	}
	file := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := kc.Run("apply", "--dry-run=server", "-f", file)
	out, _ := io.ReadAll(stdout)
	errOut, _ := io.ReadAll(stderr)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server (%s): %v\n%s\n%s", what, err, out, errOut)
	}
	return out
}

// renderConfig returns `kubectl kustomize config/default`.
func renderConfig(t *testing.T) []byte {
	t.Helper()
	return renderConfigDir(t, "default")
}

// renderConfigDir returns `kubectl kustomize config/<dir>`.
func renderConfigDir(t *testing.T, dir string) []byte {
	t.Helper()
	requireSuite(t)
	kubectl := filepath.Join(suite.assets, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		testenv.Unavailable(t, "kubectl in %s", suite.assets)
	}
	kc := suite.env.ControlPlane.KubeCtl()
	kc.Path = kubectl
	root, _ := filepath.Abs("../..")
	stdout, stderr, err := kc.Run("kustomize", filepath.Join(root, "config", dir))
	rendered, _ := io.ReadAll(stdout)
	if err != nil {
		msg, _ := io.ReadAll(stderr)
		t.Fatalf("kubectl kustomize config/%s: %v\n%s", dir, err, msg)
	}
	return rendered
}

// objectsOf indexes rendered manifests by "Kind/name".
func objectsOf(t *testing.T, rendered []byte) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for _, d := range strings.Split(string(rendered), "\n---\n") {
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
	return objs
}

// dig walks nested maps.
func dig(o any, path ...string) any {
	for _, p := range path {
		m, _ := o.(map[string]any)
		o = m[p]
	}
	return o
}

// TestConfigRoles: config/default runs the reconcile role and the serve
// role as separate Deployments; the webhook and drain Services reach only
// the serve pods; the serve role's RBAC only reads.
func TestConfigRoles(t *testing.T) {
	objs := objectsOf(t, renderConfig(t))
	get := func(kind, name string) map[string]any {
		t.Helper()
		o, ok := objs[kind+"/"+name]
		if !ok {
			t.Fatalf("config/default has no %s %s", kind, name)
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

// TestConfigPodHardening (L8): the namespace enforces Pod Security
// "restricted"; the serve replicas (the data path) have a priority class
// that exists and is allowed outside kube-system, and are spread over nodes
// by a hard constraint.
func TestConfigPodHardening(t *testing.T) {
	objs := objectsOf(t, renderConfig(t))
	ns := objs["Namespace/zerodrop-system"]
	if v := dig(ns, "metadata", "labels", "pod-security.kubernetes.io/enforce"); v != "restricted" {
		t.Errorf("namespace zerodrop-system enforces Pod Security %v, want restricted", v)
	}
	serve := dig(objs["Deployment/zerodrop-serve"], "spec", "template", "spec")
	pc, _ := dig(serve, "priorityClassName").(string)
	if pc == "" || strings.HasPrefix(pc, "system-") {
		t.Errorf("zerodrop-serve priorityClassName %q: want zerodrop's own class (system-* classes are for kube-system)", pc)
	} else if v, ok := dig(objs["PriorityClass/"+pc], "value").(float64); !ok || v <= 0 || v > 1e9 {
		t.Errorf("PriorityClass %s value %v: want one config/default defines, in 1..1000000000", pc, dig(objs["PriorityClass/"+pc], "value"))
	}
	spread := false
	tscs, _ := dig(serve, "topologySpreadConstraints").([]any)
	for _, c := range tscs {
		spread = spread || dig(c, "topologyKey") == "kubernetes.io/hostname" && dig(c, "whenUnsatisfiable") == "DoNotSchedule"
	}
	if dig(serve, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution") != nil {
		spread = true
	}
	if !spread {
		t.Errorf("zerodrop-serve replicas may share a node: want a DoNotSchedule spread over kubernetes.io/hostname")
	}
}

// TestConfigExternalCerts (M7): config/external-certs (config/default with
// the external-certs component) leaves the controller no right on Secrets
// (but reading the HAProxy client certificate) or webhook configurations, runs both roles with
// --webhook-cert-mode=external, and is accepted by the API server (the
// cert-manager objects aside: envtest has no cert-manager CRDs).
func TestConfigExternalCerts(t *testing.T) {
	rendered := renderConfigDir(t, "external-certs")
	objs := objectsOf(t, rendered)
	for key, o := range objs {
		kind := fmt.Sprint(o["kind"])
		if kind != "ClusterRole" && kind != "Role" {
			continue
		}
		rules, _ := dig(o, "rules").([]any)
		for _, r := range rules {
			resources, _ := dig(r, "resources").([]any) // nil for nonResourceURLs
			for _, res := range resources {
				if res == "secrets" && fmt.Sprint(dig(r, "resourceNames")) == "[zerodrop-haproxy-client]" {
					continue // the HAProxy client certificate (not the webhook's)
				}
				if res == "secrets" || strings.HasSuffix(fmt.Sprint(res), "webhookconfigurations") {
					t.Errorf("%s grants %v on %v in external certificate mode", key, dig(r, "verbs"), res)
				}
			}
		}
	}
	for _, dep := range []string{"zerodrop-controller", "zerodrop-serve"} {
		cs, _ := dig(objs["Deployment/"+dep], "spec", "template", "spec", "containers").([]any)
		if a := fmt.Sprint(dig(cs[0], "args")); !strings.Contains(a, "--webhook-cert-mode=external") {
			t.Errorf("%s args %s: want --webhook-cert-mode=external", dep, a)
		}
	}
	for _, k := range []string{"MutatingWebhookConfiguration/zerodrop-controller", "ValidatingWebhookConfiguration/zerodrop-controller"} {
		if dig(objs[k], "metadata", "annotations", "cert-manager.io/inject-ca-from") == nil {
			t.Errorf("%s has no cert-manager.io/inject-ca-from annotation", k)
		}
	}
	kc := suite.env.ControlPlane.KubeCtl()
	kc.Path = filepath.Join(suite.assets, "kubectl")
	dryRunApply(t, kc, rendered, "config/external-certs", "Certificate", "Issuer")
}

// TestConfigHardening: config/with-network-policy (config/default plus the
// network-policy component, whose CIDRs a user sets) ships the data path's
// bounds: a NetworkPolicy letting the drain port be reached from nodes (the kubelet)
// and labelled graceful clients, the webhook port from the API server and
// metrics from monitoring only; GOMEMLIMIT from each container's memory
// limit; and the RBAC that secure metrics need (H1, M13).
func TestConfigHardening(t *testing.T) {
	if objs := objectsOf(t, renderConfig(t)); objs["NetworkPolicy/zerodrop-serve"] != nil || objs["NetworkPolicy/zerodrop-controller"] != nil {
		t.Errorf("config/default has NetworkPolicies: their CIDRs are placeholders, so they belong in config/with-network-policy only")
	}
	rendered := string(renderConfigDir(t, "with-network-policy"))
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
