package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"
)

type opKind int

const (
	opRead opKind = iota
	opWrite
	opMapRead
	opMapWrite
	opTruncate
	opFalloc
	opFallocKeep
	opPunch
	opZero
	opZeroKeep
	opCopy
	opCopyScratch
	opSeek
	opFsync
	opReopen
	opStat
	numOps

	opInject = numOps // only in the log
)

var opNames = [numOps + 1]string{
	opRead:        "read",
	opWrite:       "write",
	opMapRead:     "mapread",
	opMapWrite:    "mapwrite",
	opTruncate:    "truncate",
	opFalloc:      "falloc",
	opFallocKeep:  "falloc-keep",
	opPunch:       "punch-hole",
	opZero:        "zero-range",
	opZeroKeep:    "zero-range-keep",
	opCopy:        "copy-range",
	opCopyScratch: "copy-scratch",
	opSeek:        "seek",
	opFsync:       "fsync",
	opReopen:      "reopen",
	opStat:        "stat",
	opInject:      "inject",
}

// opWeights is how often each operation is chosen, relative to the others.
var opWeights = [numOps]int{
	opRead:        10,
	opWrite:       10,
	opMapRead:     5,
	opMapWrite:    5,
	opTruncate:    4,
	opFalloc:      2,
	opFallocKeep:  2,
	opPunch:       3,
	opZero:        2,
	opZeroKeep:    2,
	opCopy:        2,
	opCopyScratch: 2,
	opSeek:        4,
	opFsync:       2,
	opReopen:      1,
	opStat:        1,
}

// failure is a mismatch or an unexpected error. When it concerns data,
// expected and actual hold the bytes from file offset base on.
type failure struct {
	msg      string
	base     int64
	expected []byte
	actual   []byte
	hasData  bool
}

func (e *failure) Error() string { return e.msg }

func failf(format string, a ...any) error { return &failure{msg: fmt.Sprintf(format, a...)} }

// dataFailure builds a failure carrying copies of the compared bytes.
func dataFailure(msg string, base int64, expected, actual []byte) error {
	return &failure{msg: msg, base: base, expected: bytes.Clone(expected), actual: bytes.Clone(actual), hasData: true}
}

// unsupported is returned by an operation the filesystem does not support.
type unsupported struct {
	what  string
	errno error
}

func (e *unsupported) Error() string { return fmt.Sprintf("%s: %v", e.what, e.errno) }

type logEntry struct {
	op      int64
	kind    opKind
	off, n  int64 // the range read or changed
	dst     int64 // copy destination
	oldSize int64
	newSize int64
	text    string // the operation as printed
}

const logKeep = 30

type fsx struct {
	cfg      config
	out      io.Writer
	rng      *rand.Rand
	pageSize int64

	fd        int
	scratchFd int

	good    []byte // the model: expected contents; zero past size
	size    int64  // the model: expected size
	orig    []byte // random bytes mixed into written data
	buf     []byte // read buffer, maxLen+1
	wbuf    []byte // write buffer
	zeros   []byte
	dioBuf  []byte // page-aligned buffer for O_DIRECT reads
	dioSize int64  // O_DIRECT alignment

	op        int64
	enabled   [numOps]bool
	disabled  map[opKind]string // why an enabled-by-flags op was turned off
	done      [numOps]int64
	skipped   [numOps]int64
	log       []logEntry // ring of the last logKeep entries
	logAll    int64
	cur       *logEntry
	touchOff  int64 // range the current op changed, for the partial check
	touchLen  int64
	direct    int // fsync-check mode: 0 untried, 1 O_DIRECT, 2 buffered
	directWhy string
	fsyncChk  int64
}

const (
	directUntried = iota
	directOK
	directNo
)

func newFsx(cfg config, out io.Writer) (*fsx, error) {
	f := &fsx{
		cfg:       cfg,
		out:       out,
		rng:       rand.New(rand.NewPCG(cfg.seed, 0x66737821)),
		pageSize:  int64(os.Getpagesize()),
		fd:        -1,
		scratchFd: -1,
		good:      make([]byte, cfg.maxLen),
		orig:      make([]byte, cfg.maxLen),
		buf:       make([]byte, cfg.maxLen+1),
		wbuf:      make([]byte, cfg.maxOpLen),
		zeros:     make([]byte, max(cfg.maxLen+1, int64(os.Getpagesize()))),
		disabled:  map[opKind]string{},
		log:       make([]logEntry, 0, logKeep),
	}
	or := rand.New(rand.NewPCG(cfg.seed, 0x6f726967))
	for i := range f.orig {
		f.orig[i] = byte(or.Uint32())
	}
	for k := range numOps {
		f.enabled[k] = true
	}
	off := func(b bool, ks ...opKind) {
		if b {
			for _, k := range ks {
				f.enabled[k] = false
			}
		}
	}
	off(cfg.noMmap, opMapRead, opMapWrite)
	off(cfg.noPunch, opPunch)
	off(cfg.noZero, opZero, opZeroKeep)
	off(cfg.noFalloc, opFalloc, opFallocKeep)
	off(cfg.noFsync, opFsync)
	off(cfg.noCopy, opCopy, opCopyScratch)
	off(cfg.noSeek, opSeek)
	off(cfg.noReopen, opReopen)

	for _, ext := range []string{".fsxgood", ".fsxlog"} {
		if err := os.Remove(cfg.path + ext); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	fd, err := openRetry(cfg.path, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.path, err)
	}
	f.fd = fd
	return f, nil
}

// run does the operations and returns the exit status.
func (f *fsx) run() int {
	defer f.cleanup()
	if !f.cfg.quiet {
		n := "until a failure"
		if f.cfg.numOps > 0 {
			n = fmt.Sprint(f.cfg.numOps)
		}
		fmt.Fprintf(f.out, "fsx: %s: seed %d, %s ops, maxlen %#x, maxoplen %#x\n",
			f.cfg.path, f.cfg.seed, n, f.cfg.maxLen, f.cfg.maxOpLen)
	}
	start := time.Now()
	for f.op = 1; f.cfg.numOps == 0 || f.op <= f.cfg.numOps; f.op++ {
		if err := f.step(); err != nil {
			f.report(err)
			return exitFailure
		}
		if f.cfg.progress > 0 && f.op%f.cfg.progress == 0 && !f.cfg.quiet {
			fmt.Fprintf(f.out, "fsx: %d ops done, size %#x, %.1fs\n", f.op, f.size, time.Since(start).Seconds())
		}
	}
	f.op--
	// A last full check, whatever --check-every is.
	if err := f.checkAll("the final check"); err != nil {
		f.report(err)
		return exitFailure
	}
	f.summary(time.Since(start))
	return exitOK
}

func (f *fsx) cleanup() {
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
	if f.scratchFd >= 0 {
		unix.Close(f.scratchFd)
		f.scratchFd = -1
		os.Remove(f.scratchPath())
	}
	if f.dioBuf != nil {
		unix.Munmap(f.dioBuf)
		f.dioBuf = nil
	}
}

func (f *fsx) scratchPath() string { return f.cfg.path + ".fsxcopy" }

// step chooses, does and checks one operation.
func (f *fsx) step() error {
	k := f.choose()
	f.cur = nil
	f.touchOff, f.touchLen = 0, 0
	err := f.do(k)
	var u *unsupported
	if errors.As(err, &u) {
		f.enabled[k] = false
		f.disabled[k] = u.Error()
		if f.cur != nil {
			f.cur.text += " -> unsupported"
			f.done[k]--
		}
		if !f.cfg.quiet {
			fmt.Fprintf(f.out, "fsx: op %d: %s is not supported (%v): no more %s\n", f.op, u.what, u.errno, opNames[k])
		}
		err = nil
	}
	if f.cfg.debug && f.cur != nil {
		fmt.Fprintln(f.out, f.cur.line())
	}
	if err != nil {
		return err
	}
	if f.op == f.cfg.injectAt {
		if err := f.injectCorruption(); err != nil {
			return err
		}
	}
	return f.check(k)
}

func (f *fsx) choose() opKind {
	total := 0
	for k := range numOps {
		if f.enabled[k] {
			total += opWeights[k]
		}
	}
	r := f.rng.IntN(total)
	for k := range numOps {
		if !f.enabled[k] {
			continue
		}
		if r < opWeights[k] {
			return k
		}
		r -= opWeights[k]
	}
	panic("unreachable")
}

func (f *fsx) do(k opKind) error {
	switch k {
	case opRead:
		return f.doRead()
	case opWrite:
		return f.doWrite()
	case opMapRead:
		return f.doMapRead()
	case opMapWrite:
		return f.doMapWrite()
	case opTruncate:
		return f.doTruncate()
	case opFalloc, opFallocKeep, opPunch, opZero, opZeroKeep:
		return f.doFallocate(k)
	case opCopy:
		return f.doCopy()
	case opCopyScratch:
		return f.doCopyScratch()
	case opSeek:
		return f.doSeek()
	case opFsync:
		return f.doFsync()
	case opReopen:
		return f.doReopen()
	case opStat:
		return f.doStat()
	}
	panic("unknown op")
}

// logOp records the current operation; the entry's text can be amended.
func (f *fsx) logOp(k opKind, off, n int64, format string, a ...any) *logEntry {
	e := logEntry{op: f.op, kind: k, off: off, n: n, dst: -1, oldSize: f.size, newSize: f.size,
		text: fmt.Sprintf(format, a...)}
	i := f.logAll % logKeep
	if len(f.log) < logKeep {
		f.log = append(f.log, e)
	} else {
		f.log[i] = e
	}
	p := &f.log[i]
	f.logAll++
	f.cur = p
	if k != opInject {
		f.done[k]++
	}
	return p
}

func (f *fsx) skip(k opKind, why string) error {
	f.logOp(k, -1, 0, "SKIPPED %s (%s)", opNames[k], why)
	f.done[k]--
	f.skipped[k]++
	return nil
}

func (f *fsx) touch(off, n int64) { f.touchOff, f.touchLen = off, n }

// randRange picks an offset below offLimit and a length from 1 to maxoplen,
// clipped so the range ends at or before endLimit. A quarter of the ranges
// are page-aligned, to exercise whole-block paths.
func (f *fsx) randRange(offLimit, endLimit int64) (off, n int64) {
	off = f.rng.Int64N(max(offLimit, 1))
	n = 1 + f.rng.Int64N(f.cfg.maxOpLen)
	if f.rng.IntN(4) == 0 {
		off &^= f.pageSize - 1
		if n >= f.pageSize {
			n &^= f.pageSize - 1
		}
	}
	if off+n > endLimit {
		n = endLimit - off
	}
	return off, n
}

// fillData fills wbuf with the data operation f.op writes at off: the
// operation number mod 256 at even offsets, that plus a random byte at odd
// ones, so a stale byte can be traced to the operation that wrote it.
func (f *fsx) fillData(off, n int64) []byte {
	d := f.wbuf[:n]
	v := byte(f.op)
	for i := range d {
		o := off + int64(i)
		if o&1 == 0 {
			d[i] = v
		} else {
			d[i] = v + f.orig[o]
		}
	}
	return d
}

func hex(x int64) string { return fmt.Sprintf("%#x", x) }

func rangeText(off, n int64) string {
	return fmt.Sprintf("%#x thru %#x\t(%#x bytes)", off, off+n-1, n)
}

// eofNote says where a range lies relative to the model's EOF.
func (f *fsx) eofNote(off, n int64) string {
	switch {
	case off > f.size:
		return " HOLE"
	case off+n > f.size:
		return " EXTEND"
	}
	return ""
}

func (f *fsx) doRead() error {
	off, n := f.randRange(min(f.size+f.pageSize, f.cfg.maxLen), f.cfg.maxLen)
	note := ""
	if off+n > f.size {
		note = " (past EOF)"
	}
	f.logOp(opRead, off, n, "READ     %s%s", rangeText(off, n), note)
	got, err := preadFull(f.fd, f.buf[:n], off)
	if err != nil {
		return failf("pread %s: %v", rangeText(off, n), err)
	}
	want := f.good[min(off, f.size):min(off+n, f.size)]
	if int64(got) != int64(len(want)) {
		return dataFailure(fmt.Sprintf("pread of %s returned %#x bytes, expected %#x (file size %#x)",
			rangeText(off, n), got, len(want), f.size), off, want, f.buf[:got])
	}
	if !bytes.Equal(want, f.buf[:got]) {
		return dataFailure(fmt.Sprintf("data read by pread of %s differ from the model", rangeText(off, n)),
			off, want, f.buf[:got])
	}
	return nil
}

func (f *fsx) doWrite() error {
	off, n := f.randRange(f.cfg.maxLen, f.cfg.maxLen)
	f.logOp(opWrite, off, n, "WRITE    %s%s", rangeText(off, n), f.eofNote(off, n))
	d := f.fillData(off, n)
	if err := pwriteFull(f.fd, d, off); err != nil {
		return failf("pwrite %s: %v", rangeText(off, n), err)
	}
	copy(f.good[off:], d)
	f.size = max(f.size, off+n)
	f.cur.newSize = f.size
	f.touch(off, n)
	return nil
}

// mapRange maps the pages holding [off, off+n) of the file (extended to
// mapEnd) and calls fn with the mapping and the range's index in it. A fault
// (SIGBUS) while fn runs becomes a failure.
func (f *fsx) mapRange(off, mapEnd int64, prot int, fn func(m []byte, base int64) error) (err error) {
	pg := off &^ (f.pageSize - 1)
	m, err := mmapRetry(f.fd, pg, int(mapEnd-pg), prot, unix.MAP_SHARED)
	if err != nil {
		return failf("mmap %#x thru %#x: %v", pg, mapEnd-1, err)
	}
	defer func() {
		if e := unix.Munmap(m); e != nil && err == nil {
			err = failf("munmap: %v", e)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = failf("fault accessing the mapping of %#x thru %#x (file size %#x): %v", pg, mapEnd-1, f.size, r)
		}
	}()
	return fn(m, off-pg)
}

func (f *fsx) doMapRead() error {
	if f.size == 0 {
		return f.skip(opMapRead, "empty file")
	}
	off, n := f.randRange(f.size, f.size)
	mapEnd := off + n
	lastPage := f.size &^ (f.pageSize - 1)
	eofCheck := f.size%f.pageSize != 0 && mapEnd > lastPage
	note := ""
	if eofCheck {
		mapEnd = lastPage + f.pageSize
		note = " (+EOF page)"
	}
	f.logOp(opMapRead, off, n, "MAPREAD  %s%s", rangeText(off, n), note)
	return f.mapRange(off, mapEnd, unix.PROT_READ, func(m []byte, i int64) error {
		got := f.buf[:n]
		copy(got, m[i:i+n])
		if want := f.good[off : off+n]; !bytes.Equal(want, got) {
			return dataFailure(fmt.Sprintf("data read through mmap of %s differ from the model", rangeText(off, n)),
				off, want, got)
		}
		if eofCheck {
			pg := off - i
			tail := m[f.size-pg:]
			if !bytes.Equal(tail, f.zeros[:len(tail)]) {
				return dataFailure(fmt.Sprintf("the last page mapped past EOF %#x is not zero-filled", f.size),
					f.size, f.zeros[:len(tail)], tail)
			}
		}
		return nil
	})
}

func (f *fsx) doMapWrite() error {
	if f.size == 0 {
		return f.skip(opMapWrite, "empty file")
	}
	off, n := f.randRange(f.size, f.size)
	f.logOp(opMapWrite, off, n, "MAPWRITE %s", rangeText(off, n))
	d := f.fillData(off, n)
	err := f.mapRange(off, off+n, unix.PROT_READ|unix.PROT_WRITE, func(m []byte, i int64) error {
		copy(m[i:i+n], d)
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			return failf("msync: %v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	copy(f.good[off:], d)
	f.touch(off, n)
	return nil
}

func (f *fsx) doTruncate() error {
	ns := f.rng.Int64N(f.cfg.maxLen + 1)
	if f.rng.IntN(4) == 0 {
		ns &^= f.pageSize - 1
	}
	dir := "UP  "
	if ns < f.size {
		dir = "DOWN"
	}
	e := f.logOp(opTruncate, min(ns, f.size), max(ns, f.size)-min(ns, f.size),
		"TRUNCATE %s from %#x to %#x", dir, f.size, ns)
	if err := retry(func() error { return unix.Ftruncate(f.fd, ns) }); err != nil {
		return failf("ftruncate to %#x: %v", ns, err)
	}
	if ns < f.size {
		clear(f.good[ns:f.size])
	}
	f.touch(min(ns, f.size), max(ns, f.size)-min(ns, f.size)+1)
	f.size = ns
	e.newSize = ns
	return nil
}

var fallocModes = map[opKind]struct {
	mode uint32
	name string
}{
	opFalloc:     {0, "FALLOC"},
	opFallocKeep: {unix.FALLOC_FL_KEEP_SIZE, "FALLOC"},
	opPunch:      {unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, "PUNCH"},
	opZero:       {unix.FALLOC_FL_ZERO_RANGE, "ZERO"},
	opZeroKeep:   {unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, "ZERO"},
}

var fallocModeNames = map[opKind]string{
	opFalloc:     "fallocate mode 0",
	opFallocKeep: "fallocate(KEEP_SIZE)",
	opPunch:      "fallocate(PUNCH_HOLE|KEEP_SIZE)",
	opZero:       "fallocate(ZERO_RANGE)",
	opZeroKeep:   "fallocate(ZERO_RANGE|KEEP_SIZE)",
}

func (f *fsx) doFallocate(k opKind) error {
	var off, n int64
	if k == opPunch || k == opZeroKeep {
		// Mostly inside the file, where they change something.
		off, n = f.randRange(min(f.size+f.pageSize, f.cfg.maxLen), f.cfg.maxLen)
	} else {
		off, n = f.randRange(f.cfg.maxLen, f.cfg.maxLen)
	}
	m := fallocModes[k]
	keep := m.mode&unix.FALLOC_FL_KEEP_SIZE != 0
	note := ""
	switch {
	case off >= f.size:
		note = " (past EOF)"
	case off+n > f.size:
		note = " (across EOF)"
	}
	if !keep && off+n > f.size {
		note += " EXTEND"
	}
	if keep && k != opPunch {
		note = " KEEP_SIZE" + note
	}
	e := f.logOp(k, off, n, "%-8s %s%s", m.name, rangeText(off, n), note)
	err := retry(func() error { return unix.Fallocate(f.fd, m.mode, off, n) })
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return &unsupported{fallocModeNames[k], err}
	}
	if err != nil {
		return failf("%s %s: %v", fallocModeNames[k], rangeText(off, n), err)
	}
	if k == opPunch || k == opZero || k == opZeroKeep {
		end := off + n
		if keep {
			end = min(end, f.size)
		}
		if off < end {
			clear(f.good[off:end])
		}
	}
	if !keep {
		f.size = max(f.size, off+n)
	}
	e.newSize = f.size
	f.touch(off, n)
	return nil
}

// copyRange copies n bytes with copy_file_range, looping over short copies.
// It stops early only at the source's EOF (a zero return).
func copyRange(rfd int, roff int64, wfd int, woff int64, n int64) (int64, error) {
	var done int64
	for done < n {
		r, w := roff+done, woff+done
		c, err := unix.CopyFileRange(rfd, &r, wfd, &w, int(n-done), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if c == 0 {
			break
		}
		done += int64(c)
	}
	return done, nil
}

func copyUnsupported(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP)
}

// copySource picks a source range inside the file.
func (f *fsx) copySource() (src, n int64) {
	return f.randRange(f.size, f.size)
}

func (f *fsx) doCopy() error {
	if f.size == 0 {
		return f.skip(opCopy, "empty file")
	}
	src, n := f.copySource()
	dst := int64(-1)
	// copy_file_range refuses overlapping ranges in one file.
	for range 8 {
		d := f.rng.Int64N(f.cfg.maxLen - n + 1)
		if d+n <= src || d >= src+n {
			dst = d
			break
		}
	}
	if dst < 0 {
		return f.skip(opCopy, "no room for a range that does not overlap the source")
	}
	e := f.logOp(opCopy, src, n, "COPY     %s to %#x thru %#x%s", rangeText(src, n), dst, dst+n-1, f.eofNote(dst, n))
	e.dst = dst
	c, err := copyRange(f.fd, src, f.fd, dst, n)
	if c == 0 && copyUnsupported(err) {
		return &unsupported{"copy_file_range within the file", err}
	}
	if err != nil {
		return failf("copy_file_range %s to %#x: %v (after %#x bytes)", rangeText(src, n), dst, err, c)
	}
	if c != n {
		return failf("copy_file_range %s to %#x copied %#x bytes, expected %#x (file size %#x)", rangeText(src, n), dst, c, n, f.size)
	}
	copy(f.good[dst:dst+n], f.good[src:src+n])
	f.size = max(f.size, dst+n)
	e.newSize = f.size
	f.touch(dst, n)
	return nil
}

func (f *fsx) doCopyScratch() error {
	if f.size == 0 {
		return f.skip(opCopyScratch, "empty file")
	}
	src, n := f.copySource()
	soff := f.rng.Int64N(min(f.cfg.maxOpLen, f.cfg.maxLen-n+1))
	dst := f.rng.Int64N(f.cfg.maxLen - n + 1)
	e := f.logOp(opCopyScratch, src, n, "COPY     %s to %#x thru %#x%s via scratch %#x",
		rangeText(src, n), dst, dst+n-1, f.eofNote(dst, n), soff)
	e.dst = dst
	if f.scratchFd < 0 {
		fd, err := openRetry(f.scratchPath(), unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return failf("open scratch file %s: %v", f.scratchPath(), err)
		}
		f.scratchFd = fd
	}
	if err := retry(func() error { return unix.Ftruncate(f.scratchFd, 0) }); err != nil {
		return failf("ftruncate scratch file: %v", err)
	}
	c, err := copyRange(f.fd, src, f.scratchFd, soff, n)
	if c == 0 && copyUnsupported(err) {
		return &unsupported{"copy_file_range to another file", err}
	}
	if err != nil || c != n {
		return failf("copy_file_range %s to scratch %#x: copied %#x of %#x bytes: %v", rangeText(src, n), soff, c, n, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(f.scratchFd, &st); err != nil {
		return failf("fstat scratch file: %v", err)
	}
	if st.Size != soff+n {
		return failf("the scratch file's size is %#x after copying %#x bytes to %#x, expected %#x", st.Size, n, soff, soff+n)
	}
	got, err := preadFull(f.scratchFd, f.buf[:soff+n], 0)
	if err != nil || int64(got) != soff+n {
		return failf("pread scratch file: %#x of %#x bytes: %v", got, soff+n, err)
	}
	if !bytes.Equal(f.buf[:soff], f.zeros[:soff]) {
		return dataFailure("the hole at the start of the scratch file is not zeros", 0, f.zeros[:soff], f.buf[:soff])
	}
	if want := f.good[src : src+n]; !bytes.Equal(want, f.buf[soff:soff+n]) {
		return dataFailure(fmt.Sprintf("the scratch file's copy of %s differs from the model (offsets are the source's)", rangeText(src, n)),
			src, want, f.buf[soff:soff+n])
	}
	c, err = copyRange(f.scratchFd, soff, f.fd, dst, n)
	if err != nil || c != n {
		return failf("copy_file_range scratch %#x thru %#x to %#x: copied %#x of %#x bytes: %v", soff, soff+n-1, dst, c, n, err)
	}
	copy(f.good[dst:dst+n], f.buf[soff:soff+n])
	f.size = max(f.size, dst+n)
	e.newSize = f.size
	f.touch(dst, n)
	return nil
}

// doSeek checks lseek SEEK_DATA or SEEK_HOLE from a random offset. Holes may
// be reported conservatively (as data), so only what must hold is checked:
// results lie in [off, size], ENXIO at or past EOF, and whatever the call
// says is (or skips as) a hole is zeros in the model.
func (f *fsx) doSeek() error {
	var off int64
	switch f.rng.IntN(8) {
	case 0:
		off = f.size
	case 1:
		off = f.size + 1 + f.rng.Int64N(f.pageSize)
	default:
		off = f.rng.Int64N(max(f.size, 1))
	}
	whence, name := unix.SEEK_DATA, "SEEK_DATA"
	if f.rng.IntN(2) == 0 {
		whence, name = unix.SEEK_HOLE, "SEEK_HOLE"
	}
	e := f.logOp(opSeek, off, 1, "%-8s from %#x (size %#x)", name, off, f.size)
	res, err := seek(f.fd, off, whence)
	if errors.Is(err, unix.EINVAL) {
		return &unsupported{"lseek " + name, err}
	}
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return failf("lseek(%#x, %s): %v", off, name, err)
	}
	if err == nil {
		e.text += " -> " + hex(res)
	} else {
		e.text += " -> ENXIO"
	}
	enxio := err != nil
	if whence == unix.SEEK_DATA {
		if off >= f.size {
			if !enxio {
				return failf("lseek(%#x, SEEK_DATA) returned %#x, expected ENXIO at or past EOF %#x", off, res, f.size)
			}
			return nil
		}
		end := res
		if enxio {
			end = f.size // no data from off to EOF
		} else if res < off || res >= f.size {
			return failf("lseek(%#x, SEEK_DATA) returned %#x, outside [%#x, EOF %#x)", off, res, off, f.size)
		}
		return f.checkHole(name, off, end)
	}
	// SEEK_HOLE
	switch {
	case off > f.size:
		if !enxio {
			return failf("lseek(%#x, SEEK_HOLE) returned %#x, expected ENXIO past EOF %#x", off, res, f.size)
		}
		return nil
	case off == f.size:
		if !enxio && res != f.size {
			return failf("lseek(%#x, SEEK_HOLE) at EOF returned %#x, expected %#x or ENXIO", off, res, f.size)
		}
		return nil
	case enxio:
		return failf("lseek(%#x, SEEK_HOLE) returned ENXIO inside the file (size %#x)", off, f.size)
	case res < off || res > f.size:
		return failf("lseek(%#x, SEEK_HOLE) returned %#x, outside [%#x, EOF %#x]", off, res, off, f.size)
	case res == f.size:
		return nil
	}
	// A hole at res: it reaches the next data, which must all be zeros.
	d, err := seek(f.fd, res, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		d = f.size
	case err != nil:
		return failf("lseek(%#x, SEEK_DATA) after SEEK_HOLE: %v", res, err)
	case d < res || d >= f.size:
		return failf("lseek(%#x, SEEK_DATA) after SEEK_HOLE returned %#x, outside [%#x, EOF %#x)", res, d, res, f.size)
	}
	if errors.Is(err, unix.ENXIO) {
		e.text += ", SEEK_DATA -> ENXIO"
	} else {
		e.text += fmt.Sprintf(", SEEK_DATA -> %#x", d)
	}
	if d == res {
		// Reported as a hole and as data: the byte must at least be zero.
		d = res + 1
	}
	return f.checkHole("SEEK_HOLE", res, d)
}

// checkHole checks that [off, end), which lseek reported as a hole, holds
// only zeros in the model.
func (f *fsx) checkHole(name string, off, end int64) error {
	want := f.good[off:end]
	if bytes.Equal(want, f.zeros[:len(want)]) {
		return nil
	}
	i := 0
	for want[i] == 0 {
		i++
	}
	return dataFailure(fmt.Sprintf("lseek %s reports %#x thru %#x as a hole, but the model has data at %#x (actual: what a hole reads as)",
		name, off, end-1, off+int64(i)), off, want, f.zeros[:len(want)])
}

func (f *fsx) doFsync() error {
	name, fn := "FSYNC", unix.Fsync
	if f.rng.IntN(2) == 0 {
		name, fn = "FDATASYNC", unix.Fdatasync
	}
	e := f.logOp(opFsync, -1, 0, "%s", name)
	if err := retry(func() error { return fn(f.fd) }); err != nil {
		return failf("%s: %v", name, err)
	}
	if f.cfg.fsyncCheck {
		if err := f.verifyFresh(); err != nil {
			return err
		}
		if f.direct == directOK {
			e.text += " (checked with O_DIRECT)"
		} else {
			e.text += " (checked)"
		}
	}
	return nil
}

// verifyFresh reads the whole file through a new descriptor, with O_DIRECT
// where the filesystem accepts it, and checks it against the model.
func (f *fsx) verifyFresh() error {
	f.fsyncChk++
	if f.direct == directUntried {
		f.direct = directOK
		f.dioSize = 4096
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, f.cfg.path, 0, unix.STATX_DIOALIGN, &stx); err == nil &&
			stx.Mask&unix.STATX_DIOALIGN != 0 {
			if stx.Dio_offset_align == 0 {
				f.noDirect("statx reports no O_DIRECT support")
			} else {
				f.dioSize = max(f.dioSize, int64(stx.Dio_offset_align), int64(stx.Dio_mem_align))
			}
		}
	}
	if f.direct == directOK && f.dioBuf == nil {
		n := (f.cfg.maxLen + 1 + f.dioSize - 1) / f.dioSize * f.dioSize
		b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			return failf("mmap an O_DIRECT buffer: %v", err)
		}
		f.dioBuf = b
	}
	for {
		direct := f.direct == directOK
		flags := unix.O_RDONLY | unix.O_CLOEXEC
		if direct {
			flags |= unix.O_DIRECT
		}
		fd, err := openRetry(f.cfg.path, flags, 0)
		if direct && errors.Is(err, unix.EINVAL) {
			f.noDirect("open with O_DIRECT: EINVAL")
			continue
		}
		if err != nil {
			return failf("open %s for the fsync check: %v", f.cfg.path, err)
		}
		buf := f.buf
		if direct {
			buf = f.dioBuf
		}
		got, err := f.readAll(fd, buf, direct)
		unix.Close(fd)
		if direct && errors.Is(err, unix.EINVAL) && got == 0 {
			f.noDirect("O_DIRECT read: EINVAL")
			continue
		}
		how := "buffered"
		if direct {
			how = "O_DIRECT"
		}
		if err != nil {
			return failf("fsync check: %s read: %v", how, err)
		}
		return f.compareWhole(fmt.Sprintf("the fsync check (%s read through a new descriptor)", how), buf[:got])
	}
}

func (f *fsx) noDirect(why string) {
	f.direct = directNo
	f.directWhy = why
	if !f.cfg.quiet {
		fmt.Fprintf(f.out, "fsx: %s: the fsync check reads buffered\n", why)
	}
}

// readAll reads a whole file into buf (which has room for maxlen+1 bytes).
// With direct, every request is aligned to dioSize.
func (f *fsx) readAll(fd int, buf []byte, direct bool) (int, error) {
	total := 0
	for total < len(buf) {
		end := len(buf)
		if direct {
			if int64(total)%f.dioSize != 0 {
				break // a short read mid-file; what it returned is checked
			}
			end = total + int((int64(len(buf)-total))/f.dioSize*f.dioSize)
			if end == total {
				break
			}
		}
		n, err := preadRetry(fd, buf[total:end], int64(total))
		if err != nil {
			return total, err
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}

func (f *fsx) doReopen() error {
	f.logOp(opReopen, -1, 0, "CLOSE/OPEN")
	if err := unix.Close(f.fd); err != nil {
		f.fd = -1
		return failf("close: %v", err)
	}
	f.fd = -1
	fd, err := openRetry(f.cfg.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return failf("reopen %s: %v", f.cfg.path, err)
	}
	f.fd = fd
	return nil
}

func (f *fsx) doStat() error {
	e := f.logOp(opStat, -1, 0, "STAT")
	var st unix.Stat_t
	if err := unix.Stat(f.cfg.path, &st); err != nil {
		return failf("stat %s: %v", f.cfg.path, err)
	}
	e.text += " size " + hex(st.Size)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return failf("stat %s: mode %#o is not a regular file", f.cfg.path, st.Mode)
	}
	if st.Size != f.size {
		return failf("stat %s: size %#x, expected %#x", f.cfg.path, st.Size, f.size)
	}
	return nil
}

// injectCorruption changes the file behind the exerciser's back, through a
// descriptor of its own: one byte in the middle, or the size of an empty
// file. The model is left alone, so the check must fail.
func (f *fsx) injectCorruption() error {
	fd, err := openRetry(f.cfg.path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return failf("inject: open: %v", err)
	}
	defer unix.Close(fd)
	off, b := int64(0), byte(0x5a)
	if f.size > 0 {
		// Prefer a byte holding data, past the middle.
		off = f.size / 2
		if i := bytes.IndexFunc(f.good[off:f.size], func(r rune) bool { return r != 0 }); i > 0 {
			off += int64(i)
		}
		b = f.good[off] ^ 0xff
	}
	e := f.logOp(opInject, off, 1, "INJECT   corruption at %#x: %#02x", off, b)
	if f.cfg.debug {
		fmt.Fprintln(f.out, e.line())
	}
	if err := pwriteFull(fd, []byte{b}, off); err != nil {
		return failf("inject: pwrite: %v", err)
	}
	if !f.cfg.quiet {
		fmt.Fprintf(f.out, "fsx: op %d: injected corruption at %#x (testing the checker)\n", f.op, off)
	}
	return nil
}

// check compares the file with the model after operation k: its size always,
// its contents in full every --check-every ops and otherwise the range the
// operation changed.
func (f *fsx) check(k opKind) error {
	what := fmt.Sprintf("the check after op %d (%s)", f.op, opNames[k])
	if f.op%f.cfg.checkEvery == 0 || f.op == f.cfg.injectAt {
		return f.checkAll(what)
	}
	if err := f.checkSize(what); err != nil {
		return err
	}
	if f.touchLen == 0 {
		return nil
	}
	off := f.touchOff
	end := min(off+f.touchLen, f.cfg.maxLen+1)
	got, err := preadFull(f.fd, f.buf[:end-off], off)
	if err != nil {
		return failf("%s: pread: %v", what, err)
	}
	want := f.good[min(off, f.size):min(end, f.size)]
	if !bytes.Equal(want, f.buf[:got]) {
		return dataFailure(fmt.Sprintf("%s: data read back from %s differ from the model", what, rangeText(off, end-off)),
			off, want, f.buf[:got])
	}
	return nil
}

func (f *fsx) checkSize(what string) error {
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return failf("%s: fstat: %v", what, err)
	}
	if st.Size != f.size {
		// Show the contents too: the difference may explain the size.
		got, _ := preadFull(f.fd, f.buf, 0)
		return dataFailure(fmt.Sprintf("%s: file size is %#x, expected %#x", what, st.Size, f.size),
			0, f.good[:f.size], f.buf[:got])
	}
	return nil
}

func (f *fsx) checkAll(what string) error {
	if err := f.checkSize(what); err != nil {
		return err
	}
	got, err := preadFull(f.fd, f.buf, 0)
	if err != nil {
		return failf("%s: pread: %v", what, err)
	}
	return f.compareWhole(what, f.buf[:got])
}

// compareWhole compares the whole file's contents, as read, with the model.
func (f *fsx) compareWhole(what string, got []byte) error {
	want := f.good[:f.size]
	if len(got) != len(want) {
		return dataFailure(fmt.Sprintf("%s: read %#x bytes to EOF, expected %#x", what, len(got), len(want)), 0, want, got)
	}
	if !bytes.Equal(want, got) {
		return dataFailure(fmt.Sprintf("%s: file contents differ from the model", what), 0, want, got)
	}
	return nil
}

// Syscall wrappers that retry on EINTR and loop over short transfers.

func retry(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

func openRetry(path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func mmapRetry(fd int, off int64, n, prot, flags int) ([]byte, error) {
	for {
		m, err := unix.Mmap(fd, off, n, prot, flags)
		if err != unix.EINTR {
			return m, err
		}
	}
}

func seek(fd int, off int64, whence int) (int64, error) {
	for {
		r, err := unix.Seek(fd, off, whence)
		if err != unix.EINTR {
			return r, err
		}
	}
}

func preadRetry(fd int, b []byte, off int64) (int, error) {
	for {
		n, err := unix.Pread(fd, b, off)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// preadFull reads into b until it is full or EOF.
func preadFull(fd int, b []byte, off int64) (int, error) {
	total := 0
	for total < len(b) {
		n, err := preadRetry(fd, b[total:], off+int64(total))
		if err != nil {
			return total, err
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}

func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
