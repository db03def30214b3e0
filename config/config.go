// Package config embeds zerodrop-controller's Kubernetes manifests (the
// CRDs and the webhook configuration), so that programs which install the
// controller themselves — the lab — use the very files `kubectl apply -k
// config/default` applies, not a copy.
package config

import "embed"

// FS holds crd/bases/*.yaml and webhook/manifests.yaml.
//
//go:embed crd/bases/*.yaml webhook/manifests.yaml
var FS embed.FS
