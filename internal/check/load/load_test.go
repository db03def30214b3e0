package load

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"zerodrop.dev/zerodrop/internal/check"
)

func refs(objs []*check.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Ref.String())
	}
	return out
}

func errorsText(errs []check.InputError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Error() + "\n")
	}
	return b.String()
}

func TestLoad_MultiDocumentYAML_TypedObjectsWithLines(t *testing.T) {
	res := Load([]string{"testdata/web.yaml"}, Options{})
	if len(res.Errors) > 0 || len(res.Warnings) > 0 {
		t.Fatalf("unexpected problems:\n%s%s", errorsText(res.Errors), errorsText(res.Warnings))
	}
	if got, want := strings.Join(refs(res.Objects), ", "), "Deployment shop/web, Service shop/web"; got != want {
		t.Fatalf("objects = %s, want %s", got, want)
	}
	dep, ok := res.Objects[0].Typed.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("Deployment decoded as %T, want *appsv1.Deployment", res.Objects[0].Typed)
	}
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 45 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 45", g)
	}
	if _, ok := res.Objects[1].Typed.(*corev1.Service); !ok {
		t.Errorf("Service decoded as %T", res.Objects[1].Typed)
	}
	// The comment line comes first: the Deployment starts on line 2.
	if s := res.Objects[0].Source; s.File != "testdata/web.yaml" || s.Line != 2 || s.Doc != 0 {
		t.Errorf("Deployment source = %+v, want testdata/web.yaml line 2 doc 0", s)
	}
	if s := res.Objects[1].Source; s.Line != 36 || s.Doc != 1 {
		t.Errorf("Service source = %+v, want line 36 doc 1", s)
	}
}

func TestLineOf_FieldPaths(t *testing.T) {
	res := Load([]string{"testdata/web.yaml"}, Options{})
	dep := res.Objects[0]
	for _, tc := range []struct {
		path string
		want int
	}{
		{"", 2},
		{"spec.template.spec.terminationGracePeriodSeconds", 21},
		{"spec.template.spec.containers[0].lifecycle.preStop", 30},
		{"spec.template.spec.containers[0].lifecycle.preStop.exec.command", 32},
		{"spec.template.spec.containers[1]", 33},
		{"spec.template.spec.containers[1].name", 33},
		{"spec.template.spec.containers[1].image", 34},
		{"spec.strategy.rollingUpdate.maxUnavailable", 13},
		// Annotation keys hold dots: quoted, or found by joining segments.
		{`metadata.annotations["zerodrop.dev/shutdown-seconds"]`, 8},
		{"metadata.annotations.zerodrop.dev/shutdown-seconds", 8},
		// Missing fields resolve to the closest existing ancestor.
		{"spec.template.spec.containers[1].lifecycle.preStop", 33},
		{"spec.template.spec.containers[7].lifecycle", 22},
		{"spec.minReadySeconds", 9},
		{"spec.template.spec.readinessGates", 20},
	} {
		if got := dep.LineOf(tc.path); got != tc.want {
			t.Errorf("LineOf(%q) = %d, want %d", tc.path, got, tc.want)
		}
	}
	svc := res.Objects[1]
	if got := svc.Line("spec.ports[0].targetPort"); got != 45 {
		t.Errorf("Service Line(spec.ports[0].targetPort) = %d, want 45", got)
	}
}

func TestLoad_BadDocumentIsReportedAndOthersStillLoad(t *testing.T) {
	data := `apiVersion: v1
kind: Service
metadata: {name: first}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
 spec: [
---
apiVersion: v1
kind: Service
metadata: {name: last}
`
	res := Bytes("mixed.yaml", []byte(data))
	if got := strings.Join(refs(res.Objects), ", "); got != "Service first, Service last" {
		t.Errorf("objects = %s, want both Services", got)
	}
	if len(res.Errors) != 1 {
		t.Fatalf("errors = %s, want exactly one", errorsText(res.Errors))
	}
	e := res.Errors[0]
	if e.Source.File != "mixed.yaml" || e.Source.Line != 9 || !strings.Contains(e.Err, "invalid YAML") {
		t.Errorf("error = %v, want invalid YAML in mixed.yaml at line 9", e)
	}
}

func TestLoad_WrongTypeIsAnErrorAtTheFieldLine(t *testing.T) {
	data := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: app
          image: x
      terminationGracePeriodSeconds: "forty"
`
	res := Bytes("typed.yaml", []byte(data))
	if len(res.Objects) != 0 {
		t.Errorf("a Deployment with a mistyped field was still loaded: %v", refs(res.Objects))
	}
	if len(res.Errors) != 1 {
		t.Fatalf("errors = %q, want one", errorsText(res.Errors))
	}
	e := res.Errors[0]
	if e.Source.Line != 11 {
		t.Errorf("error line = %d, want 11 (the mistyped field): %v", e.Source.Line, e)
	}
	for _, want := range []string{"spec.template.spec.terminationGracePeriodSeconds", "string", "integer"} {
		if !strings.Contains(e.Err, want) {
			t.Errorf("error %q does not mention %q", e.Err, want)
		}
	}
}

func TestLoad_UnknownAndDuplicateFieldsAreWarnings(t *testing.T) {
	data := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      terminationGracePeriodSecond: 60
      containers:
        - name: app
          image: x
          image: y
`
	res := Bytes("typo.yaml", []byte(data))
	if len(res.Errors) != 0 || len(res.Objects) != 1 {
		t.Fatalf("objects %v errors %s: want the object loaded without errors", refs(res.Objects), errorsText(res.Errors))
	}
	w := errorsText(res.Warnings)
	if !strings.Contains(w, "typo.yaml:8: spec.template.spec.terminationGracePeriodSecond: unknown field") {
		t.Errorf("warnings do not name the unknown field at line 8:\n%s", w)
	}
	if !strings.Contains(w, `typo.yaml:12: duplicate key "image"`) {
		t.Errorf("warnings do not name the duplicate key at line 12:\n%s", w)
	}
}

func TestLoad_UnknownKindsAreCountedNotErrors(t *testing.T) {
	res := Load([]string{"testdata/walk/sub/crds.yaml"}, Options{})
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %s", errorsText(res.Errors))
	}
	if got := res.Skipped["cert-manager.io/v1/Certificate"]; got != 2 {
		t.Errorf("skipped Certificates = %d, want 2 (%v)", got, res.Skipped)
	}
	if len(res.Objects) != 1 {
		t.Fatalf("objects = %v, want the BackendConfig only", refs(res.Objects))
	}
	u, ok := res.Objects[0].Typed.(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("BackendConfig decoded as %T, want unstructured", res.Objects[0].Typed)
	}
	if v, _, _ := unstructured.NestedInt64(u.Object, "spec", "connectionDraining", "drainingTimeoutSec"); v != 60 {
		t.Errorf("drainingTimeoutSec = %d, want 60", v)
	}
}

func TestLoad_ListsExpandToTheirItems(t *testing.T) {
	res := Load([]string{"testdata/list.yaml"}, Options{})
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %s", errorsText(res.Errors))
	}
	if got := strings.Join(refs(res.Objects), ", "); got != "Service a, Deployment b" {
		t.Fatalf("objects = %s", got)
	}
	if l := res.Objects[1].Source.Line; l != 11 {
		t.Errorf("nested List item line = %d, want 11", l)
	}
	if l := res.Objects[1].LineOf("spec.template.spec.containers[0]"); l != 17 {
		t.Errorf("LineOf in a List item = %d, want 17", l)
	}
}

func TestLoad_JSONStream(t *testing.T) {
	res := Load([]string{"testdata/stream.json"}, Options{})
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %s", errorsText(res.Errors))
	}
	if got := strings.Join(refs(res.Objects), ", "); got != "Service one, PodDisruptionBudget two" {
		t.Fatalf("objects = %s", got)
	}
	if _, ok := res.Objects[1].Typed.(*policyv1.PodDisruptionBudget); !ok {
		t.Errorf("PDB decoded as %T", res.Objects[1].Typed)
	}
	if l := res.Objects[1].Source.Line; l != 2 {
		t.Errorf("second JSON value line = %d, want 2", l)
	}
	if l := res.Objects[1].LineOf("spec.maxUnavailable"); l != 6 {
		t.Errorf("LineOf(spec.maxUnavailable) = %d, want 6", l)
	}
}

func TestLoad_JSONSyntaxErrorNamesLine(t *testing.T) {
	res := Bytes("bad.json", []byte("{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"ok\"}}\n{\n  \"kind\": \"Service\",,\n}\n"))
	if len(res.Objects) != 1 || len(res.Errors) != 1 {
		t.Fatalf("objects %v errors %s: want one of each", refs(res.Objects), errorsText(res.Errors))
	}
	if res.Errors[0].Source.Line != 3 {
		t.Errorf("error line = %d, want 3: %v", res.Errors[0].Source.Line, res.Errors[0])
	}
}

func TestLoad_StdinLikeHelmTemplate(t *testing.T) {
	helm := `---
# Source: shop/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: shop
---
# Source: shop/templates/empty.yaml
---
# Source: shop/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
`
	res := Load([]string{"-"}, Options{Stdin: strings.NewReader(helm)})
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %s", errorsText(res.Errors))
	}
	if got := strings.Join(refs(res.Objects), ", "); got != "Service shop, Deployment shop" {
		t.Fatalf("objects = %s", got)
	}
	if s := res.Objects[1].Source; s.File != StdinName || s.Line != 11 || s.Doc != 1 {
		t.Errorf("Deployment source = %+v, want <stdin> line 11 doc 1", s)
	}
}

func TestLoad_DirectoryWalk(t *testing.T) {
	res := Load([]string{"testdata/walk"}, Options{})
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %s", errorsText(res.Errors))
	}
	if got := strings.Join(refs(res.Objects), ", "); got != "Namespace shop, BackendConfig web" {
		t.Errorf("objects = %s (notes.txt must be ignored)", got)
	}
}

func TestLoad_MissingFileIsAnInputError(t *testing.T) {
	res := Load([]string{"testdata/nope.yaml", "testdata/stream.json"}, Options{})
	if len(res.Objects) != 2 || len(res.Errors) != 1 || res.Errors[0].Source.File != "testdata/nope.yaml" {
		t.Fatalf("objects %v errors %s", refs(res.Objects), errorsText(res.Errors))
	}
}

func TestLoad_NotAnObject(t *testing.T) {
	res := Bytes("x.yaml", []byte("- a\n- b\n---\nkind: Service\n---\njust text\n"))
	if len(res.Objects) != 0 || len(res.Errors) != 3 {
		t.Fatalf("objects %v errors %s, want three errors", refs(res.Objects), errorsText(res.Errors))
	}
	if !strings.Contains(res.Errors[1].Err, "no apiVersion") || res.Errors[1].Source.Line != 4 {
		t.Errorf("second error = %v, want missing apiVersion at line 4", res.Errors[1])
	}
}

func TestKustomize_OverlayIsBuiltAndPlacedInItsSourceFile(t *testing.T) {
	res := Load(nil, Options{Kustomize: []string{"testdata/kustomize/overlay"}})
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %s", errorsText(res.Errors))
	}
	if got := strings.Join(refs(res.Objects), ", "); got != "Deployment prod/prod-api" {
		t.Fatalf("objects = %s, want the overlay's renamed Deployment", got)
	}
	o := res.Objects[0]
	dep := o.Typed.(*appsv1.Deployment)
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 60 {
		t.Errorf("patched grace = %v, want 60", g)
	}
	if _, ok := dep.Annotations[originAnnotation]; ok {
		t.Errorf("the origin annotation used for placing leaked into the object")
	}
	want := filepath.Join("testdata/kustomize/base", "deployment.yaml")
	if o.Source.File != want || o.Source.Line != 1 {
		t.Errorf("source = %+v, want %s line 1", o.Source, want)
	}
	if l := o.LineOf("spec.template.spec.containers[0].image"); l != 14 {
		t.Errorf("LineOf(image) = %d, want 14 in the base file", l)
	}
}

func TestLoad_WalkBuildsKustomizationDirectories(t *testing.T) {
	res := Load([]string{"testdata/kustomize"}, Options{})
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %s", errorsText(res.Errors))
	}
	// base and overlay are both kustomizations: each is built, and the
	// patch file grace.yaml is not read as an object of its own.
	if got := strings.Join(refs(res.Objects), ", "); got != "Deployment api, Deployment prod/prod-api" {
		t.Errorf("objects = %s", got)
	}
}

func TestKustomize_NotAKustomization(t *testing.T) {
	res := Kustomize("testdata/walk")
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Err, "not a kustomize directory") {
		t.Fatalf("errors = %s", errorsText(res.Errors))
	}
}

func TestLoad_AliasBombIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nx0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("x" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " [")
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString("*a" + strconv.Itoa(i-1))
		}
		b.WriteString("]\n")
	}
	res := Bytes("bomb.yaml", []byte(b.String()))
	if len(res.Errors) != 1 {
		t.Fatalf("errors = %s, want one (document too large)", errorsText(res.Errors))
	}
}

func TestLoad_EmptyAndCommentOnlyInputs(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"empty.yaml": "", "comments.yaml": "# nothing\n---\n# more\n", "null.yaml": "~\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := Load([]string{dir}, Options{})
	if len(res.Objects)+len(res.Errors)+len(res.Warnings) != 0 {
		t.Errorf("empty inputs gave objects %v errors %s", refs(res.Objects), errorsText(res.Errors))
	}
}

func TestLoad_WalkIgnoresFilesWithoutKubernetesObjects(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"values.yaml":   "replicaCount: 2\nimage: {tag: x}\n",
		"report.json":   "{\"schemaVersion\": \"zerodrop.dev/check/v1\", \"findings\": []}\n",
		"playbook.yaml": "- hosts: all\n",
		"svc.yaml":      "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
		"mixed.yaml":    "apiVersion: v1\nkind: Service\nmetadata: {name: m}\n---\nfoo: bar\n",
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := Load([]string{dir}, Options{})
	if len(res.Ignored) != 3 {
		t.Errorf("ignored = %v, want values.yaml, report.json and playbook.yaml", res.Ignored)
	}
	// A file with one object and one stray document is a manifest with a
	// mistake: the stray document stays an error.
	if len(res.Errors) != 1 || !strings.HasSuffix(res.Errors[0].Source.File, "mixed.yaml") {
		t.Errorf("errors = %s, want only mixed.yaml's second document", errorsText(res.Errors))
	}
	if len(res.Objects) != 2 {
		t.Errorf("objects = %v", refs(res.Objects))
	}
	// Named on the command line, the same file is an error.
	named := Load([]string{filepath.Join(dir, "values.yaml")}, Options{})
	if len(named.Errors) != 1 || len(named.Ignored) != 0 {
		t.Errorf("named values.yaml: errors %s ignored %v, want one error", errorsText(named.Errors), named.Ignored)
	}
}

func TestLoad_DuplicateObjectsAreWarnings(t *testing.T) {
	dir := t.TempDir()
	dep := func(ns, grace string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: " + ns +
			"\nspec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: " + grace + "\n"
	}
	// Two versions of one Deployment (old and new file), and a third in
	// another namespace, which is a different object.
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", dep("prod", "30"))
	write("b.yaml", "# the new version\n"+dep("prod", "60")+"---\n"+dep("staging", "60"))
	res := Load([]string{dir}, Options{})
	if len(res.Errors) != 0 || len(res.Objects) != 3 {
		t.Fatalf("objects %v errors %s: want all three objects loaded", refs(res.Objects), errorsText(res.Errors))
	}
	w := errorsText(res.Warnings)
	want := filepath.Join(dir, "b.yaml") + ":2: Deployment prod/web is defined again (first at " + filepath.Join(dir, "a.yaml") + ":1)"
	if len(res.Warnings) != 1 || !strings.Contains(w, want) {
		t.Errorf("want one warning %q, got:\n%s", want, w)
	}
}

// Objects read by the fast parser index their lines only when asked, from
// a shared cache of re-parsed documents: lines asked object after object,
// interleaved, or from several goroutines at once must be the same.
func TestLineOf_SameInAnyOrderAndFromAnyGoroutine(t *testing.T) {
	data, err := os.ReadFile("testdata/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for i := 0; i < 8; i++ {
		all = append(append(all, "---\n"...), bytes.ReplaceAll(data, []byte("name: web"), fmt.Appendf(nil, "name: web-%d", i))...)
	}
	res := Bytes("many.yaml", all)
	if len(res.Errors) > 0 || len(res.Objects) < 16 {
		t.Fatalf("objects %d, errors %v", len(res.Objects), res.Errors)
	}
	paths := []string{"", "metadata.name", "spec.template.spec.containers[1].image", "spec.ports[0].targetPort", "spec.strategy.rollingUpdate.maxUnavailable"}
	want := make([][]int, len(res.Objects))
	for i, o := range res.Objects {
		for _, p := range paths {
			want[i] = append(want[i], o.Line(p))
		}
	}
	for i := 1; i < len(want); i++ {
		if want[i][1] <= want[i-1][1] {
			t.Fatalf("metadata.name of object %d at line %d, of object %d at %d", i, want[i][1], i-1, want[i-1][1])
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			for round := 0; round < 20; round++ {
				for j := range paths {
					for i := range res.Objects {
						o := res.Objects[(i+g)%len(res.Objects)]
						if got := o.Line(paths[j]); got != want[(i+g)%len(res.Objects)][j] {
							t.Errorf("object %d %q: line %d, first asked %d", (i+g)%len(res.Objects), paths[j], got, want[(i+g)%len(res.Objects)][j])
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
}
