// Command fsx is a file exerciser in the style of xfstests' fsx: it applies a
// long, seeded, random sequence of operations to one file and checks the file
// against an in-memory model of its expected contents after every operation.
//
// It works on any path; it was written to check the agfs FUSE mount, and is
// validated on ext4 and tmpfs.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

const help = `NAME
    fsx - file system exerciser: random operations on one file, each checked
    against an in-memory model

SYNOPSIS
    fsx [-N ops] [-S seed] [-l maxlen] [-o maxoplen] [--no-mmap] [--no-punch]
        [--no-zero] [--no-fsync] [--fsync-check] [-q] FILE

DESCRIPTION
    fsx creates (or truncates) FILE and applies a random sequence of
    operations to it. It keeps a model of what the file must contain (its
    bytes and its size) and after every operation checks the file against it:
    by default the file's size (fstat) and its whole contents (pread) after
    every operation, besides what each operation checks itself.

    The sequence depends only on the seed, the options and which operations
    the filesystem supports, so a failure is reproduced by running fsx again
    with the same arguments on the same kind of filesystem.

    On the first mismatch or unexpected error fsx prints the seed, the number
    of the failing operation, a log of the last 30 operations (those touching
    the bad offset are marked with ******), and a hexdump of expected and
    actual bytes around the first differing byte. Data written by operation
    number K holds K mod 256 at even offsets, so the report can say which
    operation last wrote a bad byte. It saves the expected contents to
    FILE.fsxgood and the operation log to FILE.fsxlog, and exits 1.

    At the end it prints a summary: operations per kind, those skipped (for
    instance a map read of an empty file) and the elapsed time.

OPERATIONS
    read         pread at a random offset, possibly across or past EOF; the
                 bytes and the short count are checked
    write        pwrite at a random offset below maxlen, possibly past EOF
                 (leaving a hole)
    mapread      mmap a range inside the file, compare, munmap; when the range
                 reaches the last page, the bytes of that page past EOF must
                 read as zeros
    mapwrite     mmap a range inside the file, write, msync, munmap; never
                 past EOF, as a mapping cannot extend a file
    truncate     ftruncate to a random size up or down
    falloc       fallocate mode 0 (preallocate; extends the size)
    falloc-keep  fallocate KEEP_SIZE (the size does not change)
    punch-hole   fallocate PUNCH_HOLE|KEEP_SIZE
    zero-range   fallocate ZERO_RANGE, and zero-range-keep with KEEP_SIZE
    copy-range   copy_file_range between two ranges of the file, and
                 copy-scratch: to a scratch file FILE.fsxcopy and back
    seek         lseek SEEK_DATA or SEEK_HOLE: results must lie inside the
                 file, ENXIO at or past EOF, and what the call reports as (or
                 skips as) a hole must be zeros in the model. Holes may be
                 reported conservatively: data where the model has zeros is
                 never an error
    fsync        fsync or fdatasync (with --fsync-check, followed by a check
                 through a fresh O_DIRECT descriptor)
    reopen       close FILE and open it again
    stat         stat by path and fstat; both sizes must match the model

    A fallocate mode, copy_file_range or SEEK_DATA/SEEK_HOLE that the
    filesystem reports as unsupported (EOPNOTSUPP or ENOSYS; EXDEV too for
    copy_file_range, EINVAL for lseek) is disabled for the rest of the run
    and reported once. Any other error, EINVAL from fallocate included, is a
    failure.

EXIT STATUS
    0 every operation checked out, 1 a mismatch or an unexpected error (the
    report says which), 2 usage error or FILE could not be set up.

EXAMPLES
    fsx -N 100000 -S 7 /mnt/agfs/fsx.file
    fsx -N 0 -p 10000 --fsync-check /mnt/agfs/f    # until it fails
`

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the parsed command line.
type config struct {
	path       string
	numOps     int64 // 0: until failure
	seed       uint64
	maxLen     int64
	maxOpLen   int64
	noMmap     bool
	noPunch    bool
	noZero     bool
	noFalloc   bool
	noFsync    bool
	noCopy     bool
	noSeek     bool
	noReopen   bool
	fsyncCheck bool
	checkEvery int64
	progress   int64
	quiet      bool
	debug      bool
	injectAt   int64
	args       []string
	seedGiven  bool // -S was given, and not as 0
}

type usageError struct{ error }

// run parses args, runs the exerciser and returns the exit status. Reports
// and the summary go to stdout, usage and setup errors to stderr.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, done, err := parseArgs(args, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "fsx: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "Try 'fsx --help' for more information.")
		}
		return exitUsage
	}
	if done {
		return exitOK
	}
	f, err := newFsx(cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "fsx: %v\n", err)
		return exitUsage
	}
	return f.run()
}

func parseArgs(args []string, stdout io.Writer) (cfg config, done bool, err error) {
	fs := pflag.NewFlagSet("fsx", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	showHelp := fs.BoolP("help", "h", false, "show this help and exit")
	fs.Int64VarP(&cfg.numOps, "ops", "N", 10000, "do `N` operations; 0 runs until a failure")
	seed := fs.Uint64P("seed", "S", 1, "`SEED` of the random sequence; 0 picks one from the clock (and prints it)")
	maxLen := fs.StringP("maxlen", "l", "256K", "maximum file size, `LEN` bytes (K, M, G suffixes)")
	maxOpLen := fs.StringP("maxoplen", "o", "64K", "maximum size of one operation, `LEN` bytes (K, M, G suffixes)")
	fs.BoolVar(&cfg.noMmap, "no-mmap", false, "no mapread or mapwrite")
	fs.BoolVar(&cfg.noPunch, "no-punch", false, "no fallocate PUNCH_HOLE")
	fs.BoolVar(&cfg.noZero, "no-zero", false, "no fallocate ZERO_RANGE")
	fs.BoolVar(&cfg.noFalloc, "no-falloc", false, "no fallocate mode 0 or KEEP_SIZE (preallocation)")
	fs.BoolVar(&cfg.noFsync, "no-fsync", false, "no fsync or fdatasync")
	fs.BoolVar(&cfg.noCopy, "no-copy-range", false, "no copy_file_range")
	fs.BoolVar(&cfg.noSeek, "no-seek-data", false, "no lseek SEEK_DATA or SEEK_HOLE")
	fs.BoolVar(&cfg.noReopen, "no-reopen", false, "never close and reopen FILE")
	fs.BoolVar(&cfg.fsyncCheck, "fsync-check", false, "after every fsync, read FILE through a new O_DIRECT descriptor (buffered where O_DIRECT is refused) and check it")
	fs.Int64Var(&cfg.checkEvery, "check-every", 1, "read and compare the whole file every `N` operations; in between only the range each operation touched is read back (the size is checked after every operation)")
	fs.Int64VarP(&cfg.progress, "progress", "p", 0, "print a progress line every `N` operations")
	fs.BoolVarP(&cfg.debug, "debug", "d", false, "print every operation as it is done")
	fs.BoolVarP(&cfg.quiet, "quiet", "q", false, "print only failures and a one-line summary")
	fs.Int64Var(&cfg.injectAt, "inject-corruption-at", 0, "for testing the checker: after operation `N`, change one byte of FILE (or its size, when empty) behind fsx's back, which must then be reported")
	usage := func() {
		fmt.Fprint(stdout, help)
		fmt.Fprintf(stdout, "\nOPTIONS\n%s", fs.FlagUsagesWrapped(100))
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage()
			return cfg, true, nil
		}
		return cfg, false, usageError{err}
	}
	if *showHelp {
		usage()
		return cfg, true, nil
	}
	if fs.NArg() != 1 {
		return cfg, false, usageError{fmt.Errorf("expected one FILE, got %d arguments", fs.NArg())}
	}
	cfg.path = fs.Arg(0)
	cfg.args = args
	if cfg.maxLen, err = parseSize(*maxLen); err != nil {
		return cfg, false, usageError{fmt.Errorf("--maxlen: %w", err)}
	}
	if cfg.maxOpLen, err = parseSize(*maxOpLen); err != nil {
		return cfg, false, usageError{fmt.Errorf("--maxoplen: %w", err)}
	}
	switch {
	case cfg.maxLen < 1 || cfg.maxLen > 1<<32:
		return cfg, false, usageError{errors.New("--maxlen must be from 1 to 4G")}
	case cfg.maxOpLen < 1:
		return cfg, false, usageError{errors.New("--maxoplen must be at least 1")}
	case cfg.numOps < 0:
		return cfg, false, usageError{errors.New("--ops must not be negative")}
	case cfg.checkEvery < 1:
		return cfg, false, usageError{errors.New("--check-every must be at least 1")}
	case cfg.progress < 0 || cfg.injectAt < 0:
		return cfg, false, usageError{errors.New("--progress and --inject-corruption-at must not be negative")}
	}
	cfg.maxOpLen = min(cfg.maxOpLen, cfg.maxLen)
	cfg.seed = *seed
	cfg.seedGiven = fs.Changed("seed") && *seed != 0
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano())&(1<<48-1) | 1
	}
	return cfg, false, nil
}

// parseSize parses a byte count with an optional K, M or G suffix (powers of
// 1024).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "B")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		}
		if shift != 0 {
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseInt(t, 0, 64)
	if err != nil || v < 0 || v > (1<<40)>>shift {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return v << shift, nil
}
