package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	v1 "k8s.io/api/core/v1"
)

// identity is the uid and gid a container's process runs as.
type identity struct {
	uid, gid int64
	// noNewPrivs is allowPrivilegeEscalation: false (the no_new_privs
	// bit, as runc sets it).
	noNewPrivs bool
}

func (id identity) root() bool { return id.uid == 0 }

// containerIdentity computes who a container runs as, as the kubelet and the
// runtime do: the container's runAsUser / runAsGroup override the pod's,
// which override the image's USER (Program.User); no user at all is root.
// A runAsUser with no group runs with gid 0, as containerd does for a uid
// absent from the image's /etc/passwd. runAsNonRoot is checked as the
// kubelet's verifyRunAsNonRoot (pkg/kubelet/kuberuntime/security_context_others.go)
// does; its error becomes CreateContainerConfigError.
func containerIdentity(pod *v1.Pod, c *v1.Container, prog Program) (identity, error) {
	var runAsUser, runAsGroup *int64
	var nonRoot *bool
	if psc := pod.Spec.SecurityContext; psc != nil {
		runAsUser, runAsGroup, nonRoot = psc.RunAsUser, psc.RunAsGroup, psc.RunAsNonRoot
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			runAsUser = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			runAsGroup = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
	}
	imageUID, imageGID, err := parseImageUser(prog.User)
	if err != nil {
		return identity{}, fmt.Errorf("container %q: image %q: %w", c.Name, c.Image, err)
	}
	podRef := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID) // the kubelet's format.Pod
	if nonRoot != nil && *nonRoot {
		switch {
		case runAsUser != nil && *runAsUser == 0:
			return identity{}, fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podRef, c.Name)
		case runAsUser == nil && imageUID == 0:
			return identity{}, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podRef, c.Name)
		}
	}
	id := identity{uid: imageUID, gid: imageGID}
	if runAsUser != nil {
		id = identity{uid: *runAsUser}
		if *runAsUser == imageUID {
			id.gid = imageGID
		}
	}
	if runAsGroup != nil {
		id.gid = *runAsGroup
	}
	if sc := c.SecurityContext; sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		id.noNewPrivs = true
	}
	return id, nil
}

// parseImageUser reads an image USER: "", "uid" or "uid:gid" (numeric only:
// the agent has no image /etc/passwd to look names up in).
func parseImageUser(user string) (uid, gid int64, err error) {
	if user == "" {
		return 0, 0, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	uid, err = strconv.ParseInt(u, 10, 64)
	if err != nil || uid < 0 {
		return 0, 0, fmt.Errorf("Program.User %q: want a numeric uid or uid:gid", user)
	}
	if hasGroup {
		gid, err = strconv.ParseInt(g, 10, 64)
		if err != nil || gid < 0 {
			return 0, 0, fmt.Errorf("Program.User %q: want a numeric uid or uid:gid", user)
		}
	}
	return uid, gid, nil
}

// executableBy checks that id can execute path: every directory on the way
// searchable and the file executable by its mode bits (owner, group or
// other). Root may execute anything with some x bit. The error names the
// component that stops it.
func executableBy(path string, id identity) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	check := func(p string, want os.FileMode) error {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		mode := fi.Mode().Perm()
		if id.root() {
			if want == 0o1 && !fi.IsDir() && mode&0o111 == 0 {
				return fmt.Errorf("%s (mode %04o) is not executable", p, mode)
			}
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		var bits os.FileMode
		switch {
		case int64(st.Uid) == id.uid:
			bits = mode >> 6
		case int64(st.Gid) == id.gid:
			bits = mode >> 3
		default:
			bits = mode
		}
		if bits&want == 0 {
			return fmt.Errorf("%s (mode %04o, owner %d:%d) does not let uid %d gid %d %s it", p, mode, st.Uid, st.Gid, id.uid, id.gid, map[bool]string{true: "search", false: "execute"}[fi.IsDir()])
		}
		return nil
	}
	dir := "/"
	for _, part := range strings.Split(filepath.Dir(abs), "/") {
		if part == "" {
			continue
		}
		dir = filepath.Join(dir, part)
		if err := check(dir, 0o1); err != nil {
			return err
		}
	}
	return check(abs, 0o1)
}
