package drain

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
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

// MaxWait caps the long poll of one request, whatever the bindings say.
const MaxWait = 10 * time.Minute

// Defaults of the Handler's bounds.
const (
	// DefaultMaxHeld is how many requests may be held at once in total. A
	// held request costs about 26 KiB, 2 goroutines (BenchmarkHeldDrainRequests,
	// docs/controller.md); the default keeps
	// them to a few tens of MiB, and far above the pods that terminate at once in
	// most clusters (each holds one request per hooked container).
	DefaultMaxHeld = 1024
	// DefaultMaxHeldPerPod is how many requests may be held at once for one
	// pod: one per hooked container, plus the graceful package's.
	DefaultMaxHeldPerPod = 16
	// DefaultAliveHold is the longest hold for a pod that is not being
	// deleted: long enough for the cache to see a deletion the kubelet
	// already acts on, short enough that holding costs nothing.
	DefaultAliveHold = 2 * time.Second
	// DefaultNudgeInterval is the least time between two nudges of one
	// binding.
	DefaultNudgeInterval = 250 * time.Millisecond
)

// TokenIndex is the pod cache's field index on TokenAnnotation: the token
// form finds its pod without listing the namespace.
const TokenIndex = "metadata.annotations.drain-token"

// TokenIndexValues is the indexer of TokenIndex.
func TokenIndexValues(obj client.Object) []string {
	if t := obj.GetAnnotations()[TokenAnnotation]; t != "" {
		return []string{t}
	}
	return nil
}

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
// before the pod had a name; a token two pods carry is refused (409).
//
// The endpoint needs no authentication, so holding is bounded: only a pod
// being deleted is held for long (others at most AliveHold), never longer
// than the longest drain.timeout of its bindings, and at most MaxHeldPerPod
// requests per pod and MaxHeld in total; beyond those it answers 503 with
// Retry-After at once.
type Handler struct {
	// Reader reads pods, bindings and Services (a cache). The token form
	// lists pods by TokenIndex.
	Reader client.Reader
	// Drains holds the reconciler's verdicts.
	Drains *Registry
	// Nudge, when set, receives the bindings of a deleting pod that is not
	// drained yet, so that the reconciler starts a cycle at once. Sends
	// never block.
	Nudge chan<- event.GenericEvent
	// NudgeInterval is the least time between two nudges of one binding
	// (the reconciler's pending interval); 0 means DefaultNudgeInterval.
	NudgeInterval time.Duration
	// MaxHeld and MaxHeldPerPod bound the requests held at once; 0 means
	// DefaultMaxHeld and DefaultMaxHeldPerPod.
	MaxHeld, MaxHeldPerPod int
	// AliveHold is the longest hold for a pod not being deleted; 0 means
	// DefaultAliveHold.
	AliveHold time.Duration
	// Log receives one line per answer at Debug, and refused tokens at Warn.
	Log *slog.Logger

	mu        sync.Mutex
	held      int
	heldPods  map[types.NamespacedName]int
	lastNudge map[types.NamespacedName]time.Time
}

// Answer is the drain endpoint's JSON body. It says no more than the
// status does (its callers need no more, and the endpoint needs no
// authentication): not the bindings, their verdicts' messages (sessions per
// instance), the pod a token names or the namespace. The detail is logged
// at Debug.
type Answer struct {
	Drained bool `json:"drained"`
	// Reason is Drained, NotDrained, NotBound or TooManyRequests.
	Reason string `json:"reason"`
}

// verdict is what the handler knows of one pod's drain: the Answer, and
// each binding's verdict for the Debug log.
type verdict struct {
	pod      types.NamespacedName
	answer   Answer
	bindings []bindingVerdict
}

// bindingVerdict is one binding's verdict.
type bindingVerdict struct {
	Name    string
	Drained bool
	Reason  string
	Message string
}

// String renders a binding's verdict for the log.
func (b bindingVerdict) String() string {
	return fmt.Sprintf("%s: drained=%v %s: %s", b.Name, b.Drained, b.Reason, b.Message)
}

// Register adds the handler's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /drain/v1/namespaces/{namespace}/pods/{name}", h.serve)
	mux.HandleFunc("GET /drain/v1/namespaces/{namespace}/tokens/{token}", h.serve)
}

// NewServer returns the drain endpoint's http.Server: headers are read
// within 5 s and capped at 8 KiB, idle keep-alive connections closed after
// 30 s, a response may take the longest hold (MaxWait) plus a margin, and
// HTTP/2 is off (the kubelet and the graceful package speak HTTP/1.1).
func NewServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      MaxWait + 10*time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

// Held returns the number of requests held now.
func (h *Handler) Held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
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
	start := time.Now()

	pod, err := h.findPod(r.Context(), ns, r.PathValue("name"), r.PathValue("token"))
	if errors.Is(err, errAmbiguousToken) {
		h.logWarn("drain token refused: more than one pod carries it (copied into a template?)", "namespace", ns, "err", err)
		http.Error(w, "the drain token names more than one pod", http.StatusConflict)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if pod == nil {
		h.write(w, http.StatusNotFound, verdict{pod: types.NamespacedName{Namespace: ns, Name: r.PathValue("name")}, answer: Answer{Reason: "NotBound"}})
		return
	}
	bindings, err := h.bindings(r.Context(), pod)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if len(bindings) == 0 {
		h.write(w, http.StatusNotFound, verdict{pod: types.NamespacedName{Namespace: ns, Name: pod.Name}, answer: Answer{Reason: "NotBound"}})
		return
	}
	names := make([]string, len(bindings))
	longest := time.Duration(0)
	for i, b := range bindings {
		names[i] = b.Name
		longest = max(longest, b.Spec.DrainTimeout())
	}
	// The reconciler reports DrainTimeout at drain.timeout: holding longer
	// waits for nothing.
	wait = min(wait, longest)
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	h.hold(w, r, key, names, isDeleting(pod), start.Add(wait))
}

// hold answers at once when the pod is drained, otherwise holds the
// request until its verdict changes to drained or the deadline (for a pod
// not being deleted: AliveHold). It keeps only the pod's key and binding
// names, not the objects read to find them.
func (h *Handler) hold(w http.ResponseWriter, r *http.Request, key types.NamespacedName, names []string, deleting bool, deadline time.Time) {
	v := h.verdict(key, names)
	if v.answer.Drained {
		h.write(w, http.StatusOK, v)
		return
	}
	if deleting {
		h.nudge(key.Namespace, names)
	}
	if !time.Now().Before(deadline) {
		h.write(w, http.StatusServiceUnavailable, v)
		return
	}
	if !h.admit(key) {
		w.Header().Set("Retry-After", "1")
		// An open idle connection costs about what a held request does:
		// do not keep the refused ones.
		w.Header().Set("Connection", "close")
		h.write(w, http.StatusServiceUnavailable, verdict{pod: key, answer: Answer{Reason: "TooManyRequests"}})
		return
	}
	defer h.release(key)

	until := deadline
	if !deleting {
		until = earliest(deadline, time.Now().Add(h.aliveHold()))
	}
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		changed, stop := h.Drains.Changed(key)
		v = h.verdict(key, names)
		if v.answer.Drained {
			stop()
			h.write(w, http.StatusOK, v)
			return
		}
		var timedOut bool
		select {
		case <-changed:
		case <-r.Context().Done():
			stop()
			return
		case <-timer.C:
			timedOut = true
		}
		stop()
		if timedOut {
			// An alive pod may have been deleted meanwhile (the kubelet
			// calls the hook as soon as it sees the deletion, which the
			// cache may have shown us later): then hold on.
			if !deleting && time.Now().Before(deadline) {
				var now corev1.Pod
				if err := h.Reader.Get(r.Context(), key, &now); err == nil && isDeleting(&now) {
					deleting = true
					h.nudge(key.Namespace, names)
					timer.Reset(time.Until(deadline))
					continue
				}
			}
			h.write(w, http.StatusServiceUnavailable, h.verdict(key, names))
			return
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// isDeleting reports whether the pod is on its way out: deleted, or its
// containers have stopped.
func isDeleting(pod *corev1.Pod) bool {
	return !pod.DeletionTimestamp.IsZero() || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// admit counts one more held request for pod, or reports false when a cap
// is reached.
func (h *Handler) admit(pod types.NamespacedName) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.heldPods == nil {
		h.heldPods = map[types.NamespacedName]int{}
	}
	if h.held >= orDefault(h.MaxHeld, DefaultMaxHeld) || h.heldPods[pod] >= orDefault(h.MaxHeldPerPod, DefaultMaxHeldPerPod) {
		return false
	}
	h.held++
	h.heldPods[pod]++
	return true
}

func (h *Handler) release(pod types.NamespacedName) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held--
	if h.heldPods[pod]--; h.heldPods[pod] <= 0 {
		delete(h.heldPods, pod)
	}
}

func (h *Handler) aliveHold() time.Duration {
	if h.AliveHold > 0 {
		return h.AliveHold
	}
	return DefaultAliveHold
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

// verdict is the pod's drain verdict over the named bindings: drained when
// every one says so.
func (h *Handler) verdict(pod types.NamespacedName, bindings []string) verdict {
	v := verdict{pod: pod, answer: Answer{Drained: true, Reason: "Drained"}}
	for _, b := range bindings {
		s, ok := h.Drains.Lookup(pod, b)
		bv := bindingVerdict{Name: b, Drained: s.Drained, Reason: s.Reason, Message: s.Message}
		if !ok {
			bv.Reason, bv.Message = "Pending", "the controller has not started draining the pod"
		}
		if !bv.Drained {
			v.answer.Drained, v.answer.Reason = false, "NotDrained"
		}
		v.bindings = append(v.bindings, bv)
	}
	return v
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
	if err := h.Reader.List(ctx, &pods, client.InNamespace(ns), client.MatchingFields{TokenIndex: token}); err != nil {
		return nil, fmt.Errorf("list pods in %s by drain token: %w", ns, err)
	}
	switch len(pods.Items) {
	case 0:
		return nil, nil
	case 1:
		return &pods.Items[0], nil
	}
	names := make([]string, len(pods.Items))
	for i := range pods.Items {
		names[i] = pods.Items[i].Name
	}
	return nil, fmt.Errorf("%w: pods %s", errAmbiguousToken, strings.Join(names, ", "))
}

// errAmbiguousToken: a drain token more than one pod carries.
var errAmbiguousToken = errors.New("drain token carried by more than one pod")

// bindings lists the bindings whose verdict the pod waits for: those whose
// Service selects it, and those whose gate it carries (a pod whose labels
// changed is still in the pool it was registered in). A binding being
// deleted is waited for while it exists: its finalizer drains its targets
// before it lets them go.
func (h *Handler) bindings(ctx context.Context, pod *corev1.Pod) ([]zv1.TargetBinding, error) {
	out, err := binding.Selecting(ctx, h.Reader, pod)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, b := range out {
		seen[b.Name] = true
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
		if err := h.Reader.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: name}, &b); err == nil {
			seen[name] = true
			out = append(out, b)
		}
	}
	return out, nil
}

// nudge asks for a reconcile of the bindings now, at most once per
// NudgeInterval each: a client repeating requests does not turn into
// back-to-back load balancer reads.
func (h *Handler) nudge(namespace string, bindings []string) {
	if h.Nudge == nil {
		return
	}
	interval := h.NudgeInterval
	if interval <= 0 {
		interval = DefaultNudgeInterval
	}
	now := time.Now()
	h.mu.Lock()
	if h.lastNudge == nil {
		h.lastNudge = map[types.NamespacedName]time.Time{}
	}
	var due []string
	for _, name := range bindings {
		k := types.NamespacedName{Namespace: namespace, Name: name}
		if last, ok := h.lastNudge[k]; ok && now.Sub(last) < interval {
			continue
		}
		h.lastNudge[k] = now
		due = append(due, name)
	}
	if len(h.lastNudge) > 4096 {
		// Bindings come and go: forget the stale ones.
		for k, last := range h.lastNudge {
			if now.Sub(last) >= interval {
				delete(h.lastNudge, k)
			}
		}
	}
	h.mu.Unlock()
	for _, name := range due {
		b := &zv1.TargetBinding{}
		b.Namespace, b.Name = namespace, name
		select {
		case h.Nudge <- event.GenericEvent{Object: b}:
		default:
		}
	}
}

// fail answers 500 without the error's text (it may name internal
// addresses or objects), which goes to the log instead.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.logWarn("drain request failed", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func (h *Handler) logWarn(msg string, args ...any) {
	if h.Log != nil {
		h.Log.Warn(msg, args...)
	}
}

// write sends v's Answer, and logs v whole at Debug (one line per request
// at a higher level would let any client flood the log).
func (h *Handler) write(w http.ResponseWriter, code int, v verdict) {
	if h.Log != nil && h.Log.Enabled(context.Background(), slog.LevelDebug) {
		h.Log.Debug("drain answer", "namespace", v.pod.Namespace, "pod", v.pod.Name, "code", code, "reason", v.answer.Reason, "bindings", v.bindings)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v.answer)
}
