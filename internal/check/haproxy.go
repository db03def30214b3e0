package check

import (
	"fmt"
	"slices"
	"strings"

	"zerodrop.dev/zerodrop/api/v1alpha1"
	"zerodrop.dev/zerodrop/internal/haproxycfg"
)

// The rules on the --haproxy-config file itself: ZD306 (servers without
// checks), ZD311 (verdicts not pushed to the event ring), ZD312 (idle
// keep-alive connections closed at a reload). Their findings point into the
// file: Source{File, Line} is the line to change.

// eventRing is the ring zerodrop's HAProxy provider reads verdicts from
// (provider/haproxy DefaultEventRing; cmd/zerodrop must not link the
// provider, so a test pins the two together).
const eventRing = "zerodrop"

// haproxyObject is the object of a finding in the HAProxy configuration: a
// backend, frontend, listen or ring section, at line.
func haproxyObject(cfg *haproxycfg.Config, kind, name string, line int) *Object {
	return &Object{Ref: ObjectRef{APIVersion: "haproxy", Kind: kind, Name: name}, Source: Source{File: cfg.File, Line: line}}
}

// drivesHAProxy says whether the binding's LoadBalancer is driven by the
// HAProxy provider: provider haproxy (the default), or a LoadBalancer the
// input lacks. An adapter's load balancer (provider external) pushes no
// verdicts.
func (b *binding) drivesHAProxy() bool {
	return b.lb == nil || b.lb.spec.Provider == "" || b.lb.spec.Provider == v1alpha1.ProviderHAProxy
}

// ZD306: HAProxy backends fronting workloads whose servers are not checked.
// used holds the backends of the workloads' static HAProxy fronts (not the
// pools of TargetBindings: the controller adds their servers with checks).
func checkHAProxy(opts *Options, used map[string][]string) []Finding {
	var out []Finding
	if opts.haproxy == nil {
		return nil
	}
	for _, b := range opts.haproxy.Backends {
		if len(used[b.Name]) == 0 || b.Health().Check {
			continue
		}
		line, field := b.Line, "default-server"
		for _, s := range b.Servers {
			if !s.Params.Check {
				line, field = s.Line, "server "+s.Name
				break
			}
		}
		out = append(out, newFinding(RuleHAProxyNoCheck, haproxyObject(opts.haproxy, "backend", b.Name, line), field,
			fmt.Sprintf("HAProxy backend %s: %s has no check", b.Name, field),
			"HAProxy sends to pods that exited until its configuration changes, and to new ones before they listen: 502/503",
			"```\nbackend "+b.Name+"\n    option httpchk GET /ready\n    default-server check inter 2s fall 2 rise 2\n```"))
	}
	return out
}

// ringFix is the configuration docs/haproxy.md ("Event-driven verdicts")
// asks for, for backend name.
func ringFix(name string) string {
	return fmt.Sprintf("```\nring %s\n    format timed          # timestamps: a reconnect resumes without loss\n    maxlen 1024\n    size 1048576\n\nbackend %s\n    option log-health-checks\n    log ring@%s local0\n```\n(docs/haproxy.md, \"Event-driven verdicts\").", eventRing, name, eventRing)
}

// ZD311: backends that TargetBindings drive through the HAProxy provider
// whose verdicts do not reach the event ring the controller reads, and an
// event ring whose lines carry no timestamps.
func checkEventRing(opts *Options, ix *index) []Finding {
	cfg := opts.haproxy
	if cfg == nil {
		return nil
	}
	bound := map[string][]string{} // backend -> the bindings naming it
	for _, b := range ix.bindings {
		if b.drivesHAProxy() && cfg.Backend(b.tb.Spec.Pool) != nil {
			bound[b.tb.Spec.Pool] = append(bound[b.tb.Spec.Pool], b.ref())
		}
	}
	if len(bound) == 0 {
		return nil
	}
	ring := cfg.Ring(eventRing)
	var out []Finding
	for _, bk := range cfg.Backends {
		refs := bound[bk.Name]
		if len(refs) == 0 {
			continue
		}
		who := fmt.Sprintf("HAProxy backend %s (pool of %s)", bk.Name, strings.Join(compactSorted(refs), ", "))
		var toRing, filtered *haproxycfg.Log // a log line to the event ring; one whose level drops "is UP"
		var elsewhere []string               // rings it logs to instead
		for i, l := range bk.Logs {
			switch l.RingName() {
			case "":
			case eventRing:
				if l.Sends("notice") {
					toRing = &bk.Logs[i]
				} else if filtered == nil {
					filtered = &bk.Logs[i]
				}
			default:
				elsewhere = append(elsewhere, "ring@"+l.RingName())
			}
		}
		obj := func(line int) *Object { return haproxyObject(cfg, "backend", bk.Name, line) }
		switch {
		case ring == nil:
			line, msg := bk.Line, fmt.Sprintf("%s: %s has no `ring %s` section", who, cfg.File, eventRing)
			if toRing != nil {
				line = logLine(*toRing)
				msg += fmt.Sprintf(" for its `log ring@%s` (line %d) to write to (unless another file of this HAProxy has it, HAProxy refuses to start: unknown ring)", eventRing, toRing.Line)
			} else if len(elsewhere) > 0 {
				msg += fmt.Sprintf(", and the backend logs to %s, which the controller does not read", strings.Join(compactSorted(elsewhere), ", "))
			}
			out = append(out, newFinding(RuleEventRing, obj(line), "log", msg,
				fmt.Sprintf("the controller's event stream (`show events %s -w`) fails, so it polls: a gate opens up to a poll (--provider-poll-interval, 250 ms) after HAProxy's verdict instead of within milliseconds; drains are polled as before", eventRing),
				ringFix(bk.Name)))
			continue
		case toRing == nil && filtered != nil:
			// The line to change is the one with the level, in the global
			// section too when "log global" brought it in.
			out = append(out, newFinding(RuleEventRing, obj(filtered.Line), "log",
				fmt.Sprintf("%s: `log ring@%s` at level %s (line %d) drops notice lines: \"Server %s/<server> is UP\" never reaches the ring", who, eventRing, filtered.Level, filtered.Line, bk.Name),
				"the controller's stream is up, so it takes this pool's verdicts as pushed and re-reads it only every --pushed-poll-interval (1 s) while targets register: a gate opens up to 1 s after HAProxy marked the server UP (DOWN lines, level alert, still arrive); drains are polled as before",
				fmt.Sprintf("Drop the level (or make it notice or lower): `log ring@%s local0`.", eventRing)))
			continue
		case toRing == nil:
			msg := fmt.Sprintf("%s does not log to ring %s (line %d): no `log ring@%s` in the backend or its defaults section", who, eventRing, ring.Line, eventRing)
			if len(elsewhere) > 0 {
				msg += fmt.Sprintf("; it logs to %s, which the controller does not read", strings.Join(compactSorted(elsewhere), ", "))
			}
			out = append(out, newFinding(RuleEventRing, obj(bk.Line), "log", msg,
				"the controller's stream is up (the ring exists), so it takes this pool's verdicts as pushed and re-reads it only every --pushed-poll-interval (1 s) while targets register: a gate opens up to 1 s after HAProxy's verdict, later than with no ring at all (250 ms polls); drains are polled as before",
				fmt.Sprintf("```\nbackend %s\n    option log-health-checks\n    log ring@%s local0\n```", bk.Name, eventRing)))
			continue
		}
		if o := bk.Options["log-health-checks"]; !o.On {
			line, how := bk.Line, "neither the backend nor its defaults section sets it"
			if o.Line > 0 {
				line, how = o.Line, fmt.Sprintf("`no option log-health-checks` at line %d", o.Line)
			}
			out = append(out, newFinding(RuleEventRing, obj(line), "option log-health-checks",
				fmt.Sprintf("%s logs to ring %s without `option log-health-checks` (%s): its verdict lines reach the ring, the check lines that announce them do not", who, eventRing, how),
				"HAProxy 2.6 sometimes holds a verdict line back from the controller's stream (2 in 150 rounds of the provider's test); the check line that reaches rise or fall announces it, and without it the controller cannot catch the verdict up: that gate opens at the next line or the 1 s resync (--pushed-poll-interval); drains are polled as before",
				fmt.Sprintf("```\nbackend %s\n    option log-health-checks\n```", bk.Name)))
		}
	}
	if ring != nil && !ring.Timestamped() {
		line, field, how := ring.Line, "format", "no format line: HAProxy's default, raw"
		if ring.FormatLine > 0 {
			line, how = ring.FormatLine, "format "+ring.Format
		}
		out = append(out, newFinding(RuleEventRing, haproxyObject(cfg, "ring", ring.Name, line), field,
			fmt.Sprintf("ring %s, which the controller reads for the verdicts of %s, stores lines without a timestamp (%s)", ring.Name, strings.Join(sortedKeys(bound), ", "), how),
			"the controller's stream reconnects after HAProxy closes it when idle (`stats timeout`, 10 s by default) and after every reload; without timestamps it cannot skip what it already had, so it resumes with new lines only (-n) and lines written meanwhile are lost (it re-reads every pool once for the gap), and a verdict line HAProxy 2.6 holds back cannot be caught up: that gate opens at the next line or the 1 s resync",
			fmt.Sprintf("```\nring %s\n    format timed\n```\n(or iso, rfc5424: timestamps of microseconds).", ring.Name)))
	}
	return out
}

// logLine is where a log target is set in a section: its own line, or the
// "log global" that brought it in.
func logLine(l haproxycfg.Log) int {
	if l.Via > 0 {
		return l.Via
	}
	return l.Line
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ZD312: HTTP frontends that serve the workloads' backends and close idle
// client keep-alive connections at a reload. served maps each backend a
// workload's traffic goes through (static fronts and TargetBinding pools)
// to the workloads.
func checkIdleClose(opts *Options, served map[string][]string) []Finding {
	cfg := opts.haproxy
	if cfg == nil {
		return nil
	}
	const option = "idle-close-on-response"
	cons := "at every reload (a config manager applying a change, `systemctl reload`, SIGUSR2 to the master) the old worker closes its idle client keep-alive connections; a request written on one at that moment fails, and clients resend only idempotent ones (GET): POSTs fail, with no server involved (zerodrop's lab: 14 and 27 POSTs cut by reloads, no GET)"
	fix := "```\ndefaults\n    option idle-close-on-response   # HAProxy 2.6 and later, HTTP mode\n```\nAn idle connection then waits for one more request and closes after its response (bound old workers with `hard-stop-after`). In a TCP frontend that inherits it, `no option idle-close-on-response` (HAProxy warns about it there)."
	type route struct {
		backend string
		ref     haproxycfg.BackendRef
	}
	var out []Finding
	reported := map[*haproxycfg.Frontend]bool{}
	for _, bk := range cfg.Backends {
		wl := served[bk.Name]
		if len(wl) == 0 {
			continue
		}
		wl = compactSorted(wl)
		routed := false
		for _, f := range cfg.Frontends {
			if _, ok := f.Routes(bk.Name); !ok {
				continue
			}
			routed = true
			if f.Mode != "http" || f.Options[option].On || reported[f] {
				continue
			}
			reported[f] = true
			// Every served backend this frontend routes to, for the message.
			var rs []route
			for _, b2 := range cfg.Backends {
				if len(served[b2.Name]) > 0 {
					if r, ok := f.Routes(b2.Name); ok {
						rs = append(rs, route{b2.Name, r})
					}
				}
			}
			var via []string
			for _, r := range rs {
				how := fmt.Sprintf("line %d", r.ref.Line)
				if r.ref.Dynamic {
					how = fmt.Sprintf("use_backend %s at line %d may pick it", r.ref.Name, r.ref.Line)
				}
				via = append(via, fmt.Sprintf("%s (%s; used by %s)", r.backend, how, strings.Join(compactSorted(served[r.backend]), ", ")))
			}
			line, how, ffix := f.Line, "neither it nor its defaults section sets it", fix
			if o := f.Options[option]; o.Line > 0 {
				line, how = o.Line, fmt.Sprintf("`no option %s` at line %d", option, o.Line)
				ffix = fmt.Sprintf("Remove `no option %s` from %s %s (line %d).", option, f.Section, f.Name, o.Line)
			}
			out = append(out, newFinding(RuleIdleClose, haproxyObject(cfg, f.Section, f.Name, line), "option "+option,
				fmt.Sprintf("HAProxy %s %s (mode http) routes to %s without `option %s` (%s)", f.Section, f.Name, strings.Join(via, ", "), option, how),
				cons, ffix))
		}
		if routed || bk.Mode != "http" || bk.Options[option].On {
			continue
		}
		// No frontend of this file routes to it: the one that does is in
		// another file, and inherits defaults this file may set.
		out = append(out, newFinding(RuleIdleClose, haproxyObject(cfg, "backend", bk.Name, bk.Line), "option "+option,
			fmt.Sprintf("HAProxy backend %s (used by %s): no frontend or listen section of %s routes to it, and the defaults section it inherits has no `option %s`; the frontend that serves it needs it", bk.Name, strings.Join(wl, ", "), cfg.File, option),
			cons, fix))
	}
	return out
}

func compactSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
