package podcache

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// typicalPod is the review's typical pod: two containers, ten environment
// variables, probes, resources, volumes and ~3 KB of managedFields.
func typicalPod(i int) *corev1.Pod {
	env := make([]corev1.EnvVar, 10)
	for e := range env {
		env[e] = corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", e), Value: strings.Repeat("v", 24)}
	}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 5}
	ctr := func(name string) corev1.Container {
		return corev1.Container{
			Name: name, Image: "registry.example.com/team/" + name + ":v1.2.3", Env: env,
			Command: []string{"/bin/" + name, "--config=/etc/" + name + "/config.yaml"},
			Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}},
			ReadinessProbe: probe, LivenessProbe: probe,
			VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + name}, {Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}},
			Lifecycle:    &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: "10.96.0.50", Port: intstr.FromInt32(8082), Path: "/drain/v1/namespaces/shop/tokens/0123456789abcdef01234567?wait=30s"}}},
		}
	}
	now := metav1.Now()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: fmt.Sprintf("web-7d9f8c6b5d-%05d", i), GenerateName: "web-7d9f8c6b5d-", UID: "8a1c2f3e-0000-4000-8000-000000000000",
			ResourceVersion: "123456", CreationTimestamp: now,
			Labels:          map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5d"},
			Annotations:     map[string]string{"zerodrop.dev/drain-token": "0123456789abcdef01234567"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5d", UID: "1"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(strings.Repeat(`{"f:spec":{"f:containers":{}}}`, 100))}}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{ctr("app"), ctr("sidecar")}, NodeName: "node-1", ServiceAccountName: "web",
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "target-health.zerodrop.dev/web-edge"}},
			Volumes:        []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web"}}}}},
			Tolerations:    []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.1.17", PodIPs: []corev1.PodIP{{IP: "10.244.1.17"}}, HostIP: "192.168.0.11",
			Conditions: []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: "target-health.zerodrop.dev/web-edge", Status: corev1.ConditionTrue, Reason: "Healthy", LastTransitionTime: now}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "registry.example.com/team/app:v1.2.3", ImageID: "sha256:" + strings.Repeat("a", 64), ContainerID: "containerd://" + strings.Repeat("b", 64)},
				{Name: "sidecar", Ready: true, Image: "registry.example.com/team/sidecar:v1.2.3", ImageID: "sha256:" + strings.Repeat("c", 64), ContainerID: "containerd://" + strings.Repeat("d", 64)}},
		},
	}
}

// TestTrimPodKeepsWhatZerodropReads: the cached pod keeps every field the
// reconciler, the drain endpoint and the webhook's lookups read, and loses
// managedFields and the bulk nobody reads (H5).
func TestTrimPodKeepsWhatZerodropReads(t *testing.T) {
	full := typicalPod(1)
	p := full.DeepCopy()
	out, err := TrimPod(p)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := out.(*corev1.Pod)
	for name, pair := range map[string][2]any{
		"name":             {full.Name, trimmed.Name},
		"uid":              {full.UID, trimmed.UID},
		"labels":           {full.Labels, trimmed.Labels},
		"annotations":      {full.Annotations, trimmed.Annotations},
		"deletion":         {full.DeletionTimestamp, trimmed.DeletionTimestamp},
		"readinessGates":   {full.Spec.ReadinessGates, trimmed.Spec.ReadinessGates},
		"conditions":       {full.Status.Conditions, trimmed.Status.Conditions},
		"phase":            {full.Status.Phase, trimmed.Status.Phase},
		"podIPs":           {full.Status.PodIPs, trimmed.Status.PodIPs},
		"podIP":            {full.Status.PodIP, trimmed.Status.PodIP},
		"container ports":  {full.Spec.Containers[1].Ports, trimmed.Spec.Containers[1].Ports},
		"container hook":   {full.Spec.Containers[0].Lifecycle, trimmed.Spec.Containers[0].Lifecycle},
		"container name":   {full.Spec.Containers[0].Name, trimmed.Spec.Containers[0].Name},
		"grace period":     {full.Spec.TerminationGracePeriodSeconds, trimmed.Spec.TerminationGracePeriodSeconds},
		"resource version": {full.ResourceVersion, trimmed.ResourceVersion},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s: cached %v, want %v", name, pair[1], pair[0])
		}
	}
	if trimmed.ManagedFields != nil || trimmed.Spec.Containers[0].Env != nil || trimmed.Spec.Volumes != nil || trimmed.Status.ContainerStatuses != nil {
		t.Errorf("trimmed pod still has managedFields, env, volumes or container statuses")
	}
}

// BenchmarkPodCacheMemory: heap per cached pod, full and trimmed, and their
// ratio (go test -run XXX -bench PodCacheMemory ./internal/podcache/).
func BenchmarkPodCacheMemory(b *testing.B) {
	const n = 2000
	per := func(trim bool) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		pods := make([]any, n)
		for i := range pods {
			p := typicalPod(i).DeepCopy() // what the informer decoded
			if trim {
				o, _ := TrimPod(p)
				pods[i] = o
			} else {
				pods[i] = p
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(pods)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	for b.Loop() {
		full, trimmed := per(false), per(true)
		b.ReportMetric(full, "B/pod-full")
		b.ReportMetric(trimmed, "B/pod-trimmed")
		b.ReportMetric(full/trimmed, "ratio")
	}
}
