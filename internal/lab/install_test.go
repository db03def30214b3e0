package lab

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"zerodrop.dev/zerodrop/charts"

	"zerodrop.dev/zerodrop/internal/lab/node"
)

// The lab installs config/default unchanged: every container image its
// Deployments name is one the lab's image table runs (by repository, as
// the node agent looks images up), and nothing else differs.
func TestInstallObjectsAreConfigDefaultsAndRunnable(t *testing.T) {
	objs, err := InstallObjects()
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]node.Program{ControllerImage: controllerProgram("/bin/true")}
	var deployments []string
	for _, o := range objs {
		_ = o.DeepCopy() // Install copies each object it applies: must not panic
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
			t.Fatal(err)
		}
		deployments = append(deployments, d.Namespace+"/"+d.Name)
		for _, c := range d.Spec.Template.Spec.Containers {
			repo, _, _ := strings.Cut(c.Image, ":")
			if _, ok := images[repo]; !ok {
				t.Errorf("Deployment %s container %s: image %s is not in the lab's image table", d.Name, c.Name, c.Image)
			}
		}
	}
	slices.Sort(deployments)
	if want := []string{"zerodrop-system/zerodrop-controller", "zerodrop-system/zerodrop-serve"}; !slices.Equal(deployments, want) {
		t.Errorf("Deployments %v, want %v", deployments, want)
	}
	for _, name := range installedDeployments {
		if !slices.Contains(deployments, ControllerNamespace+"/"+name) {
			t.Errorf("installedDeployments names %s, which config/default does not have", name)
		}
	}
}

// Objects are applied as a first kubectl apply needs them: the namespace
// before what lives in it, RBAC before the workloads, the webhook
// configurations last (a webhook whose Service has no pod yet would only
// fail calls).
func TestSortForApply(t *testing.T) {
	objs, err := InstallObjects()
	if err != nil {
		t.Fatal(err)
	}
	sorted := sortForApply(objs)
	pos := map[string]int{}
	for i, o := range sorted {
		if _, seen := pos[o.GetKind()]; !seen {
			pos[o.GetKind()] = i
		}
	}
	last := func(kind string) int {
		n := -1
		for i, o := range sorted {
			if o.GetKind() == kind {
				n = i
			}
		}
		return n
	}
	for _, order := range [][2]string{
		{"Namespace", "ServiceAccount"}, {"Namespace", "Deployment"}, {"ClusterRole", "ClusterRoleBinding"},
		{"ServiceAccount", "Deployment"}, {"Deployment", "MutatingWebhookConfiguration"}, {"Service", "MutatingWebhookConfiguration"},
	} {
		if _, ok := pos[order[0]]; !ok {
			t.Fatalf("config/default has no %s", order[0])
		}
		if last(order[0]) > pos[order[1]] {
			t.Errorf("a %s is applied after a %s", order[0], order[1])
		}
	}
	if len(sorted) != len(objs) {
		t.Errorf("sortForApply returned %d objects of %d", len(sorted), len(objs))
	}
}

// Scenario: a user installs zerodrop-controller from config/default (the
// manifests unchanged; only the LoadBalancer and its client Secret are the
// lab's), or from the Helm chart (`helm template`, namespace.create), and
// rolls a Deployment five times at 1,000 requests/s. The controller runs as
// pods under its own ServiceAccounts and RBAC: it issues its webhook
// certificate, the API server reaches the webhook and the node agents the
// drain endpoint through their Services, and no request fails. Nothing in
// the controller pods' logs was refused by RBAC. Uninstall removes
// everything, so the chart installs into the same lab after config/default.
func TestInstalledControllerDropsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	ctx, l, opts := controllerLab(t)
	tg := l.Target()
	t.Run("config/default", func(t *testing.T) {
		objs, err := InstallObjects()
		if err != nil {
			t.Fatal(err)
		}
		installAndRoll(ctx, t, tg, objs, opts)
	})
	t.Run("helm chart", func(t *testing.T) {
		stream, err := charts.Render("../../charts/zerodrop-controller", "zerodrop", ControllerNamespace, map[string]any{"namespace": map[string]any{"create": true}})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := ParseObjects([]byte(stream), "helm template")
		if err != nil {
			t.Fatal(err)
		}
		installAndRoll(ctx, t, tg, objs, opts)
	})
}

func installAndRoll(ctx context.Context, t *testing.T, tg Target, objs []*unstructured.Unstructured, opts Options) {
	inst, err := Install(ctx, tg, objs, opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_ = inst.Uninstall(context.Background())
		}
	})

	pods, err := tg.Client.CoreV1().Pods(ControllerNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sas := map[string]int{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
			t.Errorf("controller pod %s: %s, not Ready", p.Name, p.Status.Phase)
		}
		if p.Spec.NodeName == "" {
			t.Errorf("controller pod %s was never scheduled", p.Name)
		}
		sas[p.Spec.ServiceAccountName]++
	}
	if sas[ReconcileServiceAccount] != 2 || sas[ServeServiceAccount] != 2 {
		t.Errorf("controller pods by ServiceAccount %v, want 2 %s and 2 %s", sas, ReconcileServiceAccount, ServeServiceAccount)
	}
	// The reconcile role issued the webhook certificate under its RBAC
	// and gave the webhook configuration its CA.
	if _, err := tg.Client.CoreV1().Secrets(ControllerNamespace).Get(ctx, "zerodrop-webhook-certs", metav1.GetOptions{}); err != nil {
		t.Errorf("webhook certificate Secret: %v", err)
	}
	mwc, err := tg.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "zerodrop-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if len(w.ClientConfig.CABundle) == 0 {
			t.Errorf("webhook %s has no caBundle", w.Name)
		}
	}

	res, err := Run(ctx, tg, ZerodropInstalledScenario, RunOptions{
		Rollouts: 5, Rate: 1000, Replicas: 3, Settle: 2 * time.Second, Logger: opts.Logger,
	})
	requireNoneFailed(t, res, err)
	if res.Failed != 0 {
		t.Logf("controller warnings and errors:\n%s", inst.Warnings(40))
	}
	if res.Requests < 5*10000 {
		t.Errorf("%s: only %d requests sent", res.Name(), res.Requests)
	}
	if g := res.Gates; g == nil || g.GateSamples < 15 || g.DrainSamples < 15 {
		t.Errorf("%s: gate timings %+v, want a gate and a drain sample per replaced pod (15)", res.Name(), g)
	}
	if err := inst.Forbidden(); err != nil {
		t.Error(err)
	}
	if len(inst.PodLogs()) < 4 {
		t.Errorf("controller pod logs %v: want one per pod (4); the forbidden check read nothing", inst.PodLogs())
	}

	uninstalled = true
	if err := inst.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "zerodrop-controller", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after uninstall, the webhook configuration: %v", err)
	}
}

// ParseObjects reads what `kubectl apply -f` reads, and names the document
// of an error.
func TestParseObjects(t *testing.T) {
	objs, err := ParseObjects([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n# only a comment\n---\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\", \"namespace\": \"a\"}}\n"), "f.yaml")
	if err != nil || len(objs) != 2 || objs[0].GetKind() != "Namespace" || objs[1].GetName() != "b" {
		t.Fatalf("ParseObjects = %v, %v", objs, err)
	}
	for in, want := range map[string]string{
		"a: [":                     "f.yaml: document 1",
		"kind: X\n---\nfoo: bar\n": "f.yaml: document 1: not a Kubernetes object",
		"apiVersion: v1\nkind: A\nmetadata: {name: x}\n---\nkind: B\n": "document 2",
	} {
		if _, err := ParseObjects([]byte(in), "f.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseObjects(%q) error %v, want %q", in, err, want)
		}
	}
}

// Beside a failed request the installed test shows the controller pods'
// warnings and errors, bounded, each named by its pod.
func TestInstallationWarningsAreTheControllerPodsWarnAndErrorLines(t *testing.T) {
	dir := t.TempDir()
	write := func(pod, text string) {
		d := filepath.Join(dir, "nodes", "n1", pod)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "c.log"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pod-zerodrop-controller-a", `{"level":"INFO","msg":"started"}`+"\n"+`{"level":"WARN","msg":"drain failed"}`+"\n")
	write("pod-zerodrop-serve-b", `{"level":"ERROR","msg":"x"}`+"\n"+`{"level":"ERROR","msg":"y"}`+"\n")
	write("pod-app-c", `{"level":"ERROR","msg":"not the controller's"}`+"\n")
	in := &Installation{t: Target{Dir: dir}}
	got := in.Warnings(2)
	want := "pod-zerodrop-controller-a: {\"level\":\"WARN\",\"msg\":\"drain failed\"}\npod-zerodrop-serve-b: {\"level\":\"ERROR\",\"msg\":\"x\"}\n... and 1 more"
	if got != want {
		t.Errorf("Warnings(2) =\n%s\nwant\n%s", got, want)
	}
}
