package providers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/provider/remote"
)

// TokenKey is the key of a spec.external.tokenSecretRef Secret that holds
// the bearer token.
const TokenKey = "token"

// ExternalConfig translates a LoadBalancer of provider external into the
// remote client's configuration: the adapter's URL, its timeout, the TLS
// Secret and the token Secret (read at each request and each connection,
// so a rotated Secret needs no restart).
func ExternalConfig(o Options, lb *zv1.LoadBalancer) (remote.Config, error) {
	ext := lb.Spec.External
	if ext == nil {
		return remote.Config{}, errors.New("spec.external: missing (provider external needs the adapter's url)")
	}
	cfg := remote.Config{URL: ext.URL, AllowInsecure: ext.AllowInsecure, Timeout: o.Timeout}
	if o.Log != nil {
		cfg.Logger = o.Log.With("loadbalancer", lb.Name)
	}
	if ext.Timeout != nil {
		if ext.Timeout.Duration <= 0 {
			return remote.Config{}, fmt.Errorf("spec.external.timeout: %s, want more than 0", ext.Timeout.Duration)
		}
		cfg.Timeout = ext.Timeout.Duration
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = remote.DefaultTimeout
	}
	if ext.TLS != nil {
		if o.TLS == nil {
			return remote.Config{}, errors.New("spec.external.tls is set but this process reads no Secrets")
		}
		cfg.TLS = o.TLS(ext.TLS.SecretRef, ext.TLS.ServerName)
	}
	if ref := ext.TokenSecretRef; ref != nil {
		if o.Secret == nil {
			return remote.Config{}, errors.New("spec.external.tokenSecretRef is set but this process reads no Secrets")
		}
		ref := *ref
		cfg.Token = func(ctx context.Context) ([]byte, error) {
			tok, err := o.Secret(ctx, ref, TokenKey)
			if err != nil {
				return nil, fmt.Errorf("spec.external.tokenSecretRef: %w", err)
			}
			if len(strings.TrimSpace(string(tok))) == 0 {
				return nil, fmt.Errorf("spec.external.tokenSecretRef: Secret %s key %q is empty", ref.Name, TokenKey)
			}
			return tok, nil
		}
	}
	if _, err := remote.New(cfg); err != nil {
		return remote.Config{}, fmt.Errorf("spec.external: %w", err)
	}
	return cfg, nil
}

// NewExternal builds the remote provider of a LoadBalancer of provider
// external. It does not contact the adapter.
func NewExternal(o Options, lb *zv1.LoadBalancer) (*remote.Client, error) {
	cfg, err := ExternalConfig(o, lb)
	if err != nil {
		return nil, err
	}
	return remote.New(cfg)
}

// SecretKeys returns an Options.Secret that reads one key of a Secret with
// reader (use the manager's API reader: a cached client would list and
// watch every Secret), references without a namespace in namespace. A value
// read is kept for secretMaxAge, a failure for secretRetry, so that a call
// per request to an adapter is not a GET per request to the API server.
func SecretKeys(reader client.Reader, namespace string) func(ctx context.Context, ref zv1.SecretReference, key string) ([]byte, error) {
	type entry struct {
		read time.Time
		val  []byte
		err  error
	}
	var mu sync.Mutex
	seen := map[string]entry{}
	return func(ctx context.Context, ref zv1.SecretReference, key string) ([]byte, error) {
		nn := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
		if nn.Namespace == "" {
			nn.Namespace = namespace
		}
		id := nn.String() + "#" + key
		mu.Lock()
		e, ok := seen[id]
		mu.Unlock()
		if ok && (time.Since(e.read) < secretRetry || e.err == nil && time.Since(e.read) < secretMaxAge) {
			return e.val, e.err
		}
		e = entry{read: time.Now()}
		e.val, e.err = readSecretKey(ctx, reader, nn, key)
		mu.Lock()
		seen[id] = e
		mu.Unlock()
		return e.val, e.err
	}
}

const (
	secretMaxAge = 30 * time.Second
	secretRetry  = 5 * time.Second
)

func readSecretKey(ctx context.Context, reader client.Reader, nn types.NamespacedName, key string) ([]byte, error) {
	var sec corev1.Secret
	if err := reader.Get(ctx, nn, &sec); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("Secret %s not found (want key %q)", nn, key)
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("Secret %s: the controller may not read it (its Roles name the Secrets it may get): %w", nn, err)
		}
		return nil, fmt.Errorf("Secret %s: %w", nn, err)
	}
	v, ok := sec.Data[key]
	if !ok {
		return nil, fmt.Errorf("Secret %s: no key %q", nn, key)
	}
	return v, nil
}
