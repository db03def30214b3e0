package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/haproxy"
)

// instanceFlags collects repeated --haproxy-instance name=address flags.
type instanceFlags []haproxy.Instance

func (f *instanceFlags) String() string {
	parts := make([]string, len(*f))
	for i, in := range *f {
		parts[i] = in.Name + "=" + in.Address
	}
	return strings.Join(parts, ",")
}

func (f *instanceFlags) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" || addr == "" {
		return fmt.Errorf("%q: want name=address (a Runtime API socket path, or tcp:host:port)", v)
	}
	if _, err := haproxy.NewClient(addr); err != nil {
		return err
	}
	*f = append(*f, haproxy.Instance{Name: name, Address: addr})
	return nil
}

func haproxyBackend(fs *flag.FlagSet) func(common) (served, error) {
	var ins instanceFlags
	fs.Var(&ins, "haproxy-instance", "an HAProxy instance as name=address, address a Runtime API socket path or tcp:host:port (level admin); repeat for each instance")
	tlsDir := fs.String("haproxy-tls-dir", "", "directory with tls.crt, tls.key (the adapter's client certificate) and ca.crt (verifies HAProxy): mutual TLS to every tcp: instance; read at each connection")
	serverName := fs.String("haproxy-tls-server-name", "", "name verified in the instances' certificates (default: the address's host)")
	ring := fs.String("haproxy-event-ring", haproxy.DefaultEventRing, "the ring the instances log their server verdicts to (docs/haproxy.md, \"Event-driven verdicts\"): streamed to clients of GET /v1/events; an instance without it is polled")
	return func(c common) (served, error) {
		if len(ins) == 0 {
			return served{}, errors.New("no --haproxy-instance")
		}
		if *tlsDir != "" {
			load := runtimeTLS(*tlsDir, *serverName)
			if _, err := load(context.Background()); err != nil {
				return served{}, err
			}
			for i := range ins {
				if overTCP(ins[i].Address) {
					ins[i].TLS = load
				}
			}
		} else {
			for _, in := range ins {
				if overTCP(in.Address) {
					c.log.Warn("Runtime API over plaintext TCP: whoever reaches the port controls HAProxy; set --haproxy-tls-dir (docs/haproxy.md)", "instance", in.Name, "address", in.Address)
				}
			}
		}
		p, err := haproxy.New(haproxy.Config{Instances: ins, Timeout: c.timeout, Logger: c.log, EventRing: *ring,
			Check: provider.HealthCheck{Interval: c.checkInterval, Rise: c.checkRise, Fall: c.checkFall}})
		if err != nil {
			return served{}, err
		}
		s := served{provider: p}
		clients := make([]*haproxy.Client, len(ins))
		for i, in := range ins {
			s.instances = append(s.instances, in.Name)
			if clients[i], err = haproxy.NewClient(in.Address); err != nil {
				return served{}, err
			}
			clients[i].Timeout = c.timeout
			clients[i].TLS = in.TLS
		}
		s.ready = func(ctx context.Context) error {
			errs := make([]error, len(ins))
			var wg sync.WaitGroup
			for i := range ins {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := clients[i].ShowInfo(ctx); err != nil {
						errs[i] = &provider.Error{Code: provider.CodeUnreachable, Instance: ins[i].Name, Message: err.Error(), Cause: err}
					}
				}()
			}
			wg.Wait()
			return errors.Join(errs...)
		}
		return s, nil
	}
}

// runtimeTLS loads the client configuration for the Runtime API from dir at
// each connection, so that renewed files need no restart.
func runtimeTLS(dir, serverName string) func(context.Context) (*tls.Config, error) {
	return func(context.Context) (*tls.Config, error) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			return nil, fmt.Errorf("--haproxy-tls-dir %s: %w", dir, err)
		}
		ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err != nil {
			return nil, fmt.Errorf("--haproxy-tls-dir: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("--haproxy-tls-dir %s: ca.crt holds no PEM certificate", dir)
		}
		return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
	}
}

// overTCP reports whether a Runtime API address is a TCP one (not a socket).
func overTCP(addr string) bool {
	c, err := haproxy.NewClient(addr)
	return err == nil && strings.HasPrefix(c.String(), "tcp:")
}
