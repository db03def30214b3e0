// Command genchart writes what the Helm chart and the monitoring files
// derive from elsewhere in the tree. Run from the repository root after
// changing the CRDs, the alerts, the dashboard code or values.yaml:
//
//	go run ./hack/genchart
//
// It writes config/monitoring/dashboard.json (internal/monitoring), the
// chart's copies of the CRDs (crds/), of the alerts and of the dashboard
// (files/), and the values table of docs/install.md. The chart's tests
// fail when any of them is stale.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"zerodrop.dev/zerodrop/charts"
	"zerodrop.dev/zerodrop/internal/monitoring"
)

const chart = "charts/zerodrop-controller"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genchart:", err)
		os.Exit(1)
	}
}

func run() error {
	dash, err := monitoring.Dashboard()
	if err != nil {
		return err
	}
	for _, f := range []string{"config/monitoring/dashboard.json", filepath.Join(chart, "files/dashboard.json")} {
		if err := os.WriteFile(f, dash, 0o644); err != nil {
			return err
		}
	}
	if err := copyFile("config/monitoring/zerodrop.rules.yaml", filepath.Join(chart, "files/zerodrop.rules.yaml")); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(chart, "crds/*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	crds, err := filepath.Glob("config/crd/bases/*.yaml")
	if err != nil {
		return err
	}
	for _, f := range crds {
		if err := copyFile(f, filepath.Join(chart, "crds", filepath.Base(f))); err != nil {
			return err
		}
	}
	values, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	table, err := charts.ValuesTable(values)
	if err != nil {
		return err
	}
	doc, err := os.ReadFile("docs/install.md")
	if err != nil {
		return err
	}
	doc, err = charts.ReplaceTable(doc, table)
	if err != nil {
		return fmt.Errorf("docs/install.md: %w", err)
	}
	return os.WriteFile("docs/install.md", doc, 0o644)
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}
