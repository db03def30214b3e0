package load

import (
	"context"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/transport"

	"zerodrop.dev/zerodrop/internal/check"
)

// ClusterOptions say which cluster and namespace Cluster reads.
type ClusterOptions struct {
	// Kubeconfig is the kubeconfig file; empty means the usual rules
	// ($KUBECONFIG, then ~/.kube/config, then in-cluster).
	Kubeconfig string
	// Context is the kubeconfig context; empty means the current one.
	Context string
	// Namespace limits namespaced objects to one namespace; empty means all.
	Namespace string
	// WrapTransport wraps the HTTP transport (tests record the verbs used).
	WrapTransport transport.WrapperFunc
}

// clusterResource is one kind Cluster lists.
type clusterResource struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
}

// clusterResources are the kinds the check reads from a cluster, in the
// order their objects are reported.
var clusterResources = []clusterResource{
	{schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "Namespace", false},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, "Deployment", true},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, "StatefulSet", true},
	{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, "DaemonSet", true},
	{schema.GroupVersionResource{Version: "v1", Resource: "services"}, "Service", true},
	{schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}, "Ingress", true},
	{schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingressclasses"}, "IngressClass", false},
	{schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}, "PodDisruptionBudget", true},
	{schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}, "HorizontalPodAutoscaler", true},
	{schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}, "MutatingWebhookConfiguration", false},
	{schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}, "Gateway", true},
	{schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}, "HTTPRoute", true},
	{schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "grpcroutes"}, "GRPCRoute", true},
	{schema.GroupVersionResource{Group: "zerodrop.dev", Version: "v1alpha1", Resource: "targetbindings"}, "TargetBinding", true},
	{schema.GroupVersionResource{Group: "zerodrop.dev", Version: "v1alpha1", Resource: "loadbalancers"}, "LoadBalancer", false},
}

// ClusterConfig resolves the kubeconfig and context: the client
// configuration and the context's name ("in-cluster" without kubeconfig).
func ClusterConfig(opts ClusterOptions) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if opts.Kubeconfig != "" {
		rules.ExplicitPath = opts.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: opts.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	name := opts.Context
	if name == "" {
		if raw, err := cc.RawConfig(); err == nil && raw.CurrentContext != "" {
			name = raw.CurrentContext
		} else {
			name = "in-cluster"
		}
	}
	return cfg, name, nil
}

// Cluster reads the objects the check needs from a live cluster, read-only:
// it only gets and lists. A kind whose API is not served (zerodrop's CRDs
// not installed, an old cluster) is skipped; a kind the credentials may not
// list is a warning, not an error. Objects get Source{File:
// "cluster:<context>"}. The error is for a cluster that cannot be reached
// at all.
func Cluster(ctx context.Context, opts ClusterOptions) (*Result, error) {
	cfg, name, err := ClusterConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second // a hang guard per request
	}
	if opts.WrapTransport != nil {
		cfg.Wrap(opts.WrapTransport)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return clusterObjects(ctx, dc, dyn, name, opts.Namespace)
}

func clusterObjects(ctx context.Context, dc discovery.DiscoveryInterface, dyn dynamic.Interface, name, namespace string) (*Result, error) {
	res := &Result{Skipped: map[string]int{}}
	src := check.Source{File: "cluster:" + name}
	warn := func(format string, args ...any) {
		res.Warnings = append(res.Warnings, check.InputError{Source: src, Err: fmt.Sprintf(format, args...)})
	}
	served := map[string]map[string]bool{} // group/version -> resources
	for _, r := range clusterResources {
		gv := r.gvr.GroupVersion().String()
		if _, ok := served[gv]; !ok {
			served[gv] = map[string]bool{}
			l, err := dc.ServerResourcesForGroupVersion(gv)
			switch {
			case apierrors.IsNotFound(err):
				// Not served: CRDs not installed, or an older API.
			case err != nil && len(served) == 1:
				// The first request failing is a cluster we cannot reach.
				return nil, fmt.Errorf("cluster %s: %w", name, err)
			case err != nil:
				warn("cannot discover %s: %v", gv, err)
			default:
				for _, ar := range l.APIResources {
					served[gv][ar.Name] = true
				}
			}
		}
		if !served[gv][r.gvr.Resource] {
			continue
		}
		items, err := listAll(ctx, dyn, r, namespace)
		if apierrors.IsForbidden(err) {
			warn("may not list %s: %v; rules that need them are not checked", r.gvr.Resource, err)
			continue
		}
		if err != nil {
			warn("cannot list %s: %v", r.gvr.Resource, err)
			continue
		}
		for i := range items {
			o, err := clusterObject(&items[i], r, src)
			if err != nil {
				res.Errors = append(res.Errors, check.InputError{Source: src, Err: err.Error()})
				continue
			}
			res.Objects = append(res.Objects, o)
		}
	}
	return res, nil
}

// listAll lists one kind, page by page. With a namespace, namespaced kinds
// are listed there and the Namespace itself is read with get.
func listAll(ctx context.Context, dyn dynamic.Interface, r clusterResource, namespace string) ([]unstructured.Unstructured, error) {
	if namespace != "" && r.kind == "Namespace" {
		u, err := dyn.Resource(r.gvr).Get(ctx, namespace, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return []unstructured.Unstructured{*u}, nil
	}
	var ri dynamic.ResourceInterface = dyn.Resource(r.gvr)
	if r.namespaced && namespace != "" {
		ri = dyn.Resource(r.gvr).Namespace(namespace)
	}
	var out []unstructured.Unstructured
	opts := metav1.ListOptions{Limit: 500}
	for {
		l, err := ri.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
		if l.GetContinue() == "" {
			break
		}
		opts.Continue = l.GetContinue()
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out, nil
}

// clusterObject turns a listed object into a check.Object: typed for kinds
// of client-go's scheme, unstructured for zerodrop's CRDs (as the file
// loader keeps them).
func clusterObject(u *unstructured.Unstructured, r clusterResource, src check.Source) (*check.Object, error) {
	gvk := r.gvr.GroupVersion().WithKind(r.kind)
	u.SetGroupVersionKind(gvk)
	u.SetManagedFields(nil)
	ref := check.ObjectRef{APIVersion: gvk.GroupVersion().String(), Kind: r.kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	var typed runtime.Object = u
	if !KeepUnstructured(gvk) {
		t, err := clientgoscheme.Scheme.New(gvk)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", ref, err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
			return nil, fmt.Errorf("%s: %v", ref, err)
		}
		t.GetObjectKind().SetGroupVersionKind(gvk)
		typed = t
	}
	return &check.Object{Ref: ref, Source: src, Typed: typed}, nil
}
