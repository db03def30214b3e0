package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
)

// bindMount is one volumeMount inside a container's mount namespace.
type bindMount struct {
	source, target string
	readOnly       bool
}

// sandboxArgv wraps a container's argv so that it runs in the pod's network
// namespace and a private mount namespace of its own, as a container does:
// `ip netns exec <netns> unshare --mount --propagation private` then a
// shell that bind-mounts every volume at its mountPath (read-only ones
// remounted read-only), then (with readOnlyRoot) remounts / read-only, and
// execs the program, through `setpriv` when it runs as another user. Nothing
// mounted there is visible outside. The process keeps its pid through
// every exec, so signals reach the program itself.
func sandboxArgv(netnsName string, mounts []bindMount, readOnlyRoot bool, id identity, argv []string) []string {
	// Tools by absolute path: the container's PATH is the image's.
	mount := shellQuote(absPath("mount"))
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, m := range mounts {
		fmt.Fprintf(&script, "%s --bind %s %s\n", mount, shellQuote(m.source), shellQuote(m.target))
		if m.readOnly {
			fmt.Fprintf(&script, "%s -o remount,bind,ro %s\n", mount, shellQuote(m.target))
		}
	}
	if readOnlyRoot {
		// Last: a bind mount copies its source mount's read-only flag, and
		// the volumes' host directories live on the root file system.
		fmt.Fprintf(&script, "%s -o remount,bind,ro /\n", mount)
	}
	script.WriteString(`exec "$@"` + "\n")
	out := []string{absPath("ip"), "netns", "exec", netnsName, absPath("unshare"), "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", script.String(), "zerodrop-container"}
	return append(out, asUser(id, argv)...)
}

// asUser prefixes argv with setpriv when it must run as another identity
// or without privilege escalation; the parent-death signal is set again
// because changing the credentials clears it.
func asUser(id identity, argv []string) []string {
	var opts []string
	if id.noNewPrivs {
		opts = append(opts, "--no-new-privs")
	}
	if !id.root() || id.gid != 0 {
		opts = append(opts, "--reuid="+strconv.FormatInt(id.uid, 10), "--regid="+strconv.FormatInt(id.gid, 10),
			"--clear-groups", "--pdeathsig=KILL")
	}
	if len(opts) == 0 {
		return argv
	}
	return append(append(append([]string{absPath("setpriv")}, opts...), "--"), argv...)
}

// execArgv runs argv in the mount and network namespaces of the running
// process pid as id (exec probes and hooks), as the runtime's exec does.
func execArgv(pid int, id identity, argv []string) []string {
	return append([]string{absPath("nsenter"), "--target", strconv.Itoa(pid), "--mount", "--net", "--"}, asUser(id, argv)...)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// containerMounts resolves a container's volumeMounts to host directories
// (subPath included) and makes sure every mount point exists on the host.
func containerMounts(c *v1.Container, vols *podVolumes, pod *v1.Pod, points *mountPoints) ([]bindMount, error) {
	var out []bindMount
	for _, vm := range c.VolumeMounts {
		found := false
		for _, vol := range pod.Spec.Volumes {
			found = found || vol.Name == vm.Name
		}
		if !found {
			return nil, fmt.Errorf("container %q volumeMount %q: no such volume in the pod", c.Name, vm.Name)
		}
		if !filepath.IsAbs(vm.MountPath) {
			return nil, fmt.Errorf("container %q volumeMount %q: mountPath %q is not absolute", c.Name, vm.Name, vm.MountPath)
		}
		src := vols.path(vm.Name)
		if vm.SubPath != "" {
			if err := validPayloadPath(vm.SubPath); err != nil {
				return nil, fmt.Errorf("container %q volumeMount %q subPath: %w", c.Name, vm.Name, err)
			}
			src = filepath.Join(src, vm.SubPath)
			if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
				// The kubelet creates a missing subPath as a directory.
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
			if real, err := filepath.EvalSymlinks(src); err == nil {
				src = real // a file of a secret is a symlink into ..data
			}
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("container %q volumeMount %q: %w", c.Name, vm.Name, err)
		}
		if err := points.ensure(vm.MountPath, fi.IsDir()); err != nil {
			return nil, fmt.Errorf("container %q volumeMount %q: mount point: %w", c.Name, vm.Name, err)
		}
		out = append(out, bindMount{source: src, target: filepath.Clean(vm.MountPath), readOnly: vm.ReadOnly})
	}
	return out, nil
}

// mountPoints creates mount points that do not exist on the host (as a
// runtime creates them in a container's root file system) and removes
// the ones it created, if empty, when the agent stops.
type mountPoints struct {
	mu      sync.Mutex
	created []string // in creation order
}

func (m *mountPoints) ensure(path string, dir bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	path = filepath.Clean(path)
	var missing []string
	for p := path; p != "/"; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append(missing, p)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		var err error
		if i == 0 && !dir {
			var f *os.File
			f, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				err = f.Close()
			}
		} else {
			err = os.Mkdir(p, 0o755)
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err == nil {
			m.created = append(m.created, p)
		}
	}
	return nil
}

// removeCreated removes what ensure created, deepest first, and only what
// is empty and is no mount point in any process's mount namespace: since
// Linux 3.18 removing a directory that is a mount point elsewhere succeeds
// and detaches those mounts, which would pull the volumes from under the
// pods of another agent (another lab node of this process, or another
// lab) that still run.
func (m *mountPoints) removeCreated() {
	m.mu.Lock()
	defer m.mu.Unlock()
	inUse := mountedAnywhere()
	for i := len(m.created) - 1; i >= 0; i-- {
		p := m.created[i]
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() && fi.Size() > 0 {
			continue
		}
		if underAny(p, inUse) {
			continue
		}
		_ = os.Remove(p) // fails, as it should, on a non-empty directory
	}
	m.created = nil
}

// mountedAnywhere lists the mount points of every process's mount
// namespace (/proc/<pid>/mountinfo, field 5).
func mountedAnywhere() map[string]bool {
	out := map[string]bool{}
	files, _ := filepath.Glob("/proc/[0-9]*/mountinfo")
	seen := map[string]bool{} // one read per mount namespace
	for _, f := range files {
		ns, err := os.Readlink(filepath.Join(filepath.Dir(f), "ns", "mnt"))
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if fields := strings.Fields(line); len(fields) > 4 {
				out[unescapeMountPath(fields[4])] = true
			}
		}
	}
	return out
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// underAny reports whether p or something below it is in mounts.
func underAny(p string, mounts map[string]bool) bool {
	for m := range mounts {
		if m == p || strings.HasPrefix(m, p+"/") {
			return true
		}
	}
	return false
}
