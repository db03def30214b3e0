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
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
	"zerodrop.dev/zerodrop/internal/drain"
	"zerodrop.dev/zerodrop/internal/timing"
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
	changed, warnings, err := i.mutate(ctx, pod)
	if err != nil {
		// With failurePolicy Ignore (the default) the API server admits the
		// pod unchanged; with Fail it refuses it. The user chose.
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !changed {
		return admission.Allowed("no TargetBinding selects this pod").WithWarnings(warnings...)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err))
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(warnings...)
}

// Mutate adds the gates (and hooks) the pod needs and reports whether it
// changed anything. It is idempotent: a second call changes nothing.
func (i *PodGateInjector) Mutate(ctx context.Context, pod *corev1.Pod) (bool, error) {
	changed, _, err := i.mutate(ctx, pod)
	return changed, err
}

// mutate is Mutate that also returns the admission warnings for the user.
func (i *PodGateInjector) mutate(ctx context.Context, pod *corev1.Pod) (bool, []string, error) {
	if pod.Namespace == i.ControllerNamespace || pod.Labels[SkipLabel] == SkipValue {
		return false, nil, nil
	}
	var ns corev1.Namespace
	if err := i.Reader.Get(ctx, types.NamespacedName{Name: pod.Namespace}, &ns); err != nil {
		return false, nil, fmt.Errorf("get namespace %q: %w", pod.Namespace, err)
	}
	if ns.Labels[zv1.GatesNamespaceLabel] != zv1.GatesEnabled {
		return false, nil, nil
	}
	bindings, err := binding.Selecting(ctx, i.Reader, pod)
	if err != nil {
		return false, nil, err
	}
	changed := false
	var injected, warnings []string
	var hooked []zv1.TargetBinding
	for _, b := range bindings {
		if !binding.HasGate(pod, b.Name) {
			pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{
				ConditionType: corev1.PodConditionType(zv1.GateConditionType(b.Name)),
			})
			changed = true
			injected = append(injected, b.Name)
		}
		if b.Spec.PreStopHook() == zv1.PreStopHTTPGet && b.Spec.DrainEnabled() && i.DrainHook != nil {
			hooked = append(hooked, b)
		}
	}
	if len(hooked) > 0 {
		// A failure to place the hook must not cost the pod its gates: the
		// gates alone still keep rollouts from outrunning the load balancer.
		hookChanged, warns, err := i.addDrainHook(ctx, pod, hooked)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("zerodrop: readiness gates added, but no preStop drain hook: %v", err))
			if i.Log != nil {
				i.Log.Warn("drain hook not injected; readiness gates injected", "namespace", pod.Namespace,
					"generateName", pod.GenerateName, "name", pod.Name, "err", err)
			}
		}
		changed = changed || hookChanged
		warnings = append(warnings, warns...)
	}
	if changed && i.Log != nil {
		i.Log.Info("injected readiness gates", "namespace", pod.Namespace, "generateName", pod.GenerateName,
			"name", pod.Name, "bindings", injected)
	}
	return changed, warnings, nil
}

// addDrainHook gives the containers that serve a port of a hooked binding's
// Service an httpGet hook to the drain endpoint, waiting for the longest
// drain.timeout of those bindings. When no container declares such a port
// (ports need not be declared), the first container gets it. Containers with
// their own hook keep it: the user's hook wins, and one container cannot
// have two. A drain hook the pod brings (copied from a live pod) is
// rewritten with the pod's fresh token.
func (i *PodGateInjector) addDrainHook(ctx context.Context, pod *corev1.Pod, hooked []zv1.TargetBinding) (bool, []string, error) {
	var wait time.Duration
	var ports []corev1.ServicePort
	for _, b := range hooked {
		wait = max(wait, b.Spec.DrainTimeout())
		var svc corev1.Service
		if err := i.Reader.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: b.Spec.ServiceRef.Name}, &svc); err == nil {
			ports = append(ports, svc.Spec.Ports...)
		}
	}
	var warnings []string
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	shutdown := time.Duration(timing.DefaultAssumptions().Shutdown * float64(time.Second))
	if need := wait + shutdown; time.Duration(grace)*time.Second < need {
		warnings = append(warnings, fmt.Sprintf("zerodrop: terminationGracePeriodSeconds %d is shorter than drain.timeout %s + %s for the app's shutdown: "+
			"the kubelet may kill the pod before its drain and shutdown finish; set it to at least %d",
			grace, wait, shutdown, int64(need/time.Second)))
	}

	changed := false
	token := pod.Annotations[DrainTokenAnnotation]
	if token != "" && (!carriesHook(pod, token) || i.tokenTaken(ctx, pod.Namespace, token)) {
		// Not our reinvocation: a token copied from another pod (alone,
		// or with that pod's hook). Never share one (the drain endpoint
		// could answer for the wrong pod); a copied hook is replaced too.
		delete(pod.Annotations, DrainTokenAnnotation)
		token, changed = "", true
	}
	targets := servingContainers(pod, ports)
	var host string
	for _, c := range targets {
		ctr := &pod.Spec.Containers[c]
		if ctr.Lifecycle != nil && ctr.Lifecycle.PreStop != nil && !(isDrainHook(ctr.Lifecycle.PreStop) && token == "") {
			continue
		}
		if host == "" {
			h, err := i.DrainHook.Host(ctx)
			if err != nil {
				return changed, warnings, fmt.Errorf("resolve drain endpoint host: %w", err)
			}
			host = h
		}
		if token == "" {
			t, err := newDrainToken(pod)
			if err != nil {
				return changed, warnings, err
			}
			token = t
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
	return changed, warnings, nil
}

// servingContainers returns the indexes of the containers that declare a
// port the Service ports target (by number or name); when none does, the
// first container.
func servingContainers(pod *corev1.Pod, ports []corev1.ServicePort) []int {
	var out []int
	for c, ctr := range pod.Spec.Containers {
		if servesAny(ctr, ports) {
			out = append(out, c)
		}
	}
	if len(out) == 0 && len(pod.Spec.Containers) > 0 {
		out = []int{0}
	}
	return out
}

func servesAny(ctr corev1.Container, ports []corev1.ServicePort) bool {
	for _, sp := range ports {
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port)
		}
		for _, cp := range ctr.Ports {
			if (target.Type == intstr.Int && cp.ContainerPort == target.IntVal) ||
				(target.Type == intstr.String && cp.Name != "" && cp.Name == target.StrVal) {
				return true
			}
		}
	}
	return false
}

// isDrainHook reports whether h is an injected drain hook.
func isDrainHook(h *corev1.LifecycleHandler) bool {
	return h.HTTPGet != nil && strings.HasPrefix(h.HTTPGet.Path, "/drain/v1/namespaces/") && strings.Contains(h.HTTPGet.Path, "/tokens/")
}

// tokenTaken reports whether a pod that exists already carries token. The
// pod being created is not stored yet, so any such pod means the token was
// copied; a failed lookup counts as taken (a fresh token is always safe).
func (i *PodGateInjector) tokenTaken(ctx context.Context, namespace, token string) bool {
	var pods corev1.PodList
	if err := i.Reader.List(ctx, &pods, client.InNamespace(namespace), client.MatchingFields{drain.TokenIndex: token}); err != nil {
		return true
	}
	return len(pods.Items) > 0
}

// carriesHook reports whether a container already carries the drain hook
// for token: the webhook's own earlier pass over this pod (reinvocation).
func carriesHook(pod *corev1.Pod, token string) bool {
	prefix := strings.TrimSuffix(TokenPath(pod.Namespace, token, 0), "0s")
	for _, c := range pod.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && isDrainHook(c.Lifecycle.PreStop) &&
			strings.HasPrefix(c.Lifecycle.PreStop.HTTPGet.Path, prefix) {
			return true
		}
	}
	return false
}

// TokenPath is the drain endpoint path that names a pod by its drain token.
func TokenPath(namespace, token string, wait time.Duration) string {
	return fmt.Sprintf("/drain/v1/namespaces/%s/tokens/%s?wait=%s",
		url.PathEscape(namespace), url.PathEscape(token), url.QueryEscape(wait.String()))
}

// newDrainToken sets a fresh random drain token on the pod.
func newDrainToken(pod *corev1.Pod) (string, error) {
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
