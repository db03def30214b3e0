package charts

import (
	"fmt"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

// Render is `helm template RELEASE CHARTDIR --namespace NAMESPACE
// --include-crds` with the values vals, by the Helm SDK (chart loader,
// values coalesced with the chart's and checked against its schema,
// engine render, CRDs added): the YAML stream of every object, templates
// in name order, then the CRDs. No product binary links it; the chart's
// tests and the lab's install test do.
func Render(chartDir, release, namespace string, vals map[string]any) (string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	if vals == nil {
		vals = map[string]any{}
	}
	opts := common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	values, err := util.ToRenderValues(ch, vals, opts, common.DefaultCapabilities)
	if err != nil {
		return "", fmt.Errorf("chart %s: values: %w", chartDir, err)
	}
	files, err := engine.Render(ch, values)
	if err != nil {
		return "", fmt.Errorf("chart %s: render: %w", chartDir, err)
	}
	var docs []string
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, ".yaml") && strings.TrimSpace(files[n]) != "" {
			docs = append(docs, files[n])
		}
	}
	for _, crd := range ch.CRDObjects() {
		docs = append(docs, string(crd.File.Data))
	}
	return strings.Join(docs, "\n---\n"), nil
}
