//go:build labdeps

package lab

import (
	"fmt"
	"time"
)

// appReadyPath is the sample app's readiness endpoint (the readinessProbe's
// path); appHealthPath is what HAProxy's health check requests.
const (
	appReadyPath  = "/ready"
	appHealthPath = "/healthz"
)

// appArgs renders the app's knobs as zerodrop-app flags.
// TODO(cluster): align with cmd/zerodrop-app's flags when it lands.
func appArgs(a App) []string {
	mode := "immediate"
	if a.Drain {
		mode = "drain"
	}
	return []string{
		fmt.Sprintf("--listen=:%d", appPort),
		"--startup-delay=" + a.StartupDelay.String(),
		"--latency=" + a.Latency.String(),
		"--shutdown=" + mode,
	}
}

var _ = time.Second
