package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"zerodrop.dev/zerodrop/internal/check/load"
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
// set in the environment (which always wins). It reports whether it did.
func gcForSmallInput(paths []string) bool {
	if os.Getenv("GOGC") == "" && smallInput(paths) {
		debug.SetGCPercent(400)
		return true
	}
	return false
}

// hugePageGCPercent is the garbage collector's target for large inputs
// whose heap is on huge pages (hugepages.go). Objects keep no YAML trees (a
// finding's line comes from parsing the object's text again), so the live
// heap is small (about 30 MB for 10,000 objects). On 4 KiB pages GOGC=100
// cost no more CPU than 50, 75, 150, 200 or 400 did, with less memory:
// every MB the heap grew by was 256 page faults. On huge pages 150 took
// about 9 % off the CPU time of the bench's 10,000 objects (A/B over 15
// and 9 runs: 427 against 388 ms block style, 422 against 380 ms flow)
// for more memory at the peak (2 to 20 MiB more RSS between runs, 93 to
// 109 MiB, against kube-score's 140 to 150); 200 was no better than 150.
const hugePageGCPercent = 150

// gcForHugePageHeap sets GOGC=hugePageGCPercent for the rest of the run
// unless GOGC is set in the environment (which always wins). It reports
// whether it did.
func gcForHugePageHeap() bool {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(hugePageGCPercent)
		return true
	}
	return false
}

// releaseObjects drops the decoded objects once the analysis is done with
// them (findings and explanations keep their own values) and
// collects them at once. Left to the pacer, the collection came only after
// the report had grown the heap on top of them: at 10,000 objects the peak
// heap was 67 MB, with the explicit collection (about 2 ms of CPU, its mark
// sees only the report's 10 MB) it is 58 MB, and the report reuses the
// freed pages instead of faulting in new ones.
func releaseObjects(r *load.Result) {
	r.Objects = nil
	runtime.GC()
}

// smallInput reports whether paths (files, directories) add up to at most
// smallInputBytes; standard input ("-"), a path it cannot read and no
// paths at all count as large.
func smallInput(paths []string) bool {
	n, ok := inputBytes(paths, smallInputBytes)
	return ok && n <= smallInputBytes
}

// inputBytes adds up the sizes of the files that paths name or hold,
// stopping once the total passes limit. It is not ok for standard input
// ("-"), a path it cannot read and no paths at all: their size is unknown.
func inputBytes(paths []string, limit int64) (total int64, ok bool) {
	if len(paths) == 0 {
		return 0, false
	}
	for _, p := range paths {
		if p == "-" {
			return 0, false
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
			if total > limit {
				return fs.SkipAll
			}
			return nil
		})
		if err != nil {
			return 0, false
		}
		if total > limit {
			return total, true
		}
	}
	return total, true
}
