package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/layout"
)

func TestLSNArithmetic(t *testing.T) {
	if got := advance(32, 0); got != 32 {
		t.Fatalf("advance(32,0) = %d", got)
	}
	if got := advance(32, 480); got != 512+32 {
		t.Fatalf("advance(32,480) = %d", got)
	}
	if got := advance(32+479, 1); got != 512+32 {
		t.Fatalf("advance(511,1) = %d", got)
	}
	if got := advance(100, 480*3+10); got != 3*512+100+10 {
		t.Fatalf("advance(100, ...) = %d", got)
	}
	if got := norm(512); got != 544 {
		t.Fatalf("norm(512) = %d", got)
	}
	if got := canon(32, 4096); got != 32 {
		t.Fatalf("canon(32) = %d", got)
	}
	if got := canon(33, 4096); got != 4096+32 {
		t.Fatalf("canon(33) = %d", got)
	}
	// advance is additive.
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		p := norm(r.Uint64N(1 << 40))
		a, b := r.Uint64N(5000), r.Uint64N(5000)
		if advance(advance(p, a), b) != advance(p, a+b) {
			t.Fatalf("advance not additive at %d %d %d", p, a, b)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	const bs = 1024
	img := bytes.Repeat([]byte{7}, bs)
	var b []byte
	b = putDelta(b, 99, 100, []byte{1, 2, 3}, []byte{4, 5, 6})
	b = putImage(b, recImage, 5, img)
	b = putImage(b, recInit, 6, img)
	b = putCommit(b, 42, 3, 0xdeadbeef)
	src := &sliceSource{b: b}
	var raw []byte
	collect := func(p []byte) { raw = append(raw, p...) }
	want := []record{
		{kind: recDelta, blk: 99, off: 100, before: []byte{1, 2, 3}, after: []byte{4, 5, 6}},
		{kind: recImage, blk: 5, after: img},
		{kind: recInit, blk: 6, after: img},
		{kind: recCommit, txid: 42, count: 3, hash: 0xdeadbeef},
	}
	for i, w := range want {
		rec, ok, err := decodeRecord(src, bs, collect)
		if err != nil || !ok {
			t.Fatalf("record %d: ok=%v err=%v", i, ok, err)
		}
		if rec.kind != w.kind || rec.blk != w.blk || rec.off != w.off || !bytes.Equal(rec.before, w.before) ||
			!bytes.Equal(rec.after, w.after) || rec.txid != w.txid || rec.count != w.count || rec.hash != w.hash {
			t.Fatalf("record %d: got %+v want %+v", i, rec, w)
		}
	}
	if _, ok, _ := decodeRecord(src, bs, collect); ok {
		t.Fatal("decoded past the end")
	}
	if !bytes.Equal(raw, b[:len(b)-commitSize]) {
		t.Fatal("hashed bytes are not exactly the records before the commit record")
	}
	// Truncations end the stream, never error or panic.
	for n := range len(b) {
		src := &sliceSource{b: b[:n]}
		for {
			_, ok, err := decodeRecord(src, bs, func([]byte) {})
			if err != nil {
				t.Fatalf("truncated at %d: %v", n, err)
			}
			if !ok {
				break
			}
		}
	}
	// Bad kinds and ranges are errors.
	for _, bad := range [][]byte{{0}, {9}, putDelta(nil, 1, 1020, make([]byte, 5), make([]byte, 5)), putDelta(nil, 1, 0, nil, nil)} {
		if _, _, err := decodeRecord(&sliceSource{b: bad}, bs, func([]byte) {}); err == nil {
			t.Fatalf("%x decoded without error", bad)
		}
	}
}

func TestSectorAndSuper(t *testing.T) {
	e := newEnv(t, 1024, 64, 8, 16)
	g, _ := newGeom(e.dev, e.r)
	s := make([]byte, 512)
	copy(s[32:], "payload")
	d := newDigest(e.seed)
	sealSector(d, s, 1024, 7, 3, e.seed)
	if used, err := checkSector(d, s, 1024, 3, e.seed); err != nil || used != 7 {
		t.Fatalf("used %d err %v", used, err)
	}
	if _, err := checkSector(d, s, 1024+g.ring, 3, e.seed); err == nil {
		t.Fatal("wrong lap accepted")
	}
	if _, err := checkSector(d, s, 1024, 4, e.seed); err == nil {
		t.Fatal("wrong epoch accepted")
	}
	s[100] ^= 1
	if _, err := checkSector(d, s, 1024, 3, e.seed); err == nil {
		t.Fatal("bad checksum accepted")
	}
	b := make([]byte, 1024)
	want := super{seq: 9, tail: 5000, epoch: 4, clean: true}
	encodeSuper(b, &g, 9, want, e.seed)
	got, err := decodeSuper(b, &g, 9, e.seed)
	if err != nil || got != want {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := decodeSuper(b, &g, 8, e.seed); err == nil {
		t.Fatal("superblock of block 9 accepted as block 8")
	}
}

func TestCommitReadYourWrites(t *testing.T) {
	e := newEnv(t, 4096, 64, 32, 16)
	e.mkfs(1, 2, 3)
	l := e.open(Options{})
	tx := l.Begin()
	b, err := tx.Read(1, e.verify)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Write(1, 100, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if b[100] != 0 {
		t.Fatal("Read did not return a private copy")
	}
	b, _ = tx.Read(1, e.verify)
	if string(b[100:105]) != "hello" {
		t.Fatal("tx does not see its own write")
	}
	committed := make([]byte, 4096)
	if err := l.Read(1, e.verify, committed); err != nil {
		t.Fatal(err)
	}
	if committed[100] != 0 {
		t.Fatal("uncommitted write visible")
	}
	lsn, err := tx.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Read(1, e.verify, committed); err != nil || string(committed[100:105]) != "hello" {
		t.Fatalf("committed write not visible: %v", err)
	}
	if err := l.Wait(lsn); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(); !errors.Is(err, ErrTxDone) {
		t.Fatalf("second commit: %v", err)
	}
	// An empty transaction returns a durable LSN.
	el, err := l.Begin().Commit()
	if err != nil || el < lsn {
		t.Fatalf("empty commit: %d %v", el, err)
	}
	if err := l.Wait(el); err != nil {
		t.Fatal(err)
	}
	// Writes to blocks inside the log or outside the device fail.
	tx = l.Begin()
	if err := tx.Write(33, 0, []byte{1}); err == nil {
		t.Fatal("write inside the log accepted")
	}
	if err := tx.Write(64, 0, []byte{1}); err == nil {
		t.Fatal("write past the device accepted")
	}
	if err := tx.Write(2, 4090, make([]byte, 7)); err == nil {
		t.Fatal("write past the block accepted")
	}
	tx.Abort()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	h := e.home(1)
	if err := e.verify(1, h); err != nil || string(h[100:105]) != "hello" {
		t.Fatalf("home block after close: %v %q", err, h[100:105])
	}
	if layout.ReadHeader(h).LSN != uint64(lsn) {
		t.Fatalf("home LSN %d, want %d", layout.ReadHeader(h).LSN, lsn)
	}
	// A clean log recovers without writing anything.
	before := devBytes(t, e.dev)
	rep, err := Recover(e.dev, e.r, e.seed)
	if err != nil || !rep.Clean {
		t.Fatalf("recover of a clean log: %+v %v", rep, err)
	}
	if !bytes.Equal(before, devBytes(t, e.dev)) {
		t.Fatal("recovering a clean log wrote to the device")
	}
}

// TestViewShared: View hands out the cache's own bytes, which neither
// commits nor checkpoints change (they replace them), and a block the
// transaction changed as a copy that its later writes leave alone.
// CheckCache catches a reader that writes into a view.
func TestViewShared(t *testing.T) {
	e := newEnv(t, 4096, 64, 32, 16)
	e.mkfs(1, 2)
	l := e.open(Options{})
	tx := l.Begin()
	v1, err := tx.View(1, e.verify)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := l.View(1, e.verify); &again[0] != &v1[0] {
		t.Fatal("View of a cached block made a copy")
	}
	if err := tx.Write(1, 100, []byte("new")); err != nil {
		t.Fatal(err)
	}
	mine, err := tx.View(1, e.verify)
	if err != nil || string(mine[100:103]) != "new" {
		t.Fatalf("View does not show the transaction's write: %v", err)
	}
	if err := tx.Write(1, 100, []byte("NEW")); err != nil {
		t.Fatal(err)
	}
	if string(mine[100:103]) != "new" {
		t.Fatal("a later write changed the view of a block the transaction had changed")
	}
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if v1[100] != 0 {
		t.Fatal("a commit changed bytes handed out by View")
	}
	committed, err := l.View(1, e.verify)
	if err != nil || string(committed[100:103]) != "NEW" {
		t.Fatalf("committed content: %q %v", committed[100:103], err)
	}
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if layout.ReadHeader(committed).LSN != 0 {
		t.Fatal("the checkpoint stamped the LSN into bytes handed out by View")
	}
	if home, _ := l.View(1, e.verify); layout.ReadHeader(home).LSN == 0 {
		t.Fatal("the cache does not show the checkpoint's header")
	}
	if err := l.CheckCache(nil); err != nil {
		t.Fatalf("clean cache: %v", err)
	}
	v2, err := l.View(2, e.verify)
	if err != nil {
		t.Fatal(err)
	}
	v2[200] = 1 // what no reader may do
	if err := l.CheckCache(nil); err == nil {
		t.Fatal("CheckCache missed a changed view")
	}
	v2[200] = 0
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAbortAndDefer(t *testing.T) {
	e := newEnv(t, 4096, 64, 32, 16)
	e.mkfs(1)
	l := e.open(Options{})
	defer l.Close()
	var order []string
	tx := l.Begin()
	tx.Defer(func(c bool) { order = append(order, fmt.Sprint("a", c)) })
	tx.Defer(func(c bool) { order = append(order, fmt.Sprint("b", c)) })
	if err := tx.Write(1, 200, []byte("gone")); err != nil {
		t.Fatal(err)
	}
	tx.Abort()
	if fmt.Sprint(order) != "[bfalse afalse]" {
		t.Fatalf("abort defers ran as %v", order)
	}
	b := make([]byte, 4096)
	if err := l.Read(1, e.verify, b); err != nil || b[200] != 0 {
		t.Fatalf("aborted write visible: %v", err)
	}
	order = nil
	tx = l.Begin()
	tx.Defer(func(c bool) { order = append(order, fmt.Sprint("a", c)) })
	tx.Defer(func(c bool) {
		// The change is in the cache by the time deferred functions run.
		_ = l.Read(1, e.verify, b)
		order = append(order, fmt.Sprint("b", c, string(b[200:204])))
	})
	tx.Write(1, 200, []byte("kept"))
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != "[btruekept atrue]" {
		t.Fatalf("commit defers ran as %v", order)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestTooLarge(t *testing.T) {
	e := newEnv(t, 1024, 64, 32, 8)
	l := e.open(Options{})
	defer l.Close()
	tx := l.Begin()
	committed := true
	tx.Defer(func(c bool) { committed = c })
	for blk := uint64(1); blk <= 6; blk++ {
		tx.Init(blk, e.fresh(blk))
	}
	if _, err := tx.Commit(); !errors.Is(err, ErrTooLarge) || committed {
		t.Fatalf("huge commit: %v (deferred saw %v)", err, committed)
	}
	// The log still works.
	tx = l.Begin()
	tx.Init(1, e.fresh(1))
	if lsn, err := tx.Commit(); err != nil || l.Wait(lsn) != nil {
		t.Fatal(err)
	}
}

// TestWrapAround runs many transactions through a tiny log so it wraps
// many times, with a small cache, reopening now and then.
func TestWrapAround(t *testing.T) {
	e := newEnv(t, 1024, 128, 100, 8) // 6 blocks of sectors
	var blks []uint64
	for b := uint64(1); b <= 40; b++ {
		blks = append(blks, b)
	}
	e.mkfs(blks...)
	model := map[uint64]uint64{}
	r := rand.New(rand.NewPCG(3, 4))
	l := e.open(Options{CacheBlocks: 8})
	for i := 1; i <= 3000; i++ {
		tx := l.Begin()
		n := 1 + r.IntN(3)
		for range n {
			blk := blks[r.IntN(len(blks))]
			if _, err := tx.Read(blk, e.verify); err != nil {
				t.Fatal(err)
			}
			if err := tx.Write(blk, 64+8*(i%100), le64(uint64(i))); err != nil {
				t.Fatal(err)
			}
			tx.Write(blk, 1000, le64(uint64(i)))
			model[blk] = uint64(i)
		}
		lsn, err := tx.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			if err := l.Wait(lsn); err != nil {
				t.Fatal(err)
			}
		}
		if i%1000 == 0 && i < 3000 {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = e.open(Options{CacheBlocks: 8})
		}
	}
	st := l.Stats()
	if uint64(st.Head) < 10*uint64(6*1024) {
		t.Fatalf("log did not wrap many times: head %d", st.Head)
	}
	if st.CachedBlocks > 8+3 {
		t.Fatalf("cache holds %d blocks", st.CachedBlocks)
	}
	t.Logf("stats: %+v", st)
	b := make([]byte, 1024)
	for blk, v := range model {
		if err := l.Read(blk, e.verify, b); err != nil || u64at(b, 1000) != v {
			t.Fatalf("block %d: %v last %d want %d", blk, err, u64at(b, 1000), v)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for blk, v := range model {
		h := e.home(blk)
		if err := e.verify(blk, h); err != nil || u64at(h, 1000) != v {
			t.Fatalf("home %d: %v", blk, err)
		}
	}
}

// TestCacheBound checks the cache stays within its capacity for clean
// blocks and that commits dirtying more blocks than it holds wait for
// checkpoints instead of failing.
func TestCacheBound(t *testing.T) {
	e := newEnv(t, 1024, 512, 400, 64)
	var blks []uint64
	for b := uint64(1); b < 300; b++ {
		blks = append(blks, b)
	}
	e.mkfs(blks...)
	l := e.open(Options{CacheBlocks: 16})
	b := make([]byte, 1024)
	for _, blk := range blks {
		if err := l.Read(blk, e.verify, b); err != nil {
			t.Fatal(err)
		}
	}
	if st := l.Stats(); st.CachedBlocks > 16 || st.Evictions < 200 {
		t.Fatalf("after reads: %+v", st)
	}
	for i, blk := range blks {
		tx := l.Begin()
		tx.Write(blk, 64, le64(uint64(i)+1))
		if _, err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if st := l.Stats(); st.DirtyBlocks > 16 {
			t.Fatalf("%d dirty blocks", st.DirtyBlocks)
		}
	}
	st := l.Stats()
	if st.Checkpoints < 10 {
		t.Fatalf("only %d checkpoints", st.Checkpoints)
	}
	// A cache hit is not verified again; a miss is.
	bad := func(uint64, []byte) error { return errors.New("verifier ran") }
	l.Read(blks[len(blks)-1], e.verify, b)
	if err := l.Read(blks[len(blks)-1], bad, b); err != nil {
		t.Fatalf("hit ran the verifier: %v", err)
	}
	if err := l.Read(blks[0], bad, b); err == nil {
		t.Fatal("miss did not run the verifier")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, blk := range blks {
		h := e.home(blk)
		if err := e.verify(blk, h); err != nil || u64at(h, 64) != uint64(i)+1 {
			t.Fatalf("home %d: %v", blk, err)
		}
	}
}

func TestSuperAlternation(t *testing.T) {
	e := newEnv(t, 1024, 64, 32, 16)
	e.mkfs(1)
	l := e.open(Options{})
	g, _ := newGeom(e.dev, e.r)
	last := uint64(0)
	for i := range 6 {
		tx := l.Begin()
		tx.Write(1, 64, le64(uint64(i)))
		if _, err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := l.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		sb, which, err := readSupers(e.dev, &g, e.seed)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && sb.seq != last+1 {
			t.Fatalf("seq %d after %d", sb.seq, last)
		}
		if which != int(sb.seq&1) {
			t.Fatalf("seq %d in copy %d", sb.seq, which)
		}
		other, err := decodeSuper(e.home(32+uint64(1-which)), &g, 32+uint64(1-which), e.seed)
		if err != nil || other.seq != sb.seq-1 {
			t.Fatalf("other copy: %+v %v", other, err)
		}
		last = sb.seq
	}
	// A torn (invalid) newest copy falls back to the other one.
	sb, which, _ := readSupers(e.dev, &g, e.seed)
	junk := make([]byte, 1024)
	e.dev.WriteAt(junk, int64(32+which)*1024)
	sb2, which2, err := readSupers(e.dev, &g, e.seed)
	if err != nil || which2 == which || sb2.seq != sb.seq-1 {
		t.Fatalf("fallback: %+v %d %v", sb2, which2, err)
	}
	l.Close()
}

// TestReadOnlyOpen crashes with committed, durable but unchekpointed
// transactions, then opens read-only: the changes are visible and the
// device is untouched.
func TestReadOnlyOpen(t *testing.T) {
	e := newEnv(t, 1024, 64, 32, 16)
	e.mkfs(1, 2, 3)
	l := e.open(Options{CheckpointAt: 1})
	for i := range 5 {
		tx := l.Begin()
		tx.Write(uint64(1+i%3), 64+8*i, le64(uint64(i)+100))
		if _, err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	tx := l.Begin()
	tx.Init(5, e.fresh(5))
	tx.Write(5, 64, []byte("new"))
	tx.Commit()
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	img := devBytes(t, e.dev) // the crash: the log is never closed
	dev := disk.NewMemFrom(bytes.Clone(img))
	ro, rep, err := Open(dev, e.r, e.seed, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 6 || rep.BlocksWritten != 4 {
		t.Fatalf("report %+v", rep)
	}
	b := make([]byte, 1024)
	for i := range 5 {
		if err := ro.Read(uint64(1+i%3), e.verify, b); err != nil || u64at(b, 64+8*i) != uint64(i)+100 {
			t.Fatalf("block %d: %v", 1+i%3, err)
		}
	}
	if err := ro.Read(5, e.verify, b); err != nil || string(b[64:67]) != "new" {
		t.Fatalf("init block: %v", err)
	}
	tx = ro.Begin()
	if err := tx.Write(1, 64, []byte{1}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write on read-only log: %v", err)
	}
	if _, err := tx.Commit(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("commit on read-only log: %v", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, dev.Bytes()) {
		t.Fatal("read-only open wrote to the device")
	}
	// A real recovery of the same image gives the same blocks.
	rep2, err := Recover(dev, e.r, e.seed)
	if err != nil || rep2.Replayed != 6 {
		t.Fatalf("%+v %v", rep2, err)
	}
	h := make([]byte, 1024)
	dev.ReadAt(h, 5*1024)
	if err := e.verify(5, h); err != nil || string(h[64:67]) != "new" {
		t.Fatalf("recovered init block: %v", err)
	}
	l.Close()
}

// TestConcurrentCommitters checks group commit: many goroutines commit and
// wait, with far fewer device flushes than commits.
func TestConcurrentCommitters(t *testing.T) {
	e := newEnv(t, 4096, 256, 200, 32)
	var blks []uint64
	for b := uint64(1); b <= 64; b++ {
		blks = append(blks, b)
	}
	e.mkfs(blks...)
	l := e.open(Options{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			blk := blks[w*4]
			for i := range 200 {
				tx := l.Begin()
				tx.Write(blk, 64+8*(i%64), le64(uint64(i)))
				lsn, err := tx.Commit()
				if err != nil {
					t.Error(err)
					return
				}
				if err := l.Wait(lsn); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := l.Stats()
	t.Logf("commits %d flushes %d checkpoints %d", st.Commits, st.Flushes, st.Checkpoints)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFileDevice runs a workload over a real file and reopens it.
func TestFileDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := disk.CreateImage(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	dev, err := disk.Open(path, disk.Options{Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dev: dev, r: Region{BlockSize: 4096, Start: 100, Blocks: 16}, seed: 77, bs: 4096}
	if err := Format(dev, e.r, e.seed); err != nil {
		t.Fatal(err)
	}
	e.mkfs(1, 2, 3, 4)
	l := e.open(Options{})
	for i := range 300 {
		tx := l.Begin()
		tx.Write(uint64(1+i%4), 64+8*(i%400), le64(uint64(i)))
		lsn, err := tx.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := l.Wait(lsn); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// Crash: reopen without Close.
	l.fail(errors.New("crashed"))
	close(l.stop)
	l.wg.Wait()
	rep, err := Recover(dev, e.r, e.seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recovery: %+v", rep)
	for i := range 300 {
		h := e.home(uint64(1 + i%4))
		if err := e.verify(uint64(1+i%4), h); err != nil || u64at(h, 64+8*(i%400)) != uint64(i) {
			t.Fatalf("tx %d lost: %v", i, err)
		}
	}
	dev.Close()
}

// TestIOErrors: a failed log flush or checkpoint write fails the log: Wait
// and later commits return the error, nothing hangs.
func TestIOErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		arm  func(f *disk.Fault)
		op   func(l *Log, lsn LSN) error
	}{
		{"log flush", func(f *disk.Fault) { f.FailFlushN(1, syscall.EIO) }, func(l *Log, lsn LSN) error { return l.Wait(lsn) }},
		{"log write", func(f *disk.Fault) { f.FailWriteN(1, syscall.EIO) }, func(l *Log, lsn LSN) error { return l.Wait(lsn) }},
		{"home write", func(f *disk.Fault) { f.FailWriteN(2, syscall.EIO) }, func(l *Log, lsn LSN) error { return l.Checkpoint() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 1024, 64, 32, 16)
			e.mkfs(1)
			f := disk.NewFault(e.dev)
			l, _, err := Open(f, e.r, e.seed, Options{})
			if err != nil {
				t.Fatal(err)
			}
			tx := l.Begin()
			tx.Write(1, 64, []byte{1})
			lsn, err := tx.Commit()
			if err != nil {
				t.Fatal(err)
			}
			c.arm(f)
			if err := c.op(l, lsn); !errors.Is(err, syscall.EIO) {
				t.Fatalf("got %v, want EIO", err)
			}
			tx = l.Begin()
			if err := tx.Write(1, 65, []byte{1}); !errors.Is(err, syscall.EIO) {
				t.Fatalf("write after failure: %v", err)
			}
			if _, err := tx.Commit(); err == nil {
				t.Fatal("commit after failure succeeded")
			}
			if err := l.Close(); err == nil {
				t.Fatal("close after failure succeeded")
			}
		})
	}
}

// TestWaitGroupCommit checks the group commit that Wait runs itself: a
// lone Wait writes the head block and flushes once, a second Wait of the
// same commit does nothing, and concurrent committers all become durable
// while sharing flushes.
func TestWaitGroupCommit(t *testing.T) {
	e := newEnv(t, 4096, 64, 32, 16)
	e.mkfs(1)
	l := e.open(Options{})
	defer l.Close()
	commit := func(blk uint64, data string) LSN {
		t.Helper()
		tx := l.Begin()
		if err := tx.Write(blk, 100, []byte(data)); err != nil {
			t.Error(err)
		}
		lsn, err := tx.Commit()
		if err != nil {
			t.Error(err)
		}
		return lsn
	}
	lsn := commit(1, "alone")
	before := l.Stats()
	if err := l.Wait(lsn); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.LogWrites != before.LogWrites+1 || st.Flushes != before.Flushes+1 || st.Durable < lsn {
		t.Fatalf("Wait: %d log writes (was %d), %d flushes (was %d), durable %d (commit %d)",
			st.LogWrites, before.LogWrites, st.Flushes, before.Flushes, st.Durable, lsn)
	}
	if err := l.Wait(lsn); err != nil {
		t.Fatal(err)
	}
	if again := l.Stats(); again.LogWrites != st.LogWrites || again.Flushes != st.Flushes {
		t.Fatalf("second Wait of a durable commit wrote %d times and flushed %d times",
			again.LogWrites-st.LogWrites, again.Flushes-st.Flushes)
	}

	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				lsn := commit(uint64(1+w), fmt.Sprintf("w%d-%03d", w, i))
				if err := l.Wait(lsn); err != nil {
					t.Error(err)
					return
				}
				if d := l.Stats().Durable; d < lsn {
					t.Errorf("Wait(%d) returned with durable %d", lsn, d)
					return
				}
			}
		}()
	}
	wg.Wait()
	end := l.Stats()
	if n := end.Flushes - st.Flushes; n == 0 || n > workers*each {
		t.Fatalf("%d concurrent commits made %d flushes", workers*each, n)
	}
	t.Logf("%d concurrent commits and waits: %d flushes", workers*each, end.Flushes-st.Flushes)
	// Recovering a copy of the device finds every worker's last commit.
	img := disk.NewMem(e.dev.Size())
	if _, err := img.WriteAt(devBytes(t, e.dev), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(img, e.r, e.seed); err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 4096)
	for w := range workers {
		if _, err := img.ReadAt(h, int64(1+w)*4096); err != nil {
			t.Fatal(err)
		}
		if got, want := string(h[100:106]), fmt.Sprintf("w%d-%03d", w, each-1); got != want {
			t.Errorf("block %d after recovery: %q, want %q", 1+w, got, want)
		}
	}
}
