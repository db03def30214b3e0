package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"zerodrop.dev/zerodrop/internal/testenv"
)

func readVolume(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

func TestAtomicWriterSwapsDataDirAndKeepsUserNamesAsSymlinks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	first := map[string]volumeFile{"token": {[]byte("t1"), 0o644}, "sub/ca.crt": {[]byte("ca"), 0o600}}
	if err := writeAtomic(dir, first); err != nil {
		t.Fatal(err)
	}
	ts1, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil || !strings.HasPrefix(ts1, "..20") {
		t.Fatalf("..data -> %q (%v), want a timestamped directory", ts1, err)
	}
	for name, want := range map[string]string{"token": "..data/token", "sub": "..data/sub"} {
		if got, err := os.Readlink(filepath.Join(dir, name)); err != nil || got != want {
			t.Errorf("%s -> %q (%v), want a symlink to %s", name, got, err, want)
		}
	}
	if got := readVolume(t, dir, "sub/ca.crt"); got != "ca" {
		t.Errorf("sub/ca.crt = %q", got)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "sub/ca.crt")); fi.Mode().Perm() != 0o600 {
		t.Errorf("sub/ca.crt mode %v, want 0600", fi.Mode().Perm())
	}

	// The same payload again writes nothing.
	if err := writeAtomic(dir, first); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Readlink(filepath.Join(dir, "..data")); again != ts1 {
		t.Errorf("an unchanged payload moved ..data from %s to %s", ts1, again)
	}

	// An update: token changes, sub goes, namespace comes.
	time.Sleep(10 * time.Millisecond)
	if err := writeAtomic(dir, map[string]volumeFile{"token": {[]byte("t2"), 0o644}, "namespace": {[]byte("ns"), 0o644}}); err != nil {
		t.Fatal(err)
	}
	ts2, _ := os.Readlink(filepath.Join(dir, "..data"))
	if ts2 == ts1 {
		t.Fatal("..data did not move on an update")
	}
	if got := readVolume(t, dir, "token"); got != "t2" {
		t.Errorf("token after update = %q, want t2", got)
	}
	if got := readVolume(t, dir, "namespace"); got != "ns" {
		t.Errorf("namespace = %q", got)
	}
	for _, gone := range []string{"sub", ts1, "..data_tmp"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still there after the update (%v)", gone, err)
		}
	}
}

func TestAtomicWriterRejectsEscapingPaths(t *testing.T) {
	for _, p := range []string{"../etc/passwd", "/abs", "a/../../b", "..data"} {
		if err := writeAtomic(t.TempDir(), map[string]volumeFile{p: {[]byte("x"), 0o644}}); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
}

func service(ns, name, ip string, ports ...v1.ServicePort) v1.Service {
	return v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func TestServiceEnvIsTheKubeletsServiceLinks(t *testing.T) {
	services := []v1.Service{
		service("default", "kubernetes", "10.96.0.1", v1.ServicePort{Name: "https", Port: 443, Protocol: v1.ProtocolTCP}),
		service("shop", "web-api", "10.96.3.4", v1.ServicePort{Port: 80}, v1.ServicePort{Name: "metrics", Port: 9090, Protocol: v1.ProtocolTCP}),
		service("shop", "headless", "None", v1.ServicePort{Port: 80}),
		service("other", "elsewhere", "10.96.9.9", v1.ServicePort{Port: 80}),
	}
	env := serviceEnv(services, "shop", nil)
	want := map[string]string{
		"KUBERNETES_SERVICE_HOST":       "10.96.0.1",
		"KUBERNETES_SERVICE_PORT":       "443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT":               "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP":       "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp",
		"KUBERNETES_PORT_443_TCP_PORT":  "443",
		"KUBERNETES_PORT_443_TCP_ADDR":  "10.96.0.1",
		"WEB_API_SERVICE_HOST":          "10.96.3.4",
		"WEB_API_SERVICE_PORT":          "80",
		"WEB_API_SERVICE_PORT_METRICS":  "9090",
		"WEB_API_PORT":                  "tcp://10.96.3.4:80",
		"WEB_API_PORT_9090_TCP_ADDR":    "10.96.3.4",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	for k := range env {
		if strings.HasPrefix(k, "HEADLESS_") || strings.HasPrefix(k, "ELSEWHERE_") {
			t.Errorf("%s set: headless services and other namespaces give no links", k)
		}
	}

	off := false
	env = serviceEnv(services, "shop", &off)
	if env["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" {
		t.Errorf("enableServiceLinks false dropped the kubernetes service: %v", env)
	}
	if _, ok := env["WEB_API_SERVICE_HOST"]; ok {
		t.Errorf("enableServiceLinks false still links the namespace's services")
	}
}

func TestResourceFieldRefDividesRoundsUpAndDefaultsLimitsToAllocatable(t *testing.T) {
	c := &v1.Container{Name: "manager", Resources: v1.ResourceRequirements{
		Limits:   v1.ResourceList{v1.ResourceMemory: resource.MustParse("128Mi")},
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("10m"), v1.ResourceMemory: resource.MustParse("64Mi")},
	}}
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("8Gi")}
	for _, tc := range []struct {
		res, divisor, want string
	}{
		{"limits.memory", "", "134217728"}, // GOMEMLIMIT in the controller's Deployments
		{"limits.memory", "1Mi", "128"},
		{"limits.memory", "100Mi", "2"}, // 1.28 rounds up
		{"limits.cpu", "", "2"},         // not set: the node's allocatable
		{"limits.cpu", "1m", "2000"},
		{"requests.cpu", "", "1"}, // 10m rounds up to one core
		{"requests.cpu", "1m", "10"},
		{"requests.memory", "1Mi", "64"},
	} {
		fs := &v1.ResourceFieldSelector{Resource: tc.res}
		if tc.divisor != "" {
			fs.Divisor = resource.MustParse(tc.divisor)
		}
		got, err := resourceValue(fs, c, alloc)
		if err != nil || got != tc.want {
			t.Errorf("%s / %q = %q (%v), want %s", tc.res, tc.divisor, got, err, tc.want)
		}
	}
	if _, err := resourceValue(&v1.ResourceFieldSelector{Resource: "limits.gpu"}, c, alloc); err == nil {
		t.Error("limits.gpu accepted")
	}
}

func TestTokenIsRefreshedAfterEightyPercentOrADay(t *testing.T) {
	issued := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	token := func(ttl time.Duration) *authenticationv1.TokenRequest {
		secs := int64(ttl / time.Second)
		return &authenticationv1.TokenRequest{
			Spec:   authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
			Status: authenticationv1.TokenRequestStatus{ExpirationTimestamp: metav1.NewTime(issued.Add(ttl))},
		}
	}
	hour := token(3607 * time.Second)
	for _, tc := range []struct {
		name   string
		tr     *authenticationv1.TokenRequest
		after  time.Duration
		jitter time.Duration
		want   bool
	}{
		{"fresh 3607 s token", hour, time.Minute, 0, false},
		{"79% of its life", hour, 2849 * time.Second, 0, false},
		{"just past 80% of its life", hour, 2887 * time.Second, 0, true},
		{"jitter brings it forward", hour, 2880 * time.Second, 10 * time.Second, true},
		{"year-long token at 23 h", token(365 * 24 * time.Hour), 23 * time.Hour, 0, false},
		{"year-long token past 24 h", token(365 * 24 * time.Hour), 24*time.Hour + time.Second, 0, true},
	} {
		if got := tokenRequiresRefresh(tc.tr, issued.Add(tc.after), tc.jitter); got != tc.want {
			t.Errorf("%s: requiresRefresh = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestContainerIdentityFollowsSecurityContextAndRunAsNonRoot(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	yes := true
	pod := func(psc *v1.PodSecurityContext, csc *v1.SecurityContext) (*v1.Pod, *v1.Container) {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
			Spec: v1.PodSpec{SecurityContext: psc, Containers: []v1.Container{{Name: "c", Image: "img", SecurityContext: csc}}}}
		return p, &p.Spec.Containers[0]
	}
	for _, tc := range []struct {
		name    string
		psc     *v1.PodSecurityContext
		csc     *v1.SecurityContext
		user    string
		want    identity
		wantErr string
	}{
		{"root image, nothing set", nil, nil, "", identity{uid: 0, gid: 0}, ""},
		{"image USER 65532", nil, nil, "65532", identity{uid: 65532, gid: 0}, ""},
		{"image USER uid:gid", nil, nil, "65532:65532", identity{uid: 65532, gid: 65532}, ""},
		{"pod runAsUser", &v1.PodSecurityContext{RunAsUser: i64(1000)}, nil, "", identity{uid: 1000, gid: 0}, ""},
		{"container overrides pod", &v1.PodSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(1000)},
			&v1.SecurityContext{RunAsUser: i64(2000), RunAsGroup: i64(3000)}, "", identity{uid: 2000, gid: 3000}, ""},
		{"runAsNonRoot with a non-root image", &v1.PodSecurityContext{RunAsNonRoot: &yes}, nil, "65532", identity{uid: 65532, gid: 0}, ""},
		{"runAsNonRoot with a root image", &v1.PodSecurityContext{RunAsNonRoot: &yes}, nil, "", identity{},
			`container has runAsNonRoot and image will run as root (pod: "p_ns(u1)", container: c)`},
		{"runAsNonRoot with runAsUser 0", nil, &v1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: i64(0)}, "65532", identity{},
			`container's runAsUser breaks non-root policy (pod: "p_ns(u1)", container: c)`},
		{"runAsNonRoot satisfied by runAsUser", nil, &v1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: i64(7)}, "", identity{uid: 7, gid: 0}, ""},
		{"allowPrivilegeEscalation false", nil, &v1.SecurityContext{AllowPrivilegeEscalation: new(bool)}, "65532", identity{uid: 65532, noNewPrivs: true}, ""},
		{"non-numeric image user", nil, nil, "nobody", identity{}, `Program.User "nobody"`},
	} {
		p, c := pod(tc.psc, tc.csc)
		got, err := containerIdentity(p, c, Program{User: tc.user})
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %+v (%v), want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestExecutableByNamesTheDirectoryThatStopsAUser(t *testing.T) {
	base, err := os.MkdirTemp("", "zd-exec-") // t.TempDir's parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(base, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(private, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	owner := identity{uid: int64(os.Getuid()), gid: int64(os.Getgid())}
	if err := executableBy(prog, owner); err != nil {
		t.Errorf("the owner cannot run it: %v", err)
	}
	if os.Getuid() == 65532 {
		t.Fatal("test runs as uid 65532")
	}
	err = executableBy(prog, identity{uid: 65532, gid: 65532})
	if err == nil || !strings.Contains(err.Error(), private) {
		t.Errorf("uid 65532 through a 0700 directory: %v, want an error naming %s", err, private)
	}
	if err := os.Chmod(private, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := executableBy(prog, identity{uid: 65532, gid: 65532}); err != nil {
		t.Errorf("after chmod 0755: %v", err)
	}
}

func TestSandboxArgvMountsVolumesThenMakesRootReadOnlyAndDropsPrivileges(t *testing.T) {
	argv := sandboxArgv("zdk-pod", []bindMount{{source: "/state/vols/cfg", target: "/etc/app's", readOnly: true}}, true,
		identity{uid: 65532, gid: 65532}, []string{"/bin/app", "--flag"})
	joined := strings.Join(argv, " ")
	var sh string
	for i, a := range argv {
		if a == "-c" {
			sh = argv[i+1]
		}
	}
	ro := strings.Index(sh, "remount,bind,ro /\n")
	bind := strings.Index(sh, "--bind '/state/vols/cfg' '/etc/app'\\''s'")
	roVol := strings.Index(sh, "remount,bind,ro '/etc/app'\\''s'")
	// The root goes read-only last: a bind copies its source mount's
	// read-only flag, and volume directories live on the root file system.
	if ro < 0 || bind < 0 || roVol < 0 || !(bind < roVol && roVol < ro) {
		t.Errorf("script does not bind, make the volume ro, then remount / ro:\n%s", sh)
	}
	for _, want := range []string{"netns exec zdk-pod", "--mount --propagation private", "--reuid=65532 --regid=65532 --clear-groups", "-- /bin/app --flag"} {
		if !strings.Contains(joined, want) {
			t.Errorf("argv lacks %q: %q", want, argv)
		}
	}
}

func TestMountPointsRemovesOnlyWhatItCreatedAndOnlyIfEmpty(t *testing.T) {
	base := t.TempDir()
	var m mountPoints
	if err := m.ensure(filepath.Join(base, "a/b/c"), true); err != nil {
		t.Fatal(err)
	}
	if err := m.ensure(filepath.Join(base, "x/file"), false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "x/keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.removeCreated()
	for _, gone := range []string{"a", "x/file"} {
		if _, err := os.Lstat(filepath.Join(base, gone)); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", gone, err)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "x/keep")); err != nil {
		t.Errorf("a file someone else put there was removed: %v", err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Errorf("a directory that existed before was removed: %v", err)
	}
}

func TestPodEnvPutsServiceLinksUnderContainerEnvAndExpandsThem(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"}}
	c := &v1.Container{Name: "app", Env: []v1.EnvVar{
		{Name: "API", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
		{Name: "WEB_SERVICE_HOST", Value: "overridden"},
		{Name: "GOMEMLIMIT", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory"}}},
	}}
	links := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "WEB_SERVICE_HOST": "10.96.0.9"}
	alloc := v1.ResourceList{v1.ResourceMemory: resource.MustParse("8Gi")}
	_, env, err := podEnv(context.Background(), nil, pod, c, Program{}, "10.77.0.5", "10.77.0.1", links, alloc)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"API":              "https://10.96.0.1:443",
		"WEB_SERVICE_HOST": "overridden",
		"GOMEMLIMIT":       "8589934592", // no limit: the node's allocatable
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}

func TestMountPointInUseByAnotherNamespaceIsKept(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "unshare")
	base := t.TempDir()
	var m mountPoints
	point := filepath.Join(base, "pod/secrets")
	if err := m.ensure(point, true); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	// A pod of another agent: its private mount namespace binds a volume
	// at the same mount point and keeps running.
	pod := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		"mount --bind "+src+" "+point+" && echo mounted && exec sleep 30")
	out, err := pod.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pod.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.Process.Kill(); _ = pod.Wait() })
	line := make([]byte, 8)
	if n, _ := out.Read(line); string(line[:n]) != "mounted\n" {
		t.Fatalf("the other namespace did not mount: %q", line[:n])
	}
	m.removeCreated()
	if _, err := os.Stat(point); err != nil {
		t.Fatalf("a mount point another namespace still uses was removed (its mount detached): %v", err)
	}
	_ = pod.Process.Kill()
	_ = pod.Wait()
	m.created = []string{filepath.Join(base, "pod"), point}
	m.removeCreated()
	if _, err := os.Stat(filepath.Join(base, "pod")); !os.IsNotExist(err) {
		t.Errorf("mount points not removed once no namespace uses them: %v", err)
	}
}
