package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// shContainer runs a host shell script, as the image table allows for any
// command that is not the image's entrypoint.
func shContainer(name, script string) v1.Container {
	return v1.Container{Name: name, Image: helperImage, Command: []string{"sh", "-c", script}}
}

// readWhen polls a file the pod writes until want accepts its content.
func readWhen(t *testing.T, l *lab, pod *v1.Pod, path, what string, want func(string) bool) string {
	t.Helper()
	var got string
	l.waitPod(t, pod, startTimeout, what, func(*v1.Pod) bool {
		b, err := os.ReadFile(path)
		got = string(b)
		return err == nil && want(got)
	})
	return got
}

func TestPodSeesServiceAccountSecretAndConfigMapVolumesAndServiceEnv(t *testing.T) {
	l := requireLab(t)
	ctx := context.Background()
	name := podName(t)
	out := t.TempDir()
	cms := l.client.CoreV1().ConfigMaps("default")
	secrets := l.client.CoreV1().Secrets("default")
	if _, err := cms.Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"greeting": "hello", "other": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cms.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if _, err := secrets.Create(ctx, &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = secrets.Delete(context.Background(), name, metav1.DeleteOptions{}) })

	cfgPath := "/zd-lab-test/" + name + "/cfg"
	secPath := "/zd-lab-test/" + name + "/sec"
	saPath := "/var/run/secrets/kubernetes.io/serviceaccount"
	c := shContainer("app", `sa=`+saPath+`; o=`+out+`
cat $sa/token > $o/token.tmp && mv $o/token.tmp $o/token
cat $sa/ca.crt > $o/ca.crt.tmp && mv $o/ca.crt.tmp $o/ca.crt
cat $sa/namespace > $o/namespace.tmp && mv $o/namespace.tmp $o/namespace
env > $o/env.tmp && mv $o/env.tmp $o/env
while true; do
  cat `+cfgPath+`/greeting > $o/greeting.tmp && mv $o/greeting.tmp $o/greeting
  cat `+secPath+`/password > $o/password.tmp && mv $o/password.tmp $o/password
  ls `+cfgPath+` > $o/cfgls.tmp && mv $o/cfgls.tmp $o/cfgls
  sleep 0.2
done`)
	// As the controller's Deployments set it.
	c.Env = []v1.EnvVar{{Name: "GOMEMLIMIT", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory"}}}}
	c.Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("256Mi")}
	c.VolumeMounts = []v1.VolumeMount{
		{Name: "cfg", MountPath: cfgPath, ReadOnly: true},
		{Name: "sec", MountPath: secPath, ReadOnly: true},
	}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.PodSpec{
		Containers: []v1.Container{c},
		Volumes: []v1.Volume{
			{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
				LocalObjectReference: v1.LocalObjectReference{Name: name}, Items: []v1.KeyToPath{{Key: "greeting", Path: "greeting"}}}}},
			{Name: "sec", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: name}}},
		},
	}})
	if !hasProjectedToken(pod) {
		t.Fatalf("the ServiceAccount admission plugin did not inject kube-api-access-*: %+v", pod.Spec.Volumes)
	}
	running := l.waitPod(t, pod, startTimeout, "Running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })

	t.Run("token is the pod's ServiceAccount's, bound to the pod", func(t *testing.T) {
		token := readWhen(t, l, pod, filepath.Join(out, "token"), "token", func(s string) bool { return s != "" })
		review, err := l.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st := review.Status
		if !st.Authenticated || st.User.Username != "system:serviceaccount:default:default" {
			t.Fatalf("TokenReview: authenticated=%v user=%q error=%q, want system:serviceaccount:default:default", st.Authenticated, st.User.Username, st.Error)
		}
		if got := st.User.Extra["authentication.kubernetes.io/pod-name"]; len(got) != 1 || got[0] != name {
			t.Errorf("token bound to pod %v, want %s", got, name)
		}
		if got := st.User.Extra["authentication.kubernetes.io/pod-uid"]; len(got) != 1 || got[0] != string(running.UID) {
			t.Errorf("token bound to pod UID %v, want %s", got, running.UID)
		}
	})
	t.Run("ca.crt is the cluster CA and namespace is the pod's", func(t *testing.T) {
		ca := readWhen(t, l, pod, filepath.Join(out, "ca.crt"), "ca.crt", func(s string) bool { return s != "" })
		if !bytes.Equal([]byte(ca), l.caCert) {
			t.Errorf("ca.crt in the pod differs from the cluster CA:\n%s\nwant\n%s", ca, l.caCert)
		}
		if ns := readWhen(t, l, pod, filepath.Join(out, "namespace"), "namespace", func(s string) bool { return s != "" }); ns != "default" {
			t.Errorf("namespace = %q, want default", ns)
		}
	})
	t.Run("KUBERNETES_SERVICE_HOST is the kubernetes Service's ClusterIP; GOMEMLIMIT the memory limit", func(t *testing.T) {
		svc, err := l.client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		env := readWhen(t, l, pod, filepath.Join(out, "env"), "env", func(s string) bool { return s != "" })
		for _, want := range []string{"KUBERNETES_SERVICE_HOST=" + svc.Spec.ClusterIP, "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
			"KUBERNETES_PORT_443_TCP=tcp://" + svc.Spec.ClusterIP + ":443", "GOMEMLIMIT=268435456"} {
			if !strings.Contains("\n"+env, "\n"+want+"\n") {
				t.Errorf("pod env lacks %s", want)
			}
		}
	})
	t.Run("secret and configMap volumes show their data and follow updates", func(t *testing.T) {
		readWhen(t, l, pod, filepath.Join(out, "greeting"), "configMap data", func(s string) bool { return s == "hello" })
		readWhen(t, l, pod, filepath.Join(out, "password"), "secret data", func(s string) bool { return s == "s3cret" })
		if ls := readWhen(t, l, pod, filepath.Join(out, "cfgls"), "configMap listing", func(s string) bool { return s != "" }); ls != "greeting\n" {
			t.Errorf("configMap volume with items lists %q, want only greeting", ls)
		}
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["greeting"] = "hello again"
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sec.Data["password"] = []byte("rotated")
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		readWhen(t, l, pod, filepath.Join(out, "greeting"), "updated configMap data", func(s string) bool { return s == "hello again" })
		readWhen(t, l, pod, filepath.Join(out, "password"), "updated secret data", func(s string) bool { return s == "rotated" })
	})
	t.Run("nothing mounted in the pod is visible on the host", func(t *testing.T) {
		for _, p := range []string{cfgPath, secPath, saPath} {
			entries, err := os.ReadDir(p)
			if err != nil {
				t.Errorf("mount point %s on the host: %v", p, err)
			}
			if len(entries) != 0 {
				t.Errorf("host directory %s shows the pod's volume: %v", p, entries)
			}
		}
		for _, self := range []string{"/proc/self/mountinfo", "/proc/1/mountinfo"} {
			info, err := os.ReadFile(self)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{cfgPath, secPath, saPath} {
				if strings.Contains(string(info), " "+p+" ") {
					t.Errorf("%s lists a mount at %s", self, p)
				}
			}
		}
	})
}

func hasProjectedToken(p *v1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil {
			return true
		}
	}
	return false
}

// Exit codes of the security-context pod's checks.
var securityChecks = map[int32]string{
	11: "runAsUser: id -u is not 4321",
	12: "runAsGroup: id -g is not 4321",
	13: "readOnlyRootFilesystem: a write outside the volumes succeeded",
	14: "readOnlyRootFilesystem: a write into the emptyDir failed",
	15: "the emptyDir did not keep what was written",
	16: "allowPrivilegeEscalation false: no_new_privs is not set",
}

func TestSecurityContextRunsAsTheUserWithAReadOnlyRootAndNoNewPrivs(t *testing.T) {
	l := requireLab(t)
	name := podName(t)
	outside := filepath.Join(os.TempDir(), "zd-rootfs-probe-"+name) // a root process could write here
	scratch := "/zd-lab-test/" + name + "/scratch"
	readOnly := true
	uid := int64(4321)
	rootRO := shContainer("readonly-root", `touch `+outside+` 2>/dev/null && exit 13
echo x > `+scratch+`/f || exit 14
[ "$(cat `+scratch+`/f)" = x ] || exit 15
exit 0`)
	rootRO.SecurityContext = &v1.SecurityContext{ReadOnlyRootFilesystem: &readOnly}
	rootRO.VolumeMounts = []v1.VolumeMount{{Name: "scratch", MountPath: scratch}}
	user := shContainer("as-user", `[ "$(id -u)" = 4321 ] || exit 11
[ "$(id -g)" = 4321 ] || exit 12
echo y > `+scratch+`/g || exit 14
grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status || exit 16
exit 0`)
	noEscalation := false
	user.SecurityContext = &v1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid, AllowPrivilegeEscalation: &noEscalation}
	user.VolumeMounts = []v1.VolumeMount{{Name: "scratch", MountPath: scratch}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.PodSpec{
		RestartPolicy: v1.RestartPolicyNever,
		Containers:    []v1.Container{rootRO, user},
		Volumes:       []v1.Volume{{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}},
	}})
	p := l.waitPod(t, pod, startTimeout, "both containers terminated", func(p *v1.Pod) bool {
		n := 0
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Terminated != nil {
				n++
			}
		}
		return n == 2
	})
	for _, s := range p.Status.ContainerStatuses {
		if code := s.State.Terminated.ExitCode; code != 0 {
			t.Errorf("container %s exited %d: %s", s.Name, code, securityChecks[code])
		}
	}
	if _, err := os.Stat(outside); err == nil {
		_ = os.Remove(outside)
		t.Errorf("%s was written from a readOnlyRootFilesystem container", outside)
	}
}

func TestRunAsNonRootWithARootImageIsACreateContainerConfigError(t *testing.T) {
	l := requireLab(t)
	yes := true
	c := shContainer("app", "sleep 3600")
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(t)}, Spec: v1.PodSpec{
		SecurityContext: &v1.PodSecurityContext{RunAsNonRoot: &yes},
		Containers:      []v1.Container{c},
	}})
	p := l.waitPod(t, pod, startTimeout, "CreateContainerConfigError", func(p *v1.Pod) bool {
		for _, s := range p.Status.ContainerStatuses {
			if w := s.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
				return true
			}
		}
		return false
	})
	msg := p.Status.ContainerStatuses[0].State.Waiting.Message
	if !strings.Contains(msg, "container has runAsNonRoot and image will run as root") {
		t.Errorf("waiting message %q, want the kubelet's runAsNonRoot message", msg)
	}
	if !hasEvent(t, l, p, "Failed") {
		t.Error("no Failed event for the container")
	}
}

func TestMissingConfigMapHoldsThePodUntilItAppearsAndOptionalSecretDoesNot(t *testing.T) {
	l := requireLab(t)
	ctx := context.Background()
	name := podName(t)
	yes := true
	c := shContainer("app", "sleep 3600")
	c.VolumeMounts = []v1.VolumeMount{{Name: "cfg", MountPath: "/zd-lab-test/" + name + "/cfg"}, {Name: "opt", MountPath: "/zd-lab-test/" + name + "/opt"}}
	pod := l.create(t, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.PodSpec{
		Containers: []v1.Container{c},
		Volumes: []v1.Volume{
			{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: name}}}},
			{Name: "opt", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: name + "-absent", Optional: &yes}}},
		},
	}})
	p := l.waitPod(t, pod, startTimeout, "bound", func(p *v1.Pod) bool { return p.Spec.NodeName != "" })
	if !hasEvent(t, l, p, "FailedMount") {
		t.Fatal("no FailedMount event for the missing ConfigMap")
	}
	p = l.waitPod(t, pod, startTimeout, "status reported", func(p *v1.Pod) bool { return len(p.Status.ContainerStatuses) == 1 })
	if w := p.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "ContainerCreating" {
		t.Errorf("container state %+v while its ConfigMap is missing, want Waiting ContainerCreating", p.Status.ContainerStatuses[0].State)
	}
	cms := l.client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cms.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	l.waitPod(t, pod, startTimeout, "Running once the ConfigMap exists (the optional Secret still absent)", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodRunning
	})
}
