// Package drain holds the controller's answer to "is pod X drained from
// every load balancer?": the reconciler reports each pod's drain state per
// TargetBinding into a Registry, and the drain endpoint (Handler) long-polls
// the Registry for a pod's preStop hook or the graceful package.
package drain

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// State is one binding's drain verdict for one pod.
type State struct {
	// Drained is true when no instance of the binding's load balancer sends
	// the pod new requests and no session is left (or the drain timed out).
	Drained bool
	// Reason is a CamelCase word: Draining, Drained, DrainTimeout,
	// NotRegistered, DrainDisabled, BindingDeleted, LoadBalancerNotFound.
	Reason string
	// Message gives details, e.g. the sessions left per instance.
	Message string
	// Since is when the pod entered this state.
	Since time.Time
}

// Registry is the reconciler's drain verdicts, safe for concurrent use.
type Registry struct {
	mu   sync.Mutex
	pods map[types.NamespacedName]map[string]State // pod -> binding name -> state
	// changed holds one channel per pod someone waits for, closed at the
	// pod's next change: a change wakes only that pod's held requests, not
	// every request held (messages change every cycle while pods drain).
	changed map[types.NamespacedName]*waiters
}

// waiters is one pod's wake-up channel and how many wait on it.
type waiters struct {
	ch chan struct{}
	n  int
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{pods: map[types.NamespacedName]map[string]State{}, changed: map[types.NamespacedName]*waiters{}}
}

// Report records binding's verdict for pod and wakes the waiters when it
// changed.
func (r *Registry) Report(pod types.NamespacedName, binding string, s State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.pods[pod]
	if m == nil {
		m = map[string]State{}
		r.pods[pod] = m
	}
	old, ok := m[binding]
	if ok && old.Drained == s.Drained && old.Reason == s.Reason && old.Message == s.Message {
		return
	}
	if ok && old.Drained == s.Drained && old.Reason == s.Reason {
		s.Since = old.Since
	}
	m[binding] = s
	r.wakeLocked(pod)
}

// Forget drops everything known about pod (the pod is gone).
func (r *Registry) Forget(pod types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pods, pod)
	// Waiters of a pod never reported are woken too: the pod is gone.
	r.wakeLocked(pod)
}

// ForgetVerdict drops binding's verdict for pod; the pod's verdicts of
// other bindings stay.
func (r *Registry) ForgetVerdict(pod types.NamespacedName, binding string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.pods[pod]
	if !ok {
		return
	}
	if _, ok := m[binding]; !ok {
		return
	}
	delete(m, binding)
	if len(m) == 0 {
		delete(r.pods, pod)
	}
	r.wakeLocked(pod)
}

// ForgetBinding drops the verdicts of binding namespace/name for every pod
// (the binding is gone); a pod's verdicts of other bindings stay.
func (r *Registry) ForgetBinding(namespace, binding string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pod, m := range r.pods {
		if _, ok := m[binding]; !ok || pod.Namespace != namespace {
			continue
		}
		delete(m, binding)
		if len(m) == 0 {
			delete(r.pods, pod)
		}
		r.wakeLocked(pod)
	}
}

// Lookup returns binding's verdict for pod.
func (r *Registry) Lookup(pod types.NamespacedName, binding string) (State, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.pods[pod][binding]
	return s, ok
}

// Pods returns the pods the registry knows for the binding namespace/name
// (the binding's pods live in its namespace).
func (r *Registry) Pods(namespace, binding string) []types.NamespacedName {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []types.NamespacedName
	for pod, m := range r.pods {
		if _, ok := m[binding]; ok && pod.Namespace == namespace {
			out = append(out, pod)
		}
	}
	return out
}

// Changed returns a channel closed at the next change of pod's verdicts
// (or when the pod is forgotten), and a function to call when the caller
// stops waiting on it, so that a pod nobody waits for keeps no channel.
func (r *Registry) Changed(pod types.NamespacedName) (<-chan struct{}, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.changed[pod]
	if w == nil {
		w = &waiters{ch: make(chan struct{})}
		r.changed[pod] = w
	}
	w.n++
	return w.ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if w.n--; w.n == 0 && r.changed[pod] == w {
			delete(r.changed, pod)
		}
	}
}

func (r *Registry) wakeLocked(pod types.NamespacedName) {
	if w := r.changed[pod]; w != nil {
		close(w.ch)
		delete(r.changed, pod)
	}
}
