package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"

	"zerodrop.dev/zerodrop/provider"
	"zerodrop.dev/zerodrop/provider/haproxy"
)

// instanceFlags collects repeated --haproxy-instance name=address flags.
type instanceFlags []haproxy.Instance

func (f *instanceFlags) String() string {
	parts := make([]string, len(*f))
	for i, in := range *f {
		parts[i] = in.Name + "=" + in.Address
	}
	return strings.Join(parts, ",")
}

func (f *instanceFlags) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" || addr == "" {
		return fmt.Errorf("%q: want name=address (a Runtime API socket path, or tcp:host:port)", v)
	}
	if _, err := haproxy.NewClient(addr); err != nil {
		return err
	}
	*f = append(*f, haproxy.Instance{Name: name, Address: addr})
	return nil
}

func haproxyBackend(fs *flag.FlagSet) func(common) (served, error) {
	var ins instanceFlags
	fs.Var(&ins, "haproxy-instance", "an HAProxy instance as name=address, address a Runtime API socket path or tcp:host:port (level admin); repeat for each instance")
	return func(c common) (served, error) {
		if len(ins) == 0 {
			return served{}, errors.New("no --haproxy-instance")
		}
		p, err := haproxy.New(haproxy.Config{Instances: ins, Timeout: c.timeout, Logger: c.log,
			Check: provider.HealthCheck{Interval: c.checkInterval, Rise: c.checkRise, Fall: c.checkFall}})
		if err != nil {
			return served{}, err
		}
		s := served{provider: p}
		clients := make([]*haproxy.Client, len(ins))
		for i, in := range ins {
			s.instances = append(s.instances, in.Name)
			if clients[i], err = haproxy.NewClient(in.Address); err != nil {
				return served{}, err
			}
			clients[i].Timeout = c.timeout
		}
		s.ready = func(ctx context.Context) error {
			errs := make([]error, len(ins))
			var wg sync.WaitGroup
			for i := range ins {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := clients[i].ShowInfo(ctx); err != nil {
						errs[i] = &provider.Error{Code: provider.CodeUnreachable, Instance: ins[i].Name, Message: err.Error(), Cause: err}
					}
				}()
			}
			wg.Wait()
			return errors.Join(errs...)
		}
		return s, nil
	}
}
