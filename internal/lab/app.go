package lab

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// appReadyPath is the sample app's readiness endpoint (the readinessProbe's
// path); appHealthPath is its liveness endpoint, which HAProxy's health
// check requests (it answers 200 as long as the process listens, as the
// health endpoint of most services does).
const (
	appReadyPath  = "/ready"
	appHealthPath = "/healthz"
)

// appArgs renders the app's knobs as zerodrop-app flags (docs/sample-app.md).
func appArgs(a App, s Scenario) []string {
	args := []string{
		fmt.Sprintf("--listen=:%d", appPort),
		"--startup-delay=" + a.StartupDelay.String(),
		"--latency=" + a.Latency.String(),
		"--ready-path=" + appReadyPath,
		"--live-path=" + appHealthPath,
	}
	if !a.Drain {
		return append(args, "--shutdown=immediate")
	}
	// The preStop sleep has already waited for the LB by the time SIGTERM
	// comes; what is left of the grace period is the app's.
	grace := 30 * time.Second
	if s.GracePeriod > 0 {
		grace = s.GracePeriod
	}
	return append(args, "--shutdown=drain",
		"--drain-wait="+a.DrainWait.String(),
		"--grace-period="+(grace-s.PreStopSleep).String())
}

// appEnv is what the downward API gives the app: its pod's name and
// namespace (in responses and logs).
func appEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "APP_VERSION", Value: "v1"},
	}
}
