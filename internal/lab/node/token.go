package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Token refresh constants of the kubelet's token manager
// (pkg/kubelet/token/token_manager.go).
const (
	tokenMaxTTL    = 24 * time.Hour
	tokenMaxJitter = 10 * time.Second
)

// tokenRequiresRefresh is the kubelet token manager's requiresRefresh: a
// token is requested again once 80% of its lifetime has passed (within 20%
// of its expiry) or once it is older than 24 hours, each less a jitter of
// up to 10 s. The lifetime is the one the API server granted
// (spec.expirationSeconds of its answer).
func tokenRequiresRefresh(tr *authenticationv1.TokenRequest, now time.Time, jitter time.Duration) bool {
	if tr.Spec.ExpirationSeconds == nil {
		return false
	}
	exp := tr.Status.ExpirationTimestamp.Time
	ttl := time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
	issued := exp.Add(-ttl)
	if now.After(issued.Add(tokenMaxTTL - jitter)) {
		return true
	}
	return now.After(exp.Add(-ttl*20/100 - jitter))
}

// tokenSource requests and caches a pod's projected service-account
// tokens, as the kubelet's token manager does for the projected volume.
type tokenSource struct {
	client kubernetes.Interface
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]*authenticationv1.TokenRequest
}

func newTokenSource(client kubernetes.Interface) *tokenSource {
	return &tokenSource{client: client, now: time.Now, cache: map[string]*authenticationv1.TokenRequest{}}
}

// token returns the token for pod's ServiceAccount with the projection's
// audience and lifetime, bound to the pod (BoundObjectRef kind Pod, name,
// UID), requesting a new one with the TokenRequest API when there is none
// yet or the cached one needs a refresh.
func (s *tokenSource) token(ctx context.Context, pod *v1.Pod, p *v1.ServiceAccountTokenProjection) (string, error) {
	var auds []string
	if p.Audience != "" {
		auds = []string{p.Audience} // empty: the API server's own audiences
	}
	exp := int64(3607)
	if p.ExpirationSeconds != nil {
		exp = *p.ExpirationSeconds
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	key := fmt.Sprintf("%s/%s/%s/%d", pod.Namespace, sa, p.Audience, exp)
	s.mu.Lock()
	tr := s.cache[key]
	s.mu.Unlock()
	jitter := time.Duration(rand.Float64() * float64(tokenMaxJitter))
	if tr != nil && !tokenRequiresRefresh(tr, s.now(), jitter) {
		return tr.Status.Token, nil
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         auds,
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}}
	got, err := s.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		if tr != nil && s.now().Before(tr.Status.ExpirationTimestamp.Time) {
			return tr.Status.Token, nil // still valid: keep it, as the kubelet does
		}
		return "", fmt.Errorf("token for serviceaccount %s/%s: %w", pod.Namespace, sa, err)
	}
	s.mu.Lock()
	s.cache[key] = got
	s.mu.Unlock()
	return got.Status.Token, nil
}
