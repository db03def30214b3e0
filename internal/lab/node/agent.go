// Package node is the lab's node agent: it plays the kubelet for one Node
// against a real kube-apiserver. It registers the Node and keeps its Lease and
// Ready heartbeat, watches the pods bound to the node, runs each pod's
// containers as local processes (an image stands for a program of this
// repository, see Program) inside the pod's own network namespace, probes
// them, computes ContainersReady and Ready (readiness gates included) and
// terminates them as the kubelet does: preStop, then SIGTERM, then SIGKILL
// when the grace period is over, then the final delete.
//
// Where the result depends on it, the agent follows the kubelet's source;
// docs/lab-node-agent.md lists every way it differs.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"zerodrop.dev/zerodrop/internal/lab/netns"
)

// Agent is the node agent for one Node. Set the fields, then call Run.
type Agent struct {
	// Client talks to the kube-apiserver.
	Client kubernetes.Interface
	// NodeName is the Node's name; pods with spec.nodeName equal to it run here.
	NodeName string
	// Network gives each pod its namespace and address. Its bridge address
	// is the node's InternalIP and the pods' hostIP.
	Network *netns.Network
	// Images maps image references to programs: an exact reference
	// ("zerodrop-lab/app:v2") or a repository standing for all its tags
	// ("zerodrop-lab/app").
	Images map[string]Program
	// Log receives the agent's logs; nil discards them.
	Log *slog.Logger

	// StateDir holds a directory per pod (working directory and container
	// logs <container>.log). Empty: a temporary directory removed by Run.
	StateDir string
	// KeepPodDirs keeps pod directories after the pod is gone (debugging).
	KeepPodDirs bool
	// Capacity is the node's capacity and allocatable; missing entries
	// default to the machine's CPUs, 8Gi of memory and 110 pods.
	Capacity v1.ResourceList
	// Labels are added to the Node's well-known labels.
	Labels map[string]string
	// HeartbeatPeriod is how often the Node's Ready condition is
	// refreshed; default 10s (the kubelet's nodeStatusUpdateFrequency).
	HeartbeatPeriod time.Duration
	// LeaseDuration is the node Lease's duration, renewed every quarter of
	// it; default 40s as in the kubelet.
	LeaseDuration time.Duration
	// RestartBackoff is the first crash-loop back-off delay (doubling up to
	// five minutes); default 10s as in the kubelet.
	RestartBackoff time.Duration
	// Light, when set, makes this a light node (light.go): pods run no
	// process and take their addresses from Light.Addresses.
	Light *Light
	// Taints are the Node's taints at registration.
	Taints []v1.Taint
	// VolumeResync is how often secret, configMap, downwardAPI and
	// projected volumes are read again and rewritten (new data, service
	// account tokens due for a refresh); default one minute, the
	// kubelet's sync period.
	VolumeResync time.Duration

	ctx      context.Context
	log      *slog.Logger
	stateDir string
	recorder record.EventRecorder

	mountPoints mountPoints // created on the host for volumeMounts

	mu         sync.Mutex
	workers    map[types.UID]*podWorker
	finished   map[types.UID]bool // pods already run to the end here
	cancel     context.CancelFunc // ends Run
	poweredOff bool               // PowerOff was called: start nothing more
}

// Run registers the node, runs its pods and keeps the node's heartbeat until
// ctx ends; then it kills every pod's processes (by pid), removes their
// namespaces and returns. Pods and the Node object are left in the API as a
// stopped kubelet leaves them.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.init(); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.ctx = runCtx
	a.mu.Lock()
	a.cancel = cancel
	if a.poweredOff {
		cancel()
	}
	a.mu.Unlock()
	if a.StateDir == "" {
		dir, err := os.MkdirTemp("", "zerodrop-node-"+a.NodeName+"-")
		if err != nil {
			return fmt.Errorf("node %s: state directory: %w", a.NodeName, err)
		}
		a.stateDir = dir
		defer os.RemoveAll(dir)
	} else {
		if err := os.MkdirAll(a.StateDir, 0o755); err != nil {
			return fmt.Errorf("node %s: state directory %s: %w", a.NodeName, a.StateDir, err)
		}
		a.stateDir = a.StateDir
	}

	broadcaster := record.NewBroadcaster(record.WithContext(runCtx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: a.NodeName})

	node, err := a.registerNode(runCtx)
	if err != nil {
		return err
	}
	a.log.Info("node registered", "internalIP", a.Network.HostAddr)

	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); a.heartbeatLoop(runCtx) }()
	go func() { defer bg.Done(); a.leaseLoop(runCtx, node) }()

	factory := informers.NewSharedInformerFactoryWithOptions(a.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.NodeName).String()
		}))
	podInformer := factory.Core().V1().Pods().Informer()
	handlers := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.podSeen(obj) },
		UpdateFunc: func(_, obj any) { a.podSeen(obj) },
		DeleteFunc: a.podGone,
	}
	if a.Light != nil {
		light, err := newLightPods(a)
		if err != nil {
			return err
		}
		light.store = podInformer.GetStore()
		handlers = cache.ResourceEventHandlerFuncs{
			AddFunc:    light.enqueue,
			UpdateFunc: func(_, obj any) { light.enqueue(obj) },
			DeleteFunc: light.gone,
		}
		bg.Add(1)
		go func() { defer bg.Done(); light.run(runCtx) }()
	}
	if _, err = podInformer.AddEventHandler(handlers); err != nil {
		return fmt.Errorf("node %s: pod informer: %w", a.NodeName, err)
	}
	factory.Start(runCtx.Done())

	<-runCtx.Done()
	factory.Shutdown()
	a.log.Info("node agent stopping: killing every pod's processes")
	a.mu.Lock()
	workers := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		workers = append(workers, w)
	}
	a.mu.Unlock()
	for _, w := range workers {
		w.wg.Wait() // container goroutines SIGKILL their process on ctx end
		w.cleanup()
	}
	a.mountPoints.removeCreated()
	bg.Wait()
	return nil
}

// PowerOff stops the node as a machine losing its power does. Every pod's
// network is cut first, so nothing leaves a pod any more (not even the FIN
// or RST of a dying process: clients and load balancers see silence, not a
// refusal); then the agent stops without another API call and SIGKILLs
// every container process and hook: no preStop hook, no SIGTERM, no status
// update, no final delete. The Node, its Lease and its pods stay in the API
// as they were, for the node lifecycle controller to find stale. Run
// returns once every process is reaped and every pod's namespace removed.
// An agent Run again later with the same NodeName plays the node coming
// back (registerNode takes the Node over).
func (a *Agent) PowerOff() {
	a.mu.Lock()
	a.poweredOff = true
	workers := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		workers = append(workers, w)
	}
	cancel := a.cancel
	a.mu.Unlock()
	a.log.Info("node losing power: cutting every pod's network, then SIGKILL", "pods", len(workers))
	for _, w := range workers {
		w.unplug()
	}
	if cancel != nil {
		cancel()
	}
}

func (a *Agent) init() error {
	switch {
	case a.Client == nil:
		return errors.New("node agent: Client is nil")
	case a.NodeName == "":
		return errors.New("node agent: NodeName is empty")
	case a.Network == nil:
		return fmt.Errorf("node agent %s: Network is nil", a.NodeName)
	}
	a.log = a.Log
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("node", a.NodeName)
	if a.HeartbeatPeriod <= 0 {
		a.HeartbeatPeriod = 10 * time.Second
	}
	if a.LeaseDuration <= 0 {
		a.LeaseDuration = 40 * time.Second
	}
	if a.VolumeResync <= 0 {
		a.VolumeResync = time.Minute
	}
	if a.RestartBackoff <= 0 {
		a.RestartBackoff = 10 * time.Second
	}
	a.mu.Lock()
	a.workers = map[types.UID]*podWorker{}
	a.finished = map[types.UID]bool{}
	a.mu.Unlock()
	return nil
}

func (a *Agent) podSeen(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Spec.NodeName != a.NodeName {
		return
	}
	a.mu.Lock()
	if a.poweredOff {
		a.mu.Unlock()
		return
	}
	w, running := a.workers[pod.UID]
	done := a.finished[pod.UID]
	if !running && !done {
		if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
			// Already over (run by an earlier agent): only the final
			// delete may be left to do.
			a.finished[pod.UID] = true
			a.mu.Unlock()
			if pod.DeletionTimestamp != nil {
				a.finalDelete(pod)
			}
			return
		}
		w = newPodWorker(a, pod)
		a.workers[pod.UID] = w
		a.mu.Unlock()
		if pod.DeletionTimestamp != nil {
			// Deleted before this agent ever ran it: its node was down
			// (evicted by the node lifecycle controller), or it was deleted
			// right after binding. As the kubelet (pod workers never start
			// a pod whose termination was requested first), nothing is
			// started and no hook runs: the containers are reported
			// terminated and the deletion is finished.
			a.log.Info("pod bound to this node was deleted before it ran here: finishing its deletion", "pod", pod.Namespace+"/"+pod.Name)
			go a.forget(w)
			go w.terminate(deletionGrace(pod))
			return
		}
		a.log.Info("pod bound to this node", "pod", pod.Namespace+"/"+pod.Name)
		w.start()
		go a.forget(w)
		w.update(pod)
		return
	}
	a.mu.Unlock()
	if running {
		w.update(pod)
	}
}

// forget drops a worker once its pod is finished, remembering the UID so a
// late informer event does not start it again.
func (a *Agent) forget(w *podWorker) {
	select {
	case <-w.finished:
	case <-a.ctx.Done():
		return
	}
	a.mu.Lock()
	delete(a.workers, w.uid)
	a.finished[w.uid] = true
	a.mu.Unlock()
}

func (a *Agent) podGone(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	w := a.workers[pod.UID]
	a.mu.Unlock()
	if w != nil {
		w.objectGone(pod)
	}
}

func (a *Agent) finalDelete(pod *v1.Pod) {
	zero := int64(0)
	uid := pod.UID
	err := a.Client.CoreV1().Pods(pod.Namespace).Delete(a.ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.log.Warn("final delete failed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// event records a Kubernetes Event about a pod, or about one of its
// containers when c is set (fieldPath spec.containers{name}, as the kubelet
// does).
func (a *Agent) event(pod *v1.Pod, c *v1.Container, eventType, reason, format string, args ...any) {
	if a.recorder == nil || pod == nil {
		return
	}
	ref := &v1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
		UID: pod.UID, ResourceVersion: pod.ResourceVersion,
	}
	if c != nil {
		ref.FieldPath = fmt.Sprintf("spec.containers{%s}", c.Name)
	}
	a.recorder.Eventf(ref, eventType, reason, format, args...)
}

// registerNode creates the Node, or takes over an existing one, with Ready
// status, addresses and capacity.
func (a *Agent) registerNode(ctx context.Context) (*v1.Node, error) {
	want := a.nodeObject()
	nodes := a.Client.CoreV1().Nodes()
	var node *v1.Node
	err := retry(ctx, func() error {
		created, err := nodes.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			node = created
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		existing, err := nodes.Get(ctx, a.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for k, v := range want.Labels {
			if existing.Labels == nil {
				existing.Labels = map[string]string{}
			}
			existing.Labels[k] = v
		}
		existing.Spec.Unschedulable = false
		updated, err := nodes.Update(ctx, existing, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		node = updated
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: register: %w", a.NodeName, err)
	}
	if err := a.updateNodeStatus(ctx, node); err != nil {
		return nil, err
	}
	return node, nil
}

func (a *Agent) nodeObject() *v1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname": a.NodeName,
		"kubernetes.io/os":       runtime.GOOS,
		"kubernetes.io/arch":     runtime.GOARCH,
		"zerodrop.dev/lab-node":  "true",
	}
	for k, v := range a.Labels {
		labels[k] = v
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.NodeName, Labels: labels}, Spec: v1.NodeSpec{Taints: a.Taints}}
}

func (a *Agent) capacity() v1.ResourceList {
	c := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		v1.ResourceMemory: resource.MustParse("8Gi"),
		v1.ResourcePods:   resource.MustParse("110"),
	}
	for k, v := range a.Capacity {
		c[k] = v
	}
	return c
}

// nodeStatus is the Node's status as the kubelet reports it.
func (a *Agent) nodeStatus(old v1.NodeStatus, now metav1.Time) v1.NodeStatus {
	st := old
	st.Capacity = a.capacity()
	st.Allocatable = a.capacity()
	st.Addresses = []v1.NodeAddress{
		{Type: v1.NodeInternalIP, Address: a.Network.HostAddr.String()},
		{Type: v1.NodeHostName, Address: a.NodeName},
	}
	st.NodeInfo.KubeletVersion = "v1.37.2-zerodrop-lab"
	st.NodeInfo.OperatingSystem = runtime.GOOS
	st.NodeInfo.Architecture = runtime.GOARCH
	st.NodeInfo.ContainerRuntimeVersion = "zerodrop-lab://processes"
	st.Phase = v1.NodeRunning
	conds := []v1.NodeCondition{
		{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: v1.NodeDiskPressure, Status: v1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: v1.NodePIDPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status (zerodrop lab node agent)"},
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = now
		for _, o := range old.Conditions {
			if o.Type == conds[i].Type && o.Status == conds[i].Status {
				conds[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	st.Conditions = conds
	return st
}

func (a *Agent) updateNodeStatus(ctx context.Context, node *v1.Node) error {
	return retry(ctx, func() error {
		if node == nil {
			n, err := a.Client.CoreV1().Nodes().Get(ctx, a.NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			node = n
		}
		n := node.DeepCopy()
		n.Status = a.nodeStatus(node.Status, metav1.Now())
		_, err := a.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if err != nil {
			node = nil // re-read on conflict
		}
		return err
	})
}

// heartbeatLoop refreshes the Node's conditions every HeartbeatPeriod, so the
// node lifecycle controller keeps it Ready.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(a.HeartbeatPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.updateNodeStatus(ctx, nil); err != nil && ctx.Err() == nil {
			a.log.Warn("node status heartbeat failed", "err", err)
		}
	}
}

// leaseLoop keeps the node's Lease in kube-node-lease renewed, as the
// kubelet does (renew every quarter of the lease duration).
func (a *Agent) leaseLoop(ctx context.Context, node *v1.Node) {
	leases := a.Client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	secs := int32(a.LeaseDuration / time.Second)
	renew := func() error {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, a.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.NodeName, Namespace: v1.NamespaceNodeLease,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &a.NodeName, LeaseDurationSeconds: &secs, RenewTime: &now},
			}
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		l.Spec.HolderIdentity = &a.NodeName
		l.Spec.LeaseDurationSeconds = &secs
		l.Spec.RenewTime = &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	}
	period := a.LeaseDuration / 4
	for {
		if err := renew(); err != nil && ctx.Err() == nil {
			a.log.Warn("node lease renewal failed", "err", err)
			period = time.Second // the namespace may not exist yet
		} else {
			period = a.LeaseDuration / 4
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// serviceLinks lists the Services a container's service-link variables
// come from (the default namespace's and the pod's) and builds them.
func (a *Agent) serviceLinks(ctx context.Context, pod *v1.Pod) (map[string]string, error) {
	var all []v1.Service
	for _, ns := range []string{v1.NamespaceDefault, pod.Namespace} {
		list, err := a.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("service links: list services in %s: %w", ns, err)
		}
		all = append(all, list.Items...)
		if pod.Namespace == v1.NamespaceDefault {
			break
		}
	}
	return serviceEnv(all, pod.Namespace, pod.Spec.EnableServiceLinks), nil
}

// retry calls f until it succeeds, ctx ends, or 10 attempts failed.
func retry(ctx context.Context, f func() error) error {
	var err error
	for i := 0; i < 10; i++ {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(100*(i+1)) * time.Millisecond):
		}
	}
	return err
}
