// Package binding answers which TargetBindings bind a pod: a binding binds a
// pod when the binding's Service selects the pod's labels. The webhook uses
// it to inject readiness gates and the drain endpoint to know which load
// balancers a pod must be drained from.
package binding

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// Selecting returns the TargetBindings of the pod's namespace whose Service
// selects the pod, sorted by name. A binding whose Service does not exist
// or has no selector binds no pod (a Service without selector has
// hand-made endpoints, which zerodrop does not gate), and a binding being
// deleted binds none.
//
// The controller maps every pod update through it, the pod webhook every
// pod creation and the drain endpoint every request, so it reads as little
// as the reader allows. A reader with ServiceIndex and SelectorIndex (the
// controller's cache, in every role) is asked only for the Services indexed
// under one of the pod's labels and their bindings (issue 12's profiles:
// listing the namespace's bindings and Services was 17 % of the
// controller's CPU at 1,000 pods over 100 bindings, and the webhook's 24 %
// of the serve process's at 5,000 pods over 1,000). A reader without them
// gets the namespace's bindings and Services in one uncopied List each
// (client.UnsafeDisableDeepCopy; only the bindings returned are copied).
func Selecting(ctx context.Context, r client.Reader, pod *corev1.Pod) ([]zv1.TargetBinding, error) {
	out, err := selectingByIndex(ctx, r, pod)
	if err != nil {
		// No index on this reader (or it failed: the Lists below say so).
		out, err = selectingByList(ctx, r, pod)
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func selectingByList(ctx context.Context, r client.Reader, pod *corev1.Pod) ([]zv1.TargetBinding, error) {
	var list zv1.TargetBindingList
	if err := r.List(ctx, &list, client.InNamespace(pod.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list TargetBindings in namespace %q: %w", pod.Namespace, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	var svcs corev1.ServiceList
	if err := r.List(ctx, &svcs, client.InNamespace(pod.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list Services in namespace %q: %w", pod.Namespace, err)
	}
	selectors := make(map[string]map[string]string, len(svcs.Items))
	for i := range svcs.Items {
		selectors[svcs.Items[i].Name] = svcs.Items[i].Spec.Selector
	}
	var out []zv1.TargetBinding
	for i := range list.Items {
		b := &list.Items[i]
		if !b.DeletionTimestamp.IsZero() {
			continue
		}
		if sel := selectors[b.Spec.ServiceRef.Name]; len(sel) > 0 && labels.SelectorFromValidatedSet(sel).Matches(labels.Set(pod.Labels)) {
			out = append(out, *b.DeepCopy())
		}
	}
	return out, nil
}

// ServiceIndex is the TargetBinding field index of the Service a binding
// names (spec.serviceRef.name), for Selecting.
const ServiceIndex = "zerodrop.dev/binding-service"

// ServiceIndexValues are a TargetBinding's ServiceIndex values.
func ServiceIndexValues(o client.Object) []string {
	b, ok := o.(*zv1.TargetBinding)
	if !ok || b.Spec.ServiceRef.Name == "" {
		return nil
	}
	return []string{b.Spec.ServiceRef.Name}
}

// SelectorIndex is the Service field index of the pairs of its selector
// ("key=value"), for Selecting: a Service selects a pod only if the
// pod carries every pair, so the Services that may select a pod are among
// those indexed under one of the pod's labels.
const SelectorIndex = "zerodrop.dev/service-selector"

// SelectorIndexValues are a Service's SelectorIndex values.
func SelectorIndexValues(o client.Object) []string {
	svc, ok := o.(*corev1.Service)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(svc.Spec.Selector))
	for k, v := range svc.Spec.Selector {
		out = append(out, k+"="+v)
	}
	return out
}

func selectingByIndex(ctx context.Context, r client.Reader, pod *corev1.Pod) ([]zv1.TargetBinding, error) {
	seen := map[string]bool{}
	var out []zv1.TargetBinding
	for k, v := range pod.Labels {
		var svcs corev1.ServiceList
		if err := r.List(ctx, &svcs, client.InNamespace(pod.Namespace), client.MatchingFields{SelectorIndex: k + "=" + v}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, err
		}
		for i := range svcs.Items {
			svc := &svcs.Items[i]
			if seen[svc.Name] {
				continue
			}
			seen[svc.Name] = true
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
				continue
			}
			var bs zv1.TargetBindingList
			if err := r.List(ctx, &bs, client.InNamespace(pod.Namespace), client.MatchingFields{ServiceIndex: svc.Name}, client.UnsafeDisableDeepCopy); err != nil {
				return nil, err
			}
			for j := range bs.Items {
				if b := &bs.Items[j]; b.DeletionTimestamp.IsZero() {
					out = append(out, *b.DeepCopy())
				}
			}
		}
	}
	return out, nil
}

// ServiceSelects reports whether the named Service exists, has a selector,
// and that selector matches podLabels.
func ServiceSelects(ctx context.Context, r client.Reader, namespace, service string, podLabels map[string]string) (bool, error) {
	var svc corev1.Service
	err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: service}, &svc)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get Service %s/%s: %w", namespace, service, err)
	}
	if len(svc.Spec.Selector) == 0 {
		return false, nil
	}
	return labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(labels.Set(podLabels)), nil
}

// HasGate reports whether the pod's spec carries the readiness gate of the
// named binding.
func HasGate(pod *corev1.Pod, bindingName string) bool {
	want := corev1.PodConditionType(zv1.GateConditionType(bindingName))
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == want {
			return true
		}
	}
	return false
}
