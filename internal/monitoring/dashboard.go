// Package monitoring builds zerodrop-controller's Grafana dashboard as code
// and checks PromQL for the metrics it names. The dashboard is written to
// config/monitoring/dashboard.json (and the Helm chart's copy) by
// `go run ./hack/genchart`; the alerts live in
// config/monitoring/zerodrop.rules.yaml. docs/monitoring.md describes both.
package monitoring

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// DashboardUID is the dashboard's uid in Grafana.
const DashboardUID = "zerodrop-controller"

// sel is the label selector of every zerodrop_* series of a binding: the
// dashboard's namespace variable.
const sel = `namespace=~"$namespace"`

// query is one PromQL expression of a panel and its legend.
type query struct{ expr, legend string }

// panelSpec is one time series panel.
type panelSpec struct {
	title, description, unit string
	queries                  []query
}

// rowSpec is a row of panels.
type rowSpec struct {
	title  string
	panels []panelSpec
}

// layout is the dashboard, row by row. Every expression names only series
// zerodrop-controller exports (a test checks it).
var layout = []rowSpec{
	{title: "Pod readiness vs LB health", panels: []panelSpec{
		{
			title: "Pod readiness vs LB health",
			description: "Targets whose containers are ready but that the load balancer does not yet report healthy: their readiness gate holds them out " +
				"of the Service (pending), targets past their gate timeout that the load balancer still does not report healthy (stuck), " +
				"and pods that run without zerodrop's gate or drain hook (ungated). Without zerodrop the pending ones would be receiving traffic the LB drops.",
			unit: "short",
			queries: []query{
				{`sum by (namespace, binding) (zerodrop_gates_pending{` + sel + `})`, "pending {{namespace}}/{{binding}}"},
				{`sum by (namespace, binding) (zerodrop_gates_stuck{` + sel + `})`, "stuck {{namespace}}/{{binding}}"},
				{`sum by (namespace, binding) (zerodrop_pods_ungated{` + sel + `})`, "ungated {{namespace}}/{{binding}}"},
			},
		},
		{
			title:       "Gate latency (ContainersReady → LB healthy)",
			description: "How long new pods wait behind their readiness gate for every load balancer instance to report them healthy.",
			unit:        "s",
			queries: []query{
				{`histogram_quantile(0.5, sum by (le) (rate(zerodrop_gate_latency_seconds_bucket{` + sel + `}[$__rate_interval])))`, "p50"},
				{`histogram_quantile(0.99, sum by (le) (rate(zerodrop_gate_latency_seconds_bucket{` + sel + `}[$__rate_interval])))`, "p99"},
			},
		},
		{
			title:       "Drain latency (deletion → drained on every instance)",
			description: "How long terminating pods wait in their preStop hook for every load balancer instance to confirm the drain.",
			unit:        "s",
			queries: []query{
				{`histogram_quantile(0.5, sum by (le) (rate(zerodrop_drain_duration_seconds_bucket{` + sel + `, result="drained"}[$__rate_interval])))`, "p50"},
				{`histogram_quantile(0.99, sum by (le) (rate(zerodrop_drain_duration_seconds_bucket{` + sel + `, result="drained"}[$__rate_interval])))`, "p99"},
			},
		},
		{
			title:       "Drains by result",
			description: "Drains completed per second, by result: drained (every instance confirmed) or timeout (the hook gave up: fail open).",
			unit:        "ops",
			queries: []query{
				{`sum by (result) (rate(zerodrop_drain_duration_seconds_count{` + sel + `}[$__rate_interval]))`, "{{result}}"},
			},
		},
	}},
	{title: "Load balancers", panels: []panelSpec{
		{
			title:       "Instances reachable",
			description: "1 while the controller's reads of a load balancer instance succeed, 0 while they fail: gates wait for every instance, drains too.",
			unit:        "short",
			queries: []query{
				{`max by (loadbalancer, instance) (zerodrop_loadbalancer_instance_reachable)`, "{{loadbalancer}} {{instance}}"},
			},
		},
		{
			title:       "Target verdicts per instance",
			description: "The bindings' targets by what each load balancer instance reports of them (Healthy, Initial, Unhealthy, Draining, Drained, Absent): an instance that disagrees with the others shows here.",
			unit:        "short",
			queries: []query{
				{`sum by (loadbalancer, instance, health) (zerodrop_targets{namespace=~"$namespace"})`, "{{loadbalancer}} {{instance}} {{health}}"},
			},
		},
		{
			title:       "Load balancer call errors",
			description: "Failed provider calls per second by LoadBalancer and operation: an instance unreachable or refusing commands. A call covers every instance of the LoadBalancer.",
			unit:        "ops",
			queries: []query{
				{`sum by (loadbalancer, operation) (rate(zerodrop_provider_errors_total[$__rate_interval]))`, "{{loadbalancer}} {{operation}}"},
			},
		},
		{
			title:       "Load balancer call latency p99",
			description: "p99 duration of provider calls by LoadBalancer and operation.",
			unit:        "s",
			queries: []query{
				{`histogram_quantile(0.99, sum by (loadbalancer, operation, le) (rate(zerodrop_provider_call_duration_seconds_bucket[$__rate_interval])))`, "{{loadbalancer}} {{operation}}"},
			},
		},
		{
			title:       "Instance reloads and restarts",
			description: "Load balancer instances seen reloaded or restarted (runtime state lost, targets registered again).",
			unit:        "short",
			queries: []query{
				{`sum by (loadbalancer, instance) (increase(zerodrop_instance_restarts_total[$__rate_interval]))`, "{{loadbalancer}} {{instance}}"},
			},
		},
		{
			title:       "Orphans",
			description: "Pool entries no binding knows (left by a crash or by hand), and orphans freed after --orphan-grace.",
			unit:        "short",
			queries: []query{
				{`sum by (loadbalancer, pool) (zerodrop_orphans)`, "{{loadbalancer}} {{pool}}"},
				{`sum by (loadbalancer, pool) (increase(zerodrop_orphans_freed_total[$__rate_interval]))`, "freed {{loadbalancer}} {{pool}}"},
			},
		},
	}},
	{title: "Controller", panels: []panelSpec{
		{
			title:       "Reconcile errors",
			description: "Errors returned by zerodrop's reconcilers per second (waiting is never an error).",
			unit:        "ops",
			queries: []query{
				{`sum by (controller) (rate(controller_runtime_reconcile_errors_total{controller=~"targetbinding|targetbinding-drain|loadbalancer"}[$__rate_interval]))`, "{{controller}}"},
			},
		},
		{
			title:       "Webhook requests by code",
			description: "Admission requests to the pod webhook and the TargetBinding validator per second, by HTTP code.",
			unit:        "ops",
			queries: []query{
				{`sum by (webhook, code) (rate(controller_runtime_webhook_requests_total{webhook=~"/mutate-v1-pod|/validate-zerodrop-dev-v1alpha1-targetbinding"}[$__rate_interval]))`, "{{webhook}} {{code}}"},
			},
		},
		{
			title:       "Reconcile leader",
			description: "1 while a reconcile replica holds the Lease zerodrop-controller.zerodrop.dev; gates wait while none does.",
			unit:        "short",
			queries: []query{
				{`max(leader_election_master_status{name="zerodrop-controller.zerodrop.dev"})`, "leader"},
			},
		},
	}},
}

// Dashboard returns the dashboard "zerodrop: pod readiness vs LB health" as
// Grafana JSON.
func Dashboard() ([]byte, error) {
	ds := common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
	b := dashboard.NewDashboardBuilder("zerodrop: pod readiness vs LB health").
		Uid(DashboardUID).
		Description("zerodrop-controller: readiness gates and drains driven by the load balancer's own health verdict (docs/monitoring.md).").
		Tags([]string{"zerodrop", "kubernetes", "load-balancer"}).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("namespace").
			Label("Namespace").
			Datasource(ds).
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(zerodrop_gates_pending, namespace)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Multi(true).
			IncludeAll(true).
			AllValue(".*"))
	for _, r := range layout {
		b = b.WithRow(dashboard.NewRowBuilder(r.title))
		for _, p := range r.panels {
			pb := timeseries.NewPanelBuilder().
				Title(p.title).
				Description(p.description).
				Unit(p.unit).
				Min(0).
				Datasource(ds).
				Height(8).
				Span(12)
			for i, q := range p.queries {
				pb = pb.WithTarget(prometheus.NewDataqueryBuilder().
					Expr(q.expr).
					LegendFormat(q.legend).
					RefId(string(rune('A' + i))))
			}
			b = b.WithPanel(pb)
		}
	}
	d, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return append(out, '\n'), nil
}

// DashboardQueries returns every PromQL expression of a dashboard's panels
// (Grafana JSON, as Dashboard returns it), in panel order. Variable queries
// (label_values) are Grafana's, not PromQL, and are left out.
func DashboardQueries(dashboardJSON []byte) ([]string, error) {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		return nil, fmt.Errorf("dashboard JSON: %w", err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			if t.Expr == "" {
				return nil, fmt.Errorf("dashboard JSON: panel %q has a target without expr", p.Title)
			}
			out = append(out, t.Expr)
		}
		for _, c := range p.Panels { // panels of a collapsed row
			for _, t := range c.Targets {
				out = append(out, t.Expr)
			}
		}
	}
	return out, nil
}
