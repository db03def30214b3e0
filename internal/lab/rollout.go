package lab

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"zerodrop.dev/zerodrop/internal/verify"
)

// waitRolledOut waits until the Deployment's rollout is complete as
// `kubectl rollout status` judges it (verify.RolloutStatus: observed
// generation, updated, available, no old replicas) and, further, every pod
// of the old ReplicaSets is gone from the API: only then has the rollout
// finished terminating what it replaced, which is where requests get
// dropped.
func waitRolledOut(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	var last string
	for {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			done, why, err := verify.RolloutStatus(d, 0)
			if err != nil {
				why = err.Error() // stuck past its progress deadline: ctx bounds the wait
			}
			if done {
				n, err := podsNotOfTemplate(ctx, cs, d)
				if err == nil && n == 0 {
					return nil
				}
				why = fmt.Sprintf("%d old pods still exist (err %v)", n, err)
			}
			last = why
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rollout of deployment %s/%s did not finish (%s): %w", ns, name, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// podsNotOfTemplate counts the Deployment's pods whose pod-template-hash is
// not the current ReplicaSet's (terminating ones included).
func podsNotOfTemplate(ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment) (int, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return 0, err
	}
	rss, err := cs.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return 0, err
	}
	current := ""
	for _, rs := range rss.Items {
		if ref := metav1.GetControllerOf(&rs); ref == nil || ref.UID != d.UID {
			continue
		}
		if rs.Annotations["deployment.kubernetes.io/revision"] == d.Annotations["deployment.kubernetes.io/revision"] {
			current = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		}
	}
	if current == "" {
		return 0, fmt.Errorf("no ReplicaSet of revision %s yet", d.Annotations["deployment.kubernetes.io/revision"])
	}
	pods, err := cs.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != current {
			n++
		}
	}
	return n, nil
}

// waitPodsGone waits until no pod matches selector in ns.
func waitPodsGone(ctx context.Context, cs kubernetes.Interface, ns string, selector labels.Selector) error {
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err == nil && len(pods.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			n := -1
			if pods != nil {
				n = len(pods.Items)
			}
			return fmt.Errorf("%d pods (%s) in namespace %s still exist: %w", n, selector, ns, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// podReady reports the pod's Ready condition.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
