package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
)

// The controller may get one Secret by name, the client certificate of
// docs/haproxy.md; a Secret of another name or namespace needs its own
// Role (docs/haproxy.md, "RBAC"). No list or watch: those cannot be limited
// to names.
// +kubebuilder:rbac:groups="",namespace=zerodrop-system,resources=secrets,verbs=get,resourceNames=zerodrop-haproxy-client

// Keys of a LoadBalancer instance's TLS Secret: a kubernetes.io/tls Secret
// with the CA beside it, the shape cert-manager writes.
const (
	SecretKeyCert = corev1.TLSCertKey       // tls.crt: the controller's client certificate
	SecretKeyKey  = corev1.TLSPrivateKeyKey // tls.key: its private key
	SecretKeyCA   = "ca.crt"                // the CA that verifies the load balancer
)

// TLSSecrets turns the Secrets that LoadBalancer instances name in
// spec.instances[].tls into TLS client configurations. It gets each Secret
// (no list, no watch, so RBAC can name the Secrets one by one) at most once
// per MaxAge, and parses it again only when its resourceVersion changed: a
// renewed certificate is in use within MaxAge, without a restart or a new
// provider. A broken Secret is retried sooner.
type TLSSecrets struct {
	// Reader gets Secrets. Use the manager's API reader: a cached client
	// would list and watch every Secret in the cluster.
	Reader client.Reader
	// Namespace is the controller's, for references that name none.
	Namespace string
	// MaxAge is how long a read Secret is used before it is read again;
	// default 30s. A failed read or a broken Secret is retried after at
	// most 5s.
	MaxAge time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu   sync.Mutex
	seen map[types.NamespacedName]*secretTLS
}

type secretTLS struct {
	read    time.Time
	version string // the Secret's resourceVersion when parsed
	cfg     *tls.Config
	err     error
}

// For returns the loader of ref's configuration with serverName (empty: the
// client verifies the address's host), the shape haproxy.Instance.TLS takes.
func (s *TLSSecrets) For(ref zv1.SecretReference, serverName string) func(context.Context) (*tls.Config, error) {
	return func(ctx context.Context) (*tls.Config, error) {
		cfg, err := s.Config(ctx, ref)
		if err != nil {
			return nil, err
		}
		if serverName != "" {
			cfg = cfg.Clone()
			cfg.ServerName = serverName
		}
		return cfg, nil
	}
}

// Config returns the client configuration in ref's Secret: its certificate
// and the CA pool that verifies the server. Callers must not modify it.
func (s *TLSSecrets) Config(ctx context.Context, ref zv1.SecretReference) (*tls.Config, error) {
	key := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
	if key.Namespace == "" {
		key.Namespace = s.Namespace
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	maxAge := s.MaxAge
	if maxAge <= 0 {
		maxAge = 30 * time.Second
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.seen[key]
	if e != nil {
		age := now().Sub(e.read)
		if age < maxAge && (e.err == nil || age < min(maxAge, 5*time.Second)) {
			return e.cfg, e.err
		}
	} else {
		e = &secretTLS{}
		if s.seen == nil {
			s.seen = map[types.NamespacedName]*secretTLS{}
		}
		s.seen[key] = e
	}
	e.read = now()
	var sec corev1.Secret
	if err := s.Reader.Get(ctx, key, &sec); err != nil {
		e.version, e.cfg, e.err = "", nil, secretError(key, err)
		return nil, e.err
	}
	if e.version != sec.ResourceVersion || e.err != nil {
		e.version = sec.ResourceVersion
		e.cfg, e.err = parseTLSSecret(key, &sec)
	}
	return e.cfg, e.err
}

func secretError(key types.NamespacedName, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("Secret %s not found (want %s, and %s with %s for a client certificate)", key, SecretKeyCA, SecretKeyCert, SecretKeyKey)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("Secret %s: the controller may not read it: its Roles name the Secrets it may get (docs/haproxy.md, RBAC): %w", key, err)
	}
	return fmt.Errorf("Secret %s: %w", key, err)
}

// parseTLSSecret checks the keys and builds the configuration: ca.crt
// always; tls.crt and tls.key together (a client certificate: mutual TLS,
// what HAProxy's Runtime API frontend asks for) or neither (server TLS
// only: an adapter that authenticates the controller by its bearer token).
func parseTLSSecret(key types.NamespacedName, sec *corev1.Secret) (*tls.Config, error) {
	want := fmt.Sprintf("want %s, and %s with %s for a client certificate", SecretKeyCA, SecretKeyCert, SecretKeyKey)
	if len(sec.Data[SecretKeyCA]) == 0 {
		return nil, fmt.Errorf("Secret %s: no key %q (%s)", key, SecretKeyCA, want)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.Data[SecretKeyCA]) {
		return nil, fmt.Errorf("Secret %s: key %q holds no PEM certificate", key, SecretKeyCA)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hasCert, hasKey := len(sec.Data[SecretKeyCert]) > 0, len(sec.Data[SecretKeyKey]) > 0
	switch {
	case hasCert != hasKey:
		missing := SecretKeyKey
		if !hasCert {
			missing = SecretKeyCert
		}
		return nil, fmt.Errorf("Secret %s: no key %q beside the other half of the client certificate (%s)", key, missing, want)
	case hasCert:
		pair, err := tls.X509KeyPair(sec.Data[SecretKeyCert], sec.Data[SecretKeyKey])
		if err != nil {
			return nil, fmt.Errorf("Secret %s: keys %q and %q: %w", key, SecretKeyCert, SecretKeyKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
