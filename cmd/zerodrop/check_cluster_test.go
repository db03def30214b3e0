package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"zerodrop.dev/zerodrop/internal/lab/cluster"
	"zerodrop.dev/zerodrop/internal/lab/labtest"
)

// verbRecorder records the HTTP methods the --cluster client sends.
type verbRecorder struct {
	mu    sync.Mutex
	verbs map[string]int
	next  http.RoundTripper
}

func (v *verbRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	v.mu.Lock()
	v.verbs[r.Method]++
	v.mu.Unlock()
	return v.next.RoundTrip(r)
}

// installCRDs creates zerodrop's CRDs from config/crd/bases and waits until
// the API serves them.
func installCRDs(t *testing.T, ctx context.Context, dyn dynamic.Interface, dc discovery.DiscoveryInterface) {
	t.Helper()
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, f := range []string{"zerodrop.dev_loadbalancers.yaml", "zerodrop.dev_targetbindings.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../config/crd/bases", f))
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := dyn.Resource(crds).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", f, err)
		}
	}
	for {
		l, err := dc.ServerResourcesForGroupVersion("zerodrop.dev/v1alpha1")
		if err == nil && len(l.APIResources) >= 2 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("zerodrop CRDs not served: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Scenario: a real kube-apiserver holds a served Deployment without a
// readinessProbe, a TargetBinding of its Service and a LoadBalancer, in a
// namespace without the gates label. Expect: `zerodrop check --cluster`
// finds ZD101 (no probe), ZD103 (no gate: startup gap) and ZD307 on
// objects whose source is cluster:lab, lists only with GET, and with an
// identity that may list nothing it reports warnings instead of failing.
func TestCheckCluster(t *testing.T) {
	bins := labtest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, ctx, dyn, cs.Discovery())

	ns := "shop"
	labels := map[string]string{"app": "web"}
	replicas := int32(3)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	must(cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "example/web:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}, metav1.CreateOptions{}))
	must(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{}))
	lb := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "zerodrop.dev/v1alpha1", "kind": "LoadBalancer", "metadata": map[string]any{"name": "edge"},
		"spec": map[string]any{"provider": "haproxy", "instances": []any{map[string]any{"name": "a", "address": "127.0.0.1:9999"}}},
	}}
	must(dyn.Resource(schema.GroupVersionResource{Group: "zerodrop.dev", Version: "v1alpha1", Resource: "loadbalancers"}).Create(ctx, lb, metav1.CreateOptions{}))
	tb := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "zerodrop.dev/v1alpha1", "kind": "TargetBinding", "metadata": map[string]any{"name": "web", "namespace": ns},
		"spec": map[string]any{"serviceRef": map[string]any{"name": "web", "port": "http"}, "loadBalancerRef": map[string]any{"name": "edge"}, "pool": "be_web"},
	}}
	must(dyn.Resource(schema.GroupVersionResource{Group: "zerodrop.dev", Version: "v1alpha1", Resource: "targetbindings"}).Namespace(ns).Create(ctx, tb, metav1.CreateOptions{}))

	rec := &verbRecorder{verbs: map[string]int{}}
	clusterTransport = func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec }
	t.Cleanup(func() { clusterTransport = nil })

	type jsonReport struct {
		Findings []struct {
			RuleID string `json:"ruleId"`
			File   string `json:"file"`
		} `json:"findings"`
		Errors   []any `json:"errors"`
		Warnings []struct {
			Message string `json:"message"`
		} `json:"warnings"`
	}
	for _, scope := range [][]string{{"-n", ns}, nil} {
		out, errOut, code := runCheckCLI("", append([]string{"--cluster", "--kubeconfig", c.Kubeconfig, "-o", "json"}, scope...)...)
		if code != exitFindings {
			t.Fatalf("%v: exit %d, want 1; stderr %s\n%s", scope, code, errOut, out)
		}
		var rep jsonReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: %v\n%s", scope, err, out)
		}
		var got []string
		for _, f := range rep.Findings {
			if f.File != "cluster:lab" {
				t.Errorf("%v: finding %s from %q, want cluster:lab", scope, f.RuleID, f.File)
			}
			if !slices.Contains(got, f.RuleID) {
				got = append(got, f.RuleID)
			}
		}
		for _, want := range []string{"ZD101", "ZD103", "ZD307"} {
			if !slices.Contains(got, want) {
				t.Errorf("%v: rules %v lack %s\n%s", scope, got, want, out)
			}
		}
		if len(rep.Errors) > 0 {
			t.Errorf("%v: errors %v", scope, rep.Errors)
		}
	}
	rec.mu.Lock()
	for verb, n := range rec.verbs {
		if verb != http.MethodGet {
			t.Errorf("--cluster sent %d %s requests: it must only get and list", n, verb)
		}
	}
	if rec.verbs[http.MethodGet] == 0 {
		t.Errorf("no GET recorded: the transport hook is not used")
	}
	rec.mu.Unlock()

	// An identity without RBAC: discovery works, every list is forbidden.
	kc, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ai := *kc.AuthInfos[kc.Contexts["lab"].AuthInfo]
	ai.Impersonate = "nobody"
	kc.AuthInfos["nobody"] = &ai
	ctxNobody := *kc.Contexts["lab"]
	ctxNobody.AuthInfo = "nobody"
	kc.Contexts["nobody"] = &ctxNobody
	nobody := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, nobody); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCheckCLI("", "--cluster", "--kubeconfig", nobody, "--context", "nobody", "-o", "json")
	if code != exitClean {
		t.Fatalf("forbidden: exit %d, want 0; stderr %s\n%s", code, errOut, out)
	}
	var rep jsonReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	forbidden := 0
	for _, w := range rep.Warnings {
		if strings.Contains(w.Message, "may not list") {
			forbidden++
		}
	}
	if forbidden == 0 {
		t.Errorf("forbidden lists gave no warning:\n%s", out)
	}
}
