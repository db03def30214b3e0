package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// volumeFile is one file of a volume's payload.
type volumeFile struct {
	data []byte
	mode os.FileMode
}

// dataDirName is the symlink that names the current payload directory.
const dataDirName = "..data"

// writeAtomic writes payload (relative path -> file) into dir as the
// kubelet's AtomicWriter does (pkg/volume/util/atomic_writer.go): the files
// go into a new timestamped directory `..2026_12_07_09_30_00.NNNN`, then the
// `..data` symlink is pointed at it by renaming a fresh `..data_tmp`
// symlink over it (atomic), the user-visible top-level names are symlinks
// into `..data`, names no longer in the payload are removed, and the
// previous timestamped directory is removed last. A reader therefore sees
// either the whole old payload or the whole new one. Nothing is written when
// the payload equals what is there.
func writeAtomic(dir string, payload map[string]volumeFile) error {
	for p := range payload {
		if err := validPayloadPath(p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dataDir := filepath.Join(dir, dataDirName)
	oldTS, err := os.Readlink(dataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("atomic write %s: %w", dir, err)
	}
	oldVisible := map[string]bool{}
	if oldTS != "" {
		if same, err := payloadIs(filepath.Join(dir, oldTS), payload); err == nil && same {
			return nil
		}
		_ = filepath.Walk(filepath.Join(dir, oldTS), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				rel, _ := filepath.Rel(filepath.Join(dir, oldTS), p)
				oldVisible[topName(rel)] = true
			}
			return nil
		})
	}
	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("atomic write %s: %w", dir, err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return err
	}
	for _, rel := range sortedKeys(payload) {
		f := payload[rel]
		p := filepath.Join(tsDir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil { // WriteFile's mode is subject to the umask
			return err
		}
	}
	visible := map[string]bool{}
	for rel := range payload {
		visible[topName(rel)] = true
	}
	for name := range visible {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(dataDirName, name), link); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, dataDirName+"_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(tsDir), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return fmt.Errorf("atomic write %s: swap %s: %w", dir, dataDirName, err)
	}
	for name := range oldVisible {
		if !visible[name] {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
	if oldTS != "" {
		return os.RemoveAll(filepath.Join(dir, oldTS))
	}
	return nil
}

// validPayloadPath rejects what the AtomicWriter rejects: absolute paths,
// `..` elements and names starting with `..` (reserved for its own use).
func validPayloadPath(p string) error {
	switch {
	case p == "":
		return errors.New("volume payload: empty path")
	case filepath.IsAbs(p):
		return fmt.Errorf("volume payload: path %q is absolute", p)
	case strings.HasPrefix(p, ".."):
		return fmt.Errorf("volume payload: path %q starts with '..'", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("volume payload: path %q contains '..'", p)
		}
	}
	return nil
}

func topName(rel string) string {
	name, _, _ := strings.Cut(rel, "/")
	return name
}

// payloadIs reports whether the directory holds exactly payload.
func payloadIs(dir string, payload map[string]volumeFile) (bool, error) {
	n := 0
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		f, ok := payload[rel]
		if !ok || fi.Mode().Perm() != f.mode {
			return errDiffers
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(data, f.data) {
			return errDiffers
		}
		n++
		return nil
	})
	if errors.Is(err, errDiffers) {
		return false, nil
	}
	return err == nil && n == len(payload), err
}

var errDiffers = errors.New("differs")
