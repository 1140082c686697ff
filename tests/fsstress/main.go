// Command fsstress loads a filesystem in the manner of xfstests' fsstress:
// several workers at once apply long, seeded, random sequences of
// namespace, data and attribute operations to small overlapping trees of
// names, so that creates, renames, links, unlinks, truncates and writes of
// the same names collide all the time. It checks no contents: what it
// looks for is an error no POSIX filesystem may give for these calls (EIO,
// EROFS, ENOTCONN, EUCLEAN, ...) and an operation that never returns. The
// filesystem's own checker, run afterwards, finds the rest.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

const help = `NAME
    fsstress - many workers at once, random operations on shared names

SYNOPSIS
    fsstress [-p PROCS] [-n OPS] [-s SEED] [--stall SECS] [-c] [-v] DIR

DESCRIPTION
    fsstress starts PROCS workers in DIR. Worker W works in DIR/pW and in
    DIR/shared, where every worker works: each operation picks its names
    from a small set (directories d0-d2 up to two deep, leaves f0-f7), so
    that the workers keep running into each other's files. Each worker's
    sequence depends only on the seed and the worker's number; the
    interleaving of the workers does not, so a run is a stress, not a
    reproducible trace.

    Every operation may fail with the errors its arguments can cause when
    other workers change the names under it (ENOENT, EEXIST, ENOTDIR,
    EISDIR, ENOTEMPTY, EINVAL, ELOOP, EMLINK, ENODATA, ENXIO, EPIPE,
    EAGAIN, EPERM, ESPIPE, ENOSPC); any other error is a failure, but for a
    fallocate mode that the filesystem does not support (EOPNOTSUPP):
    that mode is left out from then on, and the summary names it. So is an
    operation that has not returned after --stall seconds: fsstress then
    names it and exits, leaving the filesystem as it is for a look.

    At the end fsstress prints two lines: workers, operations and how many
    failed with an expected error; then how many failed with each. With -c
    it then removes everything it made in DIR.

OPERATIONS
    creat write read truncate falloc (mode 0, KEEP_SIZE, PUNCH_HOLE,
    ZERO_RANGE) mkdir rmdir unlink rename (plain, RENAME_NOREPLACE,
    RENAME_EXCHANGE) link symlink readlink mknod (fifo) stat chmod chown
    utimes setxattr getxattr listxattr removexattr readdir fsync fdatasync
    copy_file_range syncfs, and open-unlink-write-close (a file unlinked
    while open).

EXIT STATUS
    0 no unexpected error, 1 an unexpected error or a stalled operation (the
    report says which), 2 usage error or DIR could not be set up.

EXAMPLES
    fsstress -p 8 -n 20000 -s 1 /mnt/agfs/stress
`

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type config struct {
	dir     string
	procs   int
	ops     int
	seed    uint64
	stall   time.Duration
	clean   bool
	verbose bool
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, done, err := parseArgs(args, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "fsstress: %v\nTry 'fsstress --help' for more information.\n", err)
		return exitUsage
	}
	if done {
		return exitOK
	}
	r := newRun(cfg, stdout, operations)
	for w := -1; w < cfg.procs; w++ {
		if err := os.MkdirAll(r.top(w), 0o755); err != nil {
			fmt.Fprintf(stderr, "fsstress: %v\n", err)
			return exitUsage
		}
	}
	if !r.stress() {
		return exitFailure
	}
	if cfg.clean {
		if err := r.clean(); err != nil {
			fmt.Fprintf(stdout, "fsstress: FAILURE: cleaning up: %v\n", err)
			return exitFailure
		}
	}
	return exitOK
}

func parseArgs(args []string, stdout io.Writer) (cfg config, done bool, err error) {
	fs := pflag.NewFlagSet("fsstress", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	showHelp := fs.BoolP("help", "h", false, "show this help and exit")
	fs.IntVarP(&cfg.procs, "procs", "p", 4, "run `N` workers at once")
	fs.IntVarP(&cfg.ops, "ops", "n", 10000, "operations per worker, `N`")
	fs.Uint64VarP(&cfg.seed, "seed", "s", 1, "`SEED` of the workers' random sequences")
	stall := fs.Int("stall", 120, "fail when one operation takes `SECS` seconds")
	fs.BoolVarP(&cfg.clean, "clean", "c", false, "remove what was made in DIR at the end")
	fs.BoolVarP(&cfg.verbose, "verbose", "v", false, "print every operation and its result")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			*showHelp = true
		} else {
			return cfg, false, err
		}
	}
	if *showHelp {
		fmt.Fprintf(stdout, "%s\nOPTIONS\n%s", help, fs.FlagUsagesWrapped(100))
		return cfg, true, nil
	}
	switch {
	case fs.NArg() != 1:
		return cfg, false, fmt.Errorf("expected one DIR, got %d arguments", fs.NArg())
	case cfg.procs < 1 || cfg.procs > 1000:
		return cfg, false, fmt.Errorf("--procs %d: want 1 to 1000", cfg.procs)
	case cfg.ops < 0:
		return cfg, false, fmt.Errorf("--ops %d: want 0 or more", cfg.ops)
	case *stall < 1:
		return cfg, false, fmt.Errorf("--stall %d: want 1 second or more", *stall)
	}
	cfg.dir, cfg.stall = fs.Arg(0), time.Duration(*stall)*time.Second
	return cfg, false, nil
}

// stressRun is one run: its workers, what they are doing, and the counts.
type stressRun struct {
	cfg        config
	operations []operation
	weight     int // of all operations
	out        io.Writer
	mu         sync.Mutex // one report at a time on out

	failed atomic.Bool
	ops    atomic.Int64
	errs   [len(expected)]atomic.Int64 // by expected error

	unsupported atomic.Uint32              // bit i: fallocModes[i] answered EOPNOTSUPP
	doing       []atomic.Pointer[inFlight] // per worker: the operation under way
}

// inFlight is an operation under way, for the stall report.
type inFlight struct {
	what  string
	since time.Time
}

func newRun(cfg config, out io.Writer, ops []operation) *stressRun {
	r := &stressRun{cfg: cfg, operations: ops, out: out, doing: make([]atomic.Pointer[inFlight], cfg.procs)}
	for _, o := range ops {
		r.weight += o.weight
	}
	return r
}

// stress runs the workers and watches for a stall; it reports whether
// every operation ended as it may.
func (r *stressRun) stress() bool {
	start := time.Now()
	var wg sync.WaitGroup
	for w := range r.cfg.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			newWorker(r, w).loop()
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if r.failed.Load() {
				return false
			}
			r.summary(time.Since(start))
			return true
		case now := <-tick.C:
			for w := range r.doing {
				if op := r.doing[w].Load(); op != nil && now.Sub(op.since) > r.cfg.stall {
					// The stuck worker cannot be stopped: report and
					// leave, with the filesystem as it is.
					r.failf("worker %d: %s has not returned for %v", w, op.what, now.Sub(op.since).Round(time.Second))
					return false
				}
			}
		}
	}
}

// summary prints the counts of a run that ended well.
func (r *stressRun) summary(took time.Duration) {
	var n int64
	var each []string
	for i, e := range expected {
		if c := r.errs[i].Load(); c > 0 {
			n += c
			each = append(each, fmt.Sprintf("%s %d", unix.ErrnoName(e), c))
		}
	}
	fmt.Fprintf(r.out, "fsstress: %d workers, %d operations, %d with an expected error, %.1fs\n",
		r.cfg.procs, r.ops.Load(), n, took.Seconds())
	fmt.Fprintf(r.out, "expected errors: %s\n", strings.Join(each, ", "))
	for i, m := range fallocModes {
		if r.unsupported.Load()&(1<<i) != 0 {
			fmt.Fprintf(r.out, "not supported: fallocate mode %#x\n", m)
		}
	}
}

// count counts an operation that failed with expected error e.
func (r *stressRun) count(e syscall.Errno) {
	r.errs[slices.Index(expected[:], e)].Add(1)
}

func (r *stressRun) failf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed.Store(true)
	fmt.Fprintf(r.out, "fsstress: FAILURE: "+format+"\n", a...)
}

func (r *stressRun) logf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, format+"\n", a...)
}

// clean removes every tree the workers made.
func (r *stressRun) clean() error {
	for w := -1; w < r.cfg.procs; w++ {
		if err := os.RemoveAll(r.top(w)); err != nil {
			return err
		}
	}
	return nil
}

// top is worker w's own tree, or the shared one for w = -1.
func (r *stressRun) top(w int) string {
	if w < 0 {
		return filepath.Join(r.cfg.dir, "shared")
	}
	return filepath.Join(r.cfg.dir, fmt.Sprintf("p%d", w))
}
