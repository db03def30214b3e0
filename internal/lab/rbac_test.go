package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRBACObjectsAreConfigRBAC: the lab applies config/rbac as kustomize
// builds it: both ServiceAccounts, the reconcile role's ClusterRole and
// Role, the serve role's, each bound to its ServiceAccount.
func TestRBACObjectsAreConfigRBAC(t *testing.T) {
	objs, err := rbacObjects()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, o := range objs {
		have[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}
	for _, want := range []string{
		"ServiceAccount/" + ControllerNamespace + "/" + ReconcileServiceAccount,
		"ServiceAccount/" + ControllerNamespace + "/" + ServeServiceAccount,
		"ClusterRole//zerodrop-controller", "ClusterRoleBinding//zerodrop-controller",
		"Role/" + ControllerNamespace + "/zerodrop-controller",
		"ClusterRole//zerodrop-serve", "Role/" + ControllerNamespace + "/zerodrop-serve",
	} {
		if !have[want] {
			t.Errorf("config/rbac as built lacks %s; have %v", want, have)
		}
	}
}

// TestForbiddenFailsTheRun: a refused request in any controller log fails
// the run and is named; logs without one pass.
func TestForbiddenFailsTheRun(t *testing.T) {
	dir := t.TempDir()
	c := &Controller{dir: dir}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("serve-0.log", "level=INFO msg=started\n")
	write("notes.txt", "forbidden words in a file that is no log\n")
	if err := c.Forbidden(); err != nil {
		t.Fatalf("clean logs: %v", err)
	}
	write("reconcile-1.log", "level=INFO msg=x\nlevel=ERROR msg=\"list pods\" err=\"pods is forbidden: User \\\"system:serviceaccount:zerodrop-system:zerodrop-controller\\\" cannot list resource\"\n")
	err := c.Forbidden()
	if err == nil || !strings.Contains(err.Error(), "reconcile-1.log") || !strings.Contains(err.Error(), "cannot list resource") {
		t.Fatalf("a forbidden line: err %v, want it named with its file", err)
	}
}
