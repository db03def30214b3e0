package lab

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"zerodrop.dev/zerodrop/graceful"
)

// ZerodropGracefulScenario is the zerodrop scenario with an app that uses
// the graceful package: on SIGTERM it fails readiness, asks the drain
// endpoint itself (retrying while it is unreachable, for up to its fixed
// wait) and serves until the pod is drained, then lets in-flight requests
// finish. The injected preStop hook still holds SIGTERM first; the app's own
// wait covers a hook that was cut (the serve fault).
var ZerodropGracefulScenario = Scenario{
	Name:           "zerodrop-graceful",
	Summary:        "zerodrop + an app using the graceful package (its own drain wait on the drain endpoint after the hook)",
	App:            App{StartupDelay: baseApp.StartupDelay, Latency: baseApp.Latency, Drain: true, DrainWait: gracefulDrainWait},
	ReadinessProbe: true,
	ExternalLB:     true,
	GracePeriod:    zerodropGrace,
	Prepare:        prepareZerodropGraceful,
	Mutate:         withDrainURL,
}

// gracefulDrainWait is the app's fixed drain wait: its fallback while the
// drain endpoint is unreachable, longer than a serve process takes to come
// back (RestartDelay + its start).
const gracefulDrainWait = 8 * time.Second

// drainURLConfigMap holds the drain endpoint's base URL for the app
// (ZERODROP_DRAIN_URL); the port is known only once the controller runs.
const drainURLConfigMap = "zerodrop-drain"

// prepareZerodropGraceful is prepareZerodrop, then the ConfigMap with the
// drain endpoint's URL.
func prepareZerodropGraceful(ctx context.Context, t Target, ns string) (*Integration, error) {
	in, err := prepareZerodrop(ctx, t, ns)
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: drainURLConfigMap, Namespace: ns},
		Data:       map[string]string{"url": "http://" + in.Controller.drainAddr},
	}
	if _, err := t.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		in.Stop()
		return nil, fmt.Errorf("lab: ConfigMap %s/%s: %w", ns, drainURLConfigMap, err)
	}
	return in, nil
}

// withDrainURL gives the app ZERODROP_DRAIN_URL from the ConfigMap; the
// graceful package completes it with POD_NAMESPACE and POD_NAME.
func withDrainURL(d *appsv1.Deployment) {
	for i := range d.Spec.Template.Spec.Containers {
		c := &d.Spec.Template.Spec.Containers[i]
		c.Env = append(c.Env, corev1.EnvVar{Name: graceful.EnvDrainURL, ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: drainURLConfigMap}, Key: "url"},
		}})
	}
}
