package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/lab"
	"zerodrop.dev/zerodrop/internal/lab/labtest"
	"zerodrop.dev/zerodrop/internal/lab/netns"
	"zerodrop.dev/zerodrop/internal/verify"
)

// requireVerifyLab returns the options of a lab for this test process, as
// internal/lab's tests do, with a bridge prefix of its own; it skips (fails
// in CI) unless everything a lab needs is here (package labtest).
func requireVerifyLab(t *testing.T) lab.Options {
	t.Helper()
	bins, app := labtest.Require(t)
	pid := os.Getpid()
	return lab.Options{
		Dir:         filepath.Join(t.TempDir(), "lab"),
		Nodes:       1,
		Bridge:      fmt.Sprintf("zdv%d", pid%100000),
		PodCIDR:     netns.PrefixForPID(pid),
		ServiceCIDR: lab.ServiceCIDRForPID(pid),
		AppBinary:   app,
		Binaries:    bins,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// Scenario: the lab's "drain" deployment (readinessProbe, preStop sleep,
// the app drains on SIGTERM) of two replicas serves through a real HAProxy
// kept in sync with its Ready endpoints. `zerodrop verify --restart
// deployment/web --rate 50 -o json` is run through the CLI against the
// lab's apiserver and HAProxy frontend. Expect: exit 0 and a JSON report
// whose rollout completed with every old pod gone, in which a pod created
// by the rollout became Ready, a pod present before it was deleted and
// went away, EndpointSlice changes were seen, requests were sent, and none
// failed (the drain configuration is the one that drops nothing).
func TestVerifyRestartAgainstLab(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lab run")
	}
	opts := requireVerifyLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // hang guard
	defer cancel()
	l, err := lab.Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s, err := lab.ScenarioByName("drain")
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("zd-verify-%d", os.Getpid())
	d, err := lab.Deploy(ctx, l.Target(), s, lab.RunOptions{Replicas: 2, Namespace: ns, Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after l.Close, so it runs first: the namespace and the
	// syncer go while the control plane still answers.
	t.Cleanup(d.Close)

	var stdout, stderr bytes.Buffer
	code := runIO([]string{"verify", "--progress", "never",
		"--kubeconfig", l.State().Kubeconfig, "-n", ns, "--restart", "deployment/web",
		"--rate", "50", "--warmup", "1s", "--settle", "1s", "--duration", "2m", "-o", "json",
		"http://" + l.Frontends()[0] + "/"}, strings.NewReader(""), &stdout, &stderr)
	rep, err := verify.ReadJSON(&stdout)
	if err != nil {
		t.Fatalf("exit %d, report unreadable: %v\nstderr: %s", code, err, stderr.String())
	}
	var events strings.Builder
	for _, e := range rep.Events {
		fmt.Fprintf(&events, "  %8.0f ms %s\n", e.AtMS, e)
	}
	t.Logf("exit %d; %d requests, %d failed %v; verdict %+v; rollout %+v\nevents:\n%s",
		code, rep.Requests, rep.Failed, rep.Failures, rep.Verdict, rep.Rollout, events.String())

	if r := rep.Rollout; r == nil || !r.Complete || r.Error != "" || r.CompletedAtMS <= r.StartedAtMS || r.OldGoneAtMS < r.CompletedAtMS {
		t.Errorf("rollout did not complete with its old pods gone: %+v", rep.Rollout)
	}
	if rep.Requests == 0 || rep.OK+rep.Failed != rep.Requests {
		t.Errorf("requests %d = ok %d + failed %d does not hold (or nothing sent)", rep.Requests, rep.OK, rep.Failed)
	}
	if rep.Failed != 0 {
		t.Errorf("drain configuration dropped %d requests: %+v", rep.Failed, rep.Failures)
	}
	if !rep.Verdict.Pass || code != 0 {
		t.Errorf("verdict %+v, exit %d; want a pass and exit 0 (stderr: %s)", rep.Verdict, code, stderr.String())
	}

	// What the pods did, as verify saw it through the API.
	seen := map[string]map[string]bool{} // object -> "type detail"
	mark := func(obj, what string) {
		if seen[obj] == nil {
			seen[obj] = map[string]bool{}
		}
		seen[obj][what] = true
	}
	endpoints := 0
	for _, e := range rep.Events {
		switch e.Kind {
		case verify.EventPod:
			mark(e.Object, e.Type)
			if e.Type == verify.PodCondition && e.Detail == "Ready=True" {
				mark(e.Object, "ready")
			}
		case verify.EventEndpoint:
			endpoints++
			mark(e.Object, "endpoint "+e.Type)
		}
	}
	var created, replaced int
	for _, what := range seen {
		if what[verify.PodCreated] && what["ready"] && what["endpoint "+verify.EndpointAdded] {
			created++
		}
		if what[verify.PodPresent] && what[verify.PodDeleting] && what[verify.PodGone] {
			replaced++
		}
	}
	if created != 2 {
		t.Errorf("%d pods created by the rollout became Ready with an endpoint added, want 2", created)
	}
	if replaced != 2 {
		t.Errorf("%d pods present before the rollout were deleted and gone, want 2", replaced)
	}
	if endpoints == 0 {
		t.Errorf("no EndpointSlice event observed")
	}
}
