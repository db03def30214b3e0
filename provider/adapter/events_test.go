package adapter_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
)

// polledOnly hides the provider's Watcher and declares no pushed verdicts,
// as a provider that cannot push (NGINX open source).
type polledOnly struct{ provider.Provider }

func (p polledOnly) Capabilities() provider.Capabilities {
	c := p.Provider.Capabilities()
	c.PushesVerdicts = false
	return c
}

// openEvents starts GET /v1/events with the token and returns the answer.
func openEvents(t *testing.T, s served, accept string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// Scenario: the event stream of an HAProxy provider whose one instance has
// no socket. Expectation: 200, JSON Lines, and the first line is that
// instance's StreamDown with an Unreachable error naming it; the
// capabilities declare pushesVerdicts; a second stream past
// MaxEventStreams gets 503.
func TestEventStreamFraming(t *testing.T) {
	s := serve(t, func(o *adapter.Options) { o.MaxEventStreams = 1 })
	code, _, raw := do(t, s.client, s.url, call{method: http.MethodGet, path: "/v1/capabilities"})
	var caps adapter.CapabilitiesResponse
	if err := json.Unmarshal(raw, &caps); code != http.StatusOK || err != nil || !caps.Capabilities.PushesVerdicts {
		t.Fatalf("capabilities: %d %s, want pushesVerdicts true", code, raw)
	}
	resp := openEvents(t, s, adapter.EventsMediaType)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != adapter.EventsMediaType {
		t.Fatalf("GET /v1/events: %s %q, want 200 %s", resp.Status, resp.Header.Get("Content-Type"), adapter.EventsMediaType)
	}
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() {
		t.Fatalf("no first line: %v", lines.Err())
	}
	var ev adapter.Event
	if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
		t.Fatalf("first line %q: %v", lines.Bytes(), err)
	}
	if ev.Kind != "StreamDown" || ev.Instance != "haproxy-a" || ev.Error == nil || ev.Error.Code != "Unreachable" || ev.Error.Instance != "haproxy-a" || ev.At.IsZero() {
		t.Fatalf("first event %+v (error %+v), want haproxy-a's StreamDown, Unreachable", ev, ev.Error)
	}

	second := openEvents(t, s, "")
	if second.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a stream past MaxEventStreams: %s, want 503", second.Status)
	}
}

// Scenario: refused event stream requests. Expectation: no token 401; an
// Accept naming only the JSON media type 406; a provider that does not
// push 404 NotFound saying to poll; POST 405.
func TestEventStreamRefusals(t *testing.T) {
	s := serve(t, nil)
	for _, tc := range []struct {
		name   string
		c      call
		status int
	}{
		{"no token", call{method: http.MethodGet, path: "/v1/events", header: map[string]string{"Authorization": ""}}, http.StatusUnauthorized},
		{"Accept the JSON media type only", call{method: http.MethodGet, path: "/v1/events", header: map[string]string{"Accept": adapter.ContentType}}, http.StatusNotAcceptable},
		{"POST", call{method: http.MethodPost, path: "/v1/events"}, http.StatusMethodNotAllowed},
	} {
		if code, er, _ := do(t, s.client, s.url, tc.c); code != tc.status {
			t.Errorf("%s: %d %+v, want %d", tc.name, code, er, tc.status)
		}
	}
	polled := serve(t, func(o *adapter.Options) { o.Provider = polledOnly{o.Provider} })
	code, er, _ := do(t, polled.client, polled.url, call{method: http.MethodGet, path: "/v1/events"})
	if code != http.StatusNotFound || er.Error.Code != "NotFound" {
		t.Fatalf("events of a provider that does not push: %d %+v, want 404 NotFound", code, er)
	}
}

// Scenario: the adapter shuts down with a stream open. Expectation:
// CloseEventStreams ends it: the client reads to the end within a second.
func TestCloseEventStreamsEndsThem(t *testing.T) {
	s := serve(t, nil)
	resp := openEvents(t, s, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events: %s", resp.Status)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	s.h.CloseEventStreams()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("stream ended with %v, want a clean end", err)
		}
	case <-time.After(time.Second):
		t.Fatal("stream still open a second after CloseEventStreams")
	}
}
