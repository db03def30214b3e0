// Package checkbench generates large, realistic manifest sets for
// benchmarking zerodrop check against its peers (bench/check.sh).
package checkbench

import (
	"bufio"
	"fmt"
	"io"
)

// ObjectsPerApp is how many objects Generate writes per application: a
// workload, its Service, Ingress, HorizontalPodAutoscaler and
// PodDisruptionBudget.
const ObjectsPerApp = 5

// Generate writes n objects (rounded up to whole applications) as one
// multi-document YAML stream. Applications vary the way real clusters do:
// Deployments and StatefulSets, with and without preStop hooks, probes and
// readiness gates, behind ALB, GCE and nginx Ingresses; about half carry a
// hazard that zerodrop reports. The output is deterministic.
func Generate(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	apps := (n + ObjectsPerApp - 1) / ObjectsPerApp
	for i := 0; i < apps; i++ {
		writeApp(bw, i)
	}
	return bw.Flush()
}

func writeApp(w *bufio.Writer, i int) {
	ns := fmt.Sprintf("team-%02d", i%40)
	name := fmt.Sprintf("svc-%05d", i)
	kind := "Deployment"
	if i%10 == 7 {
		kind = "StatefulSet"
	}
	grace := []int{30, 45, 60, 90}[i%4]
	preStop := []int{0, 5, 20, 35}[(i/4)%4]
	maxUnavailable := []string{"0", "1", "25%"}[i%3]
	class := []string{"alb", "gce", "nginx"}[i%3]

	fmt.Fprintf(w, "---\napiVersion: apps/v1\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\n  labels:\n    app.kubernetes.io/name: %s\n    app.kubernetes.io/part-of: shop\n", kind, name, ns, name)
	fmt.Fprintf(w, "  annotations:\n    zerodrop.dev/shutdown-seconds: \"%d\"\nspec:\n  replicas: %d\n", 5+i%20, 2+i%5)
	if kind == "StatefulSet" {
		fmt.Fprintf(w, "  serviceName: %s\n  updateStrategy:\n    type: RollingUpdate\n", name)
	} else {
		fmt.Fprintf(w, "  minReadySeconds: %d\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: %s\n      maxSurge: 1\n", []int{0, 10, 30, 60}[i%4], maxUnavailable)
	}
	fmt.Fprintf(w, "  selector:\n    matchLabels:\n      app.kubernetes.io/name: %s\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: %s\n        app.kubernetes.io/part-of: shop\n", name, name)
	fmt.Fprintf(w, "    spec:\n      terminationGracePeriodSeconds: %d\n", grace)
	if i%6 == 0 {
		fmt.Fprintf(w, "      readinessGates:\n        - conditionType: target-health.elbv2.k8s.aws/k8s-%s-%s\n", ns, name)
	}
	fmt.Fprintf(w, "      containers:\n        - name: app\n          image: registry.example.com/shop/%s:1.%d.%d\n", name, i%7, i%13)
	fmt.Fprintf(w, "          ports:\n            - name: http\n              containerPort: 8080\n")
	fmt.Fprintf(w, "          resources:\n            requests:\n              cpu: 100m\n              memory: 128Mi\n            limits:\n              memory: 256Mi\n")
	fmt.Fprintf(w, "          env:\n            - name: SERVER_SHUTDOWN\n              value: graceful\n            - name: JAVA_OPTS\n              value: \"-Xmx200m\"\n")
	if i%5 != 3 {
		fmt.Fprintf(w, "          readinessProbe:\n            httpGet:\n              path: /ready\n              port: http\n            periodSeconds: 5\n            failureThreshold: 2\n")
	}
	if i%5 == 1 {
		fmt.Fprintf(w, "          livenessProbe:\n            httpGet:\n              path: /ready\n              port: http\n            periodSeconds: 5\n            failureThreshold: 2\n")
	} else {
		fmt.Fprintf(w, "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: http\n            periodSeconds: 10\n")
	}
	if preStop > 0 {
		if i%2 == 0 {
			fmt.Fprintf(w, "          lifecycle:\n            preStop:\n              exec:\n                command: [\"sleep\", \"%d\"]\n", preStop)
		} else {
			fmt.Fprintf(w, "          lifecycle:\n            preStop:\n              sleep:\n                seconds: %d\n", preStop)
		}
	}
	fmt.Fprintf(w, "          securityContext:\n            runAsNonRoot: true\n            readOnlyRootFilesystem: true\n            allowPrivilegeEscalation: false\n")

	svcType := "ClusterIP"
	if class == "gce" || (class == "alb" && i%6 != 0) {
		svcType = "NodePort"
	}
	fmt.Fprintf(w, "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: %s\n", name, ns)
	if class == "gce" {
		fmt.Fprintf(w, "  annotations:\n    cloud.google.com/neg: '{\"ingress\": true}'\n")
	}
	fmt.Fprintf(w, "spec:\n  type: %s\n  selector:\n    app.kubernetes.io/name: %s\n  ports:\n    - name: http\n      port: 80\n      targetPort: http\n", svcType, name)

	fmt.Fprintf(w, "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n  namespace: %s\n  annotations:\n", name, ns)
	switch class {
	case "alb":
		target := "ip"
		if i%6 != 0 {
			target = "instance"
		}
		fmt.Fprintf(w, "    alb.ingress.kubernetes.io/scheme: internet-facing\n    alb.ingress.kubernetes.io/target-type: %s\n    alb.ingress.kubernetes.io/healthcheck-interval-seconds: \"%d\"\n    alb.ingress.kubernetes.io/healthy-threshold-count: \"%d\"\n", target, []int{5, 15, 30}[i%3], 2+i%4)
		fmt.Fprintf(w, "    alb.ingress.kubernetes.io/target-group-attributes: deregistration_delay.timeout_seconds=%d\n", []int{30, 60, 300}[i%3])
	case "gce":
		fmt.Fprintf(w, "    kubernetes.io/ingress.class: gce\n")
	default:
		fmt.Fprintf(w, "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"%d\"\n", []int{30, 60, 120}[i%3])
	}
	fmt.Fprintf(w, "spec:\n  ingressClassName: %s\n  rules:\n    - host: %s.%s.shop.example.com\n      http:\n        paths:\n          - path: /\n            pathType: Prefix\n            backend:\n              service:\n                name: %s\n                port:\n                  name: http\n", class, name, ns, name)

	fmt.Fprintf(w, "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: %s\n    name: %s\n  minReplicas: 2\n  maxReplicas: %d\n", name, ns, kind, name, 10+i%20)
	fmt.Fprintf(w, "  metrics:\n    - type: Resource\n      resource:\n        name: cpu\n        target:\n          type: Utilization\n          averageUtilization: 70\n")
	if i%4 == 0 {
		fmt.Fprintf(w, "  behavior:\n    scaleUp:\n      policies:\n        - type: Percent\n          value: 100\n          periodSeconds: 15\n")
	}

	fmt.Fprintf(w, "---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: %s\n", name, ns, name)
}
