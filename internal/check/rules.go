package check

import "sort"

// Rule describes one check: stable id, default severity, why, the formula and
// the fix. --list-rules and docs/checks.md are generated from Rules().
type Rule struct {
	ID        string   `json:"id"`
	Title     string   `json:"title"`
	Severity  Severity `json:"-"`
	Rationale string   `json:"rationale"`
	Formula   string   `json:"formula,omitempty"`
	Fix       string   `json:"fix"`
}

// The rule ids. ZD0xx: input; ZD1xx: startup; ZD2xx: termination; ZD3xx:
// load balancers and gates; ZD4xx: structure. Ids are stable: silencing
// annotations and config files refer to them.
const (
	RuleBadAnnotation         = "ZD001"
	RuleNotModelled           = "ZD002"
	RuleNoReadinessProbe      = "ZD101"
	RuleSameProbes            = "ZD102"
	RuleStartupGap            = "ZD103"
	RuleRollingUpdate         = "ZD104"
	RuleHPAFasterThanGates    = "ZD105"
	RuleSIGKILL               = "ZD201"
	RuleGraceBuffer           = "ZD202"
	RuleEarlyExit             = "ZD203"
	RuleShellSleep            = "ZD204"
	RuleInFlightCut           = "ZD205"
	RuleLongLived             = "ZD206"
	RuleGKEDrain              = "ZD207"
	RuleDeregistrationShort   = "ZD301"
	RuleDeregistrationDefault = "ZD302"
	RuleGateCannotWork        = "ZD303"
	RuleGateNotInjected       = "ZD304"
	RuleWebhookFail           = "ZD305"
	RuleHAProxyNoCheck        = "ZD306"
	// zerodrop's own gates (TargetBinding, LoadBalancer).
	RuleZerodropGateNotInjected = "ZD307"
	RuleGateTimeoutShort        = "ZD308"
	RuleDrainOutlivesGrace      = "ZD309"
	RuleBindingDangling         = "ZD310"
	RuleEventRing               = "ZD311"
	RuleIdleClose               = "ZD312"
	RuleNoPDB                   = "ZD401"
	RulePDBBlocks               = "ZD402"
)

// rules is the catalogue, described as data: --list-rules and
// docs/checks.md are generated from it (hack/gendocs).
var rules = []Rule{
	{
		ID: RuleBadAnnotation, Title: "Invalid annotation value", Severity: SeverityError,
		Rationale: "A zerodrop.dev/* annotation sets an assumption the manifests cannot say (the app's shutdown time, the longest request, ...); LB annotations (alb.ingress.kubernetes.io/*, service.beta.kubernetes.io/aws-load-balancer-*, ...) set health checks and timeouts. A value zerodrop cannot read is ignored, so the check runs on the default instead of what you meant (and the controller reading it may reject it too).",
		Fix:       "Write seconds as a number (`\"20\"`, `\"2.5\"`) or a Go duration (`\"20s\"`, `\"1m30s\"`); rule ids as `ZD201,ZD305`.",
	},
	{
		ID: RuleNotModelled, Title: "Data path not modelled", Severity: SeverityInfo,
		Rationale: "Some data paths have timings zerodrop cannot read from the manifests: an Ingress whose controller it does not know (on GKE an Ingress without class is served by GCE), a Gateway API route whose Gateway implementation it does not know, a cloud LB with externalTrafficPolicy Local (the LB learns from node health checks that a node's last pod is gone), a Service that publishes not-ready addresses. A clean result for them would claim more than was checked, so each gets a note saying what was assumed.",
		Formula:   "Ingress controller unknown; HTTPRoute/GRPCRoute whose Gateway is not in the input or of a class zerodrop does not know, by its name or its GatewayClass's controllerName (known: gke-l7-* as GCLB with NEGs; istio, Envoy Gateway, NGINX, Cilium, Traefik, Kong, Contour, HAProxy as in-cluster proxies); Service type LoadBalancer/NodePort with externalTrafficPolicy Local and node targets; publishNotReadyAddresses: true",
		Fix:       "Name the Ingress controller (`spec.ingressClassName`), prefer pod targets (ALB/NLB ip, GKE NEG) over externalTrafficPolicy Local, and keep publishNotReadyAddresses for peer-discovery Services only.",
	},
	{
		ID: RuleNoReadinessProbe, Title: "Served workload without readinessProbe", Severity: SeverityError,
		Rationale: "Without a readinessProbe a pod is Ready as soon as its containers start, so Services and LBs send it traffic before the server inside listens: connection refused, 502 (seed 001). The Deployment also deletes old pods at once.",
		Formula:   "window = [Ready + D, app start)  (Ready = container start without a probe); not reported when a working readiness gate (AWS, GKE NEG, zerodrop) makes Ready wait for the LB's own check of the pod",
		Fix:       "Add a readinessProbe that passes only when the app serves. The finding's fix reuses the container's startup or liveness probe handler when it has one, else a TCP check of the port the Service sends to (never a guessed HTTP path, never plain HTTP on a TLS port); adapt it:\n\n```yaml\nreadinessProbe:\n  tcpSocket:\n    port: 8080\n  periodSeconds: 5\n  failureThreshold: 2\n```",
	},
	{
		ID: RuleSameProbes, Title: "Identical readiness and liveness probes", Severity: SeverityWarning,
		Rationale: "Readiness says \"send me traffic\", liveness says \"restart me\". When both are the same check, a pod that is only overloaded or draining gets restarted instead of being taken out of rotation, and its in-flight requests are cut.",
		Fix:       "Point liveness at a cheap endpoint that fails only when the process is stuck (`/livez`), readiness at one that also checks dependencies and fails on SIGTERM (`/readyz`); give liveness a higher failureThreshold.",
	},
	{
		ID: RuleStartupGap, Title: "LB marks new pods healthy after old ones are gone (startup gap)", Severity: SeverityError,
		Rationale: "Kubernetes deletes an old pod minReadySeconds after the new one is Ready; an LB that health-checks its targets marks the new target healthy only after I x H (+ R to register it). In between the LB can be left with no healthy target: 502/503 (seed 000: a 48 s gap; 28 of 28 deployments with errors).",
		Formula:   "gap = max(0, registration + I x H - (Ready + minReadySeconds)); registration = Ready + R (endpoint-fed LBs) or R from creation; rule: minReadySeconds >= I x H + R unless a readiness gate works",
		Fix:       "Best: a readiness gate, so Ready waits for the LB's verdict (AWS: label the namespace `elbv2.k8s.aws/pod-readiness-gate-inject=enabled` with `target-type: ip`; GKE: NEG; on-prem: zerodrop's controller). Otherwise `minReadySeconds: <I x H + R>`.",
	},
	{
		ID: RuleRollingUpdate, Title: "Rolling update removes serving pods before replacements are ready", Severity: SeverityWarning,
		Rationale: "With maxUnavailable above 0 (the Deployment default is 25%) or a Recreate strategy, Kubernetes deletes old pods before their replacements are Ready, so capacity drops during every rollout and a single-replica workload goes dark. StatefulSets always delete before they recreate; DaemonSets do unless maxSurge is set.",
		Formula:   "maxUnavailable = 0 and maxSurge >= 1 (replicas unset: the HPA's minReplicas); DaemonSets with a host port cannot surge: info",
		Fix:       "```yaml\nspec:\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 1\n```\n(DaemonSet: `updateStrategy.rollingUpdate` with `maxSurge: 1, maxUnavailable: 0`, not possible with hostPort.)",
	},
	{
		ID: RuleHPAFasterThanGates, Title: "HPA scales faster than pods pass gates or drain", Severity: SeverityWarning,
		Rationale: "With readiness gates or minReadySeconds a new pod needs the LB's check time before it counts; a pod being removed needs preStop + shutdown. An HPA whose scale-down stabilization window is shorter than the startup time, or whose scale-down policies fire again before the previous batch drained, removes capacity faster than the LB catches up (seed 000: \"HPA too aggressive\").",
		Formula:   "behavior.scaleDown.stabilizationWindowSeconds >= time to Ready (incl. gate / minReadySeconds); scaleDown policies periodSeconds >= P + S",
		Fix:       "```yaml\nspec:\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 300\n      policies:\n      - {type: Pods, value: 1, periodSeconds: <P + S or more>}\n```",
	},
	{
		ID: RuleSIGKILL, Title: "preStop + shutdown exceed the grace period (SIGKILL)", Severity: SeverityError,
		Rationale: "terminationGracePeriodSeconds counts from the deletion and includes preStop. When preStop plus the app's shutdown need longer, the kubelet SIGKILLs the app mid-shutdown: in-flight requests are cut, clients see 502/504 (seed 000: 35 + 15 = 50 > 45; seed 001: preStop 40 with the default 30).",
		Formula:   "P + S > G  (P > G: SIGTERM at G, SIGKILL at G + 2 s); info with confidence low when P < G and only the assumed S (no annotation or flag) crosses G",
		Fix:       "`terminationGracePeriodSeconds: <P + S + buffer>`, or shorten preStop.",
	},
	{
		ID: RuleGraceBuffer, Title: "Grace period leaves less than the safety buffer", Severity: SeverityWarning,
		Rationale: "preStop and shutdown fit in the grace period, but with less margin than wanted: a shutdown a little slower than assumed (a slow DB pool, a GC pause) ends in SIGKILL. The seeds add 10-20 s.",
		Formula:   "P + S <= G < P + S + buffer",
		Fix:       "`terminationGracePeriodSeconds: <P + S + buffer>`.",
	},
	{
		ID: RuleEarlyExit, Title: "App can exit before every data path stops sending (early exit)", Severity: SeverityError,
		Rationale: "Deletion starts preStop and endpoint removal at the same time; neither waits for the other. SIGTERM follows preStop; an app that stops listening then, while kube-proxy, the ingress controller or the LB still send new requests for D seconds, refuses them: 502 (seed 003; seed 001's 12 5xx).",
		Formula:   "window = [P, D) when P < D  (HAProxy static pools: D = P + fall x fastinter); info with confidence low when the preStop's length is unknown (httpGet hook, exec of a program)",
		Fix:       "```yaml\nlifecycle:\n  preStop:\n    sleep:\n      seconds: <D + 2>\n```\nand raise terminationGracePeriodSeconds to cover it (P + S + buffer).",
	},
	{
		ID: RuleShellSleep, Title: "exec sleep preStop in an image without a shell", Severity: SeverityError,
		Rationale: "`preStop: exec: [sh, -c, sleep N]` needs sh and sleep in the image. Distroless, scratch, Chainguard and ko images have neither: the hook fails at once, SIGTERM follows immediately and the preStop delay you counted on does not exist.",
		Formula:   "exec command[0] in {sh, bash, ash, sleep} and image looks shell-less (distroless, scratch, cgr.dev/chainguard, ko)",
		Fix:       "Use the kubelet's own sleep action (beta, on by default since Kubernetes 1.30; GA in 1.34):\n\n```yaml\nlifecycle:\n  preStop:\n    sleep:\n      seconds: 5\n```",
	},
	{
		ID: RuleInFlightCut, Title: "In-flight requests outlive the grace period or the app's shutdown", Severity: SeverityWarning,
		Rationale: "A request admitted just before the data path stopped sending may run as long as the longest request, bounded by the LB's timeout. It must finish before the app's own shutdown timeout and before SIGKILL, or it is cut: 502/504. Seed 001 orders P (40) < G (50) < ALB timeout (60); the underlying requirement is this one.",
		Formula:   "min(P, D) + min(T_req, T_lb) <= min(P + S, G)  (T_req: the annotation or flag; else an LB timeout set explicitly above its default, e.g. proxy-read-timeout: 300, on that path)",
		Fix:       "Raise terminationGracePeriodSeconds (and the app's shutdown timeout, e.g. Spring `spring.lifecycle.timeout-per-shutdown-phase`) to cover the longest request, or set `zerodrop.dev/longest-request-seconds` if requests are shorter than assumed.",
	},
	{
		ID: RuleLongLived, Title: "Long-lived connections with a short preStop/grace period", Severity: SeverityWarning,
		Rationale: "WebSocket and gRPC streams outlive endpoint removal: the LB stops opening new connections but existing ones stay on the old pod until the app closes them, or until SIGKILL resets them. Seed 000 doubles preStop (20 -> 40 s) and grace (45 -> 90 s) for them.",
		Formula:   "G >= P + S + connection drain (default 30 s) when ports, appProtocol or annotations hint at gRPC/WebSocket/h2c; info when only port names hint (zerodrop.dev/long-lived: \"false\" turns it off)",
		Fix:       "Close long-lived connections on SIGTERM (gRPC GracefulStop, WebSocket close frames) and raise `terminationGracePeriodSeconds: <P + S + drain>`.",
	},
	{
		ID: RuleGKEDrain, Title: "GKE: preStop shorter than drainingTimeoutSec + drain latency", Severity: SeverityWarning,
		Rationale: "GCLB detaches an endpoint from the NEG 5-15 s after the deletion (drain latency) and keeps using its connections for drainingTimeoutSec. An app that stops listening before that refuses requests still routed to it (seed 002, scenarios 1-2).",
		Formula:   "P >= drainingTimeoutSec + drain latency and G >= P + S",
		Fix:       "`preStop` sleep of at least drainingTimeoutSec + drain latency, and `terminationGracePeriodSeconds >= preStop + shutdown` (seed 002: drainingTimeoutSec 60, preStop 120, grace 210).",
	},
	{
		ID: RuleDeregistrationShort, Title: "Deregistration delay shorter than preStop", Severity: SeverityWarning,
		Rationale: "AWS target groups keep a deregistering target's connections open for deregistration_delay.timeout_seconds, then close them. Shorter than the preStop, the LB abandons requests the pod is still willing to finish (seed 003: delay 30 s > preStop 15 s).",
		Formula:   "deregistration delay >= P  (window: delay ends before min(P, D) + T_q); ip targets only: instance targets are nodes, which a rollout does not deregister",
		Fix:       "`alb.ingress.kubernetes.io/target-group-attributes: deregistration_delay.timeout_seconds=<P + T_q>` (NLB: `service.beta.kubernetes.io/aws-load-balancer-target-group-attributes`).",
	},
	{
		ID: RuleDeregistrationDefault, Title: "Deregistration delay left at the 300 s default", Severity: SeverityInfo,
		Rationale: "300 s is far longer than most requests: targets linger in draining for 5 minutes, slowing rollouts and keeping old pods' IPs registered. Seed 000 uses 25 s.",
		Formula:   "deregistration delay = 300 s (unset), ip targets",
		Fix:       "`deregistration_delay.timeout_seconds=<P + T_q>` in the target-group-attributes annotation.",
	},
	{
		ID: RuleGateCannotWork, Title: "Readiness gate cannot work: the LB targets nodes", Severity: SeverityError,
		Rationale: "A readiness gate ties a pod's Ready to the LB's verdict on that pod. With instance or NodePort targets the LB checks nodes, not pods: the AWS controller never sets the pod's condition (pods stay unready or the gate is meaningless), and GKE's NEG gate needs a NEG.",
		Formula:   "gate present and LB targets nodes (ALB/NLB target-type instance, Service NodePort without NEG)",
		Fix:       "AWS: `alb.ingress.kubernetes.io/target-type: ip` (NLB: `service.beta.kubernetes.io/aws-load-balancer-nlb-target-type: ip`); GKE: `cloud.google.com/neg: '{\"ingress\": true}'`.",
	},
	{
		ID: RuleGateNotInjected, Title: "Namespace lacks the AWS readiness-gate injection label", Severity: SeverityWarning,
		Rationale: "The AWS Load Balancer Controller injects its readiness gate only into pods of namespaces labelled `elbv2.k8s.aws/pod-readiness-gate-inject: enabled`, and only at pod creation. Without the label the ALB's ip targets are used before they are healthy.",
		Formula:   "ALB/NLB ip targets and Namespace without the label and no readinessGates in the pod template",
		Fix:       "```yaml\nmetadata:\n  labels:\n    elbv2.k8s.aws/pod-readiness-gate-inject: enabled\n```\n(then restart the pods: the gate is injected at creation).",
	},
	{
		ID: RuleWebhookFail, Title: "Gate-injecting webhook with failurePolicy Fail", Severity: SeverityWarning,
		Rationale: "The readiness-gate injector is a mutating webhook on pod creation. With failurePolicy Fail (the admissionregistration/v1 default) an outage of its controller blocks every pod creation in the selected namespaces: no rollouts, no scale-up, no rescheduling.",
		Formula:   "webhook on pod CREATE that injects gates (AWS mpod.elbv2.k8s.aws, zerodrop; not the AWS controller's other webhooks) and failurePolicy != Ignore",
		Fix:       "`failurePolicy: Ignore` (AWS chart: `--set podMutatorWebhookConfig.failurePolicy=Ignore`), and alert on pods created without their gate.",
	},
	{
		ID: RuleHAProxyNoCheck, Title: "HAProxy servers without health checks", Severity: SeverityWarning,
		Rationale: "A server line without `check` is never marked down: HAProxy keeps sending to a pod that exited until something edits its configuration, and marks a new one usable before it listens.",
		Formula:   "server/default-server without check",
		Fix:       "`default-server check inter 2s fall 2 rise 2` and `option httpchk GET /ready`.",
	},
	{
		ID: RuleZerodropGateNotInjected, Title: "Namespace lacks zerodrop's gate injection label", Severity: SeverityWarning,
		Rationale: "zerodrop's webhook adds a TargetBinding's readiness gate `target-health.zerodrop.dev/<binding>` only to pods created in namespaces labelled `zerodrop.dev/gates=enabled`. Without it the controller registers and drains the pods, but Ready does not wait for HAProxy's verdict: the startup gap of ZD103 stays open.",
		Formula:   "TargetBinding binds the workload's Service and Namespace without zerodrop.dev/gates=enabled and no such readinessGate in the pod template",
		Fix:       "```yaml\nmetadata:\n  labels:\n    zerodrop.dev/gates: enabled\n```\n(on the Namespace; then restart the pods: the gate is injected at creation).",
	},
	{
		ID: RuleGateTimeoutShort, Title: "Gate timeout shorter than the LB's time to healthy", Severity: SeverityError,
		Rationale: "The gate timeout counts from ContainersReady; HAProxy cannot report a new server healthy before it is registered (R) and passed rise checks interval apart. A shorter timeout always fires: with FailOpen every Ready is a guess (the startup gap stays open), with FailClosed no new pod ever turns Ready and every rollout stalls.",
		Formula:   "gate.timeout < R + interval x rise  (interval, rise: binding healthCheck over LoadBalancer poolDefaults over HAProxy's 2s/2)",
		Fix:       "`spec.gate.timeout` of a few times R + interval x rise (the default 5m is safe).",
	},
	{
		ID: RuleDrainOutlivesGrace, Title: "Drain timeout outlives the grace period", Severity: SeverityError,
		Rationale: "The drain gate holds a deleted pod (in the injected preStop httpGet hook, or in the app's own call to the drain endpoint) up to drain.timeout. terminationGracePeriodSeconds counts from the deletion and includes that wait: if drain.timeout plus the app's shutdown exceed it, a pod with long sessions is SIGKILLed mid-drain or mid-shutdown.",
		Formula:   "drain.timeout + S > G  (drain enabled)",
		Fix:       "`spec.drain.timeout` below G - S, or `terminationGracePeriodSeconds >= drain.timeout + S + buffer`.",
	},
	{
		ID: RuleBindingDangling, Title: "TargetBinding refers to an object the input lacks", Severity: SeverityWarning,
		Rationale: "A TargetBinding whose Service, Service port or LoadBalancer does not exist is never Ready: the controller registers no target, so the pool stays empty, and pods are neither gated nor drained. Reported only when the input holds Services (for a missing Service or port) or LoadBalancers (for a missing LoadBalancer), so a partial manifest set is not flagged.",
		Formula:   "serviceRef.name not among the input's Services of the namespace; serviceRef.port not a port name or number of it; loadBalancerRef.name not among the input's LoadBalancers",
		Fix:       "Point `spec.serviceRef` (port: the Service's port name or `port` number, not the targetPort) and `spec.loadBalancerRef` at existing objects.",
	},
	{
		ID: RuleEventRing, Title: "HAProxy pool's verdicts not pushed to zerodrop's event ring", Severity: SeverityInfo,
		Rationale: "zerodrop's controller reads HAProxy's health verdicts as they happen from the `zerodrop` ring (`show events zerodrop -w` on the Runtime API): HAProxy writes \"Server be_web/s1 is UP\" there within a millisecond of the deciding check, and the gate opens then. A pool whose lines do not reach the ring is polled instead. With no `ring zerodrop` section the event stream fails and the LoadBalancer's bindings poll at --provider-poll-interval (250 ms) while targets register. With the ring but no `log ring@zerodrop` for the backend (or one at a level that drops notice lines, the level of \"is UP\"), the stream is up, so the controller takes the pool as pushed and re-reads it only every --pushed-poll-interval (1 s). Without `option log-health-checks` verdict lines arrive, but not the check lines that announce them, which the controller needs to catch up a verdict line HAProxy 2.6 holds back from the stream. A ring format without timestamps (raw, HAProxy's default; short, priority, local, rfc3164) makes every reconnect (after the idle `stats timeout`, after a reload) lose the lines written meanwhile, and rules out that catch-up. Gates open up to a poll later; drains are polled either way, and no request fails for it (docs/haproxy.md, \"Event-driven verdicts\").",
		Formula:   "backend named by a TargetBinding's pool (LoadBalancer provider haproxy, or not in the input) and not all of: a ring zerodrop section; log ring@zerodrop in the backend or its defaults section (directly or through log global), at no level or one that sends notice; option log-health-checks. And: ring zerodrop's format not timed, iso or rfc5424",
		Fix:       "```\nring zerodrop\n    format timed          # timestamps: a reconnect resumes without loss\n    maxlen 1024\n    size 1048576\n\nbackend be_web\n    option log-health-checks\n    log ring@zerodrop local0\n```\n(in every HAProxy instance of the LoadBalancer; `log ring@zerodrop local0` and `option log-health-checks` may go in `defaults`).",
	},
	{
		ID: RuleIdleClose, Title: "HAProxy closes idle keep-alive connections at a reload (POSTs fail)", Severity: SeverityWarning,
		Rationale: "On a reload (a config manager applying a change, `systemctl reload`, SIGUSR2 to the master) the old HAProxy worker closes its idle client keep-alive connections. A request a client writes on one at that moment meets a closed connection; clients resend idempotent requests (GET), never a POST, so POSTs fail with no backend server involved (zerodrop's lab, docs/faults.md: 14 and 27 POSTs cut by reload faults, no GET; 12 of 20 tries without the option, 0 with it). HAProxy 2.6's `option idle-close-on-response` makes an idle connection wait for one more request and close after its response instead; older HAProxy has no such option.",
		Formula:   "frontend or listen section in mode http that routes to a backend a workload uses (default_backend, use_backend, a use_backend built at run time, or the listen section itself) without option idle-close-on-response (its own or its defaults section's); when no frontend of the file routes to the backend: the backend's defaults section lacks it",
		Fix:       "```\ndefaults\n    option idle-close-on-response   # HAProxy 2.6 and later, HTTP mode\n```\nand `no option idle-close-on-response` in TCP frontends that inherit it (HAProxy warns about it there). Old workers then live until their idle connections' next response or `hard-stop-after`.",
	},
	{
		ID: RuleNoPDB, Title: "No PodDisruptionBudget for a served workload", Severity: SeverityInfo,
		Rationale: "Node drains (upgrades, autoscaler, spot reclaims) evict pods without a rollout's surge: without a PDB all replicas can be evicted at once.",
		Formula:   "served, replicas > 1 (replicas unset: the HPA's minReplicas), no PDB selects its pods",
		Fix:       "```yaml\napiVersion: policy/v1\nkind: PodDisruptionBudget\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels: {app: NAME}\n```",
	},
	{
		ID: RulePDBBlocks, Title: "PodDisruptionBudget allows no disruption", Severity: SeverityWarning,
		Rationale: "maxUnavailable: 0 (or minAvailable equal to the replicas) blocks every eviction: node drains hang until someone deletes the PDB, which then evicts without any protection.",
		Formula:   "maxUnavailable = 0 or minAvailable >= replicas",
		Fix:       "`maxUnavailable: 1` (and enough replicas to lose one).",
	},
}

// Rules returns every rule, ordered by id.
func Rules() []Rule {
	out := append([]Rule(nil), rules...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

var ruleByID = func() map[string]Rule {
	m := map[string]Rule{}
	for _, r := range rules {
		m[r.ID] = r
	}
	return m
}()
