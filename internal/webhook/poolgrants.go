package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/binding"
)

// BindingPath is where the webhook server serves the TargetBinding
// validator.
const BindingPath = "/validate-zerodrop-dev-v1alpha1-targetbinding"

// PoolGrantValidator is the validating admission handler for TargetBindings:
// it refuses a binding whose namespace its LoadBalancer does not grant the
// binding's pool (see binding.Granted). The reconciler checks the same grant
// again every cycle, because admission can be bypassed (webhook removed,
// caches that lag behind a concurrent create) and grants change after it.
type PoolGrantValidator struct {
	// Reader reads LoadBalancers, namespaces and TargetBindings (a cache).
	Reader client.Reader
	// Decoder decodes the admitted binding.
	Decoder admission.Decoder
	// Log receives one line per refusal.
	Log *slog.Logger
}

// Handle implements admission.Handler.
func (v *PoolGrantValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	var b zv1.TargetBinding
	if err := v.Decoder.DecodeRaw(req.Object, &b); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode TargetBinding: %w", err))
	}
	if b.Namespace == "" {
		b.Namespace = req.Namespace
	}
	if req.Operation == admissionv1.Update {
		if !b.DeletionTimestamp.IsZero() {
			return admission.Allowed("the binding is being deleted")
		}
		var old zv1.TargetBinding
		if err := v.Decoder.DecodeRaw(req.OldObject, &old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode old TargetBinding: %w", err))
		}
		if old.Spec.LoadBalancerRef == b.Spec.LoadBalancerRef && old.Spec.Pool == b.Spec.Pool {
			// Finalizer and settings updates: the grant was checked at
			// creation and is checked by the reconciler every cycle.
			return admission.Allowed("loadBalancerRef and pool unchanged")
		}
	}
	var lb zv1.LoadBalancer
	if err := v.Reader.Get(ctx, types.NamespacedName{Name: b.Spec.LoadBalancerRef.Name}, &lb); err != nil {
		if apierrors.IsNotFound(err) {
			return admission.Allowed("").WithWarnings(fmt.Sprintf(
				"LoadBalancer %q not found: no target is registered until it exists and grants pool %q to namespace %s",
				b.Spec.LoadBalancerRef.Name, b.Spec.Pool, b.Namespace))
		}
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("get LoadBalancer %q: %w", b.Spec.LoadBalancerRef.Name, err))
	}
	g, err := binding.CheckGrant(ctx, v.Reader, &lb, &b)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("pool grant: %w", err))
	}
	if !g.Allowed {
		if v.Log != nil {
			v.Log.Info("TargetBinding refused", "namespace", b.Namespace, "name", b.Name,
				"loadbalancer", lb.Name, "pool", b.Spec.Pool, "why", g.Message)
		}
		return admission.Denied(binding.ReasonPoolNotGranted + ": " + g.Message)
	}
	return admission.Allowed(g.Message)
}
