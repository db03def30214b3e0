// Package webhook is zerodrop's mutating admission webhook for pods: on pod
// CREATE in namespaces labelled `zerodrop.dev/gates=enabled` it adds one
// readiness gate `target-health.zerodrop.dev/<binding>` per TargetBinding
// whose Service selects the pod, and, where a binding asks for it, a preStop
// httpGet hook that holds the container until the controller reports the pod
// drained from every load balancer.
//
// Gates can only be added at creation (spec.readinessGates is immutable), so
// a binding created after its pods gates only their replacements.
//
// The same server validates TargetBindings (PoolGrantValidator): a binding
// is admitted only if its LoadBalancer grants the pool to its namespace.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/internal/drain"
)

// Path is where the webhook server serves the pod mutator.
const Path = "/mutate-v1-pod"

// SkipLabel on a pod (`zerodrop.dev/gates: disabled`) keeps the webhook away
// from it; the controller's own pods carry it.
const SkipLabel = "zerodrop.dev/gates"

// SkipValue is the value of SkipLabel that excludes a pod.
const SkipValue = "disabled"

// DrainTokenAnnotation holds the random token that names a pod in the
// injected drain hook's URL: at admission a ReplicaSet's pod has no name yet
// (the API server generates it after mutating admission), so the hook cannot
// say `/pods/<name>`.
const DrainTokenAnnotation = drain.TokenAnnotation

// DrainHookTarget says where the kubelet reaches the drain endpoint. The
// kubelet, not the pod, sends the preStop request, so Host must resolve and
// route from the node: a Service ClusterIP works, a cluster DNS name
// usually does not.
type DrainHookTarget struct {
	// Host returns the host (IP) of the drain endpoint as seen from nodes.
	Host func(ctx context.Context) (string, error)
	// Port is the drain endpoint's port.
	Port int32
}

// PodGateInjector is the admission handler.
type PodGateInjector struct {
	// Reader reads namespaces, TargetBindings and Services (a cache).
	Reader client.Reader
	// Decoder decodes the admitted pod.
	Decoder admission.Decoder
	// ControllerNamespace is never injected: the controller must not gate
	// itself.
	ControllerNamespace string
	// DrainHook is where injected preStop hooks point; nil disables them.
	DrainHook *DrainHookTarget
	// Log receives one line per mutated pod.
	Log *slog.Logger
}

// Handle implements admission.Handler.
func (i *PodGateInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := i.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	changed, err := i.Mutate(ctx, pod)
	if err != nil {
		// With failurePolicy Ignore (the default) the API server admits the
		// pod unchanged; with Fail it refuses it. The user chose.
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !changed {
		return admission.Allowed("no TargetBinding selects this pod")
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err))
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// Mutate adds the gates (and hooks) the pod needs and reports whether it
// changed anything. It is idempotent: a second call changes nothing.
func (i *PodGateInjector) Mutate(ctx context.Context, pod *corev1.Pod) (bool, error) {
	if pod.Namespace == i.ControllerNamespace || pod.Labels[SkipLabel] == SkipValue {
		return false, nil
	}
	var ns corev1.Namespace
	if err := i.Reader.Get(ctx, types.NamespacedName{Name: pod.Namespace}, &ns); err != nil {
		return false, fmt.Errorf("get namespace %q: %w", pod.Namespace, err)
	}
	if ns.Labels[zv1.GatesNamespaceLabel] != zv1.GatesEnabled {
		return false, nil
	}
	bindings, err := binding.Selecting(ctx, i.Reader, pod)
	if err != nil {
		return false, err
	}
	changed := false
	var injected []string
	for _, b := range bindings {
		if !binding.HasGate(pod, b.Name) {
			pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{
				ConditionType: corev1.PodConditionType(zv1.GateConditionType(b.Name)),
			})
			changed = true
			injected = append(injected, b.Name)
		}
		if b.Spec.PreStopHook() == zv1.PreStopHTTPGet && b.Spec.DrainEnabled() && i.DrainHook != nil {
			hooked, err := i.addDrainHook(ctx, pod, b.Spec.DrainTimeout())
			if err != nil {
				return false, fmt.Errorf("binding %s/%s: %w", b.Namespace, b.Name, err)
			}
			changed = changed || hooked
		}
	}
	if changed && i.Log != nil {
		i.Log.Info("injected readiness gates", "namespace", pod.Namespace, "generateName", pod.GenerateName,
			"name", pod.Name, "bindings", injected)
	}
	return changed, nil
}

// addDrainHook gives every container without a preStop hook an httpGet hook
// to the drain endpoint. Containers with their own hook keep it: the user's
// hook wins, and one container cannot have two.
func (i *PodGateInjector) addDrainHook(ctx context.Context, pod *corev1.Pod, wait time.Duration) (bool, error) {
	var host string
	changed := false
	for c := range pod.Spec.Containers {
		ctr := &pod.Spec.Containers[c]
		if ctr.Lifecycle != nil && ctr.Lifecycle.PreStop != nil {
			continue
		}
		if host == "" {
			h, err := i.DrainHook.Host(ctx)
			if err != nil {
				return false, fmt.Errorf("resolve drain endpoint host: %w", err)
			}
			host = h
		}
		token, err := drainToken(pod)
		if err != nil {
			return false, err
		}
		if ctr.Lifecycle == nil {
			ctr.Lifecycle = &corev1.Lifecycle{}
		}
		ctr.Lifecycle.PreStop = &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
			Host:   host,
			Port:   intstr.FromInt32(i.DrainHook.Port),
			Scheme: corev1.URISchemeHTTP,
			Path:   TokenPath(pod.Namespace, token, wait),
		}}
		changed = true
	}
	return changed, nil
}

// TokenPath is the drain endpoint path that names a pod by its drain token.
func TokenPath(namespace, token string, wait time.Duration) string {
	return fmt.Sprintf("/drain/v1/namespaces/%s/tokens/%s?wait=%s",
		url.PathEscape(namespace), url.PathEscape(token), url.QueryEscape(wait.String()))
}

// drainToken returns the pod's drain token, creating it on first use.
func drainToken(pod *corev1.Pod) (string, error) {
	if t := pod.Annotations[DrainTokenAnnotation]; t != "" {
		return t, nil
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("drain token: %w", err)
	}
	t := hex.EncodeToString(b[:])
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[DrainTokenAnnotation] = t
	return t, nil
}
