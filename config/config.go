// Package config embeds zerodrop-controller's Kubernetes manifests (the
// CRDs and the webhook configurations), so that programs which install the
// controller themselves — the lab — use the very files `kubectl apply -k
// config/default` applies, not a copy.
package config

import "embed"

// FS holds every kustomization config/default is built from, with its
// files: crd/ (the CRDs), rbac/ (the ServiceAccounts, roles and bindings
// of both roles), manager/ (the two Deployments, their Services, the
// PriorityClass), webhook/ (the pod mutator, the TargetBinding validator,
// the webhook Service), components/ and default/ itself, so that the lab
// installs what `kubectl apply -k config/default` applies; and the alerts
// (monitoring/zerodrop.rules.yaml), which the lab's Prometheus loads.
//
//go:embed crd default manager webhook components rbac monitoring/zerodrop.rules.yaml
var FS embed.FS
