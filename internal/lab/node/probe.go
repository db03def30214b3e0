package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"zerodrop.dev/zerodrop/internal/lab/netns"
)

// result is one probe's verdict.
type result int

const (
	resultUnknown result = iota
	resultSuccess
	resultFailure
)

func (r result) String() string {
	return [...]string{"unknown", "success", "failure"}[r]
}

// probeKind is which of a container's three probes a worker runs.
type probeKind int

const (
	readiness probeKind = iota
	liveness
	startup
)

func (k probeKind) String() string {
	return [...]string{"Readiness", "Liveness", "Startup"}[k]
}

// initialResult is a probe's verdict before its first settled result, as in
// the kubelet: a container is not ready until its readiness probe passes, is
// alive until its liveness probe fails, and has not started until its
// startup probe passes.
func (k probeKind) initialResult() result {
	switch k {
	case readiness:
		return resultFailure
	case liveness:
		return resultSuccess
	}
	return resultUnknown
}

// defaultedProbe fills the API server's defaults into a probe (pods read
// back from the API already have them; pods built in tests may not).
func defaultedProbe(p *v1.Probe) v1.Probe {
	out := *p
	if out.PeriodSeconds <= 0 {
		out.PeriodSeconds = 10
	}
	if out.TimeoutSeconds <= 0 {
		out.TimeoutSeconds = 1
	}
	if out.SuccessThreshold <= 0 {
		out.SuccessThreshold = 1
	}
	if out.FailureThreshold <= 0 {
		out.FailureThreshold = 3
	}
	return out
}

// threshold counts consecutive equal probe results, as the kubelet's probe
// worker does: a result changes the probe's verdict only after
// successThreshold successes or failureThreshold failures in a row.
type threshold struct {
	last result
	run  int
}

// observe records one probe result and reports whether the verdict is now
// r (true once the run of r reaches its threshold, and on every result
// after that while the run lasts).
func (t *threshold) observe(r result, successThreshold, failureThreshold int32) bool {
	if r == t.last {
		t.run++
	} else {
		t.last, t.run = r, 1
	}
	switch r {
	case resultFailure:
		return t.run >= int(failureThreshold)
	case resultSuccess:
		return t.run >= int(successThreshold)
	}
	return true
}

// probeTarget is what a probe or hook acts on: the pod's address, its
// namespace (for exec), and the container's environment and ports.
type probeTarget struct {
	podIP     string
	net       *netns.PodNet
	env       []string
	container *v1.Container
	// program is the container's image program: an exec command naming
	// its entrypoint (Program.Name) runs its Path, as a command inside
	// the image would.
	program Program
	// pid is the container's main process: exec commands join its mount
	// and network namespaces, as the runtime's exec does; 0 runs them in
	// the pod's network namespace only.
	pid int
	// id is the identity the container runs as; exec commands run as it.
	id identity
}

// runProbe runs one probe attempt bounded by timeout. An error means the
// probe could not be run at all (the kubelet throws such results away).
func runProbe(ctx context.Context, p *v1.Probe, t probeTarget, timeout time.Duration) (result, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		code, err := httpGet(ctx, p.HTTPGet, t)
		if err != nil {
			return resultFailure, err.Error(), nil
		}
		if code >= 200 && code < 400 {
			return resultSuccess, "", nil
		}
		return resultFailure, fmt.Sprintf("HTTP probe failed with statuscode: %d", code), nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.container)
		if err != nil {
			return resultUnknown, "", err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.podIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return resultFailure, err.Error(), nil
		}
		_ = conn.Close()
		return resultSuccess, "", nil
	case p.Exec != nil:
		out, err := execIn(ctx, t, p.Exec.Command)
		if err == nil {
			return resultSuccess, "", nil
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			msg := strings.TrimSpace(string(out))
			if ctx.Err() != nil {
				msg = fmt.Sprintf("command timed out after %s", timeout)
			}
			return resultFailure, msg, nil
		}
		return resultUnknown, "", err
	case p.GRPC != nil:
		return resultUnknown, "", errors.New("gRPC probes are not supported by the lab's node agent")
	}
	return resultUnknown, "", errors.New("probe has no handler")
}

// execIn runs command inside the pod's network namespace with the
// container's environment, killing it when ctx ends.
func execIn(ctx context.Context, t probeTarget, command []string) ([]byte, error) {
	if len(command) == 0 {
		return nil, errors.New("exec: empty command")
	}
	name := command[0]
	if name == t.program.Name && name != "" {
		name = t.program.Path
	}
	var cmd *exec.Cmd
	if t.pid > 0 {
		argv := execArgv(t.pid, t.id, append([]string{absPath(name)}, command[1:]...))
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	} else {
		cmd = t.net.Command(ctx, absPath(name), command[1:]...)
	}
	cmd.Env = t.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// probeClient is shared by every HTTP probe and hook: no keep-alive (the
// kubelet's probes open a connection per attempt, so they never hold one
// open on a server that is draining) and no certificate checks.
var probeClient = &http.Client{
	Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe certificates either
	},
	// Redirects to another host are not followed (the kubelet reports them
	// as a success with a warning); a 3xx counts as success anyway.
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 || req.URL.Host != via[0].URL.Host {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

// probeUserAgent is what the kubelet sends, with the agent's own version.
const probeUserAgent = "kube-probe/1.37 (zerodrop lab node agent)"

func httpGet(ctx context.Context, h *v1.HTTPGetAction, t probeTarget) (int, error) {
	port, err := resolvePort(h.Port, t.container)
	if err != nil {
		return 0, err
	}
	host := h.Host
	if host == "" {
		host = t.podIP
	}
	scheme := strings.ToLower(string(h.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	full, err := url.Parse(u.String() + path)
	if err != nil {
		return 0, fmt.Errorf("httpGet path %q: %w", h.Path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full.String(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", probeUserAgent)
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Set(hd.Name, hd.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 10<<10)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// resolvePort turns a probe's port (a number or the name of a container
// port) into a number.
func resolvePort(p intstr.IntOrString, c *v1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("port %d out of range", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %q has no port named %q", c.Name, p.StrVal)
}
