package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"zerodrop.dev/zerodrop/internal/lab/cluster"
	"zerodrop.dev/zerodrop/internal/lab/k8sbin"
	"zerodrop.dev/zerodrop/internal/lab/netns"
	"zerodrop.dev/zerodrop/internal/ociimage"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// lab is one real control plane, one pod network and one agent, shared by
// every test of the package that needs them (starting a control plane takes
// seconds; each test uses its own pods).
type lab struct {
	client   kubernetes.Interface
	nodeName string
	network  *netns.Network
	images   map[string]Program
	log      *slog.Logger
	caCert   []byte // the cluster CA (PEM), which pods find in ca.crt
}

var (
	labOnce sync.Once
	theLab  *lab
	labErr  error
)

var errNoBinaries = errors.New("kubernetes binaries not built")

// helperImage is the test image: the test binary in helper mode.
const helperImage = "zerodrop-lab/helper:test"

// controllerImage stands for the controller's image in config/manager's
// Deployments: the test binary as controllerStandIn, with the image's USER
// (65532:65532).
const controllerImage = "zerodrop-controller"

// copyExecutable copies the program at path into a new directory that any
// user may search, and returns the copy's path.
func copyExecutable(path string) (string, error) {
	dir, err := os.MkdirTemp("", "zd-node-image-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "manager")
	return dst, os.WriteFile(dst, data, 0o755)
}

// requireLab starts the shared lab on first use.
func requireLab(t *testing.T) *lab {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane; not in -short")
	}
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	labOnce.Do(func() { theLab, labStop, labErr = startLab() })
	if errors.Is(labErr, errNoBinaries) {
		testenv.Unavailable(t, "%v (run `zerodrop lab binaries`)", labErr)
	}
	if labErr != nil {
		t.Fatalf("start lab: %v", labErr)
	}
	return theLab
}

func startLab() (*lab, func(), error) {
	if _, ok := k8sbin.Present(); !ok {
		return nil, nil, fmt.Errorf("%w in %s", errNoBinaries, k8sbin.EnvtestAssets())
	}
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	logLevel := slog.LevelWarn
	if os.Getenv("ZD_NODE_TEST_DEBUG") != "" {
		logLevel = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, c.Stop)
	client, err := c.Clientset()
	if err != nil {
		stop()
		return nil, nil, err
	}
	caCert, err := os.ReadFile(c.CACert)
	if err != nil {
		stop()
		return nil, nil, err
	}
	pid := os.Getpid()
	network, err := netns.Create(fmt.Sprintf("zdk%d", pid), netns.PrefixForPID(pid))
	if err != nil {
		stop()
		return nil, nil, err
	}
	stops = append(stops, func() { _ = network.Destroy() })
	self, err := os.Executable()
	if err != nil {
		stop()
		return nil, nil, err
	}
	// The controller's image runs as uid 65532, which cannot reach the
	// test binary in Go's 0700 build directory: a copy in a 0755 one.
	controller, err := copyExecutable(self)
	if err != nil {
		stop()
		return nil, nil, err
	}
	stops = append(stops, func() { _ = os.RemoveAll(filepath.Dir(controller)) })
	l := &lab{client: client, nodeName: fmt.Sprintf("lab-node-%d", pid), network: network, log: logger, caCert: caCert,
		images: map[string]Program{
			"zerodrop-lab/helper": {Path: self, Env: []string{"ZD_NODE_HELPER=1"}, Name: "/helper", Args: []string{"serve"}},
			controllerImage:       {Path: controller, Env: []string{"ZD_NODE_HELPER=1"}, Name: "/manager", User: ociimage.NonRootUser},
		}}
	agent := l.agent(l.nodeName)
	runCtx, stopAgent := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(runCtx) }()
	stops = append(stops, func() {
		stopAgent()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "node agent did not stop within 30s")
		}
	})
	// Ready to use once the scheduler can see a Ready node.
	if err := l.waitNodeReady(ctx, l.nodeName); err != nil {
		stop()
		return nil, nil, fmt.Errorf("node %s never Ready: %w", l.nodeName, err)
	}
	return l, stop, nil
}

// agent is an agent for node name on the lab's network, with the test
// image.
func (l *lab) agent(name string) *Agent {
	return &Agent{Client: l.client, NodeName: name, Network: l.network, Images: l.images, Log: l.log, RestartBackoff: time.Second,
		VolumeResync: time.Second}
}

// waitNodeReady waits until Node name reports Ready=True.
func (l *lab) waitNodeReady(ctx context.Context, name string) error {
	return waitFor(ctx, func() (bool, error) {
		n, err := l.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, cnd := range n.Status.Conditions {
			if cnd.Type == v1.NodeReady && cnd.Status == v1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

func waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// file returns a fresh path for one test (unique across -count runs).
func (l *lab) file(t *testing.T, name string) string {
	return filepath.Join(t.TempDir(), name)
}

// podName makes a DNS-safe unique pod name for a test.
func podName(t *testing.T) string {
	s := strings.ToLower(t.Name())
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s)
	if len(s) > 50 {
		s = s[len(s)-50:]
	}
	return strings.Trim(s, "-") + "-" + strconv.FormatInt(time.Now().UnixNano()%100000, 36)
}

// create creates pod in the default namespace (the scheduler binds it to
// the lab's only node) and deletes it at the end of the test.
func (l *lab) create(t *testing.T, pod *v1.Pod) *v1.Pod {
	t.Helper()
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	created, err := l.client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = l.client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	return created
}

// waitPod polls the pod until cond holds, failing the test after timeout
// (a hang guard, not a timing assertion).
func (l *lab) waitPod(t *testing.T, pod *v1.Pod, timeout time.Duration, what string, cond func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last *v1.Pod
	err := waitFor(ctx, func() (bool, error) {
		p, err := l.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s: waiting for %s: %v; last status: %s", pod.Name, what, err, describe(last))
	}
	return last
}

// waitGone waits until the pod object no longer exists.
func (l *lab) waitGone(t *testing.T, pod *v1.Pod, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := waitFor(ctx, func() (bool, error) {
		_, err := l.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("pod %s still exists: %v", pod.Name, err)
	}
}

func describe(p *v1.Pod) string {
	if p == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s podIP=%s", p.Status.Phase, p.Status.PodIP)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s(%s)", c.Type, c.Status, c.Reason)
	}
	for _, c := range p.Status.ContainerStatuses {
		fmt.Fprintf(&b, " [%s ready=%v restarts=%d state=%+v]", c.Name, c.Ready, c.RestartCount, c.State)
	}
	return b.String()
}

func condition(p *v1.Pod, t v1.PodConditionType) v1.ConditionStatus {
	if c := findCondition(p.Status.Conditions, t); c != nil {
		return c.Status
	}
	return ""
}

// events reads a record file: event name -> times, in file order.
func events(t *testing.T, file string) map[string][]time.Time {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("read records: %v", err)
	}
	defer f.Close()
	out := map[string][]time.Time{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, ns, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			t.Fatalf("bad record line %q", sc.Text())
		}
		out[name] = append(out[name], time.Unix(0, n))
	}
	return out
}

func helperContainer(args ...string) v1.Container {
	return v1.Container{Name: "app", Image: helperImage, Args: append([]string{"serve"}, args...)}
}

func int64p(v int64) *int64 { return &v }
