// Package providers is the controller's provider registry: the explicit map
// from a LoadBalancer's spec.provider to the constructor of its provider.
// Adding a load balancer means adding an entry here (or running an adapter
// behind provider "external"), not editing the controller; no init-time
// registration. It is the only package of the controller that imports a
// provider's implementation.
package providers

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/haproxy"
)

// Factory builds the provider of one LoadBalancer.
type Factory = func(lb *zv1.LoadBalancer) (provider.Provider, error)

// Options are the process-wide settings the constructors take.
type Options struct {
	Log *slog.Logger
	// Timeout bounds each call to a load balancer's API.
	Timeout time.Duration
	// BreakerBackoff: see haproxy.Config.BreakerBackoff.
	BreakerBackoff time.Duration
	// TLS returns the client TLS configuration from a Secret at each
	// connection, so a renewed certificate needs no restart.
	TLS func(ref zv1.SecretReference, serverName string) func(context.Context) (*tls.Config, error)
	// Secret reads one key of a Secret (a bearer token).
	Secret func(ctx context.Context, ref zv1.SecretReference, key string) ([]byte, error)
}

// Builtin returns the constructors built into the controller.
func Builtin(o Options) map[zv1.ProviderType]Factory {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return map[zv1.ProviderType]Factory{
		zv1.ProviderHAProxy:  func(lb *zv1.LoadBalancer) (provider.Provider, error) { return newHAProxy(o, lb) },
		zv1.ProviderExternal: func(lb *zv1.LoadBalancer) (provider.Provider, error) { return NewExternal(o, lb) },
	}
}

func newHAProxy(o Options, lb *zv1.LoadBalancer) (provider.Provider, error) {
	cfg := haproxy.Config{Timeout: o.Timeout, BreakerBackoff: o.BreakerBackoff, Logger: o.Log.With("loadbalancer", lb.Name)}
	for _, in := range lb.Spec.Instances {
		addr := in.Socket
		if addr == "" {
			addr = "tcp:" + in.Address
		}
		hin := haproxy.Instance{Name: in.Name, Address: addr}
		switch {
		case in.TLS != nil:
			if o.TLS == nil {
				return nil, fmt.Errorf("instance %s: tls is set but this process reads no Secrets", in.Name)
			}
			hin.TLS = o.TLS(in.TLS.SecretRef, in.TLS.ServerName)
		case in.Address != "":
			o.Log.Warn("Runtime API over plaintext TCP: whoever reaches the port controls HAProxy; set tls and firewall the port (docs/haproxy.md)",
				"loadbalancer", lb.Name, "instance", in.Name, "address", in.Address)
		}
		cfg.Instances = append(cfg.Instances, hin)
	}
	interval, rise, fall := zv1.EffectiveHealthCheck(&lb.Spec, &zv1.TargetBindingSpec{})
	cfg.Check = provider.HealthCheck{Interval: interval, Rise: int(rise), Fall: int(fall)}
	return haproxy.New(cfg)
}
