package charts

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "zerodrop-controller"
	namespace = "zerodrop-system"
)

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) key() string {
	meta, _ := o["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	name, _ := meta["name"].(string)
	kind, _ := o["kind"].(string)
	return kind + "/" + ns + "/" + name
}

// TestChartRendersConfig: `helm template` of the chart equals `kustomize
// build` of the matching config/ directory, object by object, for the
// default values and for each alternative config/ ships. The only
// differences allowed are the labels Helm adds to metadata (helm.sh/chart,
// app.kubernetes.io/managed-by, app.kubernetes.io/instance), the
// Namespace object, which Helm creates (--create-namespace) unless
// namespace.create is set, and runs of white space inside strings (the
// CEL expressions of the webhook guard: kustomize re-serialises folded
// YAML scalars with other line breaks).
func TestChartRendersConfig(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		values       map[string]any
		noNamespace  bool
	}{
		{name: "defaults", config: "default", noNamespace: true},
		{name: "namespace.create", config: "default", values: map[string]any{"namespace": map[string]any{"create": true}}},
		{name: "webhook.certMode=cert-manager", config: "external-certs", noNamespace: true,
			values: map[string]any{"webhook": map[string]any{"certMode": "cert-manager"}}},
		{name: "networkPolicy.enabled", config: "with-network-policy", noNamespace: true,
			values: map[string]any{"networkPolicy": map[string]any{"enabled": true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := kustomize(t, filepath.Join("..", "config", tc.config))
			if tc.noNamespace {
				delete(want, "Namespace//"+namespace)
			}
			got := render(t, tc.values)
			compareObjects(t, "chart ("+tc.name+")", got, "config/"+tc.config, want)
		})
	}
}

// TestChartLint runs `helm lint` (the SDK's lint rules: Chart.yaml,
// values, templates rendered and parsed, CRDs) with the default values
// and with each alternative: no warning, no error.
func TestChartLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"defaults":     nil,
		"cert-manager": {"webhook": map[string]any{"certMode": "cert-manager", "certManager": map[string]any{"issuerRef": map[string]any{"kind": "ClusterIssuer", "name": "ca"}}}},
		"everything": {
			"namespace":     map[string]any{"create": true},
			"networkPolicy": map[string]any{"enabled": true},
			"metrics": map[string]any{
				"serviceMonitor":   map[string]any{"enabled": true},
				"prometheusRule":   map[string]any{"enabled": true},
				"grafanaDashboard": map[string]any{"enabled": true},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := lint.RunAll(chartDir, vals, namespace)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
	// Lint can fail: a broken template is reported as an error.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "broken.yaml"), []byte("kind: {{ .Values.nope.nope }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l := lint.RunAll(dir, nil, namespace); l.HighestSeverity < support.ErrorSev {
		t.Errorf("helm lint of a broken template: highest severity %d, want an error", l.HighestSeverity)
	}
}

// TestChartValues: each value reaches the objects it is for.
func TestChartValues(t *testing.T) {
	t.Run("replicas per role", func(t *testing.T) {
		objs := render(t, map[string]any{"reconcile": map[string]any{"replicas": 3}, "serve": map[string]any{"replicas": 5}})
		if got := field(t, objs, "Deployment/"+namespace+"/zerodrop-controller", "spec", "replicas"); got != float64(3) {
			t.Errorf("reconcile replicas = %v, want 3", got)
		}
		if got := field(t, objs, "Deployment/"+namespace+"/zerodrop-serve", "spec", "replicas"); got != float64(5) {
			t.Errorf("serve replicas = %v, want 5", got)
		}
	})
	t.Run("failurePolicy and namespaceSelector reach the pod webhook only", func(t *testing.T) {
		sel := map[string]any{"matchExpressions": []any{map[string]any{"key": "team", "operator": "In", "values": []any{"shop"}}}}
		objs := render(t, map[string]any{"webhook": map[string]any{"failurePolicy": "Fail", "namespaceSelector": sel}})
		pod := firstWebhook(t, objs, "MutatingWebhookConfiguration//zerodrop-controller")
		if pod["failurePolicy"] != "Fail" {
			t.Errorf("pod webhook failurePolicy = %v, want Fail", pod["failurePolicy"])
		}
		if !reflect.DeepEqual(pod["namespaceSelector"], sel) {
			t.Errorf("pod webhook namespaceSelector = %v, want %v", pod["namespaceSelector"], sel)
		}
		if v := firstWebhook(t, objs, "ValidatingWebhookConfiguration//zerodrop-controller"); v["failurePolicy"] != "Fail" {
			t.Errorf("binding validator failurePolicy = %v, want Fail (always)", v["failurePolicy"])
		}
		if _, err := renderErr(map[string]any{"webhook": map[string]any{"failurePolicy": "Sometimes"}}); err == nil || !strings.Contains(err.Error(), "webhook/failurePolicy") {
			t.Errorf("failurePolicy Sometimes: error %v, want one naming webhook/failurePolicy", err)
		}
	})
	t.Run("cert-manager mode: a Certificate, no self-managed certificate flow", func(t *testing.T) {
		objs := render(t, map[string]any{"webhook": map[string]any{"certMode": "cert-manager",
			"certManager": map[string]any{"issuerRef": map[string]any{"kind": "ClusterIssuer", "name": "corp-ca"}}}})
		cert := objs["Certificate/"+namespace+"/zerodrop-webhook"]
		if cert == nil {
			t.Fatal("no Certificate zerodrop-webhook")
		}
		if got := field(t, objs, "Certificate/"+namespace+"/zerodrop-webhook", "spec", "issuerRef"); !reflect.DeepEqual(got, map[string]any{"kind": "ClusterIssuer", "name": "corp-ca"}) {
			t.Errorf("issuerRef = %v, want the ClusterIssuer corp-ca", got)
		}
		if objs["Issuer/"+namespace+"/zerodrop-selfsigned"] != nil {
			t.Error("a self-signed Issuer is rendered although issuerRef names one")
		}
		for _, k := range []string{"ClusterRole//zerodrop-certs", "ClusterRoleBinding//zerodrop-certs", "Role/" + namespace + "/zerodrop-certs", "RoleBinding/" + namespace + "/zerodrop-certs"} {
			if objs[k] != nil {
				t.Errorf("%s rendered in cert-manager mode: the controller needs no certificate rights", k)
			}
		}
		for _, d := range []string{"zerodrop-controller", "zerodrop-serve"} {
			if args := containerArgs(t, objs, d); !contains(args, "--webhook-cert-mode=external") {
				t.Errorf("%s args %v lack --webhook-cert-mode=external", d, args)
			}
		}
		for _, k := range []string{"MutatingWebhookConfiguration//zerodrop-controller", "ValidatingWebhookConfiguration//zerodrop-controller"} {
			if got := field(t, objs, k, "metadata", "annotations", "cert-manager.io/inject-ca-from"); got != namespace+"/zerodrop-webhook" {
				t.Errorf("%s inject-ca-from = %v", k, got)
			}
		}
		if _, err := renderErr(map[string]any{"webhook": map[string]any{"certMode": "vault"}}); err == nil || !strings.Contains(err.Error(), "webhook/certMode") {
			t.Errorf("certMode vault: error %v, want one naming webhook/certMode", err)
		}
	})
	t.Run("image, resources, priorityClass", func(t *testing.T) {
		res := map[string]any{"requests": map[string]any{"cpu": "200m", "memory": "128Mi"}, "limits": map[string]any{"memory": "512Mi"}}
		objs := render(t, map[string]any{
			"image":         map[string]any{"repository": "ghcr.io/acme/zerodrop", "tag": "v1.2.3", "pullPolicy": "IfNotPresent"},
			"serve":         map[string]any{"resources": res},
			"priorityClass": map[string]any{"create": false, "name": "corp-critical"},
		})
		for _, d := range []string{"zerodrop-controller", "zerodrop-serve"} {
			c := container(t, objs, d)
			if c["image"] != "ghcr.io/acme/zerodrop:v1.2.3" || c["imagePullPolicy"] != "IfNotPresent" {
				t.Errorf("%s image %v pullPolicy %v", d, c["image"], c["imagePullPolicy"])
			}
		}
		if got := container(t, objs, "zerodrop-serve")["resources"]; !reflect.DeepEqual(got, res) {
			t.Errorf("serve resources = %v, want %v", got, res)
		}
		if objs["PriorityClass//zerodrop-data-path"] != nil || objs["PriorityClass//corp-critical"] != nil {
			t.Error("a PriorityClass is rendered with priorityClass.create false")
		}
		if got := field(t, objs, "Deployment/"+namespace+"/zerodrop-serve", "spec", "template", "spec", "priorityClassName"); got != "corp-critical" {
			t.Errorf("serve priorityClassName = %v, want corp-critical", got)
		}
		digest := "sha256:" + strings.Repeat("ab", 32)
		objs = render(t, map[string]any{"image": map[string]any{"digest": digest}})
		if got := container(t, objs, "zerodrop-serve")["image"]; got != "zerodrop-controller@"+digest {
			t.Errorf("image by digest = %v", got)
		}
	})
	t.Run("values.schema.json rejects typos and bad values", func(t *testing.T) {
		for _, tc := range []struct {
			vals map[string]any
			want string
		}{
			{map[string]any{"reconcile": map[string]any{"replica": 3}}, "replica"},
			{map[string]any{"serve": map[string]any{"replicas": "two"}}, "replicas"},
			{map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "pullPolicy"},
			{map[string]any{"reconcile": map[string]any{"providerPollInterval": "fast"}}, "providerPollInterval"},
		} {
			if _, err := renderErr(tc.vals); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("values %v: error %v, want one naming %s", tc.vals, err, tc.want)
			}
		}
	})
	t.Run("monitoring toggles", func(t *testing.T) {
		objs := render(t, nil)
		for k := range objs {
			if strings.HasPrefix(k, "ServiceMonitor/") || strings.HasPrefix(k, "PrometheusRule/") || strings.HasPrefix(k, "ConfigMap/") {
				t.Errorf("%s rendered by default", k)
			}
		}
		objs = render(t, map[string]any{"metrics": map[string]any{
			"serviceMonitor":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
			"prometheusRule":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
			"grafanaDashboard": map[string]any{"enabled": true},
		}})
		if got := field(t, objs, "ServiceMonitor/"+namespace+"/zerodrop-controller", "metadata", "labels", "release"); got != "kps" {
			t.Errorf("ServiceMonitor label release = %v, want kps", got)
		}
		// The alerts group by the series' own namespace and instance
		// labels, which the operator's target labels would rename.
		if eps, _ := field(t, objs, "ServiceMonitor/"+namespace+"/zerodrop-controller", "spec", "endpoints").([]any); len(eps) != 1 || eps[0].(map[string]any)["honorLabels"] != true {
			t.Errorf("ServiceMonitor endpoints %v, want one with honorLabels: true", eps)
		}
		// The PrometheusRule carries exactly the groups of the plain rules
		// file.
		var plain map[string]any
		data, err := os.ReadFile("../config/monitoring/zerodrop.rules.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &plain); err != nil {
			t.Fatal(err)
		}
		if got := field(t, objs, "PrometheusRule/"+namespace+"/zerodrop-controller", "spec"); !reflect.DeepEqual(got, plain) {
			t.Errorf("PrometheusRule spec differs from config/monitoring/zerodrop.rules.yaml:\n%v", diff("", got, plain))
		}
		dash, err := os.ReadFile("../config/monitoring/dashboard.json")
		if err != nil {
			t.Fatal(err)
		}
		if got := field(t, objs, "ConfigMap/"+namespace+"/zerodrop-dashboard", "data", "zerodrop.json"); got != strings.TrimSpace(string(dash)) {
			t.Error("the dashboard ConfigMap does not hold config/monitoring/dashboard.json")
		}
	})
}

// TestChartCopiesAreCurrent: the chart's copies of the CRDs, the alerts and
// the dashboard are the files under config/, and docs/install.md's values
// table is values.yaml's.
func TestChartCopiesAreCurrent(t *testing.T) {
	const regenerate = "run `go run ./hack/genchart` and commit the result"
	pairs := map[string]string{
		"../config/monitoring/zerodrop.rules.yaml": chartDir + "/files/zerodrop.rules.yaml",
		"../config/monitoring/dashboard.json":      chartDir + "/files/dashboard.json",
	}
	crds, _ := filepath.Glob("../config/crd/bases/*.yaml")
	copies, _ := filepath.Glob(chartDir + "/crds/*.yaml")
	if len(crds) == 0 || len(crds) != len(copies) {
		t.Errorf("%d CRDs in config/crd/bases, %d in the chart: %s", len(crds), len(copies), regenerate)
	}
	for _, f := range crds {
		pairs[f] = filepath.Join(chartDir, "crds", filepath.Base(f))
	}
	for from, to := range pairs {
		a, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(to)
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s is not a copy of %s: %s", to, from, regenerate)
		}
	}
	values, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	table, err := ValuesTable(values)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReplaceTable(doc, table)
	if err != nil {
		t.Fatalf("docs/install.md: %v", err)
	}
	if !bytes.Equal(doc, want) {
		t.Errorf("docs/install.md's values table is stale: %s", regenerate)
	}
}

func TestValuesNeedDescriptions(t *testing.T) {
	_, err := Values([]byte("a:\n  # -- documented\n  b: 1\n  c: 2\n"))
	if err == nil || !strings.Contains(err.Error(), "line 4: a.c has no") {
		t.Errorf("undocumented value: error %v, want one naming line 4 and a.c", err)
	}
	vals, err := Values([]byte("# -- the x\n# more\nx: {y: 1}\n"))
	if err != nil || len(vals) != 1 || vals[0].Key != "x" || vals[0].Default != `{"y":1}` || vals[0].Description != "the x more" {
		t.Errorf("Values = %+v, %v", vals, err)
	}
	if _, err := Values([]byte("a: [")); err == nil {
		t.Error("broken YAML: no error")
	}
}

func FuzzValues(f *testing.F) {
	f.Add([]byte("a:\n  # -- documented\n  b: 1\n"))
	f.Add([]byte("# -- x\nx: [1, 2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ValuesTable(data) // must not panic
	})
}

// render is `helm template --namespace zerodrop-system --include-crds` of
// the chart with vals, by the SDK: chart loader, values coalesced with the
// chart's, engine render, CRDs added.
func render(t *testing.T, vals map[string]any) map[string]object {
	t.Helper()
	objs, err := renderErr(vals)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderErr(vals map[string]any) (map[string]object, error) {
	stream, err := Render(chartDir, "zerodrop", namespace, vals)
	if err != nil {
		return nil, err
	}
	return parseObjects(stream)
}

// kustomize is `kustomize build dir` (the kustomize Go API, as
// internal/check/load uses it).
func kustomize(t *testing.T, dir string) map[string]object {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := parseObjects(string(out))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return objs
}

// helmLabels are the labels the chart adds to every object's metadata.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"}

// parseObjects splits a YAML stream into objects keyed Kind/namespace/name,
// with the chart's own metadata labels removed (and an emptied labels map
// with them).
func parseObjects(stream string) (map[string]object, error) {
	objs := map[string]object{}
	for _, doc := range splitDocs(stream) {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			return nil, fmt.Errorf("%v in\n%s", err, doc)
		}
		if len(o) == 0 {
			continue
		}
		if meta, ok := o["metadata"].(map[string]any); ok {
			if labels, ok := meta["labels"].(map[string]any); ok {
				for _, l := range helmLabels {
					delete(labels, l)
				}
				if len(labels) == 0 {
					delete(meta, "labels")
				}
			}
		}
		if _, dup := objs[o.key()]; dup {
			return nil, fmt.Errorf("%s rendered twice", o.key())
		}
		objs[o.key()] = o
	}
	return objs, nil
}

func splitDocs(stream string) []string {
	var docs []string
	var cur []string
	for _, line := range strings.Split(stream, "\n") {
		if strings.TrimRight(line, " ") == "---" {
			docs = append(docs, strings.Join(cur, "\n"))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return append(docs, strings.Join(cur, "\n"))
}

func compareObjects(t *testing.T, gotName string, got map[string]object, wantName string, want map[string]object) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, w := got[k], want[k]
		switch {
		case g == nil:
			t.Errorf("%s lacks %s, which %s has", gotName, k, wantName)
		case w == nil:
			t.Errorf("%s has %s, which %s lacks", gotName, k, wantName)
		case len(diff("", map[string]any(g), map[string]any(w))) > 0:
			t.Errorf("%s differs from %s:\n%s", k, wantName, strings.Join(diff("", map[string]any(g), map[string]any(w)), "\n"))
		}
	}
}

// diff lists the paths where got and want differ.
func diff(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		var out []string
		keys := map[string]bool{}
		for k := range g {
			keys[k] = true
		}
		for k := range w {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			out = append(out, diff(path+"."+k, g[k], w[k])...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		var out []string
		for i := range w {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return out
	}
	if equalValues(got, want) {
		return nil
	}
	return []string{fmt.Sprintf("  %s: chart %v, config %v", path, got, want)}
}

// equalValues compares two scalars, strings up to runs of white space.
func equalValues(got, want any) bool {
	g, gok := got.(string)
	w, wok := want.(string)
	if gok && wok {
		return strings.Join(strings.Fields(g), " ") == strings.Join(strings.Fields(w), " ")
	}
	return reflect.DeepEqual(got, want)
}

func field(t *testing.T, objs map[string]object, key string, path ...string) any {
	t.Helper()
	o, ok := objs[key]
	if !ok {
		t.Fatalf("no %s rendered", key)
	}
	var cur any = map[string]any(o)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func firstWebhook(t *testing.T, objs map[string]object, key string) map[string]any {
	t.Helper()
	hooks, _ := field(t, objs, key, "webhooks").([]any)
	if len(hooks) == 0 {
		t.Fatalf("%s has no webhooks", key)
	}
	return hooks[0].(map[string]any)
}

func container(t *testing.T, objs map[string]object, deployment string) map[string]any {
	t.Helper()
	cs, _ := field(t, objs, "Deployment/"+namespace+"/"+deployment, "spec", "template", "spec", "containers").([]any)
	if len(cs) == 0 {
		t.Fatalf("Deployment %s has no containers", deployment)
	}
	return cs[0].(map[string]any)
}

func containerArgs(t *testing.T, objs map[string]object, deployment string) []string {
	t.Helper()
	var out []string
	args, _ := container(t, objs, deployment)["args"].([]any)
	for _, a := range args {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
