package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Program is what an image stands for on this machine: the agent has no
// container runtime, so an image is a program of this repository run as a
// local process.
type Program struct {
	// Path is the executable that plays the image's entrypoint.
	Path string
	// Args are the image's default arguments (its CMD): used when the
	// container sets neither command nor args.
	Args []string
	// Env is the image's environment (its ENV, "KEY=value"), applied before
	// the container's env.
	Env []string
	// Name is the entrypoint's path inside the image (e.g. "/zerodrop-app").
	// A container command whose first word is Name runs Path; any other
	// command runs the host's program of that name, as if the image had
	// the host's tools (sh, sleep, ...).
	Name string
	// User is the image's USER, numeric: "uid" or "uid:gid" (e.g. "65532"
	// for a distroless nonroot image). Empty: root. Containers run as it
	// unless their securityContext says otherwise.
	User string
}

// lookupImage finds the program for an image reference: the exact reference
// first, then the repository without tag or digest, so that
// "zerodrop-lab/app" stands for every tag of the app.
func lookupImage(images map[string]Program, image string) (Program, bool) {
	if p, ok := images[image]; ok {
		return p, true
	}
	p, ok := images[imageRepository(image)]
	return p, ok
}

// imageRepository strips a reference's digest and tag:
// "reg:5000/a/b:v2@sha256:..." -> "reg:5000/a/b".
func imageRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		ref = ref[:i]
	}
	return ref
}

// argv computes the process's argument vector from the image's program and
// the container's command and args with Kubernetes' rules: command replaces
// the entrypoint (and drops the image's default args), args replace the
// default args. $(VAR) references are expanded with env.
func argv(prog Program, c *v1.Container, env map[string]string) ([]string, error) {
	var out []string
	if len(c.Command) == 0 {
		out = append(out, prog.Path)
		if len(c.Args) == 0 {
			return append(out, prog.Args...), nil
		}
	} else {
		first := expand(c.Command[0], env)
		switch {
		case first == prog.Name && prog.Name != "":
			first = prog.Path
		default:
			p, err := exec.LookPath(first)
			if err != nil {
				return nil, fmt.Errorf("container %q command %q: not the image's entrypoint %q and not found on this machine: %w", c.Name, first, prog.Name, err)
			}
			first = p
		}
		out = append(out, first)
		for _, a := range c.Command[1:] {
			out = append(out, expand(a, env))
		}
	}
	for _, a := range c.Args {
		out = append(out, expand(a, env))
	}
	return out, nil
}

// podEnv builds a container's environment as the kubelet does, in order: a
// PATH and HOSTNAME, the image's env, the service links (services, from
// serviceEnv), envFrom, then env (later wins). Values may refer to earlier
// variables with $(VAR); fieldRef supports the downward API fields,
// resourceFieldRef the container's resources (allocatable standing for a
// limit that is not set), configMapKeyRef and secretKeyRef are read from
// the API.
func podEnv(ctx context.Context, client kubernetes.Interface, pod *v1.Pod, c *v1.Container, prog Program, podIP, hostIP string, services map[string]string, allocatable v1.ResourceList) ([]string, map[string]string, error) {
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	set("PATH", os.Getenv("PATH"))
	set("HOSTNAME", pod.Name)
	for _, kv := range prog.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, k := range sortedKeys(services) {
		set(k, services[k])
	}
	for _, src := range c.EnvFrom {
		data, err := envFromSource(ctx, client, pod.Namespace, src)
		if err != nil {
			return nil, nil, fmt.Errorf("container %q envFrom: %w", c.Name, err)
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(src.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, expand(e.Value, env))
		case e.ValueFrom.FieldRef != nil:
			v, err := fieldValue(pod, e.ValueFrom.FieldRef.FieldPath, podIP, hostIP)
			if err != nil {
				return nil, nil, fmt.Errorf("container %q env %s: %w", c.Name, e.Name, err)
			}
			set(e.Name, v)
		case e.ValueFrom.ResourceFieldRef != nil:
			target, err := containerByName(pod, c, e.ValueFrom.ResourceFieldRef.ContainerName)
			v := ""
			if err == nil {
				v, err = resourceValue(e.ValueFrom.ResourceFieldRef, target, allocatable)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("container %q env %s: %w", c.Name, e.Name, err)
			}
			set(e.Name, v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			cm, err := client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			v, ok := "", false
			if err == nil {
				v, ok = cm.Data[r.Key]
			}
			if !ok {
				if r.Optional != nil && *r.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("container %q env %s: configmap %s key %s: %v", c.Name, e.Name, r.Name, r.Key, errOr(err, "no such key"))
			}
			set(e.Name, v)
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			s, err := client.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			var v []byte
			ok := false
			if err == nil {
				v, ok = s.Data[r.Key]
			}
			if !ok {
				if r.Optional != nil && *r.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("container %q env %s: secret %s key %s: %v", c.Name, e.Name, r.Name, r.Key, errOr(err, "no such key"))
			}
			set(e.Name, string(v))
		default:
			return nil, nil, fmt.Errorf("container %q env %s: this valueFrom source is not supported by the lab's node agent", c.Name, e.Name)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out, env, nil
}

func errOr(err error, s string) any {
	if err != nil {
		return err
	}
	return s
}

func envFromSource(ctx context.Context, client kubernetes.Interface, ns string, src v1.EnvFromSource) (map[string]string, error) {
	switch {
	case src.ConfigMapRef != nil:
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, src.ConfigMapRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && src.ConfigMapRef.Optional != nil && *src.ConfigMapRef.Optional {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("configmap %s: %w", src.ConfigMapRef.Name, err)
		}
		return cm.Data, nil
	case src.SecretRef != nil:
		s, err := client.CoreV1().Secrets(ns).Get(ctx, src.SecretRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && src.SecretRef.Optional != nil && *src.SecretRef.Optional {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", src.SecretRef.Name, err)
		}
		out := map[string]string{}
		for k, v := range s.Data {
			out[k] = string(v)
		}
		return out, nil
	}
	return nil, nil
}

// fieldValue resolves a downward-API field path for env.
func fieldValue(pod *v1.Pod, path, podIP, hostIP string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	for prefix, m := range map[string]map[string]string{
		"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations,
	} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok {
				return m[key], nil
			}
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported by the lab's node agent", path)
}

// expand replaces $(VAR) with env's value, like the kubelet: $$ escapes a
// dollar, and a reference to an unknown variable is left as it is.
func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// absPath makes a program path absolute so that `ip netns exec` does not
// depend on the container's PATH to find it.
func absPath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	if a, err := exec.LookPath(p); err == nil {
		if abs, err := filepath.Abs(a); err == nil {
			return abs
		}
	}
	return p
}
