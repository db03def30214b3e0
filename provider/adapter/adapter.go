// Package adapter serves any provider.Provider over zerodrop's provider
// protocol, version 1: versioned JSON over HTTP(S), authenticated by a
// bearer token and/or a client certificate. A LoadBalancer of provider
// "external" points the controller at such an adapter, and
// zerodrop.dev/zerodrop/provider/remote is the client it uses.
// docs/provider-protocol.md describes the protocol for adapter authors in
// any language; docs/provider-protocol.openapi.yaml is generated from the
// wire types (wire.go).
//
// Endpoints:
//
//	GET  /v1/capabilities              CapabilitiesResponse
//	POST /v1/pools/{pool}/status       StatusRequest  -> PoolStatus
//	POST /v1/pools/{pool}/changes      ChangesRequest -> ChangesResponse
//	GET  /v1/events                    a stream of Event, one JSON line each (when capabilities.pushesVerdicts)
//	GET  /healthz                      HealthResponse (liveness, no authentication)
//	GET  /readyz                       HealthResponse (200 when every LB instance is reachable, else 503)
package adapter

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"zerodrop.dev/zerodrop/provider"
)

// MediaType is the protocol's media type; its parameter version selects the
// protocol version.
const MediaType = "application/vnd.zerodrop.provider+json"

// ProtocolVersion is the version this package serves, as in the media
// type's version parameter; the paths carry "v" + ProtocolVersion.
const ProtocolVersion = "1"

// ContentType is what every answer is sent as.
const ContentType = MediaType + ";version=" + ProtocolVersion

// Versions are the protocol versions served.
var Versions = []string{ProtocolVersion}

// Defaults of Options.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultTimeout      = 30 * time.Second
)

// Options configure a Handler.
type Options struct {
	// Provider is served.
	Provider provider.Provider
	// Name names the provider in the capabilities answer ("haproxy").
	Name string
	// Token, when set, must be sent as "Authorization: Bearer <token>".
	Token []byte
	// TokenSource, when set, returns the token at each request instead
	// (a token file that is rotated in place); an error refuses the
	// request with 401.
	TokenSource func() ([]byte, error)
	// ClientCAs, when set, must have signed the client certificate of
	// every request (TLS with ServerTLSConfig's ClientAuth). With Token
	// too, a request needs both.
	ClientCAs *x509.CertPool
	// AllowUnauthenticated permits a Handler with neither Token nor
	// ClientCAs (a sidecar on loopback, tests). New refuses one otherwise.
	AllowUnauthenticated bool
	// MaxBodyBytes bounds a request body; DefaultMaxBodyBytes when zero.
	MaxBodyBytes int64
	// Timeout bounds the provider calls of one request; DefaultTimeout
	// when zero. A client's own deadline ends the request earlier.
	Timeout time.Duration
	// Ready reports whether every LB instance is reachable, as the joined
	// errors of those that are not (instance names in *provider.Error);
	// Instances names them all. nil: /readyz reports ready.
	Ready     func(ctx context.Context) error
	Instances []string
	// MaxEventStreams bounds the event streams (GET /v1/events) open at
	// once, each a watch of the provider; DefaultMaxEventStreams when
	// zero.
	MaxEventStreams int
	// Logger receives refused requests; slog.Default when nil.
	Logger *slog.Logger
}

// Handler is the adapter's http.Handler.
type Handler struct {
	o       Options
	streams atomic.Int64 // event streams open
	closing context.Context
	close   context.CancelFunc
}

// New checks the options and returns the Handler.
func New(o Options) (*Handler, error) {
	if o.Provider == nil {
		return nil, errors.New("adapter: no provider")
	}
	if len(o.Token) == 0 && o.TokenSource == nil && o.ClientCAs == nil && !o.AllowUnauthenticated {
		return nil, errors.New("adapter: neither a bearer token nor client CAs configured: every request would be accepted (set AllowUnauthenticated for a loopback sidecar)")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxEventStreams <= 0 {
		o.MaxEventStreams = DefaultMaxEventStreams
	}
	h := &Handler{o: o}
	h.closing, h.close = context.WithCancel(context.Background())
	return h, nil
}

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	switch path {
	case "/healthz":
		if !h.method(w, r, http.MethodGet) {
			return
		}
		h.write(w, http.StatusOK, HealthResponse{Status: "ok"})
		return
	case "/readyz":
		if !h.method(w, r, http.MethodGet) {
			return
		}
		h.ready(w, r)
		return
	}
	if !strings.HasPrefix(path, "/v1/") {
		h.fail(w, http.StatusNotFound, provider.CodeNotFound, "no endpoint %s (see docs/provider-protocol.md)", r.URL.Path)
		return
	}
	if err := h.authenticate(r); err != nil {
		h.o.Logger.Info("adapter: refused an unauthenticated request", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="zerodrop-adapter"`)
		h.write(w, http.StatusUnauthorized, ErrorResponse{Error: Error{Code: CodeUnauthenticated, Message: err.Error()}})
		return
	}
	if path == "/v1/events" { // its own media type: see events.go
		h.events(w, r)
		return
	}
	if err := acceptable(r.Header.Values("Accept")); err != nil {
		h.write(w, http.StatusNotAcceptable, ErrorResponse{Error: Error{Code: CodeNotAcceptable, Message: err.Error()}, Versions: Versions})
		return
	}
	if path == "/v1/capabilities" {
		if h.method(w, r, http.MethodGet) {
			h.write(w, http.StatusOK, CapabilitiesResponse{APIVersion: provider.Version, Provider: h.o.Name,
				Capabilities: FromCapabilities(h.o.Provider.Capabilities())})
		}
		return
	}
	parts := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	if len(parts) != 3 || parts[0] != "pools" || (parts[2] != "status" && parts[2] != "changes") {
		h.fail(w, http.StatusNotFound, provider.CodeNotFound, "no endpoint %s (see docs/provider-protocol.md)", r.URL.Path)
		return
	}
	if !h.method(w, r, http.MethodPost) {
		return
	}
	pool, err := url.PathUnescape(parts[1])
	if err == nil {
		err = ValidPool(pool)
	}
	if err != nil {
		h.fail(w, http.StatusBadRequest, provider.CodeInvalid, "path: %v", err)
		return
	}
	if err := jsonContent(r.Header.Get("Content-Type")); err != nil {
		h.write(w, http.StatusUnsupportedMediaType, ErrorResponse{Error: Error{Code: string(provider.CodeInvalid), Message: err.Error()}, Versions: Versions})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			h.write(w, http.StatusRequestEntityTooLarge, ErrorResponse{Error: Error{Code: CodeTooLarge,
				Message: fmt.Sprintf("request body larger than %d bytes", mb.Limit)}})
			return
		}
		h.fail(w, http.StatusBadRequest, provider.CodeInvalid, "request body: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	if parts[2] == "status" {
		h.status(ctx, w, pool, body)
	} else {
		h.changes(ctx, w, pool, body)
	}
}

func (h *Handler) status(ctx context.Context, w http.ResponseWriter, pool string, body []byte) {
	req, err := DecodeStatusRequest(body)
	if err != nil {
		h.fail(w, http.StatusBadRequest, provider.CodeInvalid, "%v", err)
		return
	}
	st, err := h.o.Provider.Status(ctx, ToPool(pool, req.Known))
	if err != nil && len(st.Instances) == 0 {
		// Not an instance's failure: the request itself was refused.
		we := FromError(err)
		h.write(w, httpStatus(provider.Code(we[0].Code)), ErrorResponse{Error: we[0]})
		return
	}
	st.Pool = pool
	h.write(w, http.StatusOK, FromPoolStatus(st))
}

func (h *Handler) changes(ctx context.Context, w http.ResponseWriter, pool string, body []byte) {
	req, err := DecodeChangesRequest(body)
	if err != nil {
		h.fail(w, http.StatusBadRequest, provider.CodeInvalid, "%v", err)
		return
	}
	pl := ToPool(pool, req.Known)
	resp := ChangesResponse{Results: make([]ChangeResult, len(req.Changes))}
	for i, c := range req.Changes {
		t := ToTarget(c.Target)
		var err error
		switch c.Op {
		case OpRegister:
			err = h.o.Provider.Register(ctx, pl, t)
		case OpEnable:
			err = h.o.Provider.Enable(ctx, pl, t)
		case OpDrain:
			err = h.o.Provider.SetDraining(ctx, pl, t)
		case OpDeregister:
			err = h.o.Provider.Deregister(ctx, pl, t)
		}
		resp.Results[i] = ChangeResult{OK: err == nil, Errors: FromError(err)}
	}
	h.write(w, http.StatusOK, resp)
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	resp := HealthResponse{Status: "ok"}
	var err error
	if h.o.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
		defer cancel()
		err = h.o.Ready(ctx)
	}
	detail := h.authenticate(r) == nil
	failed := map[string]Error{}
	for _, e := range FromError(err) {
		failed[e.Instance] = e
	}
	for _, name := range h.o.Instances {
		ih := InstanceHealth{Instance: name, Reachable: true}
		if e, bad := failed[name]; bad {
			ih.Reachable = false
			if detail {
				ih.Error = &e
			}
			delete(failed, name)
		}
		resp.Instances = append(resp.Instances, ih)
	}
	for name, e := range failed { // errors of no named instance
		ih := InstanceHealth{Instance: name, Reachable: false}
		if detail {
			ih.Error = &e
		}
		resp.Instances = append(resp.Instances, ih)
	}
	code := http.StatusOK
	if err != nil {
		resp.Status, code = "unready", http.StatusServiceUnavailable
	}
	h.write(w, code, resp)
}

// authenticate checks the bearer token (constant time) and the client
// certificate, each when configured.
func (h *Handler) authenticate(r *http.Request) error {
	if h.o.ClientCAs != nil {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return errors.New("a client certificate is required")
		}
		opts := x509.VerifyOptions{Roots: h.o.ClientCAs, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		for _, c := range r.TLS.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := r.TLS.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("client certificate %q not accepted: %v", r.TLS.PeerCertificates[0].Subject.CommonName, err)
		}
	}
	want := h.o.Token
	if h.o.TokenSource != nil {
		tok, err := h.o.TokenSource()
		if err != nil || len(tok) == 0 {
			h.o.Logger.Error("adapter: no bearer token to compare with", "err", err)
			return errors.New("the adapter has no token to compare with")
		}
		want = tok
	}
	if len(want) > 0 {
		auth := r.Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return errors.New("want header Authorization: Bearer <token>")
		}
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), want) != 1 {
			return errors.New("bearer token not accepted")
		}
	}
	return nil
}

// acceptable checks the Accept headers: absent, */*, application/*,
// application/json and MediaType without a version or with a version
// served are acceptable.
func acceptable(values []string) error {
	asked, ok := accepts(values, func(mt string, params map[string]string) bool {
		switch mt {
		case "*/*", "application/*", "application/json":
			return true
		case MediaType:
			v, has := params["version"]
			return !has || served(v)
		}
		return false
	})
	if ok {
		return nil
	}
	return fmt.Errorf("Accept %s: this adapter serves %s;version=%s", strings.Join(asked, ", "), MediaType, strings.Join(Versions, ","))
}

// accepts reports whether the Accept headers accept what the adapter
// answers: absent, empty, or naming one media range that ok takes. When
// not, asked lists the ranges named.
func accepts(values []string, ok func(mt string, params map[string]string) bool) (asked []string, accepted bool) {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if mt, params, err := mime.ParseMediaType(part); err == nil && ok(mt, params) {
				return nil, true
			}
			asked = append(asked, part)
		}
	}
	return asked, len(asked) == 0
}

// jsonContent checks a request's Content-Type: application/json or
// MediaType with a version served.
func jsonContent(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil {
		switch mt {
		case "application/json":
			return nil
		case MediaType:
			if v, has := params["version"]; !has || served(v) {
				return nil
			}
		}
	}
	if ct == "" {
		ct = "(none)"
	}
	return fmt.Errorf("Content-Type %s: want application/json or %s", ct, ContentType)
}

func served(v string) bool {
	for _, s := range Versions {
		if v == s {
			return true
		}
	}
	return false
}

func httpStatus(c provider.Code) int {
	switch c {
	case provider.CodeInvalid:
		return http.StatusBadRequest
	case provider.CodeNotFound:
		return http.StatusNotFound
	case provider.CodeUnreachable:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

func (h *Handler) method(w http.ResponseWriter, r *http.Request, want string) bool {
	if r.Method == want {
		return true
	}
	w.Header().Set("Allow", want)
	h.fail(w, http.StatusMethodNotAllowed, provider.CodeInvalid, "method %s: %s takes %s", r.Method, r.URL.Path, want)
	return false
}

func (h *Handler) fail(w http.ResponseWriter, status int, c provider.Code, format string, args ...any) {
	h.write(w, status, ErrorResponse{Error: Error{Code: string(c), Message: fmt.Sprintf(format, args...)}})
}

func (h *Handler) write(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the wire types always marshal
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"Internal","message":"encoding the answer"}}`)
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// ServerTLSConfig is the TLS configuration an adapter serves with: its
// certificate from getCert (so that a renewed one is picked up) and, with
// clientCAs, a client certificate requested but verified by the Handler
// rather than the handshake, so that a missing or unknown one gets a 401
// that says why instead of a failed handshake.
func ServerTLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequestClientCert, clientCAs
	}
	return cfg
}
