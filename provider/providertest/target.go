package providertest

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// Paths of the kit's own requests. A balanced request names the frontend it
// was sent through, so an arrival tells which LB instance sent it.
const (
	kitPath  = "/zerodrop-kit/"
	holdPath = "/zerodrop-kit/hold/"
)

// event is one request a kit target received, in arrival order.
type event struct {
	at    time.Time
	check bool // a health check (Harness.CheckPath), else a balanced request
	pass  bool // the check was answered 200
	// frontend is the index of the frontend a balanced request was sent
	// through; -1 when the path does not say.
	frontend int
}

// target is a real listener the kit registers: an HTTP server that
// answers the LB's health checks as told and logs every request.
type target struct {
	t         provider.Target
	checkPath string
	srv       *http.Server
	passing   atomic.Bool

	mu     sync.Mutex
	events []event
	holds  map[string]chan struct{} // open held requests by token
}

// listen starts a target on ip, answering checks with 200 when passing.
func listen(ip string, id provider.TargetID, checkPath string, check provider.HealthCheck, passing bool) (*target, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, fmt.Errorf("kit target %s: %w", id, err)
	}
	a := l.Addr().(*net.TCPAddr)
	tg := &target{t: provider.Target{ID: id, IP: a.IP.String(), Port: a.Port, Check: check}, checkPath: checkPath, holds: map[string]chan struct{}{}}
	tg.passing.Store(passing)
	tg.srv = &http.Server{Handler: http.HandlerFunc(tg.serve), ReadHeaderTimeout: 10 * time.Second}
	go tg.srv.Serve(l)
	return tg, nil
}

func (tg *target) serve(w http.ResponseWriter, r *http.Request) {
	if tg.checkPath != "" && r.URL.Path == tg.checkPath {
		pass := tg.passing.Load()
		tg.log(event{at: time.Now(), check: true, pass: pass, frontend: -1})
		if !pass {
			http.Error(w, "failing on purpose (zerodrop conformance kit)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
		return
	}
	tg.log(event{at: time.Now(), frontend: frontendOf(r.URL.Path)})
	if tok, ok := strings.CutPrefix(r.URL.Path, holdPath); ok {
		tok, _, _ = strings.Cut(tok, "/")
		ch := make(chan struct{})
		tg.mu.Lock()
		tg.holds[tok] = ch
		tg.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprintln(w, tg.t.ID)
}

// frontendOf parses "/zerodrop-kit/f<i>/..." (and hold paths,
// "/zerodrop-kit/hold/<token>/f<i>").
func frontendOf(path string) int {
	for _, part := range strings.Split(path, "/") {
		rest, ok := strings.CutPrefix(part, "f")
		if !ok || rest == "" || strings.TrimLeft(rest, "0123456789") != "" {
			continue
		}
		if i, err := strconv.Atoi(rest); err == nil {
			return i
		}
	}
	return -1
}

func (tg *target) log(e event) {
	tg.mu.Lock()
	tg.events = append(tg.events, e)
	tg.mu.Unlock()
}

// mark returns the number of events so far: a position to look from.
func (tg *target) mark() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.events)
}

// since returns the events from mark on.
func (tg *target) since(mark int) []event {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]event(nil), tg.events[mark:]...)
}

// counts returns the checks (passed, failed) and balanced requests since
// mark.
func (tg *target) counts(mark int) (passed, failed, balanced int) {
	for _, e := range tg.since(mark) {
		switch {
		case !e.check:
			balanced++
		case e.pass:
			passed++
		default:
			failed++
		}
	}
	return
}

// holding reports whether a request with the token is held open here.
func (tg *target) holding(tok string) bool {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	_, ok := tg.holds[tok]
	return ok
}

// release ends the held request with the token.
func (tg *target) release(tok string) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if ch, ok := tg.holds[tok]; ok {
		close(ch)
		delete(tg.holds, tok)
	}
}

func (tg *target) close() {
	tg.mu.Lock()
	for tok, ch := range tg.holds {
		close(ch)
		delete(tg.holds, tok)
	}
	tg.mu.Unlock()
	tg.srv.Close()
}

// firstBalanced returns, for each frontend index, the passed checks seen
// since mark before the first balanced request through that frontend, and
// whether one arrived.
func firstBalanced(events []event, frontends int) (passes []int, arrived []bool) {
	passes, arrived = make([]int, frontends), make([]bool, frontends)
	n := 0
	for _, e := range events {
		switch {
		case e.check && e.pass:
			n++
		case !e.check && e.frontend >= 0 && e.frontend < frontends && !arrived[e.frontend]:
			arrived[e.frontend], passes[e.frontend] = true, n
		}
	}
	return passes, arrived
}
