// Package netns builds the lab's pod network: one Linux bridge per lab, one
// network namespace per pod joined to the bridge by a veth pair, and pod
// addresses from a range the lab owns (10.77.0.0/16 by default).
//
// Pods need real, non-loopback addresses because EndpointSlices reject
// loopback ones; the bridge keeps all of that traffic on this machine: the
// host reaches every pod through the bridge address, pods reach each other on
// the bridge, and nothing is routed anywhere else (no NAT, no forwarding).
//
// Everything is done with iproute2's `ip` command rather than netlink calls
// from Go: entering a namespace from Go means pinning OS threads
// (runtime.LockOSThread plus setns), which is easy to get subtly wrong in a
// process that also runs an HTTP client, informers and tests in parallel,
// while `ip netns exec` gives every pod process its namespace before the
// program starts. The cost (a few milliseconds per `ip` call) only matters at
// pod creation.
package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// DefaultPrefix is the address range the lab owns for its pods.
var DefaultPrefix = netip.MustParsePrefix("10.77.0.0/16")

// maxLinkName is the kernel's limit on interface names (IFNAMSIZ-1).
const maxLinkName = 15

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]*$`)

// Network is a lab bridge with the address range its pods draw from. Create
// it with Create; remove everything it made with Destroy.
type Network struct {
	// Bridge is the name of the Linux bridge.
	Bridge string
	// Prefix is the pod address range (masked).
	Prefix netip.Prefix
	// HostAddr is the bridge's own address, the first of the range: the
	// pods' default route and the address the host uses to reach them.
	HostAddr netip.Addr

	mu        sync.Mutex
	seq       int                 // names pods' namespaces and veths
	last      netip.Addr          // last address handed out (allocation walks on from here)
	inUse     map[netip.Addr]bool // addresses held by live pods
	pods      map[string]*PodNet  // by pod id
	created   []string            // namespaces created, for Destroy and Names
	destroyed bool
}

// PodNet is one pod's network: a namespace with a veth whose host end is on
// the bridge.
type PodNet struct {
	// ID is the caller's identifier of the pod (e.g. its UID).
	ID string
	// Namespace is the network namespace's name (`ip netns list`).
	Namespace string
	// HostVeth is the host end of the veth pair, attached to the bridge. The
	// pod end is called eth0 inside the namespace.
	HostVeth string
	// Addr is the pod's address.
	Addr netip.Addr

	network *Network
	removed bool
}

// Names lists what a Network created, so that a later process can remove it
// after a crash (see Cleanup). It marshals to JSON for a lab state file.
type Names struct {
	Bridge     string   `json:"bridge"`
	Namespaces []string `json:"namespaces"`
}

// Create makes a bridge called name with the first address of cidr and brings
// it up. name must be unique on the machine (include the process id when
// tests run in parallel) and at most 15 characters; cidr must not overlap any
// address already configured on the machine.
func Create(name string, cidr netip.Prefix) (*Network, error) {
	if err := checkBridgeName(name); err != nil {
		return nil, err
	}
	if !cidr.IsValid() || !cidr.Addr().Is4() {
		return nil, fmt.Errorf("netns: pod range %s: want an IPv4 prefix like 10.77.0.0/16", cidr)
	}
	if cidr.Bits() > 30 {
		return nil, fmt.Errorf("netns: pod range %s is too small: want at most /30", cidr)
	}
	cidr = cidr.Masked()
	if err := checkNoOverlap(cidr); err != nil {
		return nil, err
	}
	host := cidr.Addr().Next()
	n := &Network{
		Bridge:   name,
		Prefix:   cidr,
		HostAddr: host,
		last:     host,
		inUse:    map[netip.Addr]bool{},
		pods:     map[string]*PodNet{},
	}
	if err := ip("link", "add", name, "type", "bridge"); err != nil {
		return nil, fmt.Errorf("netns: create bridge %s: %w", name, err)
	}
	for _, args := range [][]string{
		{"addr", "add", netip.PrefixFrom(host, cidr.Bits()).String(), "dev", name},
		{"link", "set", name, "up"},
	} {
		if err := ip(args...); err != nil {
			_ = ip("link", "del", name)
			return nil, fmt.Errorf("netns: configure bridge %s with %s: %w", name, cidr, err)
		}
	}
	return n, nil
}

func checkBridgeName(name string) error {
	if len(name) == 0 || len(name) > maxLinkName-4 || !validName.MatchString(name) {
		// Four characters are kept for the per-pod suffix of veth names
		// (".<hex>"; the dot, which bridge names cannot hold, keeps the
		// veths of bridge "ab" apart from those of bridge "ab1").
		return fmt.Errorf("netns: bridge name %q: want 1 to %d characters [a-zA-Z0-9_-]", name, maxLinkName-4)
	}
	return nil
}

// checkNoOverlap refuses a pod range that overlaps an address already on the
// machine: two bridges with overlapping ranges make the host's routing
// ambiguous, and a leftover lab bridge after a crash shows up here first.
func checkNoOverlap(cidr netip.Prefix) error {
	out, err := ipOutput("-j", "-4", "addr", "show")
	if err != nil {
		return fmt.Errorf("netns: list host addresses: %w", err)
	}
	var links []struct {
		IfName   string `json:"ifname"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return fmt.Errorf("netns: parse `ip -j addr show`: %w", err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			addr, err := netip.ParseAddr(a.Local)
			if err != nil {
				continue
			}
			p := netip.PrefixFrom(addr, a.PrefixLen).Masked()
			if p.Overlaps(cidr) {
				return fmt.Errorf("netns: pod range %s overlaps %s/%d on %s (a leftover lab? run `zerodrop lab down`)", cidr, addr, a.PrefixLen, l.IfName)
			}
		}
	}
	return nil
}

// AddPod creates a namespace for pod id with lo up, an eth0 holding the next
// free address of the range, and a default route via the bridge.
func (n *Network) AddPod(id string) (*PodNet, error) {
	n.mu.Lock()
	if n.destroyed {
		n.mu.Unlock()
		return nil, fmt.Errorf("netns: add pod %q: network %s was destroyed", id, n.Bridge)
	}
	if _, ok := n.pods[id]; ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("netns: add pod %q: it already has a namespace on %s", id, n.Bridge)
	}
	addr, err := n.allocate()
	if err != nil {
		n.mu.Unlock()
		return nil, fmt.Errorf("netns: add pod %q: %w", id, err)
	}
	n.seq++
	p := &PodNet{
		ID:        id,
		Namespace: fmt.Sprintf("%s-%d", n.Bridge, n.seq),
		HostVeth:  fmt.Sprintf("%s.%x", n.Bridge, n.seq),
		Addr:      addr,
		network:   n,
	}
	if len(p.HostVeth) > maxLinkName {
		// Past 0xfff pods on one bridge: wrap the suffix; the old
		// holders of those names are long gone.
		p.HostVeth = fmt.Sprintf("%s.%x", n.Bridge, n.seq%0xfff)
	}
	n.pods[id] = p
	n.created = append(n.created, p.Namespace)
	n.mu.Unlock()

	if err := p.setUp(); err != nil {
		_ = p.Remove()
		return nil, fmt.Errorf("netns: add pod %q (namespace %s, %s): %w", id, p.Namespace, addr, err)
	}
	return p, nil
}

// allocate hands out addresses in order, wrapping at the end of the range,
// like CNI's host-local plugin: an address freed by a deleted pod is not
// reused at once, so a load balancer that still holds the old pod's address
// does not reach a new pod by accident.
func (n *Network) allocate() (netip.Addr, error) {
	a := n.last
	for {
		a = a.Next()
		if !n.Prefix.Contains(a) || isBroadcast(n.Prefix, a) {
			a = n.HostAddr.Next()
		}
		if !n.inUse[a] {
			n.inUse[a] = true
			n.last = a
			return a, nil
		}
		if a == n.last {
			return netip.Addr{}, fmt.Errorf("pod range %s is full", n.Prefix)
		}
	}
}

func isBroadcast(p netip.Prefix, a netip.Addr) bool {
	return !p.Contains(a.Next())
}

func (p *PodNet) setUp() error {
	n := p.network
	steps := [][]string{
		{"netns", "add", p.Namespace},
		// The pod end is created directly inside the namespace, so its
		// name (eth0) never collides on the host.
		{"link", "add", p.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", p.Namespace},
		{"link", "set", p.HostVeth, "master", n.Bridge},
		{"link", "set", p.HostVeth, "up"},
		{"-n", p.Namespace, "link", "set", "lo", "up"},
		{"-n", p.Namespace, "addr", "add", netip.PrefixFrom(p.Addr, n.Prefix.Bits()).String(), "dev", "eth0"},
		{"-n", p.Namespace, "link", "set", "eth0", "up"},
		{"-n", p.Namespace, "route", "add", "default", "via", n.HostAddr.String()},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// Command returns a command that runs program name inside the pod's
// namespace. `ip netns exec` execs the program, so the command's pid is the
// program's own and signals sent to it reach the program.
func (p *PodNet) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.Namespace, name}, args...)...)
}

// Remove deletes the pod's veth pair and namespace and frees its address.
// Processes still running inside keep the namespace alive until they exit,
// so stop them first. Remove is idempotent.
func (p *PodNet) Remove() error {
	n := p.network
	n.mu.Lock()
	if p.removed {
		n.mu.Unlock()
		return nil
	}
	p.removed = true
	delete(n.pods, p.ID)
	delete(n.inUse, p.Addr)
	n.mu.Unlock()
	return removeNamespace(p.Namespace, p.HostVeth)
}

// Unplug deletes the pod's veth pair and keeps the namespace and the
// address: the pod is cut off at once, as a machine that lost its power is,
// and nothing its processes send (not even the FIN or RST of a process
// that dies) leaves the namespace. Remove still has to run. Unplug is
// idempotent.
func (p *PodNet) Unplug() error {
	if err := ip("link", "del", p.HostVeth); err != nil && !isNotFound(err) {
		return fmt.Errorf("netns: unplug %s (veth %s): %w", p.Namespace, p.HostVeth, err)
	}
	return nil
}

// removeNamespace deletes a namespace and, first, the veth whose host end is
// hostVeth (when known): deleting a namespace frees its interfaces
// asynchronously, and an explicit delete makes the host end vanish at once.
func removeNamespace(ns, hostVeth string) error {
	var errs []error
	if hostVeth != "" {
		if err := ip("link", "del", hostVeth); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("netns: delete veth %s: %w", hostVeth, err))
		}
	} else if err := ip("-n", ns, "link", "del", "eth0"); err != nil && !isNotFound(err) && !strings.Contains(err.Error(), "Cannot open network namespace") {
		// Deleting the pod end deletes the host end with it, at once.
		errs = append(errs, fmt.Errorf("netns: delete eth0 in %s: %w", ns, err))
	}
	if err := ip("netns", "del", ns); err != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("netns: delete namespace %s: %w", ns, err))
	}
	return errors.Join(errs...)
}

// AddHostAddr puts addr on the bridge as a /32, so that the host and the pods
// (whose default route is the bridge's address) reach a listener bound to it:
// the lab's Service proxy puts ClusterIPs there. A /32 adds no route; the
// address goes with the bridge (Destroy, Cleanup). Adding an address the
// bridge already has is not an error.
func (n *Network) AddHostAddr(addr netip.Addr) error {
	if err := n.checkHostAddr(addr); err != nil {
		return err
	}
	err := ip("addr", "add", netip.PrefixFrom(addr, 32).String(), "dev", n.Bridge)
	var ie *ipError
	if errors.As(err, &ie) && (strings.Contains(ie.stderr, "File exists") || strings.Contains(ie.stderr, "already assigned")) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netns: add %s to bridge %s: %w", addr, n.Bridge, err)
	}
	return nil
}

// RemoveHostAddr takes an address AddHostAddr added off the bridge. An
// address (or bridge) already gone is not an error.
func (n *Network) RemoveHostAddr(addr netip.Addr) error {
	if err := n.checkHostAddr(addr); err != nil {
		return err
	}
	err := ip("addr", "del", netip.PrefixFrom(addr, 32).String(), "dev", n.Bridge)
	var ie *ipError
	if isNotFound(err) || errors.As(err, &ie) && (strings.Contains(ie.stderr, "Cannot assign requested address") || strings.Contains(ie.stderr, "Address not found")) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netns: remove %s from bridge %s: %w", addr, n.Bridge, err)
	}
	return nil
}

// AddrHolders lists the host's devices that hold addr: a check that a
// ClusterIP lives on the bridge and nowhere else.
func AddrHolders(addr netip.Addr) ([]string, error) {
	out, err := ipOutput("-o", "-4", "addr", "show", "to", netip.PrefixFrom(addr, 32).String())
	if err != nil {
		return nil, fmt.Errorf("netns: devices holding %s: %w", addr, err)
	}
	var devs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			devs = append(devs, f[1])
		}
	}
	return devs, nil
}

// checkHostAddr refuses what is not an extra IPv4 address: one inside the
// pod range would be taken for a pod's.
func (n *Network) checkHostAddr(addr netip.Addr) error {
	if !addr.Is4() || addr.IsLoopback() || addr.IsUnspecified() || n.Prefix.Contains(addr) {
		return fmt.Errorf("netns: host address %s on bridge %s: want an IPv4 address outside the pod range %s", addr, n.Bridge, n.Prefix)
	}
	return nil
}

// Pods returns the live pod networks.
func (n *Network) Pods() []*PodNet {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*PodNet, 0, len(n.pods))
	for _, p := range n.pods {
		out = append(out, p)
	}
	return out
}

// Names returns what the network has created so far, for a crash-recovery
// record.
func (n *Network) Names() Names {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Names{Bridge: n.Bridge, Namespaces: append([]string(nil), n.created...)}
}

// Destroy removes every pod namespace and then the bridge. It is idempotent.
func (n *Network) Destroy() error {
	n.mu.Lock()
	if n.destroyed {
		n.mu.Unlock()
		return nil
	}
	n.destroyed = true
	pods := make([]*PodNet, 0, len(n.pods))
	for _, p := range n.pods {
		pods = append(pods, p)
	}
	n.mu.Unlock()
	var errs []error
	for _, p := range pods {
		errs = append(errs, p.Remove())
	}
	if err := ip("link", "del", n.Bridge); err != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("netns: delete bridge %s: %w", n.Bridge, err))
	}
	return errors.Join(errs...)
}

// Cleanup removes what a crashed process recorded with Names: every namespace
// listed that still exists (deleting a namespace deletes the veth inside it
// and so its host end), every namespace named after the bridge
// (<bridge>-<n>, so pods created after the names were recorded go too), and
// the bridge. Names already gone are skipped, so it can run any number of
// times.
func Cleanup(names Names) error {
	var errs []error
	all := append([]string(nil), names.Namespaces...)
	if names.Bridge != "" && checkBridgeName(names.Bridge) == nil {
		out, err := ipOutput("netns", "list")
		if err != nil {
			errs = append(errs, fmt.Errorf("netns: cleanup: list namespaces: %w", err))
		}
		own := regexp.MustCompile("^" + regexp.QuoteMeta(names.Bridge) + `-[0-9]+$`)
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && own.MatchString(f[0]) && !slices.Contains(all, f[0]) {
				all = append(all, f[0])
			}
		}
	}
	for _, ns := range all {
		if !validName.MatchString(ns) {
			errs = append(errs, fmt.Errorf("netns: cleanup: refusing odd namespace name %q", ns))
			continue
		}
		errs = append(errs, removeNamespace(ns, ""))
	}
	if names.Bridge != "" {
		if err := checkBridgeName(names.Bridge); err != nil {
			errs = append(errs, err)
		} else if err := ip("link", "del", names.Bridge); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("netns: cleanup: delete bridge %s: %w", names.Bridge, err))
		}
	}
	return errors.Join(errs...)
}

// ipError is a failed `ip` invocation with its stderr.
type ipError struct {
	args   []string
	stderr string
	err    error
}

func (e *ipError) Error() string {
	return fmt.Sprintf("ip %s: %v: %s", strings.Join(e.args, " "), e.err, strings.TrimSpace(e.stderr))
}

func (e *ipError) Unwrap() error { return e.err }

func isNotFound(err error) bool {
	var ie *ipError
	if !errors.As(err, &ie) {
		return false
	}
	s := ie.stderr
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such file") ||
		strings.Contains(s, "does not exist")
}

func ip(args ...string) error {
	_, err := ipOutput(args...)
	return err
}

func ipOutput(args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &ipError{args: args, stderr: stderr.String(), err: err}
	}
	return stdout.Bytes(), nil
}

// testRange holds the ranges PrefixForPID hands out; it is apart from
// DefaultPrefix so tests never collide with a running lab.
var testRange = netip.MustParsePrefix("10.78.0.0/15")

// PrefixForPID returns a /24 inside 10.78.0.0/15 chosen by pid, so that test
// packages running in parallel (each its own process) use distinct ranges.
// Two pids equal modulo 512 collide; Create then fails with a clear error.
func PrefixForPID(pid int) netip.Prefix {
	b := testRange.Addr().As4()
	i := pid % 512
	b[1] += byte(i / 256)
	b[2] = byte(i % 256)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}
