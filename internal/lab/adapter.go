package lab

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	zv1 "zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/lab/proc"
	"zerodrop.dev/zerodrop/internal/webhook"
)

// ZerodropAdapterScenario is the zerodrop scenario with the controller
// driving the lab's HAProxy instances through the provider protocol: the
// LoadBalancer has provider external and points at zerodrop-adapter (the
// reference adapter, serving the HAProxy provider on the instances' Runtime
// API sockets) over mutual TLS with a bearer token, both from Secrets.
var ZerodropAdapterScenario = func() Scenario {
	s := ZerodropScenario
	s.Name = "zerodrop-adapter"
	s.Summary = "zerodrop, with the controller driving HAProxy through zerodrop-adapter (provider external, mutual TLS + token)"
	s.Prepare = func(ctx context.Context, t Target, ns string) (*Integration, error) {
		return prepareZerodropWith(ctx, t, ns, true)
	}
	return s
}()

// Secrets the lab gives the controller for the adapter. config/rbac does
// not name them: the lab grants them with a Role of their own, as
// docs/provider-protocol.md tells users to.
const (
	AdapterTLSSecret   = "zerodrop-adapter-client"
	AdapterTokenSecret = "zerodrop-adapter-token"
)

// FindAdapter locates the zerodrop-adapter program: $ZERODROP_ADAPTER, else
// next to the running executable (make build puts it in bin/), else on
// PATH.
func FindAdapter() (string, error) {
	return findProgram("zerodrop-adapter", "ZERODROP_ADAPTER", "go build -o bin/zerodrop-adapter ./cmd/zerodrop-adapter")
}

// startAdapter runs zerodrop-adapter on 127.0.0.1 in front of the lab's
// HAProxy instances (their Runtime API over mutual TLS, or their unix
// sockets in a lab without it), with a serving certificate, a
// client CA and a token it issues, stores the controller's client
// certificate and the token in Secrets, and returns the adapter's URL once
// it answers /healthz.
func (c *Controller) startAdapter(ctx context.Context, t Target) (string, error) {
	bin, err := FindAdapter()
	if err != nil {
		return "", err
	}
	if len(t.HAProxy) == 0 {
		return "", errors.New("lab: adapter: the lab has no HAProxy instance")
	}
	m, err := webhook.IssueMutualTLS(time.Now(), 7*24*time.Hour, []string{"127.0.0.1"}, "zerodrop-controller")
	if err != nil {
		return "", fmt.Errorf("lab: adapter certificates: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := []byte(hex.EncodeToString(raw))
	dir := filepath.Join(c.dir, "adapter")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	files := map[string][]byte{"tls.crt": m.ServerCert, "tls.key": m.ServerKey, "client-ca.crt": m.CA, "token": token}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", fmt.Errorf("lab: adapter: %w", err)
		}
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: AdapterTLSSecret, Namespace: ControllerNamespace}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": m.ClientCert, "tls.key": m.ClientKey, "ca.crt": m.CA}},
		{ObjectMeta: metav1.ObjectMeta{Name: AdapterTokenSecret, Namespace: ControllerNamespace}, Data: map[string][]byte{"token": token}},
	} {
		if err := applySecret(ctx, c.c, s); err != nil {
			return "", err
		}
	}
	if err := grantSecrets(ctx, c.c, "zerodrop-lab-adapter", AdapterTLSSecret, AdapterTokenSecret); err != nil {
		return "", err
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{"--provider=haproxy", "--listen=" + addr,
		"--tls-cert=" + filepath.Join(dir, "tls.crt"), "--tls-key=" + filepath.Join(dir, "tls.key"),
		"--client-ca=" + filepath.Join(dir, "client-ca.crt"), "--token-file=" + filepath.Join(dir, "token")}
	// The Runtime API over mutual TLS, as the controller reaches it without
	// the adapter, when every instance serves it with the lab's one client
	// pair; else the unix sockets.
	overTLS := t.HAProxy[0].AdminTLSDir != ""
	for _, h := range t.HAProxy {
		overTLS = overTLS && h.AdminTLS != "" && h.AdminTLSDir == t.HAProxy[0].AdminTLSDir
	}
	if overTLS {
		args = append(args, "--haproxy-tls-dir="+t.HAProxy[0].AdminTLSDir)
	}
	for _, h := range t.HAProxy {
		if overTLS {
			args = append(args, "--haproxy-instance="+h.Name+"=tcp:"+h.AdminTLS)
		} else {
			args = append(args, "--haproxy-instance="+h.Name+"="+h.Socket)
		}
	}
	p, err := proc.Start(proc.Spec{Name: "zerodrop-adapter", Path: bin, Args: args, Log: filepath.Join(c.dir, "adapter.log")})
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.adapter = p
	c.mu.Unlock()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.CA)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	url := "https://" + addr
	if err := waitHTTPWith(ctx, hc, url+"/healthz", p); err != nil {
		return "", fmt.Errorf("lab: zerodrop-adapter not serving: %w", err)
	}
	c.log.Info("zerodrop-adapter started", "pid", p.PID(), "url", url)
	return url, nil
}

// adapterLoadBalancer turns the lab's LoadBalancer into one of provider
// external pointing at the adapter.
func adapterLoadBalancer(lb *zv1.LoadBalancer, url string) *zv1.LoadBalancer {
	lb.Spec.Provider = zv1.ProviderExternal
	lb.Spec.Instances = nil
	lb.Spec.External = &zv1.ExternalProvider{
		URL:            url,
		TLS:            &zv1.InstanceTLS{SecretRef: zv1.SecretReference{Name: AdapterTLSSecret, Namespace: ControllerNamespace}},
		TokenSecretRef: &zv1.SecretReference{Name: AdapterTokenSecret, Namespace: ControllerNamespace},
		Timeout:        &metav1.Duration{Duration: 10 * time.Second},
	}
	return lb
}

func applySecret(ctx context.Context, kc client.Client, want *corev1.Secret) error {
	var cur corev1.Secret
	err := kc.Get(ctx, client.ObjectKeyFromObject(want), &cur)
	switch {
	case apierrors.IsNotFound(err):
		err = kc.Create(ctx, want)
	case err == nil:
		cur.Data, cur.Type = want.Data, want.Type
		err = kc.Update(ctx, &cur)
	}
	if err != nil {
		return fmt.Errorf("lab: Secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}
