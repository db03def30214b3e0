package nginx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/internal/nginxproc"
	"zerodrop.dev/zerodrop/provider"
)

// Registered on two instances, one of whose masters cannot reload yet
// (stopped with SIGSTOP): the target is Healthy only on the instance that
// reloaded, gets no request through the other, and is Healthy everywhere,
// and gets requests through both, once the second reloads.
func TestRegisterHealthyOnlyWhenEveryInstanceLoaded(t *testing.T) {
	r := newRig(t, 2)
	p := startProbe(t, "pod-a", false)
	pl := pool(p)
	b := r.instances[1]
	if err := syscall.Kill(b.MasterPID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(b.MasterPID(), syscall.SIGCONT)
		}
	}()
	start := time.Now()
	if err := r.p.Register(context.Background(), pl, p.target); err != nil {
		t.Fatal(err)
	}
	// Register waits ReloadWait at most for the reloads; a busy machine
	// may take longer to fork a's workers. b stays Initial all along.
	var st provider.PoolStatus
	for {
		st = r.status(pl)
		got := health(st, "pod-a")
		if got[1] != provider.HealthInitial {
			t.Fatalf("health with b's master stopped: %v, want b Initial: %+v", got, st)
		}
		if got[0] == provider.HealthHealthy {
			break
		}
		if got[0] != provider.HealthInitial || time.Since(start) > 20*time.Second {
			t.Fatalf("health with b's master stopped: %v, want [Healthy Initial] within 20s: %+v", got, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ts := st.Instances[1].Targets["pod-a"]; ts.Reason != "ReloadPending" || !strings.Contains(ts.Message, "reload pending") {
		t.Errorf("b: %+v, want ReloadPending", ts)
	}
	before := p.hits.Load()
	for range 20 {
		if code := get(b.Addr(), "/"); code != 502 {
			t.Fatalf("through b before its reload: status %d, want 502 (no server in rotation)", code)
		}
	}
	if p.hits.Load() != before {
		t.Fatalf("the target got %d request(s) through b before b loaded it", p.hits.Load()-before)
	}
	if code := get(r.instances[0].Addr(), "/"); code != 200 {
		t.Fatalf("through a: status %d, want 200", code)
	}
	ok, _, _ := st.Healthy("pod-a")
	if ok {
		t.Fatal("healthy everywhere while b has not loaded it")
	}
	syscall.Kill(b.MasterPID(), syscall.SIGCONT)
	stopped = false
	resumed := time.Now()
	took := r.waitHealth(pl, "pod-a", provider.HealthHealthy, 20*time.Second)
	t.Logf("Register -> Healthy on a: < %v; b resumed -> Healthy on both: %v", resumed.Sub(start), took)
	for range 10 {
		if code := get(b.Addr(), "/"); code != 200 {
			t.Fatalf("through b after its reload: status %d, want 200", code)
		}
	}
}

// A request held on a worker while the target drains keeps that worker
// alive as an old worker: the target is Draining (and gets no new request)
// until the request completes and the worker exits, then Drained; only then
// does Deregister remove it.
func TestDrainWaitsForTheOldWorkerHoldingARequest(t *testing.T) {
	// NGINX must not cut the held request (worker_shutdown_timeout) while
	// a loaded machine runs the checks.
	r := newRigWith(t, 1, 2*time.Minute)
	in := r.instances[0]
	a := startProbe(t, "pod-a", true)
	b := startProbe(t, "pod-b", false)
	pl := pool(a, b)
	ctx := context.Background()
	for _, p := range []*probe{a, b} {
		if err := r.p.Register(ctx, pl, p.target); err != nil {
			t.Fatal(err)
		}
	}
	r.waitHealth(pl, "pod-a", provider.HealthHealthy, 20*time.Second)
	r.waitHealth(pl, "pod-b", provider.HealthHealthy, 20*time.Second)
	// Hold one request on pod-a (round robin: those that land on pod-b
	// return at once).
	var held sync.WaitGroup
	var mu sync.Mutex
	var codes []int
	for a.active.Load() == 0 {
		held.Add(1)
		go func() {
			defer held.Done()
			code := getWithin(in.Addr(), "/slow", 2*time.Minute)
			mu.Lock()
			codes = append(codes, code)
			mu.Unlock()
		}()
		deadline := time.Now().Add(200 * time.Millisecond)
		for a.active.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	workers, _ := in.Workers()
	drainStart := time.Now()
	if err := r.p.SetDraining(ctx, pl, a.target); err != nil {
		t.Fatal(err)
	}
	// SetDraining waits ReloadWait at most: on a busy machine the reload
	// may still be under way (Healthy, DrainPending). Never Drained while
	// the request is held.
	for {
		st := r.status(pl)
		h := health(st, "pod-a")
		if h[0] == provider.HealthDraining {
			break
		}
		if h[0] != provider.HealthHealthy || time.Since(drainStart) > 20*time.Second {
			t.Fatalf("after SetDraining with a request held: %v, want Draining (after Healthy while the reload is pending): %+v", h, st)
		}
		if err := r.p.Deregister(ctx, pl, a.target); !errors.Is(err, provider.ErrTargetBusy) {
			t.Fatalf("Deregister before the drain reload took effect: %v, want ErrTargetBusy", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("SetDraining -> Draining: %v", time.Since(drainStart))
	aHits := a.hits.Load()
	for range 50 {
		if code := get(in.Addr(), "/"); code != 200 {
			t.Fatalf("while draining: status %d, want 200 from pod-b", code)
		}
	}
	if n := a.hits.Load() - aHits; n != 0 {
		t.Fatalf("the draining target got %d new request(s)", n)
	}
	// Meanwhile the old generation's idle workers exit: reading the
	// workers while they do must still find the one holding the request,
	// every time (within worker_shutdown_timeout, at which NGINX itself
	// drops the request).
	for i := 0; i == 0 || i < 200 && time.Since(drainStart) < 30*time.Second; i++ {
		if err := r.p.Deregister(ctx, pl, a.target); !errors.Is(err, provider.ErrTargetBusy) {
			var alive []int
			for _, w := range workers {
				if nginxproc.Alive(w.PID) {
					alive = append(alive, w.PID)
				}
			}
			t.Fatalf("Deregister #%d while a worker holds a request to it: %v, want ErrTargetBusy (workers of before the drain alive: %v; requests held on pod-a: %d)", i+1, err, alive, a.active.Load())
		}
		if st := r.status(pl); health(st, "pod-a")[0] != provider.HealthDraining {
			var alive []int
			for _, w := range workers {
				if nginxproc.Alive(w.PID) {
					alive = append(alive, w.PID)
				}
			}
			now, _ := in.Workers()
			t.Fatalf("read #%d, request still held: %+v, want Draining (workers of before the drain %v, alive: %v; now %v; requests held on pod-a: %d)", i+1, st.Instances[0].Targets["pod-a"], workers, alive, now, a.active.Load())
		}
	}
	released := time.Now()
	a.release()
	took := r.waitHealth(pl, "pod-a", provider.HealthDrained, 20*time.Second)
	// Drained is reported only once no worker of before the drain is alive.
	for _, w := range workers {
		if nginxproc.Alive(w.PID) {
			t.Fatalf("Drained while worker %d, which had the target, is alive", w.PID)
		}
	}
	t.Logf("request held %v; released -> Drained: %v", released.Sub(drainStart), took)
	held.Wait()
	for _, c := range codes {
		if c != 200 {
			t.Fatalf("a /slow request ended with %d, want 200 (the old worker finished it): %v", c, codes)
		}
	}
	if err := r.p.Deregister(ctx, pl, a.target); err != nil {
		t.Fatalf("Deregister once drained: %v", err)
	}
	text, _ := os.ReadFile(in.UpstreamFile())
	if strings.Contains(string(text), a.target.Addr()) {
		t.Fatalf("deregistered target still in the file:\n%s", text)
	}
	if _, ok := r.status(pl).Instances[0].Targets["pod-a"]; ok {
		t.Fatal("deregistered target still reported")
	}
}

// Every call repeated changes nothing: same file, no new reload.
func TestCallsAreIdempotent(t *testing.T) {
	r := newRig(t, 2)
	p := startProbe(t, "pod-a", false)
	pl := pool(p)
	ctx := context.Background()
	snapshot := func() (files []string, epochs []string) {
		for _, in := range r.instances {
			b, _ := os.ReadFile(in.UpstreamFile())
			files = append(files, string(b))
		}
		for _, in := range r.status(pl).Instances {
			epochs = append(epochs, in.Epoch)
		}
		return files, epochs
	}
	same := func(step string, f0, e0 []string) {
		t.Helper()
		f1, e1 := snapshot()
		if strings.Join(f0, "\x00") != strings.Join(f1, "\x00") {
			t.Fatalf("%s again changed the file:\n%s\n---\n%s", step, f0, f1)
		}
		if strings.Join(e0, " ") != strings.Join(e1, " ") {
			t.Fatalf("%s again reloaded: epochs %v -> %v", step, e0, e1)
		}
	}
	steps := []struct {
		name string
		call func() error
		want provider.Health
	}{
		{"Register", func() error { return r.p.Register(ctx, pl, p.target) }, provider.HealthHealthy},
		{"SetDraining", func() error { return r.p.SetDraining(ctx, pl, p.target) }, provider.HealthDrained},
	}
	for _, s := range steps {
		if err := s.call(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		r.waitHealth(pl, "pod-a", s.want, 30*time.Second)
		f0, e0 := snapshot()
		if err := s.call(); err != nil {
			t.Fatalf("%s again: %v", s.name, err)
		}
		same(s.name, f0, e0)
	}
	for i := range 2 {
		if err := r.p.Deregister(ctx, pl, p.target); err != nil {
			t.Fatalf("Deregister #%d: %v", i+1, err)
		}
	}
	if err := r.p.SetDraining(ctx, pl, p.target); err != nil {
		t.Fatalf("SetDraining of an absent target: %v", err)
	}
	if h := health(r.status(pl), "pod-a"); h[0] != "-" || h[1] != "-" {
		t.Fatalf("after Deregister: %v, want absent", h)
	}
}

// A provider built afresh (a restarted controller) reports what the first
// one reports: the files and /proc are the state.
func TestFreshProviderReportsTheSameStatus(t *testing.T) {
	r := newRig(t, 2)
	a := startProbe(t, "pod-a", false)
	b := startProbe(t, "pod-b", false)
	pl := pool(a, b)
	ctx := context.Background()
	for _, p := range []*probe{a, b} {
		if err := r.p.Register(ctx, pl, p.target); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.p.SetDraining(ctx, pl, b.target); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"draining", "drained"} {
		if step == "drained" {
			r.waitHealth(pl, "pod-b", provider.HealthDrained, 30*time.Second)
		}
		// The fresh provider's read, between two reads of the first one
		// that agree (an old worker may exit at any moment).
		var st1, st2 provider.PoolStatus
		for try := 0; ; try++ {
			st1 = r.status(pl)
			var err error
			if st2, err = r.fresh().Status(ctx, pl); err != nil {
				t.Fatal(err)
			}
			if sameStatus(st1, r.status(pl)) == "" {
				break
			}
			if try == 20 {
				t.Fatalf("%s: the pool never held still", step)
			}
		}
		if diff := sameStatus(st1, st2); diff != "" {
			t.Errorf("%s: first provider and fresh one differ: %s", step, diff)
		}
	}
	// An address no known target has is reported as an orphan, and can be
	// drained under that ID.
	st := r.status(pool(a))
	orphan := provider.TargetID(provider.OrphanPrefix + b.target.Addr())
	if _, ok := st.Instances[0].Targets[orphan]; !ok {
		t.Fatalf("pod-b unknown: want it as %s: %+v", orphan, st)
	}
	if err := r.p.Deregister(ctx, pool(a), provider.Target{ID: orphan}); err != nil {
		t.Fatalf("Deregister the drained orphan: %v", err)
	}
	if _, ok := r.status(pool(a)).Instances[0].Targets[orphan]; ok {
		t.Fatal("orphan still there after Deregister")
	}
}

// Errors name the instance: a missing pid file, a dead master, a pid that
// is not NGINX's, an upstream file NGINX refuses.
func TestErrorsNameTheInstance(t *testing.T) {
	r := newRig(t, 2)
	p := startProbe(t, "pod-a", false)
	pl := pool(p)
	ctx := context.Background()
	b := r.instances[1]
	pidText, _ := os.ReadFile(b.PidFile())
	cases := []struct {
		name    string
		pidFile string // content; "" removes it
	}{
		{"missing pid file", ""},
		{"dead master", "999999999\n"},
		{"not nginx", strconv.Itoa(os.Getpid()) + "\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.pidFile == "" {
				os.Remove(b.PidFile())
			} else {
				os.WriteFile(b.PidFile(), []byte(c.pidFile), 0o644)
			}
			defer os.WriteFile(b.PidFile(), pidText, 0o644)
			st, err := r.p.Status(ctx, pl)
			if !isUnreachable(err) || !strings.Contains(err.Error(), "nginx-b") || !strings.Contains(err.Error(), b.PidFile()) && c.pidFile == "" {
				t.Fatalf("Status: %v, want ErrUnreachable naming nginx-b (and the pid file)", err)
			}
			if st.Instances[0].Err != nil || st.Instances[1].Err == nil {
				t.Fatalf("instances: %+v, want a readable and b unreachable", st.Instances)
			}
			err = r.p.Register(ctx, pl, p.target)
			if !isUnreachable(err) || !strings.Contains(err.Error(), "nginx-b") || strings.Contains(err.Error(), "nginx-a") {
				t.Fatalf("Register: %v, want ErrUnreachable naming nginx-b only", err)
			}
		})
	}
	// The file of the unreachable instance was written: the master loads
	// it when it runs again.
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitHealth(pl, "pod-a", provider.HealthHealthy, 20*time.Second)

	// A line NGINX refuses, written by hand: the change is refused with
	// nginx -t's message and the file is left as it was.
	text, _ := os.ReadFile(b.UpstreamFile())
	bad := bytes.Replace(text, []byte("upstream app {\n"), []byte("upstream app {\n    no_such_directive 1;\n"), 1)
	os.WriteFile(b.UpstreamFile(), bad, 0o644)
	q := startProbe(t, "pod-q", false)
	err := r.p.Register(ctx, pool(p, q), q.target)
	if err == nil || !strings.Contains(err.Error(), "nginx-b") || !strings.Contains(err.Error(), "no_such_directive") || !strings.Contains(err.Error(), b.UpstreamFile()) {
		t.Fatalf("Register over a file nginx refuses: %v, want nginx -t's message naming nginx-b and the file", err)
	}
	if now, _ := os.ReadFile(b.UpstreamFile()); !bytes.Equal(now, bad) {
		t.Fatalf("refused change written anyway:\n%s", now)
	}
	// A file the provider cannot parse: the error names file and line.
	os.WriteFile(b.UpstreamFile(), []byte("upstream app {\n  server 1.2.3.4:80\n}\n"), 0o644)
	_, err = r.p.Status(ctx, pl)
	if err == nil || !strings.Contains(err.Error(), b.UpstreamFile()+":2") {
		t.Fatalf("Status over an unparsable file: %v, want file:2", err)
	}
}

// sameStatus returns "" when two statuses agree on every instance's epoch
// and every target's health, reason and address, else the first difference.
func sameStatus(a, b provider.PoolStatus) string {
	if len(a.Instances) != len(b.Instances) {
		return "instance count"
	}
	for i := range a.Instances {
		x, y := a.Instances[i], b.Instances[i]
		if x.Epoch != y.Epoch || len(x.Targets) != len(y.Targets) {
			return fmt.Sprintf("%s: %+v vs %+v", x.Instance, x, y)
		}
		for id, ts := range x.Targets {
			ts2 := y.Targets[id]
			if ts.Health != ts2.Health || ts.Reason != ts2.Reason || ts.Addr != ts2.Addr {
				return fmt.Sprintf("%s on %s: %+v vs %+v", id, x.Instance, ts, ts2)
			}
		}
	}
	return ""
}

// A crashed master (SIGKILL: the pid file names a dead process) makes its
// instance unreachable, and the others keep working; restarted, it loads
// the upstream file, which is the whole state: the target is Healthy there
// again with a new epoch and no call to the provider.
func TestCrashAndRestartKeepTheRegistration(t *testing.T) {
	r := newRig(t, 2)
	p := startProbe(t, "pod-a", false)
	pl := pool(p)
	ctx := context.Background()
	if err := r.p.Register(ctx, pl, p.target); err != nil {
		t.Fatal(err)
	}
	r.waitHealth(pl, "pod-a", provider.HealthHealthy, 20*time.Second)
	before := r.status(pl)
	b := r.instances[1]
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	st, err := r.p.Status(ctx, pl)
	if !isUnreachable(err) || st.Instances[1].Err == nil || !strings.Contains(err.Error(), "nginx-b") {
		t.Fatalf("after killing b's master: %v, want b unreachable", err)
	}
	if ok, _, msg := st.Healthy("pod-a"); ok {
		t.Fatalf("healthy with an instance down: %s", msg)
	}
	if h := st.Instances[0].Targets["pod-a"].Health; h != provider.HealthHealthy {
		t.Fatalf("a: %s, want Healthy", h)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitHealth(pl, "pod-a", provider.HealthHealthy, 20*time.Second)
	after := r.status(pl)
	if after.Instances[1].Epoch == before.Instances[1].Epoch {
		t.Fatalf("epoch unchanged across a restart: %s", after.Instances[1].Epoch)
	}
	hits := p.hits.Load()
	for range 5 {
		if code := get(b.Addr(), "/"); code != 200 {
			t.Fatalf("through b after its restart: %d", code)
		}
	}
	if p.hits.Load() != hits+5 {
		t.Fatalf("the target got %d of 5 requests through b", p.hits.Load()-hits)
	}
}

// A reload that was lost (the file written, the master never signalled) is
// repaired by the next identical call; a repeat call while the reload it
// signalled is still pending does not signal again.
func TestRepeatCallRepairsALostReload(t *testing.T) {
	r := newRig(t, 1)
	in := r.instances[0]
	p := startProbe(t, "pod-a", false)
	pl := pool(p)
	ctx := context.Background()
	pidText, err := os.ReadFile(in.PidFile())
	if err != nil {
		t.Fatal(err)
	}
	// The master cannot be found: the line is written, no reload.
	os.Remove(in.PidFile())
	if err := r.p.Register(ctx, pl, p.target); !isUnreachable(err) {
		t.Fatalf("Register with the pid file gone: %v, want Unreachable", err)
	}
	if err := os.WriteFile(in.PidFile(), pidText, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if h := health(r.status(pl), "pod-a"); h[0] != provider.HealthInitial {
		t.Fatalf("written, never reloaded: %v, want Initial", h)
	}
	// The repeat call waits ReloadWait for a reload under way, finds
	// none, and signals.
	if err := r.fresh().Register(ctx, pl, p.target); err != nil {
		t.Fatal(err)
	}
	r.waitHealth(pl, "pod-a", provider.HealthHealthy, 20*time.Second)
}

// Scenario: a reload someone else signalled (`nginx -s reload` by hand, a
// config-management run) is still parsing when SetDraining writes `down`:
// its parse read the upstream file before the write, and a slow part after
// it (a large map) makes it fork its workers, with the target still in
// rotation, well after the load margin.
// Expectation: the target is not Drained while those workers may send it
// requests: none reaches it after Status first says Drained.
func TestDrainedWaitsOutAReloadThatParsedBeforeTheWrite(t *testing.T) {
	r := newRig(t, 1)
	// The call waits for the master to finish the other reload.
	r.cfg.ReloadWait = 10 * time.Second
	r.p = r.fresh()
	in := r.instances[0]
	a, b := startProbe(t, "pod-a", false), startProbe(t, "pod-b", false)
	pl := pool(a, b)
	ctx := context.Background()
	for _, p := range []*probe{a, b} {
		if err := r.p.Register(ctx, pl, p.target); err != nil {
			t.Fatal(err)
		}
		r.waitHealth(pl, provider.TargetID(p.name), provider.HealthHealthy, 20*time.Second)
	}
	// A large map, parsed after the upstream file.
	var slow bytes.Buffer
	slow.WriteString("map_hash_max_size 262144;\nmap_hash_bucket_size 128;\nmap $uri $zerodrop_test_slow {\n")
	for i := range 60000 {
		fmt.Fprintf(&slow, "    /p%d %d;\n", i, i)
	}
	slow.WriteString("}\n")
	slowFile := in.Dir() + "/slow.conf"
	if err := os.WriteFile(slowFile, slow.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(in.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	inc := "include " + in.UpstreamFile() + ";\n"
	if !bytes.Contains(conf, []byte(inc)) {
		t.Fatalf("%s does not include %s", in.ConfigPath(), in.UpstreamFile())
	}
	conf = bytes.Replace(conf, []byte(inc), []byte(inc+"    include "+slowFile+";\n"), 1)
	if err := os.WriteFile(in.ConfigPath(), conf, 0o644); err != nil {
		t.Fatal(err)
	}

	// Requests all along, each on a new connection (accepted by a current
	// worker).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			getWithin(in.Addr(), "/", 2*time.Second)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// Someone else's reload; once the master is in it (SIGHUP blocked),
	// give it time to read the upstream file, then drain.
	m, err := nginxproc.Read(in.PidFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(m.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); nginxproc.Idle(m.PID); {
		if time.Now().After(deadline) {
			t.Fatal("the master did not start the reload")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	busyAtWrite := !nginxproc.Idle(m.PID)
	if err := r.p.SetDraining(ctx, pl, a.target); err != nil {
		t.Fatal(err)
	}
	r.waitHealth(pl, "pod-a", provider.HealthDrained, 30*time.Second)
	drained := time.Now().UnixNano()
	// What the old workers held is done by now; anything later was sent
	// after Drained.
	time.Sleep(1500 * time.Millisecond)
	if last := a.last.Load(); last > drained {
		t.Fatalf("pod-a got a request %v after Status said Drained (master busy with the other reload at the write: %v)", time.Duration(last-drained), busyAtWrite)
	}
	if bh := b.hits.Load(); bh == 0 {
		t.Fatal("pod-b got no request: the load did not run")
	}
	t.Logf("master busy with the other reload at the write: %v", busyAtWrite)
}
