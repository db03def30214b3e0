// Package k8sbin builds the Kubernetes control-plane binaries the lab and the
// envtest integration tests run (kube-apiserver, kube-controller-manager,
// kube-scheduler, kubectl and etcd) from the Go module proxy, once per pinned
// version, into a cache directory shared by every checkout on the machine.
//
// k8s.io/kubernetes is a Go module, but its go.mod replaces every staging
// module (k8s.io/api, k8s.io/client-go, ...) with a path inside its own tree,
// so `go install k8s.io/kubernetes/cmd/...@vX` refuses it. A throwaway module
// that requires k8s.io/kubernetes vX.Y.Z and replaces each staging module with
// its published v0.Y.Z builds the commands instead. etcd builds from a
// three-line main calling etcdmain.Main. The first build takes minutes (about
// eight on two cores); later calls find the binaries and return at once.
package k8sbin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// KubernetesVersion is the pinned release of k8s.io/kubernetes the lab runs.
// v1.37.2 is listed by the proxy but its source is not served on this
// machine; v1.37.1 is the newest that builds. Its client libraries (v0.37.x)
// match the project's.
const KubernetesVersion = "v1.37.1"

// EtcdVersion is the etcd server module the pinned Kubernetes release
// requires in its go.mod; the throwaway module builds exactly that version.
const EtcdVersion = "v3.7.0"

// Names of the binaries in a Binaries directory.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kubectl               = "kubectl"
	Etcd                  = "etcd"
)

// stampFile marks a complete build; a directory without it is not trusted.
const stampFile = "BUILD.json"

// Binaries locates one complete build of the control-plane binaries.
type Binaries struct {
	// Dir holds every binary; it is also a valid KUBEBUILDER_ASSETS directory.
	Dir string
	// Version is the Kubernetes release, e.g. v1.37.1.
	Version string
	// EtcdVersion is the etcd release built beside it.
	EtcdVersion string
}

// Path returns the full path of one binary (one of the name constants).
func (b Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

// stamp is what BUILD.json records about a build.
type stamp struct {
	Kubernetes string    `json:"kubernetes"`
	Etcd       string    `json:"etcd"`
	Go         string    `json:"go"`
	Built      time.Time `json:"built"`
	Seconds    float64   `json:"buildSeconds"`
}

// CacheDir returns the directory zerodrop caches builds in: $ZERODROP_CACHE,
// else $XDG_CACHE_HOME/zerodrop, else $HOME/.cache/zerodrop. Keeping it out
// of the checkout lets CI runs and worktrees on one machine share one build.
func CacheDir() (string, error) {
	if d := os.Getenv("ZERODROP_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "zerodrop"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("k8sbin: no cache directory: set ZERODROP_CACHE, XDG_CACHE_HOME or HOME: %w", err)
	}
	return filepath.Join(home, ".cache", "zerodrop"), nil
}

// BinDir returns where the binaries of the pinned version live (or will).
func BinDir() (string, error) {
	c, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, "kubernetes", KubernetesVersion+"-etcd-"+EtcdVersion), nil
}

// EnvtestAssets returns the directory to give controller-runtime's envtest
// as KUBEBUILDER_ASSETS (or Environment.BinaryAssetsDirectory): it holds
// kube-apiserver, etcd and kubectl. It does not build; call Ensure (or
// `zerodrop lab binaries`) first. It returns "" when no cache directory can
// be named.
func EnvtestAssets() string {
	d, err := BinDir()
	if err != nil {
		return ""
	}
	return d
}

// Present returns the cached binaries when a complete build exists.
func Present() (Binaries, bool) {
	d, err := BinDir()
	if err != nil {
		return Binaries{}, false
	}
	return load(d)
}

func load(dir string) (Binaries, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, stampFile))
	if err != nil {
		return Binaries{}, false
	}
	var s stamp
	if json.Unmarshal(raw, &s) != nil || s.Kubernetes != KubernetesVersion || s.Etcd != EtcdVersion {
		return Binaries{}, false
	}
	for _, n := range []string{KubeAPIServer, KubeControllerManager, KubeScheduler, Kubectl, Etcd} {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.Mode()&0o111 == 0 {
			return Binaries{}, false
		}
	}
	return Binaries{Dir: dir, Version: s.Kubernetes, EtcdVersion: s.Etcd}, true
}

// Options tune Ensure.
type Options struct {
	// Log receives progress lines (what is built, where, how long). Nil
	// discards them.
	Log io.Writer
	// Go is the go command to build with; empty means "go" from PATH, else
	// the toolchain running this program.
	Go string
}

// Ensure returns the cached binaries of the pinned version, building them
// first when they are missing. Concurrent callers (two test binaries, two
// terminals) serialize on a lock file: one builds, the others wait and reuse
// its result. The build writes into a temporary directory that is renamed
// into place only when complete, so a killed build leaves nothing half-made.
func Ensure(ctx context.Context, opts Options) (Binaries, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	dir, err := BinDir()
	if err != nil {
		return Binaries{}, err
	}
	if b, ok := load(dir); ok {
		fmt.Fprintf(logw, "kubernetes %s (etcd %s) binaries cached in %s\n", b.Version, b.EtcdVersion, b.Dir)
		return b, nil
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("k8sbin: create cache directory %s: %w", parent, err)
	}
	unlock, err := lock(ctx, dir+".lock", logw)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()
	// Someone else may have built while we waited for the lock.
	if b, ok := load(dir); ok {
		fmt.Fprintf(logw, "kubernetes %s (etcd %s) binaries cached in %s\n", b.Version, b.EtcdVersion, b.Dir)
		return b, nil
	}
	if err := build(ctx, dir, opts.Go, logw); err != nil {
		return Binaries{}, err
	}
	b, ok := load(dir)
	if !ok {
		return Binaries{}, fmt.Errorf("k8sbin: build finished but %s is incomplete", dir)
	}
	return b, nil
}

// lock takes an exclusive flock on path, polling so that ctx can cancel the
// wait. The lock dies with the process, so a crashed builder never blocks
// the next one.
func lock(ctx context.Context, path string, logw io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("k8sbin: open lock file %s: %w", path, err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("k8sbin: lock %s: %w", path, err)
		}
		if !told {
			fmt.Fprintf(logw, "another process is building the kubernetes binaries (lock %s); waiting\n", path)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("k8sbin: waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Commands built from k8s.io/kubernetes.
var kubeCommands = []string{
	"k8s.io/kubernetes/cmd/" + KubeAPIServer,
	"k8s.io/kubernetes/cmd/" + KubeControllerManager,
	"k8s.io/kubernetes/cmd/" + KubeScheduler,
	"k8s.io/kubernetes/cmd/" + Kubectl,
}

const etcdMain = `// Command etcd is etcd's server, built from its Go module for the zerodrop lab.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
`

func build(ctx context.Context, dir, goCmd string, logw io.Writer) error {
	start := time.Now()
	if goCmd == "" {
		goCmd = findGo()
	}
	work, err := os.MkdirTemp(filepath.Dir(dir), ".build-"+KubernetesVersion+"-")
	if err != nil {
		return fmt.Errorf("k8sbin: create build directory: %w", err)
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	out := filepath.Join(work, "bin")
	for _, d := range []string{filepath.Join(src, "etcd"), out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("k8sbin: create %s: %w", d, err)
		}
	}
	fmt.Fprintf(logw, "building kubernetes %s and etcd %s into %s (first time only; several minutes)\n",
		KubernetesVersion, EtcdVersion, dir)

	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = src
		cmd.Env = buildEnv()
		cmd.Stdout = logw
		cmd.Stderr = logw
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("k8sbin: %s %s (in %s): %w", goCmd, strings.Join(args, " "), src, err)
		}
		return nil
	}
	// Start with a bare module that only requires k8s.io/kubernetes so its
	// go.mod (and with it the staging list) is downloaded.
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(goMod(nil)), 0o644); err != nil {
		return fmt.Errorf("k8sbin: write go.mod: %w", err)
	}
	kubeMod, err := downloadGoMod(ctx, goCmd, src, "k8s.io/kubernetes@"+KubernetesVersion)
	if err != nil {
		return err
	}
	staging, err := StagingModules(kubeMod)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(goMod(staging)), 0o644); err != nil {
		return fmt.Errorf("k8sbin: write go.mod: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "etcd", "main.go"), []byte(etcdMain), 0o644); err != nil {
		return fmt.Errorf("k8sbin: write etcd main: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "tools.go"), []byte(toolsGo()), 0o644); err != nil {
		return fmt.Errorf("k8sbin: write tools.go: %w", err)
	}
	if err := run("mod", "tidy"); err != nil {
		return err
	}
	if err := pinEtcd(filepath.Join(src, "go.mod")); err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-ldflags", "-s -w " + versionLDFlags(), "-o", out + string(filepath.Separator)}
	args = append(args, kubeCommands...)
	args = append(args, "./etcd")
	if err := run(args...); err != nil {
		return err
	}
	s := stamp{Kubernetes: KubernetesVersion, Etcd: EtcdVersion, Go: runtime.Version(), Built: time.Now().UTC(), Seconds: time.Since(start).Seconds()}
	raw, _ := json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(filepath.Join(out, stampFile), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("k8sbin: write stamp: %w", err)
	}
	// A leftover incomplete directory (no stamp) is ours to replace: we hold
	// the lock.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("k8sbin: remove incomplete %s: %w", dir, err)
	}
	if err := os.Rename(out, dir); err != nil {
		return fmt.Errorf("k8sbin: move build into %s: %w", dir, err)
	}
	fmt.Fprintf(logw, "built kubernetes %s and etcd %s in %s into %s\n",
		KubernetesVersion, EtcdVersion, time.Since(start).Round(time.Second), dir)
	return nil
}

// findGo prefers go on PATH, else the toolchain that built this program.
func findGo() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

// buildEnv is the caller's environment minus what would make the throwaway
// module build differently from a plain checkout: a workspace file, a
// project's GOFLAGS (e.g. -mod=vendor).
func buildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOWORK=") || strings.HasPrefix(kv, "GOFLAGS=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOWORK=off", "GOFLAGS=-buildvcs=false")
}

// versionLDFlags stamps the release into the binaries so /version and
// `kubectl version` report v1.37.1 rather than v0.0.0-master.
func versionLDFlags() string {
	major, minor := "1", ""
	if parts := strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	var b strings.Builder
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean",
			pkg, KubernetesVersion, pkg, major, pkg, minor, pkg)
	}
	return strings.TrimSpace(b.String())
}

// downloadGoMod returns the path of a module's go.mod in the module cache.
func downloadGoMod(ctx context.Context, goCmd, dir, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "-json", modVersion)
	cmd.Dir = dir
	cmd.Env = buildEnv()
	out, err := cmd.Output()
	var info struct{ GoMod, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if info.Error != "" {
		return "", fmt.Errorf("k8sbin: download %s: %s", modVersion, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("k8sbin: download %s: %w", modVersion, err)
	}
	if info.GoMod == "" {
		return "", fmt.Errorf("k8sbin: download %s: go did not report its go.mod", modVersion)
	}
	return info.GoMod, nil
}

var stagingRe = regexp.MustCompile(`^\s*(?:replace\s+)?(k8s\.io/[A-Za-z0-9._-]+)\s+=>\s+\./staging/`)

// StagingModules reads a k8s.io/kubernetes go.mod and returns the modules it
// replaces with its staging directory, in file order.
func StagingModules(goModPath string) ([]string, error) {
	f, err := os.Open(goModPath)
	if err != nil {
		return nil, fmt.Errorf("k8sbin: read %s: %w", goModPath, err)
	}
	defer f.Close()
	mods, err := parseStaging(f)
	if err != nil {
		return nil, fmt.Errorf("k8sbin: %s: %w", goModPath, err)
	}
	return mods, nil
}

func parseStaging(r io.Reader) ([]string, error) {
	var mods []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if m := stagingRe.FindStringSubmatch(sc.Text()); m != nil {
			mods = append(mods, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(mods) == 0 {
		return nil, errors.New("no `k8s.io/... => ./staging/...` replace lines")
	}
	return mods, nil
}

// stagingVersion maps v1.37.1 to v0.37.1, the tag staging modules publish.
func stagingVersion() string {
	return "v0." + strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v"), ".", 2)[1]
}

func goMod(staging []string) string {
	var b strings.Builder
	b.WriteString("module zerodrop.dev/labbuild\n\ngo 1.26.0\n\n")
	fmt.Fprintf(&b, "require k8s.io/kubernetes %s\n", KubernetesVersion)
	if len(staging) > 0 {
		b.WriteString("\nreplace (\n")
		for _, m := range staging {
			fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, stagingVersion())
		}
		b.WriteString(")\n")
	}
	return b.String()
}

func toolsGo() string {
	var b strings.Builder
	b.WriteString("//go:build tools\n\n// Package tools pins the commands this throwaway module builds.\npackage tools\n\nimport (\n")
	for _, c := range kubeCommands {
		fmt.Fprintf(&b, "\t_ %q\n", c)
	}
	b.WriteString(")\n")
	return b.String()
}

// pinEtcd checks that tidy resolved the etcd server to the version the
// pinned release requires, so the binary's version is what we report.
func pinEtcd(goModPath string) error {
	raw, err := os.ReadFile(goModPath)
	if err != nil {
		return fmt.Errorf("k8sbin: read %s: %w", goModPath, err)
	}
	want := "go.etcd.io/etcd/server/v3 " + EtcdVersion
	if !strings.Contains(string(raw), want) {
		return fmt.Errorf("k8sbin: %s does not resolve %q; update EtcdVersion to what k8s.io/kubernetes %s requires",
			goModPath, want, KubernetesVersion)
	}
	return nil
}
