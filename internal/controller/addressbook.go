package controller

import (
	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/provider"
)

// knowAddresses tells a provider that implements provider.AddressBook (the
// HAProxy provider in slot mode) the address of every target the binding
// observes, so that after a controller restart Status reports slots under
// their TargetIDs instead of as orphans. Called every cycle before Status.
func knowAddresses(p provider.Provider, b *zv1.TargetBinding, targets []observedTarget) {
	ab, ok := p.(provider.AddressBook)
	if !ok {
		return
	}
	known := make([]provider.Target, 0, len(targets))
	for _, t := range targets {
		if t.IP != "" && t.Port > 0 {
			known = append(known, provider.Target{ID: TargetID(b.Namespace, b.Name, t.Key.Name), IP: t.IP, Port: t.Port})
		}
	}
	ab.Know(b.Spec.Pool, known)
}
