package nginxsync_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	labnginx "zerodrop.dev/zerodrop/internal/lab/nginx"
	"zerodrop.dev/zerodrop/internal/lab/nginxsync"
	"zerodrop.dev/zerodrop/internal/testenv"
)

// The baseline puts a Ready endpoint in rotation by rewriting the upstream
// and reloading a real NGINX, and takes it out when it stops being Ready.
func TestSyncsReadyEndpointsByReload(t *testing.T) {
	testenv.RequireBinary(t, "nginx")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })}
	go srv.Serve(l)
	defer srv.Close()
	port := int32(l.Addr().(*net.TCPAddr).Port)

	in, err := labnginx.Start(context.Background(), labnginx.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()

	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "app-1", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "app"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
	}
	client := fake.NewClientset(slice)
	s, err := nginxsync.New(nginxsync.Config{
		Client: client, Namespace: "ns", Service: "app", Pool: "app", PropagationDelay: -1,
		Instances: []nginxsync.Instance{{UpstreamFile: in.UpstreamFile(), PidFile: in.PidFile()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitStatus := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			code := 0
			if resp, err := c.Get("http://" + in.Addr() + "/"); err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			if code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("through nginx: status %d, want %d (port %s)", code, want, strconv.Itoa(int(port)))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStatus(200)
	notReady := false
	slice.Endpoints[0].Conditions.Ready = &notReady
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus(502)
}
