package check

import (
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	networkingv1beta1 "k8s.io/api/networking/v1beta1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"zerodrop.dev/zerodrop/internal/parallel"
)

// workload is a Deployment, StatefulSet or DaemonSet, reduced to what the
// rules need.
type workload struct {
	obj      *Object
	kind     string
	meta     *metav1.ObjectMeta
	tmpl     *corev1.PodTemplateSpec
	replicas int32 // 1 when unset; DaemonSets: 0 (one per node)
	// replicasSet is false when spec.replicas is unset: an HPA then owns
	// the count, and replicas is its minReplicas (replicasFrom says so).
	replicasSet  bool
	replicasFrom string
	minReady     int32

	services []*service // Services selecting its pods
	bindings []*binding // TargetBindings of those Services
	hpas     []*Object
	pdbs     []*Object
}

func (w *workload) ns() string { return w.meta.Namespace }

// service is a Service with the objects that route to it.
type service struct {
	obj       *Object
	svc       *corev1.Service
	ingresses []*Object
	routes    []*Object // Gateway API HTTPRoutes and GRPCRoutes with a backendRef to it
}

type nsName struct{ ns, name string }

// nsIndex indexes one namespace's workloads by pod label, so a selector is
// matched against the shortest posting list instead of every workload.
type nsIndex struct {
	workloads []*workload
	byLabel   map[string][]*workload // "key=value" of pod template labels
}

// index relates the objects of one analysis.
type index struct {
	workloads      []*workload
	namespaces     map[string]*nsIndex
	services       map[nsName]*service
	namespaceObjs  map[string]*Object // Namespace objects by name
	ingressClasses map[string]string  // IngressClass name -> spec.controller
	// defaultIngressClass is the IngressClass marked as the cluster's
	// default: it serves Ingresses that name no class.
	defaultIngressClass string
	backendConfigs      map[nsName]*Object
	destRules           map[string][]*Object // by namespace
	routes              []*Object            // Gateway API HTTPRoutes, GRPCRoutes
	gateways            map[nsName]*Object
	gatewayClasses      map[string]*Object // cluster-scoped, by name
	webhooks            []*Object
	ingresses           []*Object
	hpas                []*Object
	hpasV1              []*Object // autoscaling/v1: only their minReplicas is read
	pdbs                []*Object
	pdbWorkloads        [][]*workload            // the workloads each of pdbs selects
	loadBalancers       map[string]*loadBalancer // zerodrop LoadBalancers by name
	bindings            []*binding
	errors              []InputError // CRDs that cannot be read
	skipped             map[string]int
	known               int
}

func buildIndex(objs []*Object) *index {
	ix := &index{
		namespaces:     map[string]*nsIndex{},
		services:       map[nsName]*service{},
		namespaceObjs:  map[string]*Object{},
		ingressClasses: map[string]string{},
		backendConfigs: map[nsName]*Object{},
		destRules:      map[string][]*Object{},
		gateways:       map[nsName]*Object{},
		gatewayClasses: map[string]*Object{},
		loadBalancers:  map[string]*loadBalancer{},
		skipped:        map[string]int{},
	}
	for _, o := range objs {
		if o == nil || o.Typed == nil {
			continue
		}
		known := true
		switch t := o.Typed.(type) {
		case *appsv1.Deployment:
			r := int32(1)
			if t.Spec.Replicas != nil {
				r = *t.Spec.Replicas
			}
			ix.addWorkload(&workload{obj: o, kind: "Deployment", meta: &t.ObjectMeta, tmpl: &t.Spec.Template, replicas: r, replicasSet: t.Spec.Replicas != nil, minReady: t.Spec.MinReadySeconds})
		case *appsv1.StatefulSet:
			r := int32(1)
			if t.Spec.Replicas != nil {
				r = *t.Spec.Replicas
			}
			ix.addWorkload(&workload{obj: o, kind: "StatefulSet", meta: &t.ObjectMeta, tmpl: &t.Spec.Template, replicas: r, replicasSet: t.Spec.Replicas != nil, minReady: t.Spec.MinReadySeconds})
		case *appsv1.DaemonSet:
			ix.addWorkload(&workload{obj: o, kind: "DaemonSet", meta: &t.ObjectMeta, tmpl: &t.Spec.Template, minReady: t.Spec.MinReadySeconds})
		case *corev1.Service:
			ix.services[nsName{t.Namespace, t.Name}] = &service{obj: o, svc: t}
		case *networkingv1.Ingress:
			ix.ingresses = append(ix.ingresses, o)
		case *networkingv1beta1.Ingress:
			ix.ingresses = append(ix.ingresses, betaIngress(o, &t.ObjectMeta, t.Spec.IngressClassName, beta(t.Spec.Backend), betaRules(t.Spec.Rules)))
		case *extensionsv1beta1.Ingress:
			var rules []networkingv1beta1.IngressRule
			for _, r := range t.Spec.Rules {
				nr := networkingv1beta1.IngressRule{Host: r.Host}
				if r.HTTP != nil {
					nr.HTTP = &networkingv1beta1.HTTPIngressRuleValue{}
					for _, p := range r.HTTP.Paths {
						nr.HTTP.Paths = append(nr.HTTP.Paths, networkingv1beta1.HTTPIngressPath{Path: p.Path,
							Backend: networkingv1beta1.IngressBackend{ServiceName: p.Backend.ServiceName, ServicePort: p.Backend.ServicePort}})
					}
				}
				rules = append(rules, nr)
			}
			var def *networkingv1beta1.IngressBackend
			if t.Spec.Backend != nil {
				def = &networkingv1beta1.IngressBackend{ServiceName: t.Spec.Backend.ServiceName, ServicePort: t.Spec.Backend.ServicePort}
			}
			ix.ingresses = append(ix.ingresses, betaIngress(o, &t.ObjectMeta, t.Spec.IngressClassName, beta(def), betaRules(rules)))
		case *autoscalingv1.HorizontalPodAutoscaler:
			// autoscaling/v1 has no scaling behavior to check; its
			// minReplicas still sets the replica count.
			ix.hpasV1 = append(ix.hpasV1, o)
		case *networkingv1.IngressClass:
			ix.ingressClasses[t.Name] = t.Spec.Controller
			if t.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" {
				ix.defaultIngressClass = t.Name
			}
		case *corev1.Namespace:
			ix.namespaceObjs[t.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			ix.hpas = append(ix.hpas, o)
		case *policyv1.PodDisruptionBudget:
			ix.pdbs = append(ix.pdbs, o)
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			ix.webhooks = append(ix.webhooks, o)
		case *unstructured.Unstructured:
			gv := t.GroupVersionKind()
			switch {
			case gv.Group == "cloud.google.com" && gv.Kind == "BackendConfig":
				ix.backendConfigs[nsName{t.GetNamespace(), t.GetName()}] = o
			case gv.Group == gatewayGroup && (gv.Kind == "HTTPRoute" || gv.Kind == "GRPCRoute"):
				ix.routes = append(ix.routes, o)
			case gv.Group == gatewayGroup && gv.Kind == "Gateway":
				ix.gateways[nsName{t.GetNamespace(), t.GetName()}] = o
			case gv.Group == gatewayGroup && gv.Kind == "GatewayClass":
				ix.gatewayClasses[t.GetName()] = o
			case gv.Group == "networking.istio.io" && gv.Kind == "DestinationRule":
				ix.destRules[t.GetNamespace()] = append(ix.destRules[t.GetNamespace()], o)
			case gv.Group == zerodropGroup:
				known = ix.addCRD(o, t)
			default:
				known = false
			}
		default:
			known = false
		}
		if known {
			ix.known++
		} else {
			ix.skipped[o.Ref.APIVersion+"/"+o.Ref.Kind]++
		}
	}
	ix.relate()
	return ix
}

func (ix *index) addWorkload(w *workload) {
	ix.workloads = append(ix.workloads, w)
	n := ix.namespaces[w.ns()]
	if n == nil {
		n = &nsIndex{byLabel: map[string][]*workload{}}
		ix.namespaces[w.ns()] = n
	}
	n.workloads = append(n.workloads, w)
	for k, v := range w.tmpl.Labels {
		n.byLabel[k+"="+v] = append(n.byLabel[k+"="+v], w)
	}
}

// selectMap returns the namespace's workloads whose pod labels contain every
// pair of sel. An empty selector selects nothing (a Service without selector
// has manually managed endpoints).
func (ix *index) selectMap(ns string, sel map[string]string) []*workload {
	n := ix.namespaces[ns]
	if n == nil || len(sel) == 0 {
		return nil
	}
	if pod, ok := sel[podNameLabel]; ok {
		return ix.selectPod(ns, sel, pod)
	}
	var shortest []*workload
	first := true
	for k, v := range sel {
		l := n.byLabel[k+"="+v]
		if first || len(l) < len(shortest) {
			shortest, first = l, false
		}
	}
	var out []*workload
	for _, w := range shortest {
		match := true
		for k, v := range sel {
			if lv, ok := w.tmpl.Labels[k]; !ok || lv != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, w)
		}
	}
	return out
}

// podNameLabel is the label the StatefulSet controller adds to each pod
// (NAME-ORDINAL); pod templates never carry it.
const podNameLabel = "statefulset.kubernetes.io/pod-name"

// selectPod matches a selector naming one StatefulSet pod (per-pod
// Services, such as redis-ha's announce Services): the StatefulSet whose
// name, plus "-" and an ordinal, is the pod's name and whose template
// labels match the rest of the selector.
func (ix *index) selectPod(ns string, sel map[string]string, pod string) []*workload {
	rest := map[string]string{}
	for k, v := range sel {
		if k != podNameLabel {
			rest[k] = v
		}
	}
	var out []*workload
	for _, w := range ix.namespaces[ns].workloads {
		if w.kind != "StatefulSet" || !strings.HasPrefix(pod, w.meta.Name+"-") {
			continue
		}
		if _, err := strconv.Atoi(strings.TrimPrefix(pod, w.meta.Name+"-")); err != nil {
			continue
		}
		match := true
		for k, v := range rest {
			if lv, ok := w.tmpl.Labels[k]; !ok || lv != v {
				match = false
			}
		}
		if match {
			out = append(out, w)
		}
	}
	return out
}

// selectLabelSelector is selectMap for a metav1.LabelSelector (PDBs).
func (ix *index) selectLabelSelector(ns string, ls *metav1.LabelSelector) []*workload {
	n := ix.namespaces[ns]
	if n == nil || ls == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || sel.Empty() {
		return nil
	}
	cands := n.workloads
	if len(ls.MatchLabels) > 0 {
		cands = ix.selectMap(ns, ls.MatchLabels)
	}
	var out []*workload
	for _, w := range cands {
		if sel.Matches(labels.Set(w.tmpl.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func (ix *index) relate() {
	// Ingresses first: a Service an Ingress routes to carries traffic even
	// when it would not otherwise count as a traffic path (headless).
	for _, o := range ix.ingresses {
		ing := o.Typed.(*networkingv1.Ingress)
		seen := map[string]bool{}
		for _, name := range ingressServices(ing) {
			if seen[name] {
				continue
			}
			seen[name] = true
			if s := ix.services[nsName{ing.Namespace, name}]; s != nil {
				s.ingresses = append(s.ingresses, o)
			}
		}
	}
	for _, o := range ix.routes {
		u := unstructuredOf(o)
		seen := map[nsName]bool{}
		for _, ref := range routeBackends(u) {
			if s := ix.services[ref]; s != nil && !seen[ref] {
				seen[ref] = true
				s.routes = append(s.routes, o)
			}
		}
	}
	for _, s := range ix.services {
		if !s.carriesTraffic() {
			continue
		}
		for _, w := range ix.selectMap(s.svc.Namespace, s.svc.Spec.Selector) {
			w.services = append(w.services, s)
		}
	}
	byName := map[string]*workload{}
	for _, w := range ix.workloads {
		byName[w.ns()+"/"+w.kind+"/"+w.meta.Name] = w
	}
	for _, o := range ix.hpas {
		h := o.Typed.(*autoscalingv2.HorizontalPodAutoscaler)
		if w := byName[h.Namespace+"/"+h.Spec.ScaleTargetRef.Kind+"/"+h.Spec.ScaleTargetRef.Name]; w != nil {
			w.hpas = append(w.hpas, o)
		}
	}
	for _, o := range ix.hpasV1 {
		h := o.Typed.(*autoscalingv1.HorizontalPodAutoscaler)
		if w := byName[h.Namespace+"/"+h.Spec.ScaleTargetRef.Kind+"/"+h.Spec.ScaleTargetRef.Name]; w != nil {
			w.hpaMinReplicas(o.Ref.String(), h.Spec.MinReplicas)
		}
	}
	for _, w := range ix.workloads {
		for _, o := range w.hpas {
			w.hpaMinReplicas(o.Ref.String(), o.Typed.(*autoscalingv2.HorizontalPodAutoscaler).Spec.MinReplicas)
		}
	}
	// A PDB's LabelSelector is parsed and validated to select its pods,
	// the costliest part of relating: done for all PDBs at once, and once
	// (checkPDBs reads pdbWorkloads too).
	ix.pdbWorkloads = make([][]*workload, len(ix.pdbs))
	parallel.For(len(ix.pdbs), func(i int) {
		p := ix.pdbs[i].Typed.(*policyv1.PodDisruptionBudget)
		ix.pdbWorkloads[i] = ix.selectLabelSelector(p.Namespace, p.Spec.Selector)
	})
	for i, o := range ix.pdbs {
		for _, w := range ix.pdbWorkloads[i] {
			w.pdbs = append(w.pdbs, o)
		}
	}
	ix.relateBindings()
	// Deterministic order for services and ingresses (map iteration above).
	for _, w := range ix.workloads {
		sortServices(w.services)
	}
	for _, s := range ix.services {
		sortObjects(s.ingresses)
		sortObjects(s.routes)
	}
}

// hpaMinReplicas makes an HPA's minReplicas (default 1) the replica count
// of a workload whose spec.replicas is unset: the HPA owns the count, and
// a rollout starts from at least that many pods.
func (w *workload) hpaMinReplicas(hpa string, min *int32) {
	if w.replicasSet {
		return
	}
	m := int32(1)
	if min != nil {
		m = *min
	}
	if w.replicasFrom == "" || m > w.replicas {
		w.replicas = m
		w.replicasFrom = "minReplicas of " + hpa
	}
}

// carriesTraffic says whether a Service is a data path clients send
// requests through. A headless Service (clusterIP: None) has no virtual IP
// and no kube-proxy rules: its DNS names stable identities (StatefulSet
// peers) or scrape targets, so it is a path only when an Ingress routes
// to it. A Service whose every port is a metrics port exists for
// Prometheus, not for clients.
func (s *service) carriesTraffic() bool {
	if len(s.ingresses) > 0 || len(s.routes) > 0 || s.svc.Spec.Type == corev1.ServiceTypeLoadBalancer || s.svc.Spec.Type == corev1.ServiceTypeNodePort {
		return true
	}
	if s.svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return false
	}
	return !scrapeOnly(s.svc)
}

// scrapeOnly reports whether every port of a Service is named (or points
// at a container port named) for metrics: "metrics", "http-metrics",
// "prometheus", ...
func scrapeOnly(svc *corev1.Service) bool {
	if len(svc.Spec.Ports) == 0 {
		return false
	}
	for _, p := range svc.Spec.Ports {
		if !metricsName(p.Name) && !(p.TargetPort.Type == intstr.String && metricsName(p.TargetPort.StrVal)) {
			return false
		}
	}
	return true
}

func metricsName(n string) bool {
	n = strings.ToLower(n)
	return strings.Contains(n, "metrics") || n == "prometheus" || n == "prom" || n == "monitoring" || n == "telemetry"
}

// gatewayGroup is the Gateway API's group.
const gatewayGroup = "gateway.networking.k8s.io"

// routeBackends lists the Services an HTTPRoute or GRPCRoute sends to:
// backendRefs of kind Service (the default) in the core group, in the
// route's namespace unless one is named.
func routeBackends(u *unstructured.Unstructured) []nsName {
	var out []nsName
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	for _, r := range rules {
		rm, ok := r.(map[string]interface{})
		if !ok {
			continue
		}
		refs, _, _ := unstructured.NestedSlice(rm, "backendRefs")
		for _, b := range refs {
			bm, ok := b.(map[string]interface{})
			if !ok {
				continue
			}
			group, _, _ := unstructured.NestedString(bm, "group")
			kind, _, _ := unstructured.NestedString(bm, "kind")
			name, _, _ := unstructured.NestedString(bm, "name")
			ns, _, _ := unstructured.NestedString(bm, "namespace")
			if group != "" || (kind != "" && kind != "Service") || name == "" {
				continue
			}
			if ns == "" {
				ns = u.GetNamespace()
			}
			out = append(out, nsName{ns, name})
		}
	}
	return out
}

// routeGateways returns the Gateways a route attaches to (parentRefs of
// kind Gateway) as "namespace/name" with their gatewayClassName ("" when
// the Gateway is not in the input).
func (ix *index) routeGateways(u *unstructured.Unstructured) (names, classes []string) {
	parents, _, _ := unstructured.NestedSlice(u.Object, "spec", "parentRefs")
	for _, p := range parents {
		pm, ok := p.(map[string]interface{})
		if !ok {
			continue
		}
		kind, _, _ := unstructured.NestedString(pm, "kind")
		name, _, _ := unstructured.NestedString(pm, "name")
		ns, _, _ := unstructured.NestedString(pm, "namespace")
		if kind != "" && kind != "Gateway" || name == "" {
			continue
		}
		if ns == "" {
			ns = u.GetNamespace()
		}
		class := ""
		if g := ix.gateways[nsName{ns, name}]; g != nil {
			class, _, _ = unstructured.NestedString(unstructuredOf(g).Object, "spec", "gatewayClassName")
		}
		names, classes = append(names, qualified(ns, name)), append(classes, class)
	}
	return names, classes
}

// gatewayController returns the controllerName of the GatewayClass named
// class, "" when the class is not in the input.
func (ix *index) gatewayController(class string) string {
	gc := ix.gatewayClasses[class]
	if gc == nil {
		return ""
	}
	c, _, _ := unstructured.NestedString(unstructuredOf(gc).Object, "spec", "controllerName")
	return c
}

// qualified is "namespace/name", or just the name when the manifest leaves
// the namespace to kubectl, kustomize or Helm.
func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// ingressServices lists the Service names an Ingress routes to.
func ingressServices(ing *networkingv1.Ingress) []string {
	var out []string
	if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
		out = append(out, b.Service.Name)
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service != nil {
				out = append(out, p.Backend.Service.Name)
			}
		}
	}
	return out
}

func sortServices(s []*service) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].svc.Name < s[j-1].svc.Name; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func sortObjects(o []*Object) {
	for i := 1; i < len(o); i++ {
		for j := i; j > 0 && o[j].Ref.Name < o[j-1].Ref.Name; j-- {
			o[j], o[j-1] = o[j-1], o[j]
		}
	}
}

// ingressController says which controller serves an Ingress: "alb", "gce",
// "nginx", "traefik", "haproxy" or "" (unknown).
func (ix *index) ingressController(ing *networkingv1.Ingress) string {
	class := ing.Annotations["kubernetes.io/ingress.class"]
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	if class == "" {
		class = ix.defaultIngressClass
	}
	ctrl := ix.ingressClasses[class]
	switch {
	case ctrl == "ingress.k8s.aws/alb" || class == "alb":
		return "alb"
	case strings.HasPrefix(ctrl, "k8s.io/ingress-nginx") || ctrl == "nginx.org/ingress-controller" || class == "nginx":
		return "nginx"
	case strings.HasPrefix(ctrl, "traefik.io/") || class == "traefik":
		return "traefik"
	case strings.Contains(ctrl, "haproxy") || class == "haproxy":
		return "haproxy"
	case class == "gce" || class == "gce-internal" || strings.HasPrefix(ctrl, "k8s.io/gce") || strings.HasPrefix(ctrl, "networking.gke.io/"):
		return "gce"
	}
	for k := range ing.Annotations {
		switch {
		case strings.HasPrefix(k, "alb.ingress.kubernetes.io/"):
			return "alb"
		case strings.HasPrefix(k, "nginx.ingress.kubernetes.io/"), strings.HasPrefix(k, "nginx.org/"):
			return "nginx"
		case strings.HasPrefix(k, "traefik.ingress.kubernetes.io/"):
			return "traefik"
		case strings.HasPrefix(k, "haproxy.org/"), strings.HasPrefix(k, "haproxy-ingress.github.io/"):
			return "haproxy"
		case strings.HasPrefix(k, "kubernetes.io/ingress.global-static-ip-name"), strings.HasPrefix(k, "networking.gke.io/"),
			strings.HasPrefix(k, "ingress.gcp.kubernetes.io/"):
			return "gce"
		}
	}
	if class != "" {
		return "" // a class zerodrop does not know
	}
	// No class at all: on GKE the default controller is GCE, and a backend
	// Service annotated for GKE's LB (NEG, BackendConfig) says the cluster
	// is GKE.
	for _, name := range ingressServices(ing) {
		if s := ix.services[nsName{ing.Namespace, name}]; s != nil {
			for _, k := range []string{"cloud.google.com/neg", "cloud.google.com/backend-config", "beta.cloud.google.com/backend-config"} {
				if _, ok := s.svc.Annotations[k]; ok {
					return "gce"
				}
			}
		}
	}
	return ""
}

// destinationRule returns the Istio DestinationRule whose host is the
// Service (short name, name.namespace or the cluster FQDN), if any.
func (ix *index) destinationRule(svc *corev1.Service) *Object {
	for _, o := range ix.destRules[svc.Namespace] {
		host, _, _ := unstructured.NestedString(unstructuredOf(o).Object, "spec", "host")
		switch host {
		case svc.Name, svc.Name + "." + svc.Namespace, svc.Name + "." + svc.Namespace + ".svc", svc.Name + "." + svc.Namespace + ".svc.cluster.local":
			return o
		}
	}
	return nil
}

// betaIngress presents a pre-v1 Ingress (networking.k8s.io/v1beta1,
// extensions/v1beta1, still emitted by old charts) as a v1 Ingress: the
// rules only need its annotations, class and backend Service names.
func betaIngress(o *Object, meta *metav1.ObjectMeta, class *string, def *networkingv1.IngressBackend, rules []networkingv1.IngressRule) *Object {
	ing := &networkingv1.Ingress{ObjectMeta: *meta, Spec: networkingv1.IngressSpec{IngressClassName: class, DefaultBackend: def, Rules: rules}}
	c := *o
	c.Typed = ing
	return &c
}

func beta(b *networkingv1beta1.IngressBackend) *networkingv1.IngressBackend {
	if b == nil || b.ServiceName == "" {
		return nil
	}
	return &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: b.ServiceName}}
}

func betaRules(rs []networkingv1beta1.IngressRule) []networkingv1.IngressRule {
	var out []networkingv1.IngressRule
	for _, r := range rs {
		nr := networkingv1.IngressRule{Host: r.Host}
		if r.HTTP != nil {
			nr.HTTP = &networkingv1.HTTPIngressRuleValue{}
			for _, p := range r.HTTP.Paths {
				if b := beta(&p.Backend); b != nil {
					nr.HTTP.Paths = append(nr.HTTP.Paths, networkingv1.HTTPIngressPath{Path: p.Path, Backend: *b})
				}
			}
		}
		out = append(out, nr)
	}
	return out
}
