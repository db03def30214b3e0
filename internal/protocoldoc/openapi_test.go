package protocoldoc

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const committed = "../../docs/provider-protocol.openapi.yaml"

func generate(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile("../../" + WireFile)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := OpenAPI(src)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestOpenAPIUpToDate(t *testing.T) {
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("%v (generate it: go run ./hack/genprotocol)", err)
	}
	if string(got) != string(generate(t)) {
		t.Fatal("docs/provider-protocol.openapi.yaml is stale: run `go run ./hack/genprotocol` and commit it")
	}
}

// Scenario: the generated document read back as YAML. Expectation: every
// wire type is a schema whose properties are exactly its JSON fields with
// the JSON type encoding/json writes; every type and field has a
// description; every $ref resolves.
func TestOpenAPIDescribesEveryWireField(t *testing.T) {
	doc := generate(t)
	var parsed map[string]any
	if err := yaml.Unmarshal(doc, &parsed); err != nil {
		t.Fatalf("generated document is not YAML: %v", err)
	}
	schemas := parsed["components"].(map[string]any)["schemas"].(map[string]any)
	for _, typ := range Types() {
		s, ok := schemas[typ.Name()].(map[string]any)
		if !ok {
			t.Errorf("no schema %s", typ.Name())
			continue
		}
		if s["description"] == nil {
			t.Errorf("%s: no description (write its doc comment in wire.go)", typ.Name())
		}
		props := s["properties"].(map[string]any)
		if len(props) != typ.NumField() {
			t.Errorf("%s: %d properties for %d fields", typ.Name(), len(props), typ.NumField())
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			p, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: no property %q", typ.Name(), f.Name, name)
				continue
			}
			if p["description"] == nil {
				t.Errorf("%s.%s: no description (write its doc comment in wire.go)", typ.Name(), f.Name)
			}
			if want, got := jsonType(f.Type), schemaType(p, schemas); want != got {
				t.Errorf("%s.%s: schema type %s, encoding/json writes %s", typ.Name(), f.Name, got, want)
			}
		}
	}
	for _, ref := range strings.Split(string(doc), "$ref: ")[1:] {
		name := strings.Trim(strings.SplitN(ref, "\n", 2)[0], `"`)
		if _, ok := schemas[strings.TrimPrefix(name, "#/components/schemas/")]; !ok {
			t.Errorf("$ref %s does not resolve", name)
		}
	}
}

// jsonType is the JSON type encoding/json writes for t.
func jsonType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType, t == timeType:
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Slice:
		return "array of " + jsonType(t.Elem())
	case reflect.Struct:
		return "object"
	}
	return t.Kind().String()
}

func schemaType(p map[string]any, schemas map[string]any) string {
	if ref, ok := p["$ref"].(string); ok {
		p = schemas[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any)
	}
	typ, _ := p["type"].(string)
	if typ == "array" {
		return "array of " + schemaType(p["items"].(map[string]any), schemas)
	}
	return typ
}
