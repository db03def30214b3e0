package lab

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Deployed is a scenario's app and Service deployed in a fresh namespace,
// with what keeps the load balancer's pool filled (the baseline syncer, or the
// scenario's own integration) running until Close.
type Deployed struct {
	// Namespace holds the Deployment "web" and the Service "web".
	Namespace string
	// Replicas is how many pods the Deployment runs.
	Replicas int32
	// Integration is what the scenario's Prepare started, if anything.
	Integration Integration
	// LB is the load balancer the scenario runs through.
	LB LBKind
	// App is the scenario's app (how its pods answer and stop).
	App App

	stops []func() // in start order; Close runs them in reverse
}

// Deploy creates the scenario's namespace (deleting one left over), runs the
// scenario's Prepare, starts the baseline syncer unless the scenario brings
// its own load-balancer integration, creates the Service and the
// Deployment, and waits until the rollout is complete and every replica
// passes the load balancer's checks on every instance. Only RunOptions'
// Replicas, RolloutTimeout, Namespace, Logger and Progress matter here. On
// error, what was created is removed again.
func Deploy(ctx context.Context, t Target, s Scenario, o RunOptions) (d *Deployed, err error) {
	o.defaults(s)
	if _, _, err := t.instances(s.lb()); err != nil {
		return nil, err
	}
	cs := t.Client
	if err := recreateNamespace(ctx, cs, o.Namespace); err != nil {
		return nil, err
	}
	// A clean backend: what an earlier scenario left (the baseline syncer
	// stops before its namespace is deleted) would count as servers here.
	if err := t.clearPool(ctx, s.lb()); err != nil {
		return nil, fmt.Errorf("lab: clear the %s pool: %w", s.lb(), err)
	}
	d = &Deployed{Namespace: o.Namespace, Replicas: o.Replicas, LB: s.lb(), App: s.App}
	d.stops = append(d.stops, func() {
		// Bounded cleanup that runs even when ctx is cancelled (Ctrl-C).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if derr := deleteNamespace(cctx, cs, o.Namespace); derr != nil {
			o.Logger.Warn("delete scenario namespace", "namespace", o.Namespace, "err", derr)
		}
	})
	defer func() {
		if err != nil {
			d.Close()
			d = nil
		}
	}()

	if _, err := cs.CoreV1().Services(o.Namespace).Create(ctx, s.Service(o.Namespace), metav1.CreateOptions{}); err != nil {
		return d, fmt.Errorf("lab: create service: %w", err)
	}
	if s.Prepare != nil {
		in, err := s.Prepare(ctx, t, o.Namespace)
		if err != nil {
			return d, fmt.Errorf("lab: prepare scenario %s: %w", s.Name, err)
		}
		if in != nil {
			d.Integration = *in
			if in.Stop != nil {
				d.stops = append(d.stops, in.Stop)
			}
		}
	}
	if !s.ExternalLB {
		stopSync, err := t.startBaselineSyncer(ctx, s.lb(), o.Namespace, "web", o.Logger)
		if err != nil {
			return d, err
		}
		d.stops = append(d.stops, stopSync)
	}

	dep := s.Deployment(o.Namespace, o.Replicas)
	if s.Mutate != nil {
		s.Mutate(dep)
	}
	if _, err := cs.AppsV1().Deployments(o.Namespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return d, fmt.Errorf("lab: create deployment: %w", err)
	}
	fmt.Fprintf(o.Progress, "[%s] deployed %d replicas; waiting until they serve through %s\n", s.Name, o.Replicas, s.lb())
	wctx, cancel := context.WithTimeout(ctx, o.RolloutTimeout)
	defer cancel()
	err = waitRolledOut(wctx, cs, o.Namespace, "web")
	if err == nil {
		err = t.waitServersUp(wctx, s.lb(), int(o.Replicas))
	}
	if err != nil {
		return d, fmt.Errorf("lab: initial deployment: %w", err)
	}
	return d, nil
}

// Close stops the load-balancer integration and the scenario's helpers and
// deletes the namespace (waiting until its pods are gone). It is safe to
// call more than once.
func (d *Deployed) Close() {
	if d == nil {
		return
	}
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
	d.stops = nil
}
