package provider

import (
	"fmt"
	"sort"
	"strings"
)

// CapabilityMatrix renders the capabilities of named providers as a
// Markdown table, one column per provider (docs/providers.md embeds the
// table of the providers built into zerodrop, kept equal by a test).
func CapabilityMatrix(caps map[string]Capabilities) string {
	names := make([]string, 0, len(caps))
	for n := range caps {
		names = append(names, n)
	}
	sort.Strings(names)
	rows := []struct {
		name string
		val  func(Capabilities) string
	}{
		{"identity", func(c Capabilities) string { return string(c.Identity) }},
		{"promotion", func(c Capabilities) string { return string(c.Promotion) }},
		{"health checks", func(c Capabilities) string {
			if !c.ActiveHealthChecks {
				return string(c.HealthCheckScope) + " (no active checks)"
			}
			return string(c.HealthCheckScope)
		}},
		{"drain signal", func(c Capabilities) string { return string(c.DrainSignal) }},
		{"topology", func(c Capabilities) string { return string(c.Topology) }},
		{"runtime state lost on reload", func(c Capabilities) string { return yesNo(c.VolatileRuntimeState) }},
		{"reload grace (default)", func(c Capabilities) string { return durationOr(c.ReloadGrace.String(), c.ReloadGrace == 0) }},
		{"pushes verdicts", func(c Capabilities) string { return yesNo(c.PushesVerdicts) }},
		{"min. status interval", func(c Capabilities) string { return durationOr(c.MinStatusInterval.String(), c.MinStatusInterval == 0) }},
		{"check defaults", func(c Capabilities) string {
			h := c.HealthCheckDefaults
			if h.Interval == 0 && h.Rise == 0 && h.Fall == 0 {
				return "—"
			}
			return fmt.Sprintf("inter %s, rise %d, fall %d", h.Interval, h.Rise, h.Fall)
		}},
	}
	var b strings.Builder
	b.WriteString("| capability |")
	for _, n := range names {
		b.WriteString(" " + n + " |")
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(names)) + "\n")
	for _, r := range rows {
		b.WriteString("| " + r.name + " |")
		for _, n := range names {
			b.WriteString(" " + r.val(caps[n]) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func durationOr(s string, none bool) string {
	if none {
		return "none"
	}
	return s
}
