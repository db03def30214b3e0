package node

import (
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// serviceEnv is the kubelet's service-link environment
// (pkg/kubelet/kubelet_pods.go getServiceEnvVarMap and
// pkg/kubelet/envvars/envvars.go FromServices): the `kubernetes` Service of
// the default namespace always, and every Service of the pod's namespace
// when enableServiceLinks is unset or true. Services without a ClusterIP
// (headless) give no variables.
func serviceEnv(services []v1.Service, namespace string, enableServiceLinks *bool) map[string]string {
	links := enableServiceLinks == nil || *enableServiceLinks
	chosen := map[string]*v1.Service{}
	for i := range services {
		s := &services[i]
		if !serviceIPSet(s) {
			continue
		}
		switch {
		case s.Namespace == v1.NamespaceDefault && s.Name == "kubernetes":
			if _, ok := chosen[s.Name]; !ok {
				chosen[s.Name] = s
			}
		case s.Namespace == namespace && links:
			chosen[s.Name] = s
		}
	}
	env := map[string]string{}
	for _, s := range chosen {
		if len(s.Spec.Ports) == 0 {
			continue
		}
		prefix := envName(s.Name)
		env[prefix+"_SERVICE_HOST"] = s.Spec.ClusterIP
		env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				env[prefix+"_SERVICE_PORT_"+envName(p.Name)] = strconv.Itoa(int(p.Port))
			}
		}
		// The Docker-link variables.
		for i, p := range s.Spec.Ports {
			proto := string(v1.ProtocolTCP)
			if p.Protocol != "" {
				proto = string(p.Protocol)
			}
			url := strings.ToLower(proto) + "://" + net.JoinHostPort(s.Spec.ClusterIP, strconv.Itoa(int(p.Port)))
			if i == 0 {
				env[prefix+"_PORT"] = url
			}
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			env[pp] = url
			env[pp+"_PROTO"] = strings.ToLower(proto)
			env[pp+"_PORT"] = strconv.Itoa(int(p.Port))
			env[pp+"_ADDR"] = s.Spec.ClusterIP
		}
	}
	return env
}

func serviceIPSet(s *v1.Service) bool {
	return s.Spec.ClusterIP != "" && s.Spec.ClusterIP != v1.ClusterIPNone
}

// envName is the kubelet's makeEnvVariableName.
func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// resourceValue resolves a resourceFieldRef as the kubelet does
// (pkg/api/v1/resource ExtractContainerResourceValue, after
// pkg/kubelet/kubelet_resources.go defaultPodLimitsForDownwardAPI has
// replaced every limit that is not set by the node's allocatable): the
// quantity divided by the divisor (default 1), rounded up.
func resourceValue(fs *v1.ResourceFieldSelector, c *v1.Container, allocatable v1.ResourceList) (string, error) {
	limits := v1.ResourceList{}
	for k, q := range c.Resources.Limits {
		limits[k] = q
	}
	for _, r := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage} {
		if _, ok := limits[r]; !ok {
			if q, ok := allocatable[r]; ok {
				limits[r] = q
			}
		}
	}
	divisor := fs.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var q resource.Quantity
	kind, name, ok := strings.Cut(fs.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef %q: unsupported container resource", fs.Resource)
	}
	list := limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	switch v1.ResourceName(name) {
	case v1.ResourceCPU:
		q = list[v1.ResourceCPU]
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	case v1.ResourceMemory, v1.ResourceEphemeralStorage:
		q = list[v1.ResourceName(name)]
		return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
	}
	return "", fmt.Errorf("resourceFieldRef %q: unsupported container resource", fs.Resource)
}

// containerByName finds the container a resourceFieldRef names (empty: c).
func containerByName(pod *v1.Pod, c *v1.Container, name string) (*v1.Container, error) {
	if name == "" && c != nil {
		return c, nil
	}
	for _, list := range [][]v1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("resourceFieldRef: no container %q in the pod", name)
}
