package lab

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// ZerodropScenario is the fifth scenario: the naive app (it exits at once on
// SIGTERM, no preStop sleep) with a readinessProbe, behind zerodrop-controller's
// readiness gate (Ready only once every HAProxy instance reports the pod
// healthy) and drain gate (an injected preStop httpGet that holds SIGTERM
// until no instance sends the pod traffic and no session is left).
var ZerodropScenario = Scenario{
	Name:           "zerodrop",
	Summary:        "readinessProbe + zerodrop readiness gate and drain gate; no preStop sleep, the app exits at once",
	App:            baseApp,
	ReadinessProbe: true,
	ExternalLB:     true,
	GracePeriod:    zerodropGrace,
	Prepare:        prepareZerodrop,
}

// zerodropGrace is the zerodrop scenario's terminationGracePeriodSeconds:
// drain.timeout (30 s) + the app's shutdown, as the webhook's admission
// warning asks, since the kubelet's grace period also counts the preStop
// hook.
const zerodropGrace = 45 * time.Second

// prepareZerodrop starts zerodrop-controller against the lab, binds the
// scenario's Service to the HAProxy backend and opts the namespace in, then
// waits until the webhook gives a new pod of the Service its gate.
func prepareZerodrop(ctx context.Context, t Target, ns string) (*Integration, error) {
	return prepareZerodropWith(ctx, t, ns, false)
}

// prepareZerodropWith is prepareZerodrop; viaAdapter puts zerodrop-adapter
// between the controller and HAProxy (ZerodropAdapterScenario).
func prepareZerodropWith(ctx context.Context, t Target, ns string, viaAdapter bool) (*Integration, error) {
	return prepareGates(ctx, t, ns, LBHAProxy, labLoadBalancer(t), nil, viaAdapter)
}

// prepareGates starts zerodrop-controller with the LoadBalancer lb for the
// lab's instances of kind k, binds the scenario's Service to its pool
// BackendName and opts the namespace in, then waits until the webhook gives
// a new pod of the Service its gate. after, when set, runs once the
// controller has stopped (in the Integration's Stop, also when
// prepareGates fails). viaAdapter: see startController.
func prepareGates(ctx context.Context, t Target, ns string, k LBKind, lb *zv1.LoadBalancer, after func(), viaAdapter bool) (in *Integration, err error) {
	ctl, err := startController(ctx, t, lb, nil, viaAdapter, 0)
	if err != nil {
		if after != nil {
			after()
		}
		return nil, err
	}
	kc := ctl.c
	in = &Integration{
		KillController:    ctl.KillReconciler,
		RestartController: ctl.StartReconciler,
		Check:             ctl.Forbidden,
		Controller:        ctl,
	}
	in.Stop = func() {
		// Bounded cleanup that runs even when ctx is cancelled (Ctrl-C).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		errs := unbindApp(cctx, t, kc, ns)
		ctl.Stop()
		if after != nil {
			after()
		}
		errs = append(errs, t.clearPool(cctx, k))
		if err := errors.Join(errs...); err != nil {
			ctl.log.Warn("zerodrop scenario cleanup", "err", err)
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, ctl.Logs())
			in.Stop()
			in = nil
		}
	}()
	return in, bindApp(ctx, t, kc, ns)
}

// bindApp binds the scenario's Service to the lab's pool (labBinding), opts
// the namespace in, and waits until the webhook gives a new pod of the
// Service its gate and its drain hook.
func bindApp(ctx context.Context, t Target, kc client.Client, ns string) error {
	if err := kc.Create(ctx, labBinding(ns)); err != nil {
		return fmt.Errorf("lab: TargetBinding %s/%s: %w", ns, BindingName, err)
	}
	patch := []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, zv1.GatesNamespaceLabel, zv1.GatesEnabled))
	if _, err := t.Client.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("lab: label namespace %s: %w", ns, err)
	}
	// The webhook reads bindings and Services from its cache: a pod created
	// before the cache has them would get no gate. A dry-run create runs
	// the webhook without creating anything.
	probe := Scenario{App: baseApp, ReadinessProbe: true, GracePeriod: zerodropGrace}.Deployment(ns, 1).Spec.Template
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "webhook-probe-", Namespace: ns, Labels: probe.Labels}, Spec: probe.Spec}
	gate := corev1.PodConditionType(zv1.GateConditionType(BindingName))
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last string
	if err := pollUntil(wctx, 200*time.Millisecond, func() bool {
		got, err := t.Client.CoreV1().Pods(ns).Create(wctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err.Error()
			return false
		}
		for _, g := range got.Spec.ReadinessGates {
			if g.ConditionType == gate {
				return hasDrainHook(got)
			}
		}
		last = "no readiness gate injected yet"
		return false
	}); err != nil {
		return fmt.Errorf("lab: webhook does not inject gate %s: %s: %w", gate, last, err)
	}
	return nil
}

// unbindApp undoes bindApp while the controller still runs: the app's pods
// go first (they drain through the controller, and their targets are
// removed), then the binding, whose finalizer only the controller removes.
func unbindApp(ctx context.Context, t Target, kc client.Client, ns string) []error {
	var errs []error
	bg := metav1.DeletePropagationBackground
	if err := t.Client.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	errs = append(errs, waitPodsGone(ctx, t.Client, ns, labels.SelectorFromSet(labels.Set{"app": "web"})))
	if err := kc.Delete(ctx, &zv1.TargetBinding{ObjectMeta: metav1.ObjectMeta{Name: BindingName, Namespace: ns}}); client.IgnoreNotFound(err) != nil {
		errs = append(errs, err)
	}
	errs = append(errs, pollUntil(ctx, 100*time.Millisecond, func() bool {
		err := kc.Get(ctx, types.NamespacedName{Namespace: ns, Name: BindingName}, &zv1.TargetBinding{})
		return apierrors.IsNotFound(err)
	}))
	return errs
}

func hasDrainHook(p *corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.HTTPGet == nil {
			return false
		}
	}
	return len(p.Spec.Containers) > 0
}
