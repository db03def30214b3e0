// Package v1alpha1 holds zerodrop's custom resources, API group zerodrop.dev:
// LoadBalancer (one external load balancer, reached through its instances)
// and TargetBinding (a Service port bound to a pool of a LoadBalancer, whose
// pods get a readiness gate and a drain gate).
//
// +kubebuilder:object:generate=true
// +groupName=zerodrop.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of zerodrop's resources.
var GroupVersion = schema.GroupVersion{Group: "zerodrop.dev", Version: "v1alpha1"}

// AddToScheme adds the types of this package to a runtime.Scheme. The list
// of types is explicit here rather than collected by init functions.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&LoadBalancer{}, &LoadBalancerList{},
		&TargetBinding{}, &TargetBindingList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
