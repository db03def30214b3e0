package check

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// A minimal loader for this package's tests, so that the rules can be tested
// on the examples/ manifests without the CLI's loader (which owns file:line
// positions and error reporting). Documents start lines are counted from
// "---" separators.

var testScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, networkingv1.AddToScheme,
		policyv1.AddToScheme, autoscalingv2.AddToScheme, admissionregistrationv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

func decodeYAML(t testing.TB, file string, data []byte) []*Object {
	t.Helper()
	dec := serializer.NewCodecFactory(testScheme).UniversalDeserializer()
	var out []*Object
	// Split on document separators, remembering each document's first line.
	var docs []string
	var starts []int
	var cur strings.Builder
	start := 1
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if strings.TrimRight(sc.Text(), " ") == "---" {
			docs, starts = append(docs, cur.String()), append(starts, start)
			cur.Reset()
			start = n + 1
			continue
		}
		cur.WriteString(sc.Text() + "\n")
	}
	docs, starts = append(docs, cur.String()), append(starts, start)
	for i, d := range docs {
		r := utilyaml.NewYAMLOrJSONDecoder(io.NopCloser(strings.NewReader(d)), 4096)
		var u unstructured.Unstructured
		if err := r.Decode(&u.Object); err != nil {
			if err == io.EOF {
				continue
			}
			t.Fatalf("%s doc %d: %v", file, i, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		var typed runtime.Object = &u
		if obj, _, err := dec.Decode([]byte(d), nil, nil); err == nil {
			typed = obj
		}
		out = append(out, &Object{
			Ref:    ObjectRef{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()},
			Source: Source{File: file, Line: starts[i], Doc: i},
			Typed:  typed,
		})
	}
	return out
}

func loadExample(t testing.TB, name string) []*Object {
	t.Helper()
	data, err := os.ReadFile("../../examples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return decodeYAML(t, "examples/"+name, data)
}
