// Package podcache sets what the controller keeps of each pod in its
// informer cache. The cache holds every pod of the cluster in every
// zerodrop process, so it keeps only the fields zerodrop reads: the
// reconciler (labels, deletion, phase, conditions, readiness gates, pod
// IPs, UID), the drain endpoint (the drain-token annotation, found by a
// field index) and the webhook's readers. Everything else — managedFields,
// environment, volumes, probes, container statuses — is dropped before the
// object is stored.
//
// A reader of the cache that needs another pod field must add it to
// TrimPod (and its test); anything that writes a whole pod must read it
// from the API server, not the cache. Status writes are patches, so a
// trimmed pod never overwrites fields it lacks.
package podcache

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// TrimPod is the pod cache's transform (cache.Options ByObject Transform):
// it returns the pod with only the fields zerodrop reads. Other objects
// pass unchanged (deletion tombstones among them).
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:                       pod.Name,
			GenerateName:               pod.GenerateName,
			Namespace:                  pod.Namespace,
			UID:                        pod.UID,
			ResourceVersion:            pod.ResourceVersion,
			Generation:                 pod.Generation,
			CreationTimestamp:          pod.CreationTimestamp,
			DeletionTimestamp:          pod.DeletionTimestamp,
			DeletionGracePeriodSeconds: pod.DeletionGracePeriodSeconds,
			Labels:                     pod.Labels,
			Annotations:                pod.Annotations,
			OwnerReferences:            pod.OwnerReferences,
			Finalizers:                 pod.Finalizers,
		},
		Spec: corev1.PodSpec{
			NodeName:                      pod.Spec.NodeName,
			ReadinessGates:                pod.Spec.ReadinessGates,
			TerminationGracePeriodSeconds: pod.Spec.TerminationGracePeriodSeconds,
		},
		Status: corev1.PodStatus{
			Phase:      pod.Status.Phase,
			Conditions: pod.Status.Conditions,
			PodIP:      pod.Status.PodIP,
			PodIPs:     pod.Status.PodIPs,
			HostIP:     pod.Status.HostIP,
		},
	}
	if len(pod.Spec.Containers) > 0 {
		out.Spec.Containers = make([]corev1.Container, len(pod.Spec.Containers))
		for i, c := range pod.Spec.Containers {
			out.Spec.Containers[i] = corev1.Container{Name: c.Name, Ports: c.Ports, Lifecycle: c.Lifecycle}
		}
	}
	return out, nil
}

var _ cache.TransformFunc = TrimPod
