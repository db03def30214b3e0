package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"zerodrop.dev/zerodrop/internal/lab/haproxy"
)

// StateFile is the name of the state file inside a lab's run directory.
const StateFile = "state.json"

// State records everything a running lab has created, so that `zerodrop lab
// status` can report it and `zerodrop lab down` can remove it even after the
// process that created it crashed. The supervisor rewrites it whenever what
// it owns changes (a pod namespace appears, HAProxy reloads).
type State struct {
	// Dir is the run directory (this file's directory).
	Dir string `json:"dir"`
	// Supervisor is the `zerodrop lab up` process that owns the lab.
	Supervisor Proc `json:"supervisor"`
	// Started is when the lab began starting.
	Started time.Time `json:"started"`
	// Ready is set once every part serves.
	Ready bool `json:"ready"`
	// Kubernetes is the control plane's version.
	Kubernetes string `json:"kubernetes,omitempty"`
	// Kubeconfig is an admin kubeconfig for the lab's apiserver.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Server is the apiserver URL.
	Server string `json:"server,omitempty"`
	// Processes are the child processes, in start order.
	Processes []Proc `json:"processes,omitempty"`
	// Nodes are the Node names the lab's agents play.
	Nodes []string `json:"nodes,omitempty"`
	// Bridge is the pod network's bridge; namespaces named Bridge-N are
	// the lab's too.
	Bridge string `json:"bridge,omitempty"`
	// PodCIDR is the pod address range.
	PodCIDR string `json:"podCIDR,omitempty"`
	// Namespaces are the pod network namespaces created so far.
	Namespaces []string `json:"namespaces,omitempty"`
	// HAProxy lists the HAProxy instances in front of the pods.
	HAProxy []HAProxyState `json:"haproxy,omitempty"`
	// NGINX lists the NGINX instances in front of the pods (scenarios
	// whose load balancer is NGINX send their load through them).
	NGINX []NGINXState `json:"nginx,omitempty"`
	// Check is HAProxy's health check of the app's servers.
	Check haproxy.Check `json:"check"`
	// AppBinary is the program the image zerodrop-lab/app runs.
	AppBinary string `json:"appBinary,omitempty"`
	// Dirs are directories to remove on down (besides Dir itself).
	Dirs []string `json:"dirs,omitempty"`
}

// Proc is one recorded process. Exe guards against pid reuse: down signals
// a pid only while it still runs Exe.
type Proc struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Exe  string `json:"exe"`
	Log  string `json:"log,omitempty"`
}

// HAProxyState is one HAProxy instance of the lab.
type HAProxyState struct {
	// Name distinguishes instances (haproxy-0, haproxy-1).
	Name string `json:"name"`
	// Socket is the Runtime API socket (level admin).
	Socket string `json:"socket"`
	// Frontend is the address clients send requests to (backend "app").
	Frontend string `json:"frontend"`
	// Backend is the backend the syncer or controller keeps filled.
	Backend string `json:"backend"`
	// Config is the configuration file.
	Config string `json:"config"`
	// Log is the process log.
	Log string `json:"log"`
	// Master is the master process (reloads: SIGUSR2), running Exe;
	// StateFile is the server-state file a reload saves first.
	Master    int    `json:"master,omitempty"`
	Exe       string `json:"exe,omitempty"`
	StateFile string `json:"stateFile,omitempty"`
	// AdminTLS is the Runtime API over mutual TLS (host:port), the way
	// zerodrop-controller reaches the instance; AdminTLSDir holds the
	// client's tls.crt, tls.key and the CA (ca.crt). Socket stays the
	// lab's own way in (probe, reload, cleanup).
	AdminTLS    string `json:"adminTLS,omitempty"`
	AdminTLSDir string `json:"adminTLSDir,omitempty"`
	// AdminTLSPods is the same socket on the pod network's host address
	// (host:port): where the controller reaches it when it runs as pods.
	AdminTLSPods string `json:"adminTLSPods,omitempty"`
	// Metrics is HAProxy's Prometheus exporter (host:port, /metrics).
	Metrics string `json:"metrics,omitempty"`
}

// NGINXState is one NGINX instance of the lab.
type NGINXState struct {
	// Name distinguishes instances (nginx-0, nginx-1).
	Name string `json:"name"`
	// Frontend is the address clients send requests to (upstream Pool).
	Frontend string `json:"frontend"`
	// Pool is the upstream the syncer or the provider keeps filled.
	Pool string `json:"pool"`
	// UpstreamFile is the include file holding the upstreams; PidFile
	// names the master (reloads: SIGHUP), running Exe.
	UpstreamFile string `json:"upstreamFile"`
	PidFile      string `json:"pidFile"`
	Master       int    `json:"master,omitempty"`
	Exe          string `json:"exe,omitempty"`
	// Config is the main configuration file; ErrorLog NGINX's error log.
	Config   string `json:"config"`
	ErrorLog string `json:"errorLog"`
	// ShutdownTimeout is worker_shutdown_timeout: how long an old worker
	// keeps its connections after a reload.
	ShutdownTimeout time.Duration `json:"shutdownTimeout"`
}

// ReadState reads a run directory's state file.
func ReadState(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", path, err)
	}
	if s.Dir == "" {
		s.Dir = dir
	}
	return &s, nil
}

// write replaces the state file atomically (temporary file, rename), so a
// reader never sees half a file and a crash mid-write keeps the old one.
func (s *State) write() error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("lab state in %s: %w", s.Dir, err)
	}
	_, werr := tmp.Write(append(raw, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("lab state %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.Dir, StateFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("lab state in %s: %w", s.Dir, err)
	}
	return nil
}

// DefaultDir is the run directory of `zerodrop lab` when --dir is not given:
// $ZERODROP_LAB_DIR, else $XDG_RUNTIME_DIR/zerodrop-lab, else
// /tmp/zerodrop-lab-<uid>.
func DefaultDir() string {
	if d := os.Getenv("ZERODROP_LAB_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "zerodrop-lab")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("zerodrop-lab-%d", os.Getuid()))
}
