package load

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// typedSeeds are the manifests the typed-decode tests start from: the
// loader's test data, the examples and the real-world corpus (CRDs, Helm
// output, kustomize builds).
func typedSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, g := range []string{"testdata/*.yaml", "testdata/*.json", "testdata/*/*/*.yaml",
		"../../../examples/*.yaml", "../../../examples/*/*.yaml", "../testdata/corpus/*/*.yaml"} {
		files, _ := filepath.Glob(g)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, data)
		}
	}
	return out
}

// sameResult fails unless the loader gives the same result for data with
// objects decoded straight into types and with every object decoded
// through JSON: objects (values, names, sources, lines), errors, warnings
// and skipped kinds.
func sameResult(t *testing.T, data []byte) {
	t.Helper()
	for _, c := range split("in.yaml", data) {
		typed, viaJSON := decodeChunkVia(c, false), decodeChunkVia(c, true)
		if len(typed.Objects) != len(viaJSON.Objects) {
			t.Fatalf("typed decode: %d objects, JSON: %d\ninput:\n%q", len(typed.Objects), len(viaJSON.Objects), c.data)
		}
		for i, a := range typed.Objects {
			b := viaJSON.Objects[i]
			if a.Ref != b.Ref || a.Source != b.Source {
				t.Fatalf("object %d: typed decode %v at %v, JSON %v at %v\ninput:\n%q", i, a.Ref, a.Source, b.Ref, b.Source, c.data)
			}
			if !reflect.DeepEqual(a.Typed, b.Typed) {
				t.Fatalf("object %d (%v): typed decode\n%#v\nJSON\n%#v\ninput:\n%q", i, a.Ref, a.Typed, b.Typed, c.data)
			}
			for _, p := range []string{"spec.template.spec.containers[0].lifecycle.preStop", "metadata.annotations", "spec.ports[1]"} {
				if la, lb := a.Line(p), b.Line(p); la != lb {
					t.Fatalf("object %d: line of %s: typed decode %d, JSON %d", i, p, la, lb)
				}
			}
		}
		if !reflect.DeepEqual(typed.Errors, viaJSON.Errors) || !reflect.DeepEqual(typed.Warnings, viaJSON.Warnings) ||
			!reflect.DeepEqual(typed.Skipped, viaJSON.Skipped) || typed.notObjects != viaJSON.notObjects {
			t.Fatalf("typed decode: errors %v warnings %v skipped %v\nJSON: errors %v warnings %v skipped %v\ninput:\n%q",
				typed.Errors, typed.Warnings, typed.Skipped, viaJSON.Errors, viaJSON.Warnings, viaJSON.Skipped, c.data)
		}
	}
}

// FuzzTypedMatchesJSON holds decodeTyped to the JSON path it replaces:
// whatever the input, the loader's result is the same either way.
func FuzzTypedMatchesJSON(f *testing.F) {
	// One seed a document, small ones only: mutations of a large file
	// mostly break its YAML, and locating a syntax error parses the
	// document many times, so they would slow the fuzzer to a crawl.
	// TestDecodeTyped_MatchesJSONOnSeeds covers the files whole.
	for _, s := range typedSeeds(f) {
		for _, c := range split("seed.yaml", s) {
			if len(c.data) <= 8<<10 {
				f.Add(c.data)
			}
		}
	}
	for _, s := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: a, name: b}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {labels: {a: b, a: c}}\n",
		"apiVersion: apps/v1\nkind: Deployment\nspec: {replicas: \"3\"}\n",
		"apiVersion: apps/v1\nkind: Deployment\nspec: {replicas: 3.0, minReadySeconds: 1e1}\n",
		"apiVersion: apps/v1\nkind: Deployment\nspec: {replicas: 0x10, paused: yes, revisionHistoryLimit: 99999999999}\n",
		"apiVersion: apps/v1\nkind: Deployment\nspec: {replicas: ~, strategy: null, selector: {matchLabels: null}}\n",
		"apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, resources: {limits: {cpu: 100m, memory: 1Gi}}, ports: [{containerPort: 80}]}]}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {creationTimestamp: null, deletionTimestamp: 2026-01-01T00:00:00Z}\n",
		"apiVersion: v1\nkind: Service\nspec: {ports: [{port: 80, targetPort: http}, {port: 81, targetPort: 8081}]}\n",
		"apiVersion: v1\nkind: Secret\ndata: {a: aGVsbG8=}\nstringData: {b: c}\n",
		"apiVersion: v1\nkind: Service\nspec: {unknownField: 1, ports: []}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {annotations: {a: 1, b: true, c: null}}\n",
		"apiVersion: v1\nkind: Service\nspec: {clusterIP: None, externalIPs: [1.2.3.4], allocateLoadBalancerNodePorts: True}\n",
		"apiVersion: policy/v1\nkind: PodDisruptionBudget\nspec: {maxUnavailable: 50%, minAvailable: 1}\n",
		"apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec: {minReplicas: 2, metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}]}\n",
		"apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec: {versions: [{name: v1, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]}\n",
		"apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: ConfigMap, data: {a: \"1\"}}, {apiVersion: v1, kind: Service, spec: {ports: [{port: -1}]}}]\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: a}\ndata: {<<: {a: b}}\n",
		"apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, command: [sh, -c, 'sleep 5'], env: [{name: X, value: 1}]}]}\n",
		"apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, env: [{name: X, valueFrom: {fieldRef: {fieldPath: a}}}]}], securityContext: {runAsUser: -1}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameResult(t, data)
	})
}

// TestDecodeTyped_TakesManifests: the typed decode is not silently
// declined on real manifests (it would be correct but slow): every object of
// a kind client-go knows in the seeds that loads without warnings is
// decoded straight into its type.
func TestDecodeTyped_TakesManifests(t *testing.T) {
	taken := 0
	for _, data := range typedSeeds(t) {
		for _, c := range split("in.yaml", data) {
			if c.json || c.err != nil {
				continue
			}
			res := decodeChunkVia(c, true)
			if len(res.Warnings) > 0 || len(res.Errors) > 0 {
				continue
			}
			top, err := v3Top(c.data)
			if err != nil || top == nil {
				continue
			}
			for _, o := range res.Objects {
				gvk := schema.FromAPIVersionAndKind(o.Ref.APIVersion, o.Ref.Kind)
				if !scheme.Scheme.Recognizes(gvk) || field(top, "items") != nil {
					continue
				}
				typed, _ := scheme.Scheme.New(gvk)
				if !decodeTyped(top, typed) {
					t.Errorf("%v (%s:%d): typed decode declined a clean object", o.Ref, o.Source.File, c.line)
				}
				taken++
			}
		}
	}
	if taken < 50 {
		t.Fatalf("only %d objects tried: the seeds are missing", taken)
	}
	t.Logf("%d objects decoded straight into types", taken)
}

func TestDecodeTyped_MatchesJSONOnSeeds(t *testing.T) {
	for _, data := range typedSeeds(t) {
		sameResult(t, data)
	}
}
