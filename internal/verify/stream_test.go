package verify

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Scenario: a POST stream runs beside the GETs against a server that cuts
// every POST's connection after reading its body (a pod that exits while
// an order is in flight). The report counts the streams apart: the GETs
// all pass, every POST fails as eof, and no POST reached the server twice
// (no client retry hides the cut).
func TestPostStreamIsCountedApartAndNeverRetried(t *testing.T) {
	var gets, posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			io.WriteString(w, "ok")
			return
		}
		posts.Add(1)
		b, _ := io.ReadAll(r.Body)
		if string(b) != DefaultPostBody || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad order", http.StatusBadRequest)
			return
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer srv.Close()

	main := Load{Target: Target{URL: srv.URL + "/orders"}, Rate: 100, Duration: time.Second}
	cfg := Config{Load: main, Streams: []Stream{PostStream(main, 40, []byte(DefaultPostBody))}, Warmup: -1, Settle: -1}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Streams) != 2 || rep.Streams[0].Name != MainStream || rep.Streams[1].Name != "post" {
		t.Fatalf("streams %+v, want main then post", rep.Streams)
	}
	m, p := rep.Streams[0], rep.Streams[1]
	if m.Method != "GET" || m.Requests < 90 || m.Failed != 0 {
		t.Errorf("main stream %+v: want about 100 GETs, none failed", m)
	}
	if p.Method != "POST" || p.Requests < 35 || p.Failed != p.Requests || p.Failures[ClassEOF] != p.Requests {
		t.Errorf("post stream %+v: want about 40 POSTs, every one failed as eof", p)
	}
	if posts.Load() != p.Requests {
		t.Errorf("the server saw %d POSTs for %d sent: a cut POST was retried", posts.Load(), p.Requests)
	}
	if rep.Requests != m.Requests+p.Requests || rep.Failed != p.Failed {
		t.Errorf("totals %d requests, %d failed; want the streams' sums", rep.Requests, rep.Failed)
	}

	var text, page bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "  post") || !strings.Contains(text.String(), "POST at 40/s (eof") {
		t.Errorf("text report lacks the post stream's line:\n%s", text.String())
	}
	if err := WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), `id="streams"`) || !strings.Contains(page.String(), "POST "+srv.URL) {
		t.Errorf("HTML report lacks the streams table")
	}
}

func TestStreamsMustBeNamedAndUseTheMainModel(t *testing.T) {
	main := Load{Target: Target{URL: "http://127.0.0.1:1/"}, Rate: 10, Duration: time.Second}
	for name, s := range map[string]Stream{
		"no name":      {Load: main},
		"main's name":  {Name: MainStream, Load: main},
		"closed model": {Name: "post", Load: Load{Target: main.Target, Connections: 2}},
	} {
		if _, err := Run(context.Background(), Config{Load: main, Streams: []Stream{s}}); err == nil || !strings.Contains(err.Error(), "stream") {
			t.Errorf("%s: error %v, want one naming the stream", name, err)
		}
	}
}
