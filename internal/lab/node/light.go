package node

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Light makes an Agent a light node for the lab's scale harness: its pods
// run no process and get no network namespace. Each is given an address
// from Addresses (answered, for all pods at once, by a listener the caller
// runs: lab.Bulk) and is reported running with every container started and
// ready at once; Ready then follows the readiness gates as the kubelet
// computes it. On deletion the pod's preStop httpGet hook is called (the
// drain gate's injected hook holds it until the load balancer drained the
// pod), bounded by the grace period, and the pod is deleted for good. A
// light node is what kwok does for fake nodes, with the two kubelet steps a
// drain gate depends on (Ready from gates, preStop before the end) kept.
type Light struct {
	// Addresses is the range pod IPs are drawn from: its first and last
	// addresses are never handed out.
	Addresses netip.Prefix
	// Workers are status writers running at once; default 16.
	Workers int
}

// lightPods is a light node's memory: each live pod's address, and which
// pods are being terminated.
type lightPods struct {
	a     *Agent
	mu    sync.Mutex
	addr  map[types.UID]netip.Addr
	inUse map[netip.Addr]bool
	next  netip.Addr
	ends  map[types.UID]bool // termination started
	store cache.Store
	queue workqueue.TypedRateLimitingInterface[types.NamespacedName]
}

func newLightPods(a *Agent) (*lightPods, error) {
	p := a.Light.Addresses.Masked()
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30 {
		return nil, fmt.Errorf("node %s: light mode: address range %s: want an IPv4 prefix of at most /30", a.NodeName, a.Light.Addresses)
	}
	return &lightPods{
		a: a, addr: map[types.UID]netip.Addr{}, inUse: map[netip.Addr]bool{}, next: p.Addr(),
		ends:  map[types.UID]bool{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]()),
	}, nil
}

// allocate gives pod uid its address (the same one on every call).
func (l *lightPods) allocate(uid types.UID) (netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.addr[uid]; ok {
		return a, nil
	}
	p := l.a.Light.Addresses.Masked()
	last := lastAddr(p)
	for range 1 << (32 - p.Bits()) {
		l.next = l.next.Next()
		if !p.Contains(l.next) || l.next == last {
			l.next = p.Addr().Next()
		}
		if !l.inUse[l.next] {
			l.inUse[l.next] = true
			l.addr[uid] = l.next
			return l.next, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s: light mode: every address of %s is taken", l.a.NodeName, p)
}

func (l *lightPods) release(uid types.UID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.addr[uid]; ok {
		delete(l.inUse, a)
		delete(l.addr, uid)
	}
	delete(l.ends, uid)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (l *lightPods) enqueue(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if pod, ok := obj.(*v1.Pod); ok {
		l.queue.Add(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
	}
}

func (l *lightPods) gone(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if pod, ok := obj.(*v1.Pod); ok {
		l.release(pod.UID)
	}
}

// run writes statuses until ctx ends.
func (l *lightPods) run(ctx context.Context) {
	go func() { <-ctx.Done(); l.queue.ShutDown() }()
	workers := l.a.Light.Workers
	if workers <= 0 {
		workers = 16
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				key, quit := l.queue.Get()
				if quit {
					return
				}
				if err := l.sync(ctx, key); err != nil && ctx.Err() == nil {
					l.a.log.Debug("light pod status", "pod", key, "err", err)
					l.queue.AddRateLimited(key)
				} else {
					l.queue.Forget(key)
				}
				l.queue.Done(key)
			}
		})
	}
	wg.Wait()
}

// sync brings one pod's status to what a kubelet whose containers all
// started and passed their probes at once would report, and starts the
// termination of a pod being deleted.
func (l *lightPods) sync(ctx context.Context, key types.NamespacedName) error {
	obj, ok, err := l.store.GetByKey(key.String())
	if err != nil || !ok {
		return err
	}
	pod := obj.(*v1.Pod)
	if pod.Spec.NodeName != l.a.NodeName {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		l.mu.Lock()
		started := l.ends[pod.UID]
		l.ends[pod.UID] = true
		l.mu.Unlock()
		if !started {
			go l.terminate(ctx, pod.DeepCopy())
		}
		return nil
	}
	ip, err := l.allocate(pod.UID)
	if err != nil {
		return err
	}
	st := lightStatus(pod, ip, l.a.Network.HostAddr, metav1.Now().Rfc3339Copy())
	_, err = patchStatus(ctx, l.a.Client, pod, st)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced under the same name: a later event comes
	}
	return err
}

// lightStatus is the status of a light pod: running at ip on the node at
// host, every container running and ready, Ready from the readiness gates.
func lightStatus(pod *v1.Pod, ip, host netip.Addr, now metav1.Time) v1.PodStatus {
	st := *pod.Status.DeepCopy()
	st.HostIP, st.HostIPs = host.String(), []v1.HostIP{{IP: host.String()}}
	st.PodIP, st.PodIPs = ip.String(), []v1.PodIP{{IP: ip.String()}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	started := now
	if len(pod.Status.ContainerStatuses) > 0 && pod.Status.ContainerStatuses[0].State.Running != nil {
		started = pod.Status.ContainerStatuses[0].State.Running.StartedAt
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, v1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptrTo(true),
			ContainerID: "zerodrop-lab-light://" + string(pod.UID) + "/" + c.Name,
			State:       v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: started}},
		})
	}
	st.Phase = v1.PodRunning
	owned := []v1.PodCondition{
		{Type: v1.PodReadyToStartContainers, Status: v1.ConditionTrue},
		{Type: v1.PodInitialized, Status: v1.ConditionTrue},
		readyCondition(&pod.Spec, pod.Status.Conditions, st.ContainerStatuses, st.Phase),
		containersReadyCondition(&pod.Spec, st.ContainerStatuses, st.Phase),
		{Type: v1.PodScheduled, Status: v1.ConditionTrue},
	}
	st.Conditions = mergeConditions(pod.Status.Conditions, owned, now)
	return st
}

func ptrTo[T any](v T) *T { return &v }

// terminate runs the first container's preStop hook (exec hooks cannot run
// without a process: only httpGet and sleep), bounded by the grace period
// counted from the deletion, then deletes the pod for good.
func (l *lightPods) terminate(ctx context.Context, pod *v1.Pod) {
	grace := time.Duration(deletionGrace(pod)) * time.Second
	hctx, cancel := context.WithTimeout(ctx, grace)
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec != nil {
			continue
		}
		if err := runHook(hctx, c.Lifecycle.PreStop, probeTarget{podIP: pod.Status.PodIP, container: c}); err != nil && hctx.Err() == nil {
			l.a.log.Info("light pod: preStop hook failed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	cancel()
	if ctx.Err() != nil {
		return
	}
	zero := int64(0)
	uid := pod.UID
	err := retryUntilDone(ctx, 5*time.Second, func() error {
		err := l.a.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	})
	if err != nil && ctx.Err() == nil {
		l.a.log.Warn("light pod: final delete failed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}
