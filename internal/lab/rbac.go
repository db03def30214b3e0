package lab

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	authv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"zerodrop.dev/zerodrop/config"
)

// The ServiceAccounts of config/rbac: the reconcile role's and the serve
// role's. The lab runs each controller process with its ServiceAccount's
// token, as the pods of config/manager would, so that what RBAC refuses
// fails here before a user meets it.
const (
	ReconcileServiceAccount = "zerodrop-controller"
	ServeServiceAccount     = "zerodrop-serve"
)

// rbacObjects builds config/rbac with kustomize, as `kubectl apply -k`
// would, from the files embedded in the binary (the very files users
// apply).
func rbacObjects() ([]*unstructured.Unstructured, error) {
	return kustomizeConfig("rbac")
}

// kustomizeConfig builds config/<dir> with kustomize, as `kubectl apply -k
// config/<dir>` would, from the files embedded in the binary (config.FS:
// the very files users apply).
func kustomizeConfig(dir string) ([]*unstructured.Unstructured, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(config.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(config.FS, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/", p), data)
	})
	if err != nil {
		return nil, fmt.Errorf("lab: config/%s: %w", dir, err)
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/"+dir)
	if err != nil {
		return nil, fmt.Errorf("lab: kustomize build config/%s: %w", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, not r.Map(): its ints are Go ints, which
		// unstructured's DeepCopy refuses (it takes JSON's int64).
		raw, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("lab: config/%s: %w", dir, err)
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("lab: config/%s: %w", dir, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// applyRBAC applies config/rbac (server-side apply, field manager
// zerodrop-lab), unchanged.
func applyRBAC(ctx context.Context, kc client.Client) error {
	objs, err := rbacObjects()
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := kc.Patch(ctx, o, client.Apply, client.FieldOwner("zerodrop-lab"), client.ForceOwnership); err != nil {
			return fmt.Errorf("lab: apply config/rbac %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// grantSecrets gives both ServiceAccounts get on Secrets of other names in
// ControllerNamespace, with a Role and RoleBinding of their own, as
// docs/haproxy.md ("RBAC") tells users to for a Secret config/rbac does not
// name.
func grantSecrets(ctx context.Context, kc client.Client, name string, secrets ...string) error {
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ControllerNamespace},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: secrets, Verbs: []string{"get"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ControllerNamespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.ServiceAccountKind, Name: ReconcileServiceAccount, Namespace: ControllerNamespace},
			{Kind: rbacv1.ServiceAccountKind, Name: ServeServiceAccount, Namespace: ControllerNamespace},
		},
	}
	for _, o := range []client.Object{role, binding} {
		if err := kc.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("lab: %T %s: %w", o, name, err)
		}
	}
	return nil
}

// serviceAccountKubeconfig writes a kubeconfig file in dir that
// authenticates as ServiceAccount sa of ControllerNamespace with a bound
// token (24 hours, longer than any lab run), as the token a kubelet
// projects into a pod would.
func serviceAccountKubeconfig(ctx context.Context, cfg *rest.Config, dir, sa string) (string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ControllerNamespace).CreateToken(ctx, sa,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("lab: token of ServiceAccount %s/%s: %w", ControllerNamespace, sa, err)
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return "", fmt.Errorf("lab: cluster CA: %w", err)
		}
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: ca}
	kc.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[sa] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: sa, Namespace: ControllerNamespace}
	kc.CurrentContext = sa
	file := filepath.Join(dir, sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		return "", fmt.Errorf("lab: kubeconfig of %s: %w", sa, err)
	}
	return file, nil
}

// forbiddenLines returns the lines of the controller's logs in dir that
// report a request RBAC refused, but for those excused says it expected
// (by log file name and the line's byte offset in it).
func forbiddenLines(dir string, excused func(file string, offset int64) bool) []string {
	var out []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".log" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var off int64
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "forbidden") && (excused == nil || !excused(e.Name(), off)) {
				out = append(out, e.Name()+": "+line)
			}
			off += int64(len(line)) + 1
		}
	}
	return out
}
