// Command zerodrop-adapter is the reference provider adapter: it serves a
// provider (HAProxy through its Runtime API, or NGINX open source through
// its upstream include files and reloads) over zerodrop's provider protocol (docs/provider-protocol.md), so that a LoadBalancer of
// provider "external" drives it. When the provider pushes its verdicts
// (HAProxy with an event ring), clients may hold GET /v1/events and get
// them within milliseconds instead of polling.
//
//	zerodrop-adapter --provider haproxy \
//	  --haproxy-instance haproxy-a=/run/haproxy/admin.sock \
//	  --haproxy-instance haproxy-b=tcp:10.0.0.2:9999 \
//	  --listen :8443 --tls-cert tls.crt --tls-key tls.key \
//	  --client-ca ca.crt --token-file token
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/adapter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "zerodrop-adapter:", err)
		}
		os.Exit(2)
	}
}

// served is a provider built from its flags, with what the adapter needs
// to report its instances' reachability.
type served struct {
	provider  provider.Provider
	instances []string
	ready     func(ctx context.Context) error
}

// backend declares one provider's flags on fs and returns the constructor
// that reads them.
type backend func(fs *flag.FlagSet) func(c common) (served, error)

// backends are the providers this binary serves, by --provider. To add one,
// write its flags-and-constructor in its own file (as haproxy.go, nginx.go)
// and add it here.
var backends = map[string]backend{
	"haproxy": haproxyBackend,
	"nginx":   nginxBackend,
}

// common holds the flags every backend reads.
type common struct {
	log           *slog.Logger
	timeout       time.Duration // each call to an LB instance
	checkInterval time.Duration
	checkRise     int
	checkFall     int
}

type options struct {
	provider        string
	listen          string
	tlsCert, tlsKey string
	clientCA        string
	tokenFile       string
	allowInsecure   bool
	requestTimeout  time.Duration
	maxBody         int64
	logLevel        string
	common
	build func(common) (served, error)
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("zerodrop-adapter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	fs.StringVar(&o.provider, "provider", "haproxy", "the provider served: "+strings.Join(names, ", "))
	fs.StringVar(&o.listen, "listen", ":8443", "address the protocol is served on")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "server certificate (PEM); re-read when the file changes")
	fs.StringVar(&o.tlsKey, "tls-key", "", "server private key (PEM)")
	fs.StringVar(&o.clientCA, "client-ca", "", "CA bundle (PEM) that must have signed the client certificate of every request (mutual TLS)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token every request must send")
	fs.BoolVar(&o.allowInsecure, "allow-insecure", false, "serve plain HTTP and/or without authentication: for a sidecar on loopback only")
	fs.DurationVar(&o.requestTimeout, "request-timeout", adapter.DefaultTimeout, "bound on the provider calls of one request")
	fs.Int64Var(&o.maxBody, "max-body-bytes", adapter.DefaultMaxBodyBytes, "largest request body accepted")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.timeout, "lb-timeout", 5*time.Second, "bound on each command to a load balancer instance")
	fs.DurationVar(&o.checkInterval, "check-interval", 0, "health-check interval of targets that set none (0: the provider's default)")
	fs.IntVar(&o.checkRise, "check-rise", 0, "passed checks that make a target healthy, for targets that set none (0: the provider's default)")
	fs.IntVar(&o.checkFall, "check-fall", 0, "failed checks that make a target unhealthy, for targets that set none (0: the provider's default)")
	builds := map[string]func(common) (served, error){}
	for n, b := range backends {
		builds[n] = b(fs)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.build = builds[o.provider]
	if o.build == nil {
		return o, fmt.Errorf("--provider %q: want one of %s", o.provider, strings.Join(names, ", "))
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return o, errors.New("--tls-cert and --tls-key go together")
	}
	if o.tlsCert == "" && !o.allowInsecure {
		return o, errors.New("no --tls-cert/--tls-key: plain HTTP sends the token and the pools in clear; add --allow-insecure for a sidecar on loopback")
	}
	if o.clientCA != "" && o.tlsCert == "" {
		return o, errors.New("--client-ca needs --tls-cert and --tls-key")
	}
	if o.tokenFile == "" && o.clientCA == "" && !o.allowInsecure {
		return o, errors.New("neither --token-file nor --client-ca: every request would be accepted; add --allow-insecure for a sidecar on loopback")
	}
	if o.checkRise < 0 || o.checkFall < 0 || o.checkInterval < 0 {
		return o, errors.New("--check-interval, --check-rise and --check-fall must not be negative")
	}
	return o, nil
}

// run serves until ctx ends. ready, when set, receives the listening
// address (tests listen on :0).
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	o.log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	srv, err := o.build(o.common)
	if err != nil {
		return fmt.Errorf("--provider %s: %w", o.provider, err)
	}
	if lc, ok := srv.provider.(provider.Lifecycle); ok {
		if err := lc.Start(ctx); err != nil {
			return fmt.Errorf("--provider %s: start: %w", o.provider, err)
		}
		defer lc.Close()
	}
	ho := adapter.Options{Provider: srv.provider, Name: o.provider, AllowUnauthenticated: o.allowInsecure,
		MaxBodyBytes: o.maxBody, Timeout: o.requestTimeout, Ready: srv.ready, Instances: srv.instances, Logger: o.log}
	if o.tokenFile != "" {
		tf := &tokenFile{path: o.tokenFile}
		if _, err := tf.get(); err != nil {
			return err
		}
		ho.TokenSource = tf.get
	}
	var tlsCfg *tls.Config
	if o.tlsCert != "" {
		certs := &certFile{cert: o.tlsCert, key: o.tlsKey}
		if _, err := certs.get(nil); err != nil {
			return err
		}
		if o.clientCA != "" {
			pem, err := os.ReadFile(o.clientCA)
			if err != nil {
				return fmt.Errorf("--client-ca: %w", err)
			}
			ho.ClientCAs = x509.NewCertPool()
			if !ho.ClientCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--client-ca %s: no PEM certificate", o.clientCA)
			}
		}
		tlsCfg = adapter.ServerTLSConfig(certs.get, ho.ClientCAs)
	}
	h, err := adapter.New(ho)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: o.requestTimeout + 10*time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
	hs.RegisterOnShutdown(h.CloseEventStreams) // a stream never ends by itself
	o.log.Info("zerodrop-adapter serving", "provider", o.provider, "listen", l.Addr().String(), "tls", tlsCfg != nil,
		"token", ho.TokenSource != nil, "clientCA", ho.ClientCAs != nil, "instances", srv.instances)
	if ready != nil {
		ready(l.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.requestTimeout)
	defer cancel()
	return hs.Shutdown(sctx)
}

// tokenFile is the bearer token in a file, read again when the file
// changes (a Secret mounted as a volume is rotated in place); a file that
// turns unreadable or empty keeps the last good token.
type tokenFile struct {
	path string
	mu   sync.Mutex
	mod  time.Time
	tok  []byte
}

func (f *tokenFile) get() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err == nil && f.tok != nil && st.ModTime().Equal(f.mod) {
		return f.tok, nil
	}
	var b []byte
	if err == nil {
		b, err = os.ReadFile(f.path)
	}
	tok := []byte(strings.TrimSpace(string(b)))
	if err == nil && len(tok) == 0 {
		err = fmt.Errorf("--token-file %s: empty", f.path)
	}
	if err != nil {
		if f.tok != nil {
			return f.tok, nil
		}
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	f.tok, f.mod = tok, st.ModTime()
	return f.tok, nil
}

// certFile serves a certificate from files, read again when they change
// (cert-manager renews them in place).
type certFile struct {
	cert, key string
	mu        sync.Mutex
	mod       time.Time
	loaded    *tls.Certificate
}

func (c *certFile) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := os.Stat(c.cert)
	if err != nil {
		if c.loaded != nil {
			return c.loaded, nil
		}
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	if c.loaded != nil && st.ModTime().Equal(c.mod) {
		return c.loaded, nil
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		if c.loaded != nil {
			return c.loaded, nil // keep serving the last good pair
		}
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	c.loaded, c.mod = &pair, st.ModTime()
	return c.loaded, nil
}
