// Package config embeds zerodrop-controller's Kubernetes manifests (the
// CRDs and the webhook configurations), so that programs which install the
// controller themselves — the lab — use the very files `kubectl apply -k
// config/default` applies, not a copy.
package config

import "embed"

// FS holds crd/bases/*.yaml, webhook/manifests.yaml (the pod mutator),
// webhook/validating.yaml (the TargetBinding validator) and rbac/ (the
// ServiceAccounts, roles and bindings of both roles, with its
// kustomization files).
//
//go:embed crd/bases/*.yaml webhook/manifests.yaml webhook/validating.yaml rbac
var FS embed.FS
