// Package remote is a provider.Provider that drives a load balancer through
// an adapter speaking zerodrop's provider protocol (package
// zerodrop.dev/zerodrop/provider/adapter, docs/provider-protocol.md): the
// provider of a LoadBalancer of provider "external".
//
// Every call is one HTTP request (Register, Enable, SetDraining and
// Deregister are one-change batches; Apply sends many). Calls are
// idempotent by the protocol's contract, so a request that failed on the
// way (no answer, 502, 503, 504) is sent again, a bounded number of times
// and never past the caller's deadline. Errors come back as
// *provider.Error with the adapter's codes, so errors.Is(err,
// provider.ErrTargetBusy) holds through the wire.
package remote

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
)

// Defaults of Config.
const (
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 2
	// retryBackoff is the wait before the first retry; it doubles.
	retryBackoff = 100 * time.Millisecond
	// maxAnswerBytes bounds what is read of an answer.
	maxAnswerBytes = 16 << 20
)

// AdapterInstance is the name of the synthetic instance a Status reports
// when the adapter itself could not be reached (its Err says why): the
// controller then sees an unreadable instance, not an LB without one.
const AdapterInstance = "adapter"

// Config configures a Client.
type Config struct {
	// URL is the adapter's base URL (https://host:port, or http:// with
	// AllowInsecure).
	URL string
	// AllowInsecure permits an http:// URL.
	AllowInsecure bool
	// Token returns the bearer token, read at each request so that a
	// rotated Secret needs no restart; nil sends none.
	Token func(ctx context.Context) ([]byte, error)
	// TLS returns the client configuration (CAs that verify the adapter,
	// client certificate for mutual TLS) at each new connection; nil uses
	// the system's roots and no client certificate.
	TLS func(ctx context.Context) (*tls.Config, error)
	// Timeout bounds each attempt; DefaultTimeout when zero.
	Timeout time.Duration
	// Retries is how many times a failed attempt is repeated;
	// DefaultRetries when zero, none when negative.
	Retries int
	// Logger receives a line when capabilities are missing; slog.Default
	// when nil.
	Logger *slog.Logger
}

// Client implements provider.Provider and provider.Lifecycle over the
// protocol.
type Client struct {
	base    *url.URL
	cfg     Config
	http    *http.Client
	log     *slog.Logger
	capsMu  sync.Mutex
	caps    *provider.Capabilities
	capsErr error
	capsAt  time.Time // of the last failed fetch
	warned  time.Time // of the last warning about unknown capabilities
}

// capsRetry is how long after a failed capabilities fetch callers get its
// error without asking again, so that concurrent calls do not queue up
// behind one unreachable adapter.
const capsRetry = 2 * time.Second

var (
	_ provider.Provider  = (*Client)(nil)
	_ provider.Lifecycle = (*Client)(nil)
)

// New checks the configuration and returns a Client; it does not contact
// the adapter (Start does).
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("adapter url %q: %w", cfg.URL, err)
	}
	switch {
	case u.Host == "":
		return nil, fmt.Errorf("adapter url %q: no host", cfg.URL)
	case u.Scheme == "https":
	case u.Scheme == "http" && cfg.AllowInsecure:
	case u.Scheme == "http":
		return nil, fmt.Errorf("adapter url %q: http:// sends the token and the pool in clear; use https:// or allowInsecure", cfg.URL)
	default:
		return nil, fmt.Errorf("adapter url %q: scheme %q, want https", cfg.URL, u.Scheme)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("adapter url %q: no query or fragment allowed", cfg.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tr := &http.Transport{
		Proxy:               nil, // the adapter is reached directly
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	tr.DialContext = dialer.DialContext
	if u.Scheme == "https" {
		host := u.Hostname()
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			if cfg.TLS != nil {
				got, err := cfg.TLS(ctx)
				if err != nil {
					return nil, fmt.Errorf("TLS configuration: %w", err)
				}
				tc = got.Clone()
			}
			if tc.ServerName == "" {
				tc.ServerName = host
			}
			d := &tls.Dialer{NetDialer: dialer, Config: tc}
			return d.DialContext(ctx, network, addr)
		}
	}
	return &Client{base: u, cfg: cfg, http: &http.Client{Transport: tr}, log: cfg.Logger}, nil
}

// URL returns the adapter's base URL.
func (c *Client) URL() string { return c.base.String() }

// Start fetches the capabilities; an unreachable adapter is an error
// naming it.
func (c *Client) Start(ctx context.Context) error {
	_, err := c.FetchCapabilities(ctx)
	return err
}

// Close drops the idle connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// FetchCapabilities returns the adapter's capabilities, asked once and then
// kept (they are constant for a provider); a failure is asked again next
// time.
func (c *Client) FetchCapabilities(ctx context.Context) (provider.Capabilities, error) {
	c.capsMu.Lock()
	defer c.capsMu.Unlock()
	if c.caps != nil {
		return *c.caps, nil
	}
	if c.capsErr != nil && time.Since(c.capsAt) < capsRetry {
		return provider.Capabilities{}, c.capsErr
	}
	var resp adapter.CapabilitiesResponse
	err := c.do(ctx, http.MethodGet, "/v1/capabilities", nil, &resp)
	if err == nil && resp.APIVersion != provider.Version {
		err = provider.Errorf(provider.CodeUnreachable, "", "adapter %s serves provider API %q, want %q", c.base, resp.APIVersion, provider.Version)
	}
	if err != nil {
		c.capsErr, c.capsAt = err, time.Now()
		return provider.Capabilities{}, err
	}
	caps := adapter.ToCapabilities(resp.Capabilities)
	c.caps, c.capsErr = &caps, nil
	return caps, nil
}

// Unknown is what Capabilities returns while the adapter has not answered:
// the most cautious declaration (runtime state lost on reload, a minute of
// reload grace, drained by sessions, checks per target). Every other call
// fetches the capabilities first and fails while it cannot, so the
// controller acts on no verdict before the real ones are known.
var Unknown = provider.Capabilities{
	Identity: provider.IdentityName, Promotion: provider.PromotionExplicit, HealthCheckScope: provider.HealthCheckPerTarget,
	DrainSignal: provider.DrainSessions, Topology: provider.TopologyInstances, VolatileRuntimeState: true,
	ReloadGrace: time.Minute, ActiveHealthChecks: true,
}

// Capabilities returns the adapter's capabilities, fetched at Start or on
// first use. Until the adapter answers it returns Unknown (and logs why).
func (c *Client) Capabilities() provider.Capabilities {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	caps, err := c.FetchCapabilities(ctx)
	if err != nil {
		c.capsMu.Lock()
		warn := time.Since(c.warned) > time.Minute
		if warn {
			c.warned = time.Now()
		}
		c.capsMu.Unlock()
		if warn {
			c.log.Warn("provider adapter: capabilities unknown, assuming the most cautious", "adapter", c.base.String(), "err", err)
		}
		return Unknown
	}
	return caps
}

// Change is one operation of a batch (Apply).
type Change struct {
	Op     string // adapter.OpRegister, OpEnable, OpDrain or OpDeregister
	Target provider.Target
}

// Apply sends changes in one request, applied in order; it returns one
// error per change (nil: done on every instance). err is set when the
// request itself failed: then nothing is known of any change.
func (c *Client) Apply(ctx context.Context, pool provider.Pool, changes []Change) (results []error, err error) {
	if _, err := c.FetchCapabilities(ctx); err != nil {
		return nil, err
	}
	req := adapter.ChangesRequest{Known: adapter.FromTargets(pool.Known), Changes: make([]adapter.Change, len(changes))}
	for i, ch := range changes {
		req.Changes[i] = adapter.Change{Op: ch.Op, Target: adapter.FromTarget(ch.Target)}
	}
	var resp adapter.ChangesResponse
	if err := c.do(ctx, http.MethodPost, "/v1/pools/"+url.PathEscape(pool.Name)+"/changes", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Results) != len(changes) {
		return nil, provider.Errorf(provider.CodeInternal, "", "adapter %s: %d results for %d changes", c.base, len(resp.Results), len(changes))
	}
	results = make([]error, len(changes))
	for i, r := range resp.Results {
		switch {
		case r.OK && len(r.Errors) == 0:
		case len(r.Errors) == 0:
			results[i] = provider.Errorf(provider.CodeInternal, "", "adapter %s: change %d failed without an error", c.base, i)
		default:
			results[i] = adapter.ToErrors(r.Errors)
		}
	}
	return results, nil
}

func (c *Client) one(ctx context.Context, op string, pool provider.Pool, t provider.Target) error {
	res, err := c.Apply(ctx, pool, []Change{{Op: op, Target: t}})
	if err != nil {
		return err
	}
	return res[0]
}

// Register implements provider.Provider.
func (c *Client) Register(ctx context.Context, pool provider.Pool, t provider.Target) error {
	return c.one(ctx, adapter.OpRegister, pool, t)
}

// Enable implements provider.Provider.
func (c *Client) Enable(ctx context.Context, pool provider.Pool, t provider.Target) error {
	return c.one(ctx, adapter.OpEnable, pool, t)
}

// SetDraining implements provider.Provider.
func (c *Client) SetDraining(ctx context.Context, pool provider.Pool, t provider.Target) error {
	return c.one(ctx, adapter.OpDrain, pool, t)
}

// Deregister implements provider.Provider.
func (c *Client) Deregister(ctx context.Context, pool provider.Pool, t provider.Target) error {
	return c.one(ctx, adapter.OpDeregister, pool, t)
}

// Status implements provider.Provider. When the adapter cannot be reached
// the status holds one instance, AdapterInstance, with the error.
func (c *Client) Status(ctx context.Context, pool provider.Pool) (provider.PoolStatus, error) {
	var resp adapter.PoolStatus
	_, err := c.FetchCapabilities(ctx)
	if err == nil {
		err = c.do(ctx, http.MethodPost, "/v1/pools/"+url.PathEscape(pool.Name)+"/status", adapter.StatusRequest{Known: adapter.FromTargets(pool.Known)}, &resp)
	}
	if err != nil {
		return provider.PoolStatus{Pool: pool.Name, Instances: []provider.InstanceStatus{{Instance: AdapterInstance, Err: err}}}, err
	}
	return adapter.ToPoolStatus(resp)
}

// Ready asks the adapter's /readyz.
func (c *Client) Ready(ctx context.Context) (adapter.HealthResponse, error) {
	var resp adapter.HealthResponse
	err := c.do(ctx, http.MethodGet, "/readyz", nil, &resp)
	return resp, err
}

// do sends one request, repeating it on a failure that may be transient,
// and decodes the answer into out. Its errors are *provider.Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return provider.Errorf(provider.CodeInternal, "", "encoding %s %s: %v", method, path, err)
		}
	}
	backoff := retryBackoff
	for attempt := 0; ; attempt++ {
		retry, err := c.attempt(ctx, method, path, body, out)
		if err == nil || !retry || attempt >= max(c.cfg.Retries, 0) {
			return err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < backoff {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (c *Client) attempt(ctx context.Context, method, path string, body []byte, out any) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	where := fmt.Sprintf("adapter %s: %s %s", c.base, method, path)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := c.request(ctx, method, path, rd, adapter.ContentType, where)
	if err != nil {
		return false, err
	}
	if body != nil {
		req.Header.Set("Content-Type", adapter.ContentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded), &provider.Error{Code: provider.CodeUnreachable, Message: fmt.Sprintf("%s: %v", where, err), Cause: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return true, &provider.Error{Code: provider.CodeUnreachable, Message: fmt.Sprintf("%s: reading the answer: %v", where, err), Cause: err}
	}
	if resp.StatusCode != http.StatusOK {
		var er adapter.ErrorResponse
		retry := resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout
		if json.Unmarshal(raw, &er) != nil || er.Error.Code == "" {
			code := provider.CodeInternal
			if retry {
				code = provider.CodeUnreachable
			}
			return retry, provider.Errorf(code, "", "%s: %s: %s", where, resp.Status, snippet(raw))
		}
		e := adapter.ToError(er.Error)
		e.Message = fmt.Sprintf("%s: %s: %s", where, resp.Status, e.Message)
		if len(er.Versions) > 0 {
			e.Message += fmt.Sprintf(" (adapter serves versions %s)", strings.Join(er.Versions, ", "))
		}
		return retry, e
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return false, provider.Errorf(provider.CodeInternal, "", "%s: answer is not protocol v1: %v: %s", where, err, snippet(raw))
	}
	return false, nil
}

// request builds a request to the adapter accepting accept, with the
// bearer token read now; its errors are *provider.Error naming where.
func (c *Client) request(ctx context.Context, method, path string, body io.Reader, accept, where string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, provider.Errorf(provider.CodeInvalid, "", "%s: %v", where, err)
	}
	req.Header.Set("Accept", accept)
	if c.cfg.Token != nil {
		tok, err := c.cfg.Token(ctx)
		if err != nil {
			return nil, provider.Errorf(provider.CodeUnreachable, "", "%s: bearer token: %v", where, err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	return req, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
