package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/lab/node"
	"zerodrop.dev/zerodrop/internal/lab/proc"
)

// ControllerImage is the image repository config/manager's Deployments
// name (zerodrop-controller:latest). The lab's image table maps it to the
// zerodrop-controller program, as `make image` packs it: entrypoint
// /zerodrop-controller, user 65532 (internal/ociimage).
const ControllerImage = "zerodrop-controller"

// controllerProgram is ControllerImage in the node agents' image table.
func controllerProgram(bin string) node.Program {
	return node.Program{Path: bin, Name: "/zerodrop-controller", User: "65532:65532"}
}

// The Deployments of config/manager, in ControllerNamespace.
var installedDeployments = []string{"zerodrop-controller", "zerodrop-serve"}

// Installation is zerodrop-controller installed into a lab as a user
// installs it: the objects of config/default (kustomize, unchanged) applied
// with the admin's credentials, its two Deployments run as pods by the
// lab's node agents (image table: ControllerImage), each pod under its own
// ServiceAccount's projected token and config/rbac, the API server calling
// the webhook and the node agents calling the drain endpoint through their
// Services' ClusterIPs. What differs from a user's install is only what a
// user brings: the LoadBalancer object (the lab's HAProxy instances, at the
// addresses pods reach) and its client-certificate Secret.
type Installation struct {
	t    Target
	kc   client.Client
	objs []*unstructured.Unstructured
	log  *slog.Logger
}

// InstallObjects are the objects `kubectl apply -k config/default` applies,
// built from the files embedded in this binary.
func InstallObjects() ([]*unstructured.Unstructured, error) {
	return kustomizeConfig("default")
}

// Install applies objs (InstallObjects, or a rendering of the Helm chart)
// to the lab t, creates the LoadBalancer of the lab's HAProxy instances,
// and returns once both Deployments are available and the webhook injects
// gates. On failure it says why, with the controller pods' states, events
// and log tails, and removes what it applied.
func Install(ctx context.Context, t Target, objs []*unstructured.Unstructured, log *slog.Logger) (in *Installation, err error) {
	if in, err = OpenInstallation(t, objs, log); err != nil {
		return nil, err
	}
	kc := in.kc
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, in.describe(context.WithoutCancel(ctx)))
			if uerr := in.Uninstall(context.WithoutCancel(ctx)); uerr != nil {
				in.log.Warn("after a failed install", "err", uerr)
			}
			in = nil
		}
	}()
	// The CRDs first, established, as kubectl apply would need a second
	// pass for the objects of their kinds.
	if err := installCRDs(ctx, kc); err != nil {
		return in, err
	}
	for _, o := range sortForApply(objs) {
		if o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if err := kc.Patch(ctx, o.DeepCopy(), client.Apply, client.FieldOwner("zerodrop-lab-install"), client.ForceOwnership); err != nil {
			return in, fmt.Errorf("lab: install: apply %s %s: %w", o.GetKind(), objectName(o), err)
		}
	}
	if err := applyAdminTLSSecret(ctx, kc, t); err != nil {
		return in, err
	}
	if err := putLoadBalancer(ctx, kc, podsLoadBalancer(t)); err != nil {
		return in, err
	}
	if err := in.waitAvailable(ctx, 3*time.Minute); err != nil {
		return in, err
	}
	log.Info("zerodrop-controller installed from config/default", "namespace", ControllerNamespace, "objects", len(objs))
	return in, nil
}

// OpenInstallation is the installation of objs in the lab t, found there
// (`zerodrop lab install`) rather than made: for Forbidden, PodLogs and
// Uninstall.
func OpenInstallation(t Target, objs []*unstructured.Unstructured, log *slog.Logger) (*Installation, error) {
	if log == nil {
		log = slog.Default()
	}
	kc, err := labClient(t.Config, log)
	if err != nil {
		return nil, err
	}
	return &Installation{t: t, kc: kc, objs: objs, log: log}, nil
}

// podsLoadBalancer is labLoadBalancer with each instance's Runtime API at
// the address pods reach (the pod network's host end).
func podsLoadBalancer(t Target) *zv1.LoadBalancer {
	lb := labLoadBalancer(t)
	for i, h := range t.HAProxy {
		if h.AdminTLSPods != "" && i < len(lb.Spec.Instances) {
			lb.Spec.Instances[i].Address = h.AdminTLSPods
		}
	}
	return lb
}

// sortForApply orders objects as kubectl does for a first apply: namespaces
// and cluster-wide definitions before what lives in them.
func sortForApply(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	rank := func(kind string) int {
		switch kind {
		case "CustomResourceDefinition":
			return 0
		case "Namespace":
			return 1
		case "PriorityClass", "ServiceAccount", "ClusterRole", "Role":
			return 2
		case "ClusterRoleBinding", "RoleBinding", "ValidatingAdmissionPolicy":
			return 3
		case "ValidatingAdmissionPolicyBinding", "Service", "ConfigMap", "Secret":
			return 4
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			return 6
		}
		return 5
	}
	out := slices.Clone(objs)
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i].GetKind()) < rank(out[j].GetKind()) })
	return out
}

func objectName(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return o.GetNamespace() + "/" + o.GetName()
	}
	return o.GetName()
}

// waitAvailable waits until every Deployment of config/manager has all its
// replicas updated and available.
func (in *Installation) waitAvailable(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last string
	err := pollUntil(ctx, 250*time.Millisecond, func() bool {
		for _, name := range installedDeployments {
			var d appsv1.Deployment
			if err := in.kc.Get(ctx, types.NamespacedName{Namespace: ControllerNamespace, Name: name}, &d); err != nil {
				last = err.Error()
				return false
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != want || d.Status.AvailableReplicas != want || d.Status.Replicas != want {
				last = fmt.Sprintf("Deployment %s: %d of %d replicas updated, %d available", name, d.Status.UpdatedReplicas, want, d.Status.AvailableReplicas)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("lab: install: the controller's Deployments are not available (%s): %w", last, err)
	}
	return nil
}

// PodLogs returns the container log files of the controller's pods that
// run now (the node agents keep a pod's logs while it exists).
func (in *Installation) PodLogs() []string {
	if in.t.Dir == "" {
		return nil
	}
	var out []string
	for _, d := range installedDeployments {
		m, _ := filepath.Glob(filepath.Join(in.t.Dir, "nodes", "*", "pod-"+d+"-*", "*.log"))
		out = append(out, m...)
	}
	sort.Strings(out)
	return out
}

// Warnings returns the controller pods' log lines at level WARN or ERROR
// (at most max, then a count of the rest), each prefixed with its pod:
// what a test shows beside a failed request.
func (in *Installation) Warnings(max int) string {
	var lines []string
	more := 0
	for _, f := range in.PodLogs() {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pod := filepath.Base(filepath.Dir(f))
		for _, l := range strings.Split(string(data), "\n") {
			if !strings.Contains(l, `"level":"WARN"`) && !strings.Contains(l, `"level":"ERROR"`) {
				continue
			}
			if len(lines) == max {
				more++
				continue
			}
			lines = append(lines, pod+": "+l)
		}
	}
	if more > 0 {
		lines = append(lines, fmt.Sprintf("... and %d more", more))
	}
	return strings.Join(lines, "\n")
}

// Forbidden fails when a controller pod logged a request RBAC refused:
// config/rbac lacks a rule the controller needs.
func (in *Installation) Forbidden() error {
	dirs := map[string]bool{}
	for _, f := range in.PodLogs() {
		dirs[filepath.Dir(f)] = true
	}
	var lines []string
	for d := range dirs {
		for _, l := range forbiddenLines(d, nil) {
			lines = append(lines, filepath.Base(d)+"/"+l)
		}
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		return nil
	}
	if len(lines) > 5 {
		lines = append(lines[:5], fmt.Sprintf("... and %d more", len(lines)-5))
	}
	return fmt.Errorf("lab: zerodrop-controller's pods were refused by RBAC (config/rbac):\n%s", strings.Join(lines, "\n"))
}

// describe is what a failed install shows: the controller pods' phases and
// container states, the namespace's warning events, and each pod's log
// tail.
func (in *Installation) describe(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var b strings.Builder
	pods, err := in.t.Client.CoreV1().Pods(ControllerNamespace).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s on %q: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
			for _, cs := range p.Status.ContainerStatuses {
				switch {
				case cs.State.Waiting != nil:
					fmt.Fprintf(&b, "; %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
				case cs.State.Terminated != nil:
					fmt.Fprintf(&b, "; %s terminated: %s (%d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
				default:
					fmt.Fprintf(&b, "; %s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
				}
			}
			b.WriteString("\n")
		}
	}
	events, err := in.t.Client.CoreV1().Events(ControllerNamespace).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "event %s %s: %s: %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	for _, f := range in.PodLogs() {
		fmt.Fprintf(&b, "--- %s\n%s\n", strings.TrimPrefix(f, in.t.Dir+string(os.PathSeparator)), proc.TailFile(f, 2000))
	}
	return b.String()
}

// Uninstall removes the installation as docs/install.md tells users to:
// the LoadBalancer first (its finalizer is the reconciler's, which must
// still run), then every object applied, the namespace last, waiting
// (bounded) until it is gone. The CRDs stay, as the lab's other
// controllers use them.
func (in *Installation) Uninstall(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var errs []error
	if err := in.kc.Delete(ctx, &zv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Name: LoadBalancerName}}); err == nil {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		if err := pollUntil(wctx, 100*time.Millisecond, func() bool {
			return apierrors.IsNotFound(in.kc.Get(wctx, types.NamespacedName{Name: LoadBalancerName}, &zv1.LoadBalancer{}))
		}); err != nil {
			errs = append(errs, fmt.Errorf("LoadBalancer %s not finalized: %w", LoadBalancerName, err))
		}
		wcancel()
	}
	objs := sortForApply(in.objs)
	slices.Reverse(objs)
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if err := in.kc.Delete(ctx, o.DeepCopy()); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete %s %s: %w", o.GetKind(), objectName(o), err))
		}
	}
	if err := pollUntil(ctx, 250*time.Millisecond, func() bool {
		return apierrors.IsNotFound(in.kc.Get(ctx, types.NamespacedName{Name: ControllerNamespace}, &corev1.Namespace{}))
	}); err != nil {
		errs = append(errs, fmt.Errorf("namespace %s still there: %w", ControllerNamespace, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab: uninstall: %w", err)
	}
	return nil
}

// ZerodropInstalledScenario is the zerodrop scenario with zerodrop-controller
// installed as a user installs it (config/default, Install) instead of
// started as two host processes: its pods under their own ServiceAccounts
// and RBAC, the webhook and drain endpoint reached through their Services.
// It uses the installation it finds (`zerodrop lab install`), else installs
// for the run and uninstalls after it. It has no controller faults: the
// processes are the node agents' to run.
var ZerodropInstalledScenario = func() Scenario {
	s := ZerodropScenario
	s.Name = "zerodrop-installed"
	s.Summary = "the zerodrop scenario, with the controller installed from config/default and running as pods under its own RBAC"
	s.Prepare = func(ctx context.Context, t Target, ns string) (*Integration, error) {
		return prepareInstalled(ctx, t, ns, InstallObjects)
	}
	return s
}()

// Installed reports whether zerodrop-controller's serve Deployment exists in
// the lab t (an installation a scenario should use rather than make).
func Installed(ctx context.Context, t Target) (bool, error) {
	_, err := t.Client.AppsV1().Deployments(ControllerNamespace).Get(ctx, "zerodrop-serve", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// prepareInstalled is ZerodropInstalledScenario's Prepare; objects builds
// what to install (config/default, or a rendering of the Helm chart).
func prepareInstalled(ctx context.Context, t Target, ns string, objects func() ([]*unstructured.Unstructured, error)) (in *Integration, err error) {
	objs, err := objects()
	if err != nil {
		return nil, err
	}
	found, err := Installed(ctx, t)
	if err != nil {
		return nil, err
	}
	var inst *Installation
	if found {
		inst, err = OpenInstallation(t, objs, nil)
	} else {
		inst, err = Install(ctx, t, objs, nil)
	}
	if err != nil {
		return nil, err
	}
	in = &Integration{Check: inst.Forbidden}
	in.Stop = func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*time.Minute)
		defer cancel()
		errs := unbindApp(cctx, t, inst.kc, ns)
		if !found {
			errs = append(errs, inst.Uninstall(cctx))
		}
		errs = append(errs, t.clearPool(cctx, LBHAProxy))
		if err := errors.Join(errs...); err != nil {
			inst.log.Warn("zerodrop-installed scenario cleanup", "err", err)
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, inst.describe(context.WithoutCancel(ctx)))
			in.Stop()
			in = nil
		}
	}()
	return in, bindApp(ctx, t, inst.kc, ns)
}

// ParseObjects reads the objects of a YAML (or JSON) stream, as `kubectl
// apply -f` does: a rendering of the Helm chart (`helm template`), or any
// manifest file. source names the stream in errors, with the document's
// number.
func ParseObjects(stream []byte, source string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), 4096)
	var out []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
		if len(m) == 0 {
			continue
		}
		o := &unstructured.Unstructured{Object: m}
		if o.GetKind() == "" || o.GetAPIVersion() == "" || o.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d: not a Kubernetes object (apiVersion %q, kind %q, metadata.name %q)", source, doc, o.GetAPIVersion(), o.GetKind(), o.GetName())
		}
		out = append(out, o)
	}
}
