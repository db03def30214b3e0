package drain

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/graceful"
	"zerodrop.dev/zerodrop/internal/binding"
)

// TokenAnnotation is the pod annotation the webhook sets to name the pod in
// an injected preStop hook (see webhook.DrainTokenAnnotation).
const TokenAnnotation = "zerodrop.dev/drain-token"

// MaxWait caps the long poll of one request.
const MaxWait = 10 * time.Minute

// Handler serves the drain endpoint:
//
//	GET /drain/v1/namespaces/{namespace}/pods/{name}?wait=30s
//	GET /drain/v1/namespaces/{namespace}/tokens/{token}?wait=30s
//
// It answers 200 when the pod is drained from the load balancer of every
// TargetBinding that binds it, 503 while it is not (after holding the
// request up to `wait`, waking as soon as the verdict changes), and 404 when
// no binding binds the pod (the caller then runs its fixed wait). The body
// is a JSON Answer. The token form serves injected preStop hooks, written
// before the pod had a name.
type Handler struct {
	// Reader reads pods, bindings and Services (a cache).
	Reader client.Reader
	// Drains holds the reconciler's verdicts.
	Drains *Registry
	// Nudge, when set, receives the pod's bindings so that the reconciler
	// starts a cycle at once. Sends never block.
	Nudge chan<- event.GenericEvent
	// Log receives one line per answer.
	Log *slog.Logger
}

// Answer is the drain endpoint's JSON body.
type Answer struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod,omitempty"`
	Drained   bool   `json:"drained"`
	// Reason is Drained, NotDrained or NotBound.
	Reason   string          `json:"reason"`
	Bindings []BindingAnswer `json:"bindings,omitempty"`
}

// BindingAnswer is one binding's verdict.
type BindingAnswer struct {
	Name    string `json:"name"`
	Drained bool   `json:"drained"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Register adds the handler's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /drain/v1/namespaces/{namespace}/pods/{name}", h.serve)
	mux.HandleFunc("GET /drain/v1/namespaces/{namespace}/tokens/{token}", h.serve)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("namespace")
	wait := time.Duration(0)
	if v := r.URL.Query().Get("wait"); v != "" {
		// The same forms the graceful package reads from the environment:
		// a Go duration or plain seconds (docs/graceful.md).
		d, err := graceful.ParseDuration(v)
		if err != nil {
			http.Error(w, fmt.Sprintf("query parameter wait=%q: want a non-negative Go duration such as 30s", v), http.StatusBadRequest)
			return
		}
		wait = min(d, MaxWait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()

	pod, err := h.findPod(r.Context(), ns, r.PathValue("name"), r.PathValue("token"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if pod == nil {
		h.write(w, http.StatusNotFound, Answer{Namespace: ns, Pod: r.PathValue("name"), Reason: "NotBound"})
		return
	}
	names, err := h.bindingNames(r.Context(), pod)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if len(names) == 0 {
		h.write(w, http.StatusNotFound, Answer{Namespace: ns, Pod: pod.Name, Reason: "NotBound"})
		return
	}
	h.nudge(pod.Namespace, names)
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	for {
		changed := h.Drains.Changed(key)
		ans := h.answer(key, names)
		if ans.Drained {
			h.write(w, http.StatusOK, ans)
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			h.write(w, http.StatusServiceUnavailable, ans)
			return
		}
	}
}

func (h *Handler) answer(pod types.NamespacedName, bindings []string) Answer {
	a := Answer{Namespace: pod.Namespace, Pod: pod.Name, Drained: true, Reason: "Drained"}
	for _, b := range bindings {
		s, ok := h.Drains.Lookup(pod, b)
		ba := BindingAnswer{Name: b, Drained: s.Drained, Reason: s.Reason, Message: s.Message}
		if !ok {
			ba.Reason, ba.Message = "Pending", "the controller has not started draining the pod"
		}
		if !ba.Drained {
			a.Drained, a.Reason = false, "NotDrained"
		}
		a.Bindings = append(a.Bindings, ba)
	}
	return a
}

// findPod resolves the pod by name or by drain token; nil when unknown.
func (h *Handler) findPod(ctx context.Context, ns, name, token string) (*corev1.Pod, error) {
	if name != "" {
		var pod corev1.Pod
		err := h.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pod)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
		}
		return &pod, nil
	}
	var pods corev1.PodList
	if err := h.Reader.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", ns, err)
	}
	for i := range pods.Items {
		if pods.Items[i].Annotations[TokenAnnotation] == token {
			return &pods.Items[i], nil
		}
	}
	return nil, nil
}

// bindingNames lists the bindings whose verdict the pod waits for: those
// whose Service selects it, and those whose gate it carries (a pod whose
// labels changed is still in the pool it was registered in). Bindings being
// deleted release their pods and are not waited for.
func (h *Handler) bindingNames(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	bs, err := binding.Selecting(ctx, h.Reader, pod)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, b := range bs {
		seen[b.Name] = true
		out = append(out, b.Name)
	}
	for _, g := range pod.Spec.ReadinessGates {
		name := string(g.ConditionType)
		if len(name) <= len(zv1.GateConditionPrefix) || name[:len(zv1.GateConditionPrefix)] != zv1.GateConditionPrefix {
			continue
		}
		name = name[len(zv1.GateConditionPrefix):]
		if seen[name] {
			continue
		}
		var b zv1.TargetBinding
		if err := h.Reader.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: name}, &b); err == nil && b.DeletionTimestamp.IsZero() {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out, nil
}

func (h *Handler) nudge(namespace string, bindings []string) {
	if h.Nudge == nil {
		return
	}
	for _, name := range bindings {
		b := &zv1.TargetBinding{}
		b.Namespace, b.Name = namespace, name
		select {
		case h.Nudge <- event.GenericEvent{Object: b}:
		default:
		}
	}
}

func (h *Handler) write(w http.ResponseWriter, code int, a Answer) {
	if h.Log != nil {
		h.Log.Info("drain answer", "namespace", a.Namespace, "pod", a.Pod, "code", code, "reason", a.Reason)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(a)
}
