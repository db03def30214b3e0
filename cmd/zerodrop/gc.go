package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
)

// smallInputBytes is the input size up to which check raises the garbage
// collector's target. Below it (about 1,700 of the bench generator's
// objects) the run is mostly start-up and decoding, the heap stays some
// tens of MB at most, and the collections GOGC=100 runs in it cost about
// 13 % of the CPU time of a 50-object check (bench/startup). Above it the
// default stays: at 10,000 objects GOGC=100 costs no more CPU than 400,
// with 40 MiB less memory.
const smallInputBytes = 1 << 20

// gcForSmallInput sets GOGC=400 for the rest of the run when the files and
// directories to check add up to at most smallInputBytes and GOGC is not
// set in the environment (which always wins).
func gcForSmallInput(paths []string) {
	if os.Getenv("GOGC") == "" && smallInput(paths) {
		debug.SetGCPercent(400)
	}
}

// smallInput reports whether paths (files, directories) add up to at most
// smallInputBytes; standard input ("-"), a path it cannot read and no
// paths at all count as large.
func smallInput(paths []string) bool {
	if len(paths) == 0 {
		return false
	}
	var total int64
	for _, p := range paths {
		if p == "-" {
			return false
		}
		err := filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				info, err := d.Info()
				if err != nil {
					return err
				}
				total += info.Size()
			}
			if total > smallInputBytes {
				return fs.SkipAll
			}
			return nil
		})
		if err != nil || total > smallInputBytes {
			return false
		}
	}
	return true
}
