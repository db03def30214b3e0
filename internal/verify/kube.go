package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// restartedAtAnnotation is what `kubectl rollout restart` sets on the pod
// template; changing it makes the Deployment replace every pod.
const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// progressDeadlineExceeded is the Progressing condition's reason when a
// rollout is stuck (kubectl's deploymentutil.TimedOutReason).
const progressDeadlineExceeded = "ProgressDeadlineExceeded"

// RolloutRestart restarts a Deployment as `kubectl rollout restart` does, by
// setting the restartedAt annotation of its pod template, and returns the
// Deployment's new generation (pass it to WaitRollout).
func RolloutRestart(ctx context.Context, client kubernetes.Interface, namespace, name string) (int64, error) {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`,
		restartedAtAnnotation, time.Now().Format(time.RFC3339Nano))
	d, err := client.AppsV1().Deployments(namespace).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return 0, fmt.Errorf("restart deployment %s/%s: %w", namespace, name, err)
	}
	return d.Generation, nil
}

// SetImage sets container images of a Deployment's pod template, as
// `kubectl set image deployment/NAME container=image` does, and returns the
// new generation. images maps container names (init containers included) to
// images; an unknown container name is an error that lists the known ones.
func SetImage(ctx context.Context, client kubernetes.Interface, namespace, name string, images map[string]string) (int64, error) {
	if len(images) == 0 {
		return 0, fmt.Errorf("set image on deployment %s/%s: no container=image given", namespace, name)
	}
	var gen int64
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		spec := &d.Spec.Template.Spec
		var known []string
		found := map[string]bool{}
		for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
			for i := range cs {
				known = append(known, cs[i].Name)
				if img, ok := images[cs[i].Name]; ok {
					cs[i].Image = img
					found[cs[i].Name] = true
				}
			}
		}
		for _, c := range slices.Sorted(maps.Keys(images)) {
			if !found[c] {
				return fmt.Errorf("container %q not in the pod template (containers: %s)", c, strings.Join(known, ", "))
			}
		}
		d, err = client.AppsV1().Deployments(namespace).Update(ctx, d, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		gen = d.Generation
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("set image on deployment %s/%s: %w", namespace, name, err)
	}
	return gen, nil
}

// RolloutAction is a rollout verify drives: a restart, or new images.
type RolloutAction struct {
	// Deployment is the Deployment's name.
	Deployment string
	// Images, when set, maps container names to new images (set image);
	// when empty the action is a restart.
	Images map[string]string
}

// String renders the action as its CLI flag would.
func (a RolloutAction) String() string {
	if len(a.Images) == 0 {
		return "restart deployment/" + a.Deployment
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(a.Images)) {
		parts = append(parts, c+"="+a.Images[c])
	}
	return "set-image deployment/" + a.Deployment + " " + strings.Join(parts, " ")
}

// Apply starts the rollout and returns the generation to wait for.
func (a RolloutAction) Apply(ctx context.Context, client kubernetes.Interface, namespace string) (int64, error) {
	if len(a.Images) == 0 {
		return RolloutRestart(ctx, client, namespace, a.Deployment)
	}
	return SetImage(ctx, client, namespace, a.Deployment, a.Images)
}

// RolloutStatus tells whether a Deployment's rollout of at least
// minGeneration is complete, with kubectl rollout status's rules: the
// generation is observed, every replica is updated, no old replica is left,
// every updated replica is available. It returns an error when the rollout
// exceeded its progress deadline. status says what it waits for.
func RolloutStatus(d *appsv1.Deployment, minGeneration int64) (done bool, status string, err error) {
	if d.Generation < minGeneration || d.Generation > d.Status.ObservedGeneration {
		return false, "waiting for the spec update to be observed", nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == progressDeadlineExceeded {
			return false, "", fmt.Errorf("deployment %q exceeded its progress deadline: %s", d.Name, c.Message)
		}
	}
	st := d.Status
	if d.Spec.Replicas != nil && st.UpdatedReplicas < *d.Spec.Replicas {
		return false, fmt.Sprintf("%d of %d new replicas updated", st.UpdatedReplicas, *d.Spec.Replicas), nil
	}
	if st.Replicas > st.UpdatedReplicas {
		return false, fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas), nil
	}
	if st.AvailableReplicas < st.UpdatedReplicas {
		return false, fmt.Sprintf("%d of %d updated replicas available", st.AvailableReplicas, st.UpdatedReplicas), nil
	}
	return true, "successfully rolled out", nil
}

// WaitRollout watches a Deployment until RolloutStatus says its rollout of
// at least minGeneration is complete, the rollout fails, or ctx is done.
// onChange, when not nil, sees every version of the Deployment observed.
func WaitRollout(ctx context.Context, client kubernetes.Interface, namespace, name string, minGeneration int64, onChange func(*appsv1.Deployment)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := f.Apps().V1().Deployments().Informer()
	result := make(chan error, 1)
	var once sync.Once
	check := func(obj any) {
		d, ok := obj.(*appsv1.Deployment)
		if !ok || d.Name != name {
			return
		}
		if onChange != nil {
			onChange(d)
		}
		done, _, err := RolloutStatus(d, minGeneration)
		if done || err != nil {
			once.Do(func() { result <- err })
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    check,
		UpdateFunc: func(_, n any) { check(n) },
		DeleteFunc: func(any) {
			once.Do(func() { result <- fmt.Errorf("deployment %s/%s was deleted during the rollout", namespace, name) })
		},
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer func() {
		cancel() // before Shutdown, which waits for the informers to see it
		f.Shutdown()
	}()
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the rollout of deployment %s/%s: %w", namespace, name, ctx.Err())
	}
}

// DeploymentSelector returns the label selector of a Deployment's pods.
func DeploymentSelector(ctx context.Context, client kubernetes.Interface, namespace, name string) (string, error) {
	d, err := client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("deployment %s/%s not found", namespace, name)
		}
		return "", fmt.Errorf("get deployment %s/%s: %w", namespace, name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return "", fmt.Errorf("deployment %s/%s selector: %w", namespace, name, err)
	}
	return sel.String(), nil
}

// Watch says what to watch in the cluster.
type Watch struct {
	Client    kubernetes.Interface
	Namespace string
	// Selector selects the pods to watch (label selector syntax).
	Selector string
	// Service, when set, limits EndpointSlices to this Service's; otherwise
	// every endpoint of a watched pod is reported.
	Service string
	// Deployment, when set, also reports Events about the Deployment and
	// its ReplicaSets.
	Deployment string
}

// Watcher reports pod, endpoint and Event changes as Events while it runs.
type Watcher struct {
	w      Watch
	sink   func(Event)
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	pods      map[string]*corev1.Pod                               // watched pods by name, as last seen
	endpoints map[string]map[string]discoveryv1.EndpointConditions // endpoint key -> slice name -> conditions
}

// StartWatch starts watching and returns once the initial state has been
// listed (reported as PodPresent events). Stop it with Stop.
func StartWatch(ctx context.Context, w Watch, sink func(Event)) (*Watcher, error) {
	if w.Client == nil {
		return nil, errors.New("watch: no Kubernetes client")
	}
	sel, err := labels.Parse(w.Selector)
	if err != nil {
		return nil, fmt.Errorf("watch: pod selector %q: %w", w.Selector, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	x := &Watcher{w: w, sink: sink, cancel: cancel, done: make(chan struct{}),
		pods: map[string]*corev1.Pod{}, endpoints: map[string]map[string]discoveryv1.EndpointConditions{}}

	podF := informers.NewSharedInformerFactoryWithOptions(w.Client, 0, informers.WithNamespace(w.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
	sliceF := informers.NewSharedInformerFactoryWithOptions(w.Client, 0, informers.WithNamespace(w.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			if w.Service != "" {
				o.LabelSelector = discoveryv1.LabelServiceName + "=" + w.Service
			}
		}))
	eventF := informers.NewSharedInformerFactoryWithOptions(w.Client, 0, informers.WithNamespace(w.Namespace))

	podInf := podF.Core().V1().Pods().Informer()
	sliceInf := sliceF.Discovery().V1().EndpointSlices().Informer()
	eventInf := eventF.Core().V1().Events().Informer()
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{podInf, handler{add: x.podAdded, update: x.podUpdated, del: x.podDeleted}},
		{sliceInf, handler{add: func(o any, _ bool) { x.sliceChanged(nil, o) }, update: x.sliceChanged, del: func(o any) { x.sliceChanged(o, nil) }}},
		{eventInf, handler{add: x.kubeEvent, update: func(_, n any) { x.kubeEvent(n, false) }, del: func(any) {}}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			cancel()
			return nil, fmt.Errorf("watch: %w", err)
		}
	}
	factories := []informers.SharedInformerFactory{podF, sliceF, eventF}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	go func() {
		<-ctx.Done()
		for _, f := range factories {
			f.Shutdown()
		}
		close(x.done)
	}()
	// Pods first, so that endpoints of watched pods are recognised.
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced) ||
		!cache.WaitForCacheSync(ctx.Done(), sliceInf.HasSynced, eventInf.HasSynced) {
		x.Stop()
		return nil, fmt.Errorf("watch: listing pods, EndpointSlices and Events in namespace %q: %w", w.Namespace, context.Cause(ctx))
	}
	return x, nil
}

// Stop stops watching and waits for the informers to end.
func (x *Watcher) Stop() {
	x.cancel()
	<-x.done
}

// Pods returns how many watched pods exist and how many of them are
// terminating (deletionTimestamp set).
func (x *Watcher) Pods() (total, terminating int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.pods {
		total++
		if p.DeletionTimestamp != nil {
			terminating++
		}
	}
	return total, terminating
}

// handler adapts functions to cache.ResourceEventHandler.
type handler struct {
	add    func(obj any, initial bool)
	update func(old, obj any)
	del    func(obj any)
}

func (h handler) OnAdd(obj any, initial bool) { h.add(obj, initial) }
func (h handler) OnUpdate(old, obj any)       { h.update(old, obj) }
func (h handler) OnDelete(obj any)            { h.del(obj) }

func (x *Watcher) emit(events []Event) {
	now := time.Now()
	for _, e := range events {
		e.Time = now
		x.sink(e)
	}
}

func (x *Watcher) podAdded(obj any, initial bool) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	x.mu.Lock()
	x.pods[p.Name] = p
	x.mu.Unlock()
	if initial {
		x.emit([]Event{{Kind: EventPod, Object: "pod/" + p.Name, Type: PodPresent, Detail: podSummary(p)}})
		return
	}
	x.emit(append([]Event{{Kind: EventPod, Object: "pod/" + p.Name, Type: PodCreated, Detail: podSummary(p)}},
		PodChanges(&corev1.Pod{}, p)...))
}

func (x *Watcher) podUpdated(oldObj, obj any) {
	o, ok1 := oldObj.(*corev1.Pod)
	p, ok2 := obj.(*corev1.Pod)
	if !ok1 || !ok2 {
		return
	}
	x.mu.Lock()
	x.pods[p.Name] = p
	x.mu.Unlock()
	x.emit(PodChanges(o, p))
}

func (x *Watcher) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	x.mu.Lock()
	delete(x.pods, p.Name)
	x.mu.Unlock()
	x.emit([]Event{{Kind: EventPod, Object: "pod/" + p.Name, Type: PodGone}})
}

// podSummary renders a pod's state on one line: phase and the conditions
// that decide traffic.
func podSummary(p *corev1.Pod) string {
	parts := []string{"phase=" + string(p.Status.Phase)}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.ContainersReady || c.Type == corev1.PodReady || isGate(p, c.Type) {
			parts = append(parts, string(c.Type)+"="+string(c.Status))
		}
	}
	if p.DeletionTimestamp != nil {
		parts = append(parts, PodTerminating)
	}
	return strings.Join(parts, " ")
}

func isGate(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, g := range p.Spec.ReadinessGates {
		if g.ConditionType == t {
			return true
		}
	}
	return false
}

// PodChanges returns the events between two versions of a pod: condition
// transitions (PodScheduled, ContainersReady, Ready and every readiness
// gate), deletion, and containers starting or terminating.
func PodChanges(old, p *corev1.Pod) []Event {
	var out []Event
	obj := "pod/" + p.Name
	prev := map[corev1.PodConditionType]corev1.ConditionStatus{}
	for _, c := range old.Status.Conditions {
		prev[c.Type] = c.Status
	}
	for _, c := range p.Status.Conditions {
		gate := isGate(p, c.Type)
		if !gate && c.Type != corev1.PodScheduled && c.Type != corev1.ContainersReady && c.Type != corev1.PodReady {
			continue
		}
		if s, ok := prev[c.Type]; ok && s == c.Status {
			continue
		}
		typ := PodCondition
		if gate {
			typ = PodGate
		}
		msg := c.Reason
		if c.Message != "" {
			msg = strings.TrimSpace(c.Reason + ": " + c.Message)
		}
		out = append(out, Event{Kind: EventPod, Object: obj, Type: typ, Detail: string(c.Type) + "=" + string(c.Status), Message: msg})
	}
	if old.DeletionTimestamp == nil && p.DeletionTimestamp != nil {
		detail := ""
		if g := p.DeletionGracePeriodSeconds; g != nil {
			detail = fmt.Sprintf("grace %ds", *g)
		}
		out = append(out, Event{Kind: EventPod, Object: obj, Type: PodDeleting, Detail: detail,
			Message: "preStop hooks run, then SIGTERM"})
	}
	prevC := map[string]corev1.ContainerStatus{}
	for _, c := range old.Status.ContainerStatuses {
		prevC[c.Name] = c
	}
	for _, c := range p.Status.ContainerStatuses {
		o, seen := prevC[c.Name]
		switch {
		case c.State.Running != nil && (!seen || o.State.Running == nil || o.RestartCount != c.RestartCount):
			out = append(out, Event{Kind: EventPod, Object: obj, Type: PodContainer, Detail: c.Name + " running"})
		case c.State.Terminated != nil && (!seen || o.State.Terminated == nil):
			t := c.State.Terminated
			out = append(out, Event{Kind: EventPod, Object: obj, Type: PodContainer,
				Detail: fmt.Sprintf("%s terminated exit %d", c.Name, t.ExitCode), Message: strings.TrimSpace(t.Reason + " " + t.Message)})
		}
	}
	return out
}

// endpointKey names an endpoint by its pod when it has one.
func endpointKey(ep discoveryv1.Endpoint) (key, object string) {
	if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
		return "pod/" + ep.TargetRef.Name, "pod/" + ep.TargetRef.Name
	}
	addr := ""
	if len(ep.Addresses) > 0 {
		addr = ep.Addresses[0]
	}
	return "addr/" + addr, "endpoint/" + addr
}

func boolp(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}

func conditionsString(c discoveryv1.EndpointConditions) string {
	return "ready=" + boolp(c.Ready) + " serving=" + boolp(c.Serving) + " terminating=" + boolp(c.Terminating)
}

func sameConditions(a, b discoveryv1.EndpointConditions) bool {
	return boolp(a.Ready) == boolp(b.Ready) && boolp(a.Serving) == boolp(b.Serving) && boolp(a.Terminating) == boolp(b.Terminating)
}

// sliceChanged diffs the endpoints of one EndpointSlice (old or obj nil for
// add and delete) against what every slice said before.
func (x *Watcher) sliceChanged(oldObj, obj any) {
	if t, ok := oldObj.(cache.DeletedFinalStateUnknown); ok {
		oldObj = t.Obj
	}
	var name string
	now := map[string]discoveryv1.EndpointConditions{}
	objects := map[string]string{}
	for i, o := range []any{oldObj, obj} {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		name = s.Name
		if i == 0 {
			for _, ep := range s.Endpoints {
				k, object := endpointKey(ep)
				objects[k] = object
			}
			continue
		}
		for _, ep := range s.Endpoints {
			k, object := endpointKey(ep)
			now[k], objects[k] = ep.Conditions, object
		}
	}
	x.mu.Lock()
	var out []Event
	keys := slices.Sorted(maps.Keys(objects))
	for _, k := range keys {
		if x.w.Service == "" && strings.HasPrefix(k, "pod/") {
			if _, watched := x.pods[strings.TrimPrefix(k, "pod/")]; !watched {
				continue
			}
		} else if x.w.Service == "" {
			continue
		}
		bySlice := x.endpoints[k]
		before, had := anyCondition(bySlice)
		c, has := now[k]
		if has {
			if bySlice == nil {
				bySlice = map[string]discoveryv1.EndpointConditions{}
				x.endpoints[k] = bySlice
			}
			bySlice[name] = c
		} else {
			delete(bySlice, name)
		}
		after, stillHas := anyCondition(bySlice)
		switch {
		case !had && stillHas:
			out = append(out, Event{Kind: EventEndpoint, Object: objects[k], Type: EndpointAdded, Detail: conditionsString(after), Message: "slice " + name})
		case had && !stillHas:
			delete(x.endpoints, k)
			out = append(out, Event{Kind: EventEndpoint, Object: objects[k], Type: EndpointGone, Message: "slice " + name})
		case had && !sameConditions(before, after):
			out = append(out, Event{Kind: EventEndpoint, Object: objects[k], Type: EndpointMoved, Detail: conditionsString(after), Message: "slice " + name})
		}
	}
	x.mu.Unlock()
	x.emit(out)
}

// anyCondition returns the conditions of an endpoint from the first of its
// slices by name (an endpoint is normally in one slice).
func anyCondition(bySlice map[string]discoveryv1.EndpointConditions) (discoveryv1.EndpointConditions, bool) {
	if len(bySlice) == 0 {
		return discoveryv1.EndpointConditions{}, false
	}
	names := slices.Sorted(maps.Keys(bySlice))
	return bySlice[names[0]], true
}

// kubeEvent reports a Kubernetes Event about a watched pod, the Deployment
// or its ReplicaSets. Events listed at start are history and skipped.
func (x *Watcher) kubeEvent(obj any, initial bool) {
	ev, ok := obj.(*corev1.Event)
	if !ok || initial {
		return
	}
	io := ev.InvolvedObject
	relevant := false
	switch io.Kind {
	case "Pod":
		x.mu.Lock()
		_, relevant = x.pods[io.Name]
		x.mu.Unlock()
	case "Deployment":
		relevant = x.w.Deployment != "" && io.Name == x.w.Deployment
	case "ReplicaSet":
		relevant = x.w.Deployment != "" && strings.HasPrefix(io.Name, x.w.Deployment+"-")
	}
	if !relevant {
		return
	}
	detail := ev.Type
	if ev.Count > 1 {
		detail += fmt.Sprintf(" x%d", ev.Count)
	}
	x.emit([]Event{{Kind: EventKube, Object: strings.ToLower(io.Kind) + "/" + io.Name, Type: ev.Reason, Detail: detail, Message: ev.Message}})
}
