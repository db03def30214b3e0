package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestProjectedTokenIsRotatedAtEightyPercentAndRewrittenAtomically drives
// the token source and the volume writer with a fake clock and a fake API
// server that grants what is asked, instead of waiting an hour.
func TestProjectedTokenIsRotatedAtEightyPercentAndRewrittenAtomically(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	client := fake.NewSimpleClientset()
	var requests []*authenticationv1.TokenRequest
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		requests = append(requests, tr)
		tr.Status = authenticationv1.TokenRequestStatus{
			Token:               fmt.Sprintf("token-%d", len(requests)),
			ExpirationTimestamp: metav1.NewTime(now.Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second)),
		}
		return true, tr, nil
	})
	tokens := newTokenSource(client)
	tokens.now = func() time.Time { return now }
	projection := &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: int64p(3607)}
	volume := v1.Volume{Name: "kube-api-access-x", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
		Sources: []v1.VolumeProjection{{ServiceAccountToken: projection}}}}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "uid-1"},
		Spec: v1.PodSpec{ServiceAccountName: "web", Volumes: []v1.Volume{volume}}}
	vols := &podVolumes{client: client, dir: t.TempDir(), tokens: tokens}
	token := func() string {
		t.Helper()
		if err := vols.setUp(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(vols.path("kube-api-access-x"), "token"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	if got := token(); got != "token-1" {
		t.Fatalf("first token %q", got)
	}
	spec := requests[0].Spec
	if ref := spec.BoundObjectRef; ref == nil || ref.Kind != "Pod" || ref.Name != "web-1" || ref.UID != "uid-1" {
		t.Errorf("bound to %+v, want Pod web-1 uid-1", spec.BoundObjectRef)
	}
	if spec.Audiences != nil || *spec.ExpirationSeconds != 3607 {
		t.Errorf("audiences %v expiration %d, want the API server's audiences (none given) and 3607", spec.Audiences, *spec.ExpirationSeconds)
	}

	now = now.Add(47 * time.Minute) // 78% of 3607 s: still fresh
	if got := token(); got != "token-1" || len(requests) != 1 {
		t.Errorf("at 78%%: token %q after %d requests, want the cached token-1", got, len(requests))
	}
	now = now.Add(2 * time.Minute) // 81%
	if got := token(); got != "token-2" || len(requests) != 2 {
		t.Errorf("at 81%%: token %q after %d requests, want a new token-2", got, len(requests))
	}
	if link, err := os.Readlink(filepath.Join(vols.path("kube-api-access-x"), "token")); err != nil || link != "..data/token" {
		t.Errorf("token is %q (%v), want a symlink into ..data", link, err)
	}
}
