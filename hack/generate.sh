#!/usr/bin/env bash
# Regenerates what controller-gen derives from the Go sources: deepcopy
# methods (api/v1alpha1/zz_generated.deepcopy.go), the CRDs
# (config/crd/bases) and the controller's roles (config/rbac/role.yaml,
# config/rbac/certs/role.yaml).
# Never edit those files by hand; change the types or the +kubebuilder markers
# and run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTROLLER_GEN_VERSION=v0.23.0
if command -v controller-gen >/dev/null 2>&1 && controller-gen --version 2>/dev/null | grep -q "$CONTROLLER_GEN_VERSION"; then
  gen=(controller-gen)
else
  gen=(go run "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION")
fi
"${gen[@]}" object paths=./api/...
"${gen[@]}" crd paths=./api/... output:crd:artifacts:config=config/crd/bases
# Two roles: the reconciler's (config/rbac/role.yaml) and the self-managed
# webhook certificate's (config/rbac/certs/role.yaml: the Secret and the
# webhook configurations' caBundle), which the external-certs component
# removes.
"${gen[@]}" rbac:roleName=zerodrop-controller paths=./internal/controller/... output:rbac:artifacts:config=config/rbac
"${gen[@]}" rbac:roleName=zerodrop-certs paths=./internal/webhook/... output:rbac:artifacts:config=config/rbac/certs
