package fs_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agfs/fs"
	"agfs/fsck"
	"agfs/layout"
	"agfs/tests/src/leak"
)

// fastScan: a pass every few milliseconds, unpaced.
var fastScan = fs.Options{ScanInterval: 5 * time.Millisecond, ScanRate: -1}

// waitScan waits until cond holds of the scanner's counters.
func waitScan(t *testing.T, f *fs.FS, what string, cond func(s fs.Stats) bool) fs.Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := f.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20 s; stats %+v", what, st.Scan)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestScanReclaimsPlantedLeak plants a leaked block, an unnamed inode (with
// a data block) and an unlinked inode on the unmounted image; the scanner
// of the next mount finds and reclaims them, and touches nothing else.
func TestScanReclaimsPlantedLeak(t *testing.T) {
	e := newEnv(t, 64<<20, layout.Params{AGCount: 2})
	// Real files of every shape the walk reads: inline extents, an extent
	// tree, an attribute tree, a directory, a long symlink.
	d := e.mkdir(root, "d")
	small := e.mknod(d, "small")
	e.write(small, pattern(10000, 1), 0)
	tree := e.mknod(root, "tree")
	for i := range 40 {
		e.write(tree, pattern(4096, byte(i)), int64(i)*8192) // holes: one extent each
	}
	if err := e.f.SetXattr(small, "user.big", pattern(20000, 3), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.f.Symlink(d, "long", strings.Repeat("x", 1000), me); err != nil {
		t.Fatal(err)
	}
	before := e.f.StatFS()
	if err := e.f.Close(); err != nil {
		t.Fatal(err)
	}

	p, err := leak.Plant(e.dev)
	if err != nil {
		t.Fatal(err)
	}
	// The plant is real: fsck sees the unreachable inode and the unlinked
	// one that is on no orphan list.
	if rep, err := fsck.Check(e.dev); err != nil || rep.Clean() {
		t.Fatalf("fsck of the planted image: clean, want problems (err %v)", err)
	}

	// With -o noscan nothing happens.
	e.opt = fs.Options{NoScan: true}
	e.open()
	time.Sleep(50 * time.Millisecond)
	if st := e.f.Stats().Scan; st.Enabled || st.Passes != 0 {
		t.Fatalf("noscan: %+v", st)
	}
	if err := e.f.Close(); err != nil {
		t.Fatal(err)
	}

	e.opt = fastScan
	e.open()
	st := waitScan(t, e.f, "reclaim", func(s fs.Stats) bool {
		return s.Scan.ReclaimedBlocks >= 1 && s.Scan.ReclaimedUnnamed >= 1 && s.Scan.ReclaimedUnlinked >= 1
	}).Scan
	if st.FoundBlocks != 1 || st.ReclaimedBlocks != 1 || st.FoundUnnamed != 1 || st.ReclaimedUnnamed != 1 ||
		st.FoundUnlinked != 1 || st.ReclaimedUnlinked != 1 || st.Errors != 0 || st.Pending != 0 {
		t.Fatalf("planted block %d, unnamed inode %d (block %d), unlinked inode %d; stats %+v",
			p.Block, p.Inode, p.DataBlock, p.Unlinked, st)
	}
	after := e.f.StatFS()
	if after.Bfree != before.Bfree || after.Ffree != before.Ffree {
		t.Fatalf("free blocks %d → %d, free inodes %d → %d: the leak was not all given back",
			before.Bfree, after.Bfree, before.Ffree, after.Ffree)
	}
	for _, ino := range []uint64{p.Inode, p.Unlinked} {
		if _, err := e.f.GetAttr(ino); !errors.Is(err, syscall.ESTALE) {
			t.Fatalf("inode %d after the reclaim: %v, want ESTALE", ino, err)
		}
	}
	if got := e.read(small, 0, 10000); !bytes.Equal(got, pattern(10000, 1)) {
		t.Fatal("small file changed")
	}
	for i := range 40 {
		if got := e.read(tree, int64(i)*8192, 4096); !bytes.Equal(got, pattern(4096, byte(i))) {
			t.Fatalf("tree file block %d changed", i)
		}
	}
	stats := e.f.Stats()
	text := string(stats.AppendText(nil))
	for _, want := range []string{"scan.enabled 1\n", "scan.reclaimed_unowned_blocks 1\n", "scan.reclaimed_unnamed_inodes 1\n",
		fmt.Sprintf("log.commits %d\n", stats.Log.Commits), fmt.Sprintf("log.cache_hits %d\n", stats.Log.CacheHits)} {
		if !strings.Contains(text, want) {
			t.Fatalf("stats text lacks %q:\n%s", want, text)
		}
	}
	// Passes after the reclaim find nothing more.
	passes := st.Passes
	st = waitScan(t, e.f, "two more passes", func(s fs.Stats) bool { return s.Scan.Passes >= passes+2 }).Scan
	if st.FoundBlocks != 1 || st.FoundUnnamed != 1 || st.Pending != 0 {
		t.Fatalf("later passes: %+v", st)
	}
	// The cleanup runs Deep (nothing leaks, nothing reachable freed) and fsck.
}

// TestScanOpenUnlinked: a file unlinked while open is an orphan waiting
// for its last reference; the scanner records it, never frees it under
// its user, and lets it go once the file is released.
func TestScanOpenUnlinked(t *testing.T) {
	e := newEnv(t, 32<<20, layoutDefault)
	e.open2(fastScan)
	ino := e.mknod(root, "f")
	e.write(ino, pattern(50000, 9), 0)
	if err := e.f.OpenFile(ino); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Unlink(root, "f"); err != nil {
		t.Fatal(err)
	}
	st := waitScan(t, e.f, "found", func(s fs.Stats) bool { return s.Scan.FoundUnlinked == 1 && s.Scan.Deferred > 0 }).Scan
	if st.ReclaimedUnlinked != 0 || st.Pending != 1 {
		t.Fatalf("open unlinked file: %+v", st)
	}
	if got := e.read(ino, 0, 50000); !bytes.Equal(got, pattern(50000, 9)) {
		t.Fatal("open unlinked file changed")
	}
	e.f.Release(ino) // frees it (the fs's own rule)
	st = waitScan(t, e.f, "resolved", func(s fs.Stats) bool { return s.Scan.Pending == 0 }).Scan
	if st.Resolved != 1 || st.ReclaimedUnlinked != 0 || st.Errors != 0 {
		t.Fatalf("after release: %+v", st)
	}
}

// TestScanCountsOrphansAtMount: a file unlinked while open when the
// filesystem crashed is reclaimed by the next mount before it returns, and
// the scanner's statistics count it.
func TestScanCountsOrphansAtMount(t *testing.T) {
	e := newEnv(t, 32<<20, layoutDefault)
	ino := e.mknod(root, "f")
	e.write(ino, pattern(9000, 2), 0)
	if err := e.f.OpenFile(ino); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Unlink(root, "f"); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Sync(); err != nil {
		t.Fatal(err)
	}
	e.crash()
	if st := e.f.Stats(); st.Scan.AtMount != 1 || st.OrphansAtOpen != 1 || !st.Scan.Enabled {
		t.Fatalf("after the crash: %+v", st)
	}
	if text := string(e.f.Stats().AppendText(nil)); !strings.Contains(text, "scan.reclaimed_at_mount 1\n") {
		t.Fatalf("stats text:\n%s", text)
	}
}

// open2 reopens the env's filesystem with options o.
func (e *env) open2(o fs.Options) {
	e.t.Helper()
	if err := e.f.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.opt = o
	e.open()
}

// TestScanBusyLosesNothing scans without pause while workers create,
// write, rename, unlink (some while open), truncate and set attributes,
// until at least three passes ran during the work: nothing reachable may
// be reclaimed. Each worker checks its own files' contents at the end, and
// the cleanup's deep check finds any block or inode freed while in use
// (or leaked).
func TestScanBusyLosesNothing(t *testing.T) {
	e := newEnv(t, 96<<20, layout.Params{AGCount: 4})
	e.open2(fastScan)
	const workers = 6
	ops := 300
	if raceEnabled {
		ops = 150
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	passes := e.f.Stats().Scan.Passes
	deadline := time.Now().Add(20 * time.Second)
	enough := func() bool { return e.f.Stats().Scan.Passes >= passes+3 || time.Now().After(deadline) }
	for w := range workers {
		dirA, dirB := e.mkdir(root, fmt.Sprintf("a%d", w)), e.mkdir(root, fmt.Sprintf("b%d", w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- busyWorker(e.f, w, ops, enough, dirA, dirB)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := e.f.Stats().Scan
	t.Logf("scan during the busy run: %+v", st)
	if st.Passes < passes+3 {
		t.Fatalf("only %d passes during the work", st.Passes-passes)
	}
	if st.ReclaimedBlocks != 0 || st.ReclaimedUnnamed != 0 || st.ReclaimedUnlinked != 0 || st.Errors != 0 {
		t.Fatalf("the scanner reclaimed something on a filesystem with no leak: %+v", st)
	}
}

// busyWorker runs at least ops random operations on its two directories,
// and more until enough says so, and keeps a model of every file's
// content, checked at the end.
func busyWorker(f *fs.FS, w, ops int, enough func() bool, dirA, dirB uint64) error {
	rng := rand.New(rand.NewPCG(uint64(w), 5))
	type file struct {
		dir  uint64
		ino  uint64
		data []byte
	}
	files := map[string]*file{}
	var open []*file // unlinked while open
	dirs := []uint64{dirA, dirB}
	pick := func() (string, *file) {
		for name, fl := range files {
			return name, fl
		}
		return "", nil
	}
	// The run lasts until the scanner has made its passes, however long
	// that takes: the working set is bounded (files, and their size, by
	// where writes may start) so that the 96 MiB filesystem never fills.
	const maxFiles, maxWriteOff = 24, 200 << 10
	for i := 0; i < ops || !enough(); i++ {
		name, fl := pick()
		var err error
		r := rng.IntN(10)
		if r < 3 && len(files) >= maxFiles {
			r = 7 // unlink instead of create
		}
		switch {
		case r < 3 || fl == nil:
			nm := fmt.Sprintf("f%d", i)
			d := dirs[rng.IntN(2)]
			var a fs.Attr
			if a, err = f.Mknod(d, nm, syscall.S_IFREG|0o644, 0, me); err == nil {
				data := pattern(1+rng.IntN(40000), byte(i))
				if _, err = f.Write(a.Ino, data, 0); err == nil {
					files[nm] = &file{d, a.Ino, data}
				}
			}
		case r < 5:
			data := pattern(1+rng.IntN(30000), byte(i))
			off := rng.IntN(min(len(fl.data), maxWriteOff) + 1)
			if _, err = f.Write(fl.ino, data, int64(off)); err == nil {
				if end := off + len(data); end > len(fl.data) {
					fl.data = append(fl.data, make([]byte, end-len(fl.data))...)
				}
				copy(fl.data[off:], data)
			}
		case r < 6:
			n := rng.IntN(len(fl.data) + 1)
			if _, err = f.SetAttr(fl.ino, fs.SetAttr{Valid: fs.SetSize, Size: uint64(n)}); err == nil {
				fl.data = fl.data[:n]
			}
		case r < 7:
			to := dirs[rng.IntN(2)]
			nm := fmt.Sprintf("r%d", i)
			if err = f.Rename(fl.dir, name, to, nm, 0); err == nil {
				delete(files, name)
				fl.dir = to
				files[nm] = fl
			}
		case r < 8:
			if err = f.Unlink(fl.dir, name); err == nil {
				delete(files, name)
			}
		case r < 9:
			if err = f.OpenFile(fl.ino); err == nil {
				if err = f.Unlink(fl.dir, name); err == nil {
					delete(files, name)
					open = append(open, fl)
				}
			}
		default:
			err = f.SetXattr(fl.ino, "user.x", pattern(rng.IntN(6000), byte(i)), 0)
		}
		if err != nil {
			return fmt.Errorf("worker %d op %d: %w", w, i, err)
		}
		if len(open) > 3 {
			fl := open[0]
			open = open[1:]
			if err := sameContent(f, fl.ino, fl.data); err != nil {
				return fmt.Errorf("worker %d: unlinked open file: %w", w, err)
			}
			f.Release(fl.ino)
		}
	}
	for _, fl := range open {
		if err := sameContent(f, fl.ino, fl.data); err != nil {
			return fmt.Errorf("worker %d: unlinked open file: %w", w, err)
		}
		f.Release(fl.ino)
	}
	for name, fl := range files {
		a, err := f.Lookup(fl.dir, name)
		if err != nil || a.Ino != fl.ino {
			return fmt.Errorf("worker %d: %s: inode %d, %v; want %d", w, name, a.Ino, err, fl.ino)
		}
		if err := sameContent(f, fl.ino, fl.data); err != nil {
			return fmt.Errorf("worker %d: %s: %w", w, name, err)
		}
	}
	return nil
}

// sameContent reads ino whole and compares it with want (from a worker
// goroutine, so it returns an error rather than failing the test).
func sameContent(f *fs.FS, ino uint64, want []byte) error {
	got := make([]byte, len(want)+1)
	n, err := f.Read(ino, got, 0)
	if err != nil {
		return err
	}
	if !bytes.Equal(got[:n], want) {
		return fmt.Errorf("inode %d: %d bytes read differ from the %d written", ino, n, len(want))
	}
	return nil
}

// TestScanStopsPromptly: Close does not wait for a slow pass to finish.
func TestScanStopsPromptly(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	for i := range 200 {
		e.mknod(root, fmt.Sprintf("f%d", i))
	}
	e.open2(fs.Options{ScanInterval: time.Millisecond, ScanRate: 100}) // a pass of minutes
	waitScan(t, e.f, "the pass to start", func(s fs.Stats) bool { return s.Scan.Scanned > 0 })
	start := time.Now()
	if err := e.f.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v with a pass running", d)
	}
	e.opt = fs.Options{}
	e.open()
}

// BenchmarkUntarScan writes a source-like tree (40 directories of 125
// files, 0 to 32 KiB each, as in an untar of the Go tree) with the orphan
// scanner off and with it running passes back to back, so the scanner's
// cost on a write-heavy workload is the difference of the files/s
// figures. Through the library there is no FUSE round trip to dilute it:
// this is an upper bound of what an untar on a mount pays (that one is
// bench/compare.sh -w tree, with AGFS_MOUNT_OPTS=noscan against
// AGFS_MOUNT_OPTS=scan_interval=1ms).
func BenchmarkUntarScan(b *testing.B) {
	for _, c := range []struct {
		name string
		o    fs.Options
	}{
		{"noscan", fs.Options{NoScan: true}},
		{"scan", fs.Options{ScanInterval: time.Millisecond}},                         // default rate, passes back to back
		{"scan-unbounded", fs.Options{ScanInterval: time.Millisecond, ScanRate: -1}}, // no pacing at all
	} {
		b.Run(c.name, func(b *testing.B) {
			c.o.CacheBlocks = 16384
			var total time.Duration
			var passes uint64
			for range b.N {
				b.StopTimer()
				f, done := benchFSOpts(b, 1<<30, false, c.o)
				rng := rand.New(rand.NewPCG(1, 2))
				data := pattern(32<<10, 7)
				b.StartTimer()
				start := time.Now()
				for d := range 40 {
					dir, err := f.Mkdir(root, fmt.Sprintf("pkg%02d", d), 0o755, me)
					if err != nil {
						b.Fatal(err)
					}
					for i := range 125 {
						a, err := f.Mknod(dir.Ino, fmt.Sprintf("file%03d.go", i), syscall.S_IFREG|0o644, 0, me)
						if err != nil {
							b.Fatal(err)
						}
						if n := rng.IntN(len(data)); n > 0 {
							if _, err := f.Write(a.Ino, data[:n], 0); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				passes += f.Stats().Scan.Passes
				done()
			}
			b.ReportMetric(float64(5000*b.N)/total.Seconds(), "files/s")
			b.ReportMetric(float64(passes)/float64(b.N), "passes/op")
		})
	}
}
