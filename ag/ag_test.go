package ag

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

func TestFormatWritesOnlyItsBlocks(t *testing.T) {
	sb := newSB(t, testParams)
	bs := int(sb.BlockSize)
	rec := disk.NewRecorder(make([]byte, int(sb.BlockCount)*bs))
	for i := range sb.AGCount {
		if err := Format(rec, sb, i); err != nil {
			t.Fatal(err)
		}
	}
	got := map[uint64]bool{}
	for _, ev := range rec.Log() {
		if ev.Kind != disk.EventWrite {
			continue
		}
		if ev.Off%int64(bs) != 0 || len(ev.Data)%bs != 0 {
			t.Fatalf("write of %d bytes at %d is not whole blocks", len(ev.Data), ev.Off)
		}
		for k := range len(ev.Data) / bs {
			got[uint64(ev.Off)/uint64(bs)+uint64(k)] = true
		}
	}
	want := map[uint64]bool{}
	for i := range sb.AGCount {
		want[sb.SuperBlock(i)] = true
		want[sb.AGHeaderBlock(i)] = true
		want[sb.BlockBitmapStart(i)] = true // the reserved blocks fit in one bitmap block
		want[sb.InodeBitmapStart(i)] = true
	}
	if len(got) != len(want) {
		t.Fatalf("format wrote blocks %v, want %v", keys(got), keys(want))
	}
	for b := range want {
		if !got[b] {
			t.Fatalf("format did not write block %d", b)
		}
	}
	// The log is someone else's; with it the image is a filesystem.
	if err := wal.Format(rec, logRegion(sb), sb.Seed()); err != nil {
		t.Fatal(err)
	}
	for i := range sb.AGCount {
		if errs := Verify(rec, sb, i); len(errs) != 0 {
			t.Fatalf("verify after format: %v", errs)
		}
	}
}

func keys(m map[uint64]bool) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestFormatCounters(t *testing.T) {
	e := newEnv(t, testParams)
	for i := range e.sb.AGCount {
		a := e.gs.AG(i)
		st := a.Stats()
		wantFree := e.sb.AGLen(i) - e.sb.ReservedBlocks(i)
		if st.FreeBlocks != wantFree || st.FreeInodes != uint64(e.sb.InodesPerAG)-1 || st.Dirs != 0 {
			t.Fatalf("ag %d: %+v, want %d free blocks, %d free inodes", i, st, wantFree, e.sb.InodesPerAG-1)
		}
		if st.FreeExtents != 1 || st.LongestFree != wantFree || st.Fragmentation != 0 {
			t.Fatalf("ag %d: fresh AG free space is not one run: %+v", i, st)
		}
		if a.hdr.BlockBitmapInit != 1 || a.hdr.InodeBitmapInit != 1 || a.hdr.InodeTableInit != 0 {
			t.Fatalf("ag %d: init marks %+v", i, a.hdr)
		}
	}
	fb, fi := e.gs.Totals()
	if want := e.sb.BlockCount - 4*e.sb.MetaBlocks() - e.sb.LogBlocks; fb != want || fi != 4*(uint64(e.sb.InodesPerAG)-1) {
		t.Fatalf("totals %d blocks %d inodes", fb, fi)
	}
}

// TestFormatLarge formats a sparse 1 TiB image: it must take well under a
// second and a few MiB of real space.
func TestFormatLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	path := filepath.Join(t.TempDir(), "big.img")
	const size = 1 << 40
	if err := disk.CreateImage(path, size); err != nil {
		t.Skip("no sparse image here:", err)
	}
	dev, err := disk.Open(path, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	sb := newSB(t, layout.Params{DeviceBytes: size})
	start := time.Now()
	for i := range sb.AGCount {
		if err := Format(dev, sb, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	used := st.Blocks * 512
	t.Logf("1 TiB, %d AGs of %d blocks: formatted in %v, %s on disk", sb.AGCount, sb.AGBlocks, took, layout.Bytes(used))
	limit := time.Second
	if raceEnabled {
		limit = 5 * time.Second
	}
	if took > limit || used >= 64<<20 {
		t.Fatalf("format of 1 TiB took %v and %d bytes", took, used)
	}
	if err := wal.Format(dev, logRegion(sb), sb.Seed()); err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint32{0, sb.AGCount - 1} {
		if errs := Verify(dev, sb, i); len(errs) != 0 {
			t.Fatal(errs)
		}
	}
}

// TestPolicies is the table of allocation decisions over known free-space
// patterns. Offsets are relative to the AG's first data block (after its
// reserved blocks).
func TestPolicies(t *testing.T) {
	const agno = 1
	// Pattern A: four small runs and a long tail.
	patA := []Extent{{10, 5}, {20, 3}, {30, 8}, {50, 4}, {100, 1 << 30}}
	// Pattern B: the same small runs, nothing else.
	patB := []Extent{{10, 5}, {20, 3}, {30, 8}, {50, 4}}
	type want = []Extent
	cases := []struct {
		name    string
		pattern []Extent
		n, goal uint64
		policy  Policy
		want    want // nil: ENOSPC
	}{
		{"near at goal", patA, 2, 21, Near, want{{21, 2}}},
		{"near at run start", patA, 5, 10, Near, want{{10, 5}}},
		{"near goal run too short, next fits", patA, 3, 21, Near, want{{30, 3}}},
		{"near skips short runs", patA, 8, 31, Near, want{{100, 8}}},
		{"near from used goal", patA, 4, 40, Near, want{{50, 4}}},
		{"near before start of AG", patA, 1, 0, Near, want{{10, 1}}},
		{"near wraps before goal", patB, 5, 40, Near, want{{30, 5}}},
		{"near wraps to nearest", patB, 3, 55, Near, want{{50, 3}}},
		{"near wraps past short", patB, 5, 55, Near, want{{30, 5}}},
		{"best fit exact", patA, 3, 0, BestFit, want{{20, 3}}},
		{"best fit smallest that holds", patA, 4, 0, BestFit, want{{50, 4}}},
		{"best fit middle", patA, 6, 0, BestFit, want{{30, 6}}},
		{"best fit tail", patA, 9, 0, BestFit, want{{100, 9}}},
		{"first fit", patA, 3, 55, FirstFit, want{{10, 3}}},
		{"first fit skips", patA, 6, 0, FirstFit, want{{30, 6}}},
		{"contiguous fits", patB, 8, 0, Contiguous, want{{30, 8}}},
		{"contiguous near goal", patA, 4, 45, Contiguous, want{{50, 4}}},
		{"contiguous all or nothing", patB, 9, 0, Contiguous, nil},
		{"split: longest then best fit tail", patB, 10, 0, Near, want{{20, 2}, {30, 8}}},
		{"split: three runs", patB, 16, 0, Near, want{{10, 5}, {20, 3}, {30, 8}}},
		{"split: everything", patB, 20, 0, BestFit, want{{10, 5}, {20, 3}, {30, 8}, {50, 4}}},
		{"split: first fit too", patB, 13, 0, FirstFit, want{{10, 5}, {30, 8}}},
		{"more than free", patB, 21, 0, Near, nil},
	}
	e := newEnv(t, testParams)
	a := e.gs.AG(agno)
	d := a.start + a.reserved // first data block
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pat := slices.Clone(c.pattern)
			for i := range pat {
				pat[i].Start += a.reserved
				pat[i].Len = min(pat[i].Len, a.length-pat[i].Start)
			}
			e.pattern(agno, pat)
			before := a.snap()
			var got []Extent
			err := e.tx(func(tx *wal.Tx) error {
				var err error
				got, err = a.AllocBlocks(tx, c.n, d+c.goal, c.policy)
				return err
			})
			if c.want == nil {
				if !isENOSPC(err) {
					t.Fatalf("got %v, %v; want ENOSPC", got, err)
				}
				if !a.snap().equal(before, true) {
					t.Fatal("a failed allocation changed the AG")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i].Start -= d
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			a.checkIndex(t)
		})
	}
	e.verify()
}

func TestENOSPC(t *testing.T) {
	e := newEnv(t, testParams)
	a := e.gs.AG(2)
	free := a.Stats().FreeBlocks
	err := e.tx(func(tx *wal.Tx) error {
		_, err := a.AllocBlocks(tx, free+1, 0, Near)
		return err
	})
	if !isENOSPC(err) || !strings.Contains(err.Error(), "ag 2") {
		t.Fatalf("over-allocation: %v", err)
	}
	e.mustTx(func(tx *wal.Tx) error {
		ext, err := a.AllocBlocks(tx, free, 0, Contiguous)
		if err == nil && (len(ext) != 1 || ext[0].Len != free) {
			err = fmt.Errorf("got %v", ext)
		}
		return err
	})
	err = e.tx(func(tx *wal.Tx) error {
		_, err := a.AllocBlocks(tx, 1, 0, Near)
		return err
	})
	if !isENOSPC(err) {
		t.Fatalf("allocation from a full AG: %v", err)
	}
	if st := a.Stats(); st.FreeBlocks != 0 || st.FreeExtents != 0 || st.Fragmentation != 0 {
		t.Fatalf("full AG stats %+v", st)
	}
	// The front moves on to the other AGs.
	e.mustTx(func(tx *wal.Tx) error {
		ext, err := e.gs.AllocBlocks(tx, 5, a.start+100, Near)
		if err == nil && e.sb.AGOf(ext[0].Start) != 3 {
			err = fmt.Errorf("allocation went to %v, want AG 3", ext)
		}
		return err
	})
	// Inodes: exhaust AG 2's.
	e.mustTx(func(tx *wal.Tx) error {
		for range e.sb.InodesPerAG - 1 {
			if _, err := a.AllocInode(tx, 0, false); err != nil {
				return err
			}
		}
		return nil
	})
	err = e.tx(func(tx *wal.Tx) error {
		_, err := a.AllocInode(tx, 0, false)
		return err
	})
	if !isENOSPC(err) {
		t.Fatalf("inode from a full AG: %v", err)
	}
	e.verify()
	e.reopen()
	if st := e.gs.AG(2).Stats(); st.FreeBlocks != 0 || st.FreeInodes != 0 {
		t.Fatalf("after reopen %+v", st)
	}
	e.verify()
}

func TestGroupsENOSPC(t *testing.T) {
	e := newEnv(t, testParams)
	total, _ := e.gs.Totals()
	// More than all of it: nothing is allocated.
	err := e.tx(func(tx *wal.Tx) error {
		_, err := e.gs.AllocBlocks(tx, total+1, 0, Near)
		return err
	})
	if !isENOSPC(err) {
		t.Fatalf("got %v", err)
	}
	if fb, _ := e.gs.Totals(); fb != total {
		t.Fatalf("free %d after a failed allocation, want %d", fb, total)
	}
	// All of it: spread over the four AGs.
	var got []Extent
	e.mustTx(func(tx *wal.Tx) error {
		var err error
		got, err = e.gs.AllocBlocks(tx, total, e.sb.AGStart(2), Near)
		return err
	})
	sum := uint64(0)
	for _, x := range got {
		sum += x.Len
	}
	if sum != total || len(got) != 4 || e.sb.AGOf(got[0].Start) != 2 {
		t.Fatalf("got %v (%d blocks), want all %d in 4 extents starting in AG 2", got, sum, total)
	}
	err = e.tx(func(tx *wal.Tx) error {
		_, err := e.gs.AllocBlocks(tx, 1, 0, Near)
		return err
	})
	if !isENOSPC(err) {
		t.Fatalf("got %v", err)
	}
	e.verify()
}

func TestFreeAndMerge(t *testing.T) {
	e := newEnv(t, testParams)
	a := e.gs.AG(1)
	var ext []Extent
	e.mustTx(func(tx *wal.Tx) error {
		for range 5 {
			x, err := a.AllocBlocks(tx, 10, 0, Near)
			if err != nil {
				return err
			}
			ext = append(ext, x...)
		}
		return nil
	})
	for i := 1; i < len(ext); i++ {
		if ext[i].Start != ext[i-1].End() {
			t.Fatalf("near allocations are not consecutive: %v", ext)
		}
	}
	before := a.Stats()
	// Free 1 and 3, then 2: the three merge into one run.
	e.mustTx(func(tx *wal.Tx) error {
		for _, i := range []int{1, 3} {
			if err := a.FreeBlocks(tx, ext[i].Start, ext[i].Len); err != nil {
				return err
			}
		}
		return nil
	})
	st := a.Stats()
	if st.FreeBlocks != before.FreeBlocks+20 || st.BusyBlocks != 20 || st.FreeExtents != before.FreeExtents {
		t.Fatalf("after free: %+v (before %+v)", st, before)
	}
	e.settle()
	if st := a.Stats(); st.BusyBlocks != 0 || st.FreeExtents != 3 || st.Fragmentation == 0 {
		t.Fatalf("settled: %+v", st)
	}
	e.mustTx(func(tx *wal.Tx) error { return a.FreeBlocks(tx, ext[2].Start, ext[2].Len) })
	e.settle()
	a.checkIndex(t)
	if st := a.Stats(); st.FreeExtents != 2 {
		t.Fatalf("after merging: %+v", st)
	}
	a.mu.Lock()
	s, l, ok := a.idx.containing(ext[1].Start - a.start)
	a.mu.Unlock()
	if !ok || s != ext[1].Start-a.start || l != 30 {
		t.Fatalf("merged run %d+%d, want %d+30", s, l, ext[1].Start-a.start)
	}
	// Free the last two: everything merges back into the one free run.
	e.mustTx(func(tx *wal.Tx) error {
		if err := a.FreeBlocks(tx, ext[0].Start, ext[0].Len); err != nil {
			return err
		}
		return a.FreeBlocks(tx, ext[4].Start, ext[4].Len)
	})
	e.settle()
	if st := a.Stats(); st.FreeExtents != 1 || st.FreeBlocks != a.length-a.reserved || st.Fragmentation != 0 {
		t.Fatalf("all freed: %+v", st)
	}
	a.checkIndex(t)
	e.verify()
}

// TestBusyExtents: blocks freed by a transaction are not handed out again
// until the free is durable.
func TestBusyExtents(t *testing.T) {
	e := newEnv(t, testParams)
	a := e.gs.AG(1)
	var x []Extent
	e.mustTx(func(tx *wal.Tx) error {
		var err error
		x, err = a.AllocBlocks(tx, 8, 0, Near)
		return err
	})
	// Freed and re-allocated in one transaction: not the same blocks.
	e.mustTx(func(tx *wal.Tx) error {
		if err := a.FreeBlocks(tx, x[0].Start, 8); err != nil {
			return err
		}
		y, err := a.AllocBlocks(tx, 8, x[0].Start, Near)
		if err == nil && y[0].Start == x[0].Start {
			err = fmt.Errorf("freed blocks reused in the freeing transaction: %v", y)
		}
		return err
	})
	// In the next transaction, before anything is durable: still busy.
	e.mustTx(func(tx *wal.Tx) error {
		y, err := a.AllocBlocks(tx, 8, x[0].Start, Near)
		if err == nil && y[0].Start == x[0].Start {
			err = fmt.Errorf("freed blocks reused before the free was durable: %v", y)
		}
		return err
	})
	// Once durable, they are reused.
	if err := e.log.Sync(); err != nil {
		t.Fatal(err)
	}
	e.settle()
	e.mustTx(func(tx *wal.Tx) error {
		y, err := a.AllocBlocks(tx, 8, x[0].Start, Near)
		if err == nil && y[0].Start != x[0].Start {
			err = fmt.Errorf("durably freed blocks not reused: %v", y)
		}
		return err
	})
	// A nearly full AG waits for the log rather than failing.
	free := a.Stats().FreeBlocks
	e.mustTx(func(tx *wal.Tx) error {
		_, err := a.AllocBlocks(tx, free, 0, Near)
		if err != nil {
			return err
		}
		return a.FreeBlocks(tx, x[0].Start, 8)
	})
	e.mustTx(func(tx *wal.Tx) error {
		y, err := a.AllocBlocks(tx, 8, 0, Near)
		if err == nil && y[0].Start != x[0].Start {
			err = fmt.Errorf("got %v", y)
		}
		return err
	})
	a.checkIndex(t)
	e.verify()
}

func TestDoubleFree(t *testing.T) {
	e := newEnv(t, testParams)
	a := e.gs.AG(0)
	var x []Extent
	e.mustTx(func(tx *wal.Tx) error {
		var err error
		x, err = a.AllocBlocks(tx, 10, 0, Near)
		return err
	})
	e.mustTx(func(tx *wal.Tx) error { return a.FreeBlocks(tx, x[0].Start+2, 3) })
	before := a.snap()
	for _, r := range []Extent{{x[0].Start + 2, 1}, {x[0].Start, 10}, {x[0].Start + 4, 2}, {x[0].End(), 1}} {
		tx := e.log.Begin()
		err := a.FreeBlocks(tx, r.Start, r.Len)
		if !errors.Is(err, layout.ErrCorrupt) || !strings.Contains(err.Error(), "already free") {
			t.Fatalf("double free of %v: %v", r, err)
		}
		if _, err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if !a.snap().equal(before, true) {
			t.Fatalf("double free of %v changed the AG", r)
		}
	}
	// Reserved blocks and blocks outside the AG.
	for _, r := range []Extent{{a.start + 1, 1}, {a.start + a.reserved - 1, 2}} {
		err := e.tx(func(tx *wal.Tx) error { return a.FreeBlocks(tx, r.Start, r.Len) })
		if !errors.Is(err, layout.ErrCorrupt) {
			t.Fatalf("free of reserved %v: %v", r, err)
		}
	}
	for _, r := range []Extent{{a.start + a.length - 1, 2}, {a.start + a.length, 1}, {x[0].Start, 0}} {
		err := e.tx(func(tx *wal.Tx) error { return a.FreeBlocks(tx, r.Start, r.Len) })
		if !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("free of %v: %v", r, err)
		}
	}
	// Inodes.
	var ino uint64
	e.mustTx(func(tx *wal.Tx) error {
		var err error
		ino, err = a.AllocInode(tx, 0, false)
		return err
	})
	e.mustTx(func(tx *wal.Tx) error { return a.FreeInode(tx, ino, false) })
	if err := e.tx(func(tx *wal.Tx) error { return a.FreeInode(tx, ino, false) }); !errors.Is(err, layout.ErrCorrupt) {
		t.Fatalf("double inode free: %v", err)
	}
	for _, bad := range []uint64{0, e.sb.Ino(1, 5), e.sb.Ino(0, e.sb.InodesPerAG)} {
		if err := e.tx(func(tx *wal.Tx) error { return a.FreeInode(tx, bad, false) }); !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("free of inode %d: %v", bad, err)
		}
	}
	e.verify()
}

func TestAbortUndoesEverything(t *testing.T) {
	e := newEnv(t, testParams)
	// Some history first, so frees have something to free.
	var x []Extent
	e.mustTx(func(tx *wal.Tx) error {
		var err error
		x, err = e.gs.AllocBlocks(tx, 40, e.sb.AGStart(1), Near)
		if err != nil {
			return err
		}
		_, err = e.gs.AG(1).AllocInode(tx, 0, true)
		return err
	})
	e.settle()
	var before []snapshot
	for i := range e.sb.AGCount {
		e.gs.AG(i).ensureIndexLocked()
		before = append(before, e.gs.AG(i).snap())
	}
	fb, fi := e.gs.Totals()

	tx := e.log.Begin()
	a1, a2 := e.gs.AG(1), e.gs.AG(2)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := a1.AllocBlocks(tx, 100, 0, BestFit)
	must(err)
	must(a1.FreeBlocks(tx, x[0].Start+5, 10))
	// Cross the block-bitmap mark (into bitmap block 1) and the inode
	// marks.
	_, err = a1.AllocBlocks(tx, 20, a1.start+a1.bm.BitsPerBlock()+7, Near)
	must(err)
	for range 10 {
		_, err := a1.AllocInode(tx, 0, true)
		must(err)
	}
	_, err = a2.AllocBlocks(tx, 3000, 0, Near)
	must(err)
	_, err = a2.AllocInode(tx, 0, false)
	must(err)
	if a1.hdr.BlockBitmapInit != 2 || a1.hdr.InodeTableInit < 4 {
		t.Fatalf("marks not crossed: %+v", a1.hdr)
	}
	tx.Abort()

	for i := range e.sb.AGCount {
		if !e.gs.AG(i).snap().equal(before[i], true) {
			t.Fatalf("ag %d: abort left changes", i)
		}
		e.gs.AG(i).checkIndex(t)
	}
	if fb2, fi2 := e.gs.Totals(); fb2 != fb || fi2 != fi {
		t.Fatalf("totals %d/%d after abort, want %d/%d", fb2, fi2, fb, fi)
	}
	// The AGs are free for the next transaction, and the device agrees.
	e.mustTx(func(tx *wal.Tx) error {
		_, err := a2.AllocBlocks(tx, 1, 0, Near)
		return err
	})
	e.verify()
	e.reopen()
	for i := range e.sb.AGCount {
		want := before[i]
		if i == 2 {
			continue // changed by the last transaction
		}
		if !e.gs.AG(i).snap().equal(want, false) {
			t.Fatalf("ag %d: device state after abort differs", i)
		}
	}
}

func (a *AG) ensureIndexLocked() {
	a.mu.Lock()
	a.ensureIndex()
	a.mu.Unlock()
}

func TestLazyInit(t *testing.T) {
	e := newEnv(t, testParams)
	a := e.gs.AG(3)
	bpb := a.bm.BitsPerBlock()
	ipb := uint64(e.sb.InodesPerBlock())
	// A goal two bitmap blocks ahead is pulled back (the test geometry has
	// only two, so try it on a copy of the mark).
	a.mu.Lock()
	a.hdr.BlockBitmapInit = 0
	if g := a.relGoal(a.start + bpb + 10); g != 0 {
		t.Fatalf("goal two blocks past the mark: %d", g)
	}
	a.hdr.BlockBitmapInit = 1
	a.mu.Unlock()
	// A goal in the second bitmap block: that block is created.
	e.mustTx(func(tx *wal.Tx) error {
		x, err := a.AllocBlocks(tx, 4, a.start+bpb+10, Near)
		if err == nil && x[0].Start != a.start+bpb+10 {
			err = fmt.Errorf("got %v", x)
		}
		return err
	})
	if a.hdr.BlockBitmapInit != 2 {
		t.Fatalf("block bitmap mark %d", a.hdr.BlockBitmapInit)
	}
	// An allocation across the boundary of bitmap blocks 0 and 1.
	e.mustTx(func(tx *wal.Tx) error {
		x, err := a.AllocBlocks(tx, 10, a.start+bpb-5, Near)
		if err == nil && x[0].Start != a.start+bpb-5 {
			err = fmt.Errorf("got %v", x)
		}
		return err
	})
	// Inodes: the table grows one block at a time, never ahead.
	var inos []uint64
	e.mustTx(func(tx *wal.Tx) error {
		for range 2*ipb + 1 {
			ino, err := a.AllocInode(tx, 0, false)
			if err != nil {
				return err
			}
			inos = append(inos, ino)
		}
		return nil
	})
	if a.hdr.InodeTableInit != 3 {
		t.Fatalf("inode table mark %d after %d inodes", a.hdr.InodeTableInit, len(inos))
	}
	if inos[0] != e.sb.Ino(3, 1) || inos[len(inos)-1] != e.sb.Ino(3, uint32(2*ipb+1)) {
		t.Fatalf("inodes %v", inos)
	}
	// A far goal is pulled back to the first uninitialised table block.
	e.mustTx(func(tx *wal.Tx) error {
		ino, err := a.AllocInode(tx, 100, false)
		if err == nil && ino != e.sb.Ino(3, uint32(3*ipb)) {
			err = fmt.Errorf("got inode %d", ino)
		}
		return err
	})
	if a.hdr.InodeTableInit != 4 {
		t.Fatalf("inode table mark %d", a.hdr.InodeTableInit)
	}
	e.verify()
	e.reopen()
	a = e.gs.AG(3)
	if h := a.hdr; h.BlockBitmapInit != 2 || h.InodeTableInit != 4 || h.InodeBitmapInit != 1 {
		t.Fatalf("marks after reopen: %+v", h)
	}
	// The inode-table blocks on the device are sealed, empty, and owned.
	for i := range uint64(4) {
		blk := e.sb.InodeTableStart(3) + i
		b := make([]byte, e.sb.BlockSize)
		if _, err := e.dev.ReadAt(b, int64(blk)*int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if err := layout.Check(b, e.sb.Seed(), layout.MagicInodeTable, blk, 3); err != nil {
			t.Fatal(err)
		}
	}
	e.verify()
}

// TestLazyInitInodeBitmap uses a geometry with two inode-bitmap blocks.
func TestLazyInitInodeBitmap(t *testing.T) {
	p := testParams
	p.BytesPerInode = 1024 // 8192 inodes per AG: two inode-bitmap blocks
	p.DeviceBytes = 2 * 16384 * 1024
	p.AGCount = 2
	e := newEnv(t, p)
	a := e.gs.AG(1)
	if e.sb.InodeBitmapBlocks < 2 {
		t.Fatalf("geometry %+v", e.sb.Geometry)
	}
	bpb := uint32(a.im.BitsPerBlock())
	// Fill the first bitmap block's worth of inodes in a few transactions.
	for done := uint32(1); done < bpb; {
		e.mustTx(func(tx *wal.Tx) error {
			for k := 0; k < 150 && done < bpb; k++ {
				if _, err := a.AllocInode(tx, 0, k%10 == 0); err != nil {
					return err
				}
				done++
			}
			return nil
		})
	}
	if a.hdr.InodeBitmapInit != 1 {
		t.Fatalf("inode bitmap mark %d", a.hdr.InodeBitmapInit)
	}
	e.mustTx(func(tx *wal.Tx) error {
		ino, err := a.AllocInode(tx, 0, false)
		if err == nil && ino != e.sb.Ino(1, bpb) {
			err = fmt.Errorf("got %d", ino)
		}
		return err
	})
	if a.hdr.InodeBitmapInit != 2 {
		t.Fatalf("inode bitmap mark %d", a.hdr.InodeBitmapInit)
	}
	e.verify()
	e.reopen()
	if st := e.gs.AG(1).Stats(); st.FreeInodes != uint64(e.sb.InodesPerAG)-1-uint64(bpb) {
		t.Fatalf("stats %+v", st)
	}
	e.verify()
}

func TestCountersAfterReopen(t *testing.T) {
	e := newEnv(t, testParams)
	rng := rand.New(rand.NewPCG(3, 4))
	var live []Extent
	var inos []uint64
	for range 50 {
		e.mustTx(func(tx *wal.Tx) error {
			for range 5 {
				switch rng.IntN(4) {
				case 0, 1:
					x, err := e.gs.AllocBlocks(tx, 1+rng.Uint64N(300), rng.Uint64N(e.sb.BlockCount), Policy(rng.IntN(3)))
					if err != nil {
						return err
					}
					live = append(live, x...)
				case 2:
					if len(live) > 0 {
						k := rng.IntN(len(live))
						if err := e.gs.FreeBlocks(tx, live[k].Start, live[k].Len); err != nil {
							return err
						}
						live = slices.Delete(live, k, k+1)
					}
				case 3:
					ino, err := e.gs.AllocInode(tx, layout.RootIno, rng.IntN(2) == 0)
					if err != nil {
						return err
					}
					inos = append(inos, ino)
				}
			}
			return nil
		})
	}
	var before []Stats
	for _, a := range e.gs.ags {
		before = append(before, a.Stats())
	}
	fb, fi := e.gs.Totals()
	e.verify()
	e.reopen()
	for i, a := range e.gs.ags {
		st := a.Stats()
		b := before[i]
		// Busy extents are settled by the reopen.
		b.BusyBlocks, st.BusyBlocks = 0, 0
		if st.FreeBlocks != b.FreeBlocks || st.FreeInodes != b.FreeInodes || st.Dirs != b.Dirs {
			t.Fatalf("ag %d: %+v after reopen, %+v before", i, st, b)
		}
	}
	if fb2, fi2 := e.gs.Totals(); fb2 != fb || fi2 != fi {
		t.Fatalf("totals %d/%d, want %d/%d", fb2, fi2, fb, fi)
	}
	// Everything still allocated is still allocated.
	for _, x := range live {
		a := e.gs.AG(e.sb.AGOf(x.Start))
		if !a.bm.RangeIsSet(x.Start-a.start, x.Len) {
			t.Fatalf("extent %v lost", x)
		}
	}
	for _, ino := range inos {
		ag, i, _ := e.sb.SplitIno(ino)
		if !e.gs.AG(ag).im.Test(uint64(i)) {
			t.Fatalf("inode %d lost", ino)
		}
	}
}

// TestModel runs random allocations and frees, in transactions that
// commit or abort, against a model of which blocks and inodes are in use.
func TestModel(t *testing.T) {
	const ops = 20000 // about 14,000 of them block allocations and frees
	e := newEnv(t, testParams)
	rng := rand.New(rand.NewPCG(11, 12))
	used := make([]bool, e.sb.BlockCount)
	for i := range e.sb.AGCount {
		for b := range e.sb.ReservedBlocks(i) {
			used[e.sb.AGStart(i)+b] = true
		}
	}
	inUse := map[uint64]bool{}
	var live []Extent
	var inos []uint64
	isDir := map[uint64]bool{}
	done, commits, aborts := 0, 0, 0
	for done < ops {
		// The model before the transaction, restored if it aborts.
		saveUsed, saveLive, saveInos, saveDir := slices.Clone(used), slices.Clone(live), slices.Clone(inos), maps.Clone(isDir)
		tx := e.log.Begin()
		for k := 0; k < 1+rng.IntN(6); k++ {
			done++
			switch r := rng.IntN(10); {
			case r < 4:
				n := 1 + rng.Uint64N(64)
				if rng.IntN(20) == 0 {
					n = 1 + rng.Uint64N(3000)
				}
				p := Policy(rng.IntN(4))
				x, err := e.gs.AllocBlocks(tx, n, rng.Uint64N(e.sb.BlockCount), p)
				if isENOSPC(err) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				sum := uint64(0)
				for _, ex := range x {
					sum += ex.Len
					if e.sb.AGOf(ex.Start) != e.sb.AGOf(ex.End()-1) {
						t.Fatalf("extent %v spans AGs", ex)
					}
					for b := ex.Start; b < ex.End(); b++ {
						if used[b] {
							t.Fatalf("op %d: block %d allocated twice", done, b)
						}
						used[b] = true
					}
				}
				if sum != n || (p == Contiguous && len(x) != 1) {
					t.Fatalf("op %d: asked %d (%v), got %v", done, n, p, x)
				}
				live = append(live, x...)
			case r < 7:
				if len(live) == 0 {
					continue
				}
				j := rng.IntN(len(live))
				x := live[j]
				cut := x.Len
				if rng.IntN(3) == 0 && x.Len > 1 {
					cut = 1 + rng.Uint64N(x.Len-1) // free a head piece
				}
				if err := e.gs.FreeBlocks(tx, x.Start, cut); err != nil {
					t.Fatal(err)
				}
				for b := x.Start; b < x.Start+cut; b++ {
					used[b] = false
				}
				if cut == x.Len {
					live = slices.Delete(live, j, j+1)
				} else {
					live[j] = Extent{x.Start + cut, x.Len - cut}
				}
			case r < 9:
				dir := rng.IntN(4) == 0
				ino, err := e.gs.AllocInode(tx, layout.RootIno+uint64(rng.IntN(3)), dir)
				if isENOSPC(err) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(inos, ino) {
					t.Fatalf("inode %d allocated twice", ino)
				}
				inos = append(inos, ino)
				isDir[ino] = dir
			default:
				if len(inos) == 0 {
					continue
				}
				j := rng.IntN(len(inos))
				if err := e.gs.FreeInode(tx, inos[j], isDir[inos[j]]); err != nil {
					t.Fatal(err)
				}
				inos = slices.Delete(inos, j, j+1)
			}
		}
		if rng.IntN(10) == 0 {
			tx.Abort()
			used, live, inos, isDir = saveUsed, saveLive, saveInos, saveDir
			aborts++
		} else {
			if _, err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			commits++
		}
		if commits%500 == 0 {
			for _, a := range e.gs.ags {
				a.checkIndex(t)
			}
		}
	}
	clear(inUse)
	dirs := make([]uint64, e.sb.AGCount)
	for _, ino := range inos {
		inUse[ino] = true
		if isDir[ino] {
			ag, _, _ := e.sb.SplitIno(ino)
			dirs[ag]++
		}
	}
	check := func() {
		t.Helper()
		for _, a := range e.gs.ags {
			for b := range a.length {
				if a.bm.Test(b) != used[a.start+b] {
					t.Fatalf("block %d: bitmap %v, model %v", a.start+b, a.bm.Test(b), used[a.start+b])
				}
			}
			a.checkIndex(t)
			if a.hdr.Dirs != dirs[a.no] {
				t.Fatalf("ag %d: %d directories, model %d", a.no, a.hdr.Dirs, dirs[a.no])
			}
			for i := uint64(1); i < a.im.Len(); i++ {
				ino := e.sb.Ino(a.no, uint32(i))
				if a.im.Test(i) != inUse[ino] {
					t.Fatalf("inode %d: bitmap %v, model %v", ino, a.im.Test(i), inUse[ino])
				}
			}
		}
	}
	check()
	e.verify()
	e.reopen()
	check()
	e.verify()
	st := e.gs.Stats()
	t.Logf("%d operations in %d commits and %d aborts; %d live extents, %d inodes; AG 0: %+v",
		done, commits, aborts, len(live), len(inos), st[0])
}

func TestLockOrder(t *testing.T) {
	e := newEnv(t, testParams)
	tx := e.log.Begin()
	if _, err := e.gs.AG(2).AllocBlocks(tx, 1, 0, Near); err != nil {
		t.Fatal(err)
	}
	_, err := e.gs.AG(1).AllocBlocks(tx, 1, 0, Near)
	if !errors.Is(err, ErrLockOrder) {
		t.Fatalf("taking AG 1 after AG 2: %v", err)
	}
	// The same AG again, and a higher one, are fine.
	if _, err := e.gs.AG(2).AllocInode(tx, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gs.AG(3).AllocBlocks(tx, 1, 0, Near); err != nil {
		t.Fatal(err)
	}
	// The front goes below only by trying: AG 0 is free, so it works.
	x, err := e.gs.AllocBlocks(tx, 1, e.sb.AGStart(0), Near)
	if err != nil || e.sb.AGOf(x[0].Start) != 0 {
		t.Fatalf("front below the held AGs: %v, %v", x, err)
	}
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// While another transaction holds AG 0, the front skips it rather
	// than wait (a wait could deadlock).
	other := e.log.Begin()
	if _, err := e.gs.AG(0).AllocBlocks(other, 1, 0, Near); err != nil {
		t.Fatal(err)
	}
	tx = e.log.Begin()
	if _, err := e.gs.AG(1).AllocBlocks(tx, 1, 0, Near); err != nil {
		t.Fatal(err)
	}
	doneCh := make(chan error)
	go func() {
		x, err := e.gs.AllocBlocks(tx, 1, e.sb.AGStart(0), Near)
		if err == nil && e.sb.AGOf(x[0].Start) == 0 {
			err = fmt.Errorf("allocated in AG 0 which another transaction holds: %v", x)
		}
		doneCh <- err
	}()
	select {
	case err := <-doneCh:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the front waited for a lower AG")
	}
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	other.Abort()
	e.verify()
}

// TestParallelAGs runs committers in different AGs at once (for the race
// detector) and checks the result.
func TestParallelAGs(t *testing.T) {
	e := newEnv(t, testParams)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range uint32(4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := e.gs.AG(g)
			var mine []Extent
			for k := range 200 {
				err := e.tx(func(tx *wal.Tx) error {
					if k%3 == 2 && len(mine) > 0 {
						x := mine[len(mine)-1]
						mine = mine[:len(mine)-1]
						return a.FreeBlocks(tx, x.Start, x.Len)
					}
					x, err := e.gs.AllocBlocks(tx, 1+uint64(k%7), a.start, Near)
					if err == nil && e.sb.AGOf(x[0].Start) != g {
						err = fmt.Errorf("ag %d allocation went to %v", g, x)
					}
					mine = append(mine, x...)
					if err == nil && k%5 == 0 {
						_, err = e.gs.AllocInode(tx, e.sb.Ino(g, 1), false)
					}
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, a := range e.gs.ags {
		a.checkIndex(t)
	}
	e.verify()
}

func TestInodePlacement(t *testing.T) {
	e := newEnv(t, testParams)
	// The root directory, as mkfs would make it.
	var root uint64
	e.mustTx(func(tx *wal.Tx) error {
		var err error
		root, err = e.gs.AG(0).AllocInode(tx, 0, true)
		return err
	})
	if root != layout.RootIno {
		t.Fatalf("first inode is %d", root)
	}
	// New directories under the root spread over the AGs: with the root
	// in AG 0, seven more give every AG two.
	var dirs []uint64
	for range 7 {
		e.mustTx(func(tx *wal.Tx) error {
			ino, err := e.gs.AllocInode(tx, root, true)
			dirs = append(dirs, ino)
			return err
		})
	}
	for i := range e.sb.AGCount {
		if d := e.gs.AG(i).Stats().Dirs; d != 2 {
			t.Fatalf("ag %d has %d directories (new ones: %v)", i, d, dirs)
		}
	}
	// Files go next to their directory.
	for _, d := range dirs {
		dag, di, _ := e.sb.SplitIno(d)
		e.mustTx(func(tx *wal.Tx) error {
			ino, err := e.gs.AllocInode(tx, d, false)
			ag, i, _ := e.sb.SplitIno(ino)
			if err == nil && (ag != dag || i <= di) {
				err = fmt.Errorf("file of dir %d got inode %d", d, ino)
			}
			return err
		})
	}
	// A full AG sends files to the next one.
	a := e.gs.AG(2)
	e.mustTx(func(tx *wal.Tx) error {
		for a.hdr.FreeInodes > 0 {
			if _, err := a.AllocInode(tx, 0, false); err != nil {
				return err
			}
		}
		return nil
	})
	e.mustTx(func(tx *wal.Tx) error {
		ino, err := e.gs.AllocInode(tx, e.sb.Ino(2, 1), false)
		if ag, _, _ := e.sb.SplitIno(ino); err == nil && ag != 3 {
			err = fmt.Errorf("got inode %d", ino)
		}
		return err
	})
	// And directories avoid it.
	for range 3 {
		e.mustTx(func(tx *wal.Tx) error {
			ino, err := e.gs.AllocInode(tx, root, true)
			if ag, _, _ := e.sb.SplitIno(ino); err == nil && ag == 2 {
				err = fmt.Errorf("directory in the full AG: %d", ino)
			}
			return err
		})
	}
	e.verify()
}

// TestOpenCatchesCorruption damages the device under a closed filesystem
// and checks that Open refuses it, naming the AG and the block.
func TestOpenCatchesCorruption(t *testing.T) {
	e := newEnv(t, testParams)
	e.mustTx(func(tx *wal.Tx) error {
		_, err := e.gs.AllocBlocks(tx, 50, e.sb.AGStart(1), Near)
		return err
	})
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	e.log = nil
	clean := e.dev.(*disk.Mem).Bytes()
	bs := int(e.sb.BlockSize)
	bbm := e.sb.BlockBitmapStart(1)
	cases := []struct {
		name string
		blk  uint64
		off  int
		want string
	}{
		{"bitmap checksum", bbm, 500, fmt.Sprintf("ag 1: block bitmap block 0 (device block %d)", bbm)},
		{"header checksum", e.sb.AGHeaderBlock(1), 90, fmt.Sprintf("ag 1: header block %d", e.sb.AGHeaderBlock(1))},
		{"inode bitmap", e.sb.InodeBitmapStart(1), 70, fmt.Sprintf("ag 1: inode bitmap block 0 (device block %d)", e.sb.InodeBitmapStart(1))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := slicesClone(clean)
			img[int(c.blk)*bs+c.off] ^= 0x10
			dev := disk.NewMemFrom(img)
			l, _, err := wal.Open(dev, logRegion(e.sb), e.sb.Seed(), wal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			_, err = OpenGroups(l, e.sb)
			if !errors.Is(err, layout.ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want corruption naming %q", err, c.want)
			}
		})
	}
	// A counter that disagrees with the bitmap, in a correctly sealed
	// header.
	t.Run("counter", func(t *testing.T) {
		img := slicesClone(clean)
		hb := int(e.sb.AGHeaderBlock(1)) * bs
		h := img[hb : hb+bs]
		h[layout.OffAGFreeBlocks]--
		layout.Seal(h, e.sb.Seed(), 0)
		dev := disk.NewMemFrom(img)
		l, _, err := wal.Open(dev, logRegion(e.sb), e.sb.Seed(), wal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, err = OpenGroups(l, e.sb)
		if !errors.Is(err, layout.ErrCorrupt) || !strings.Contains(err.Error(), "free blocks") {
			t.Fatalf("got %v", err)
		}
	})
	// A bit set past the end of a short last AG.
	t.Run("past end", func(t *testing.T) {
		p := testParams
		p.DeviceBytes = 3*8192*1024 + 4000*1024 // last AG of 4000 blocks
		p.AGCount, p.AGBytes = 0, 8192*1024
		sb := newSB(t, p)
		dev := disk.NewMem(int64(sb.BlockCount) * int64(sb.BlockSize))
		mkfs(t, dev, sb)
		last := sb.AGCount - 1
		if sb.AGLen(last) != 4000 {
			t.Fatalf("last AG %d blocks", sb.AGLen(last))
		}
		blk := sb.BlockBitmapStart(last)
		b := make([]byte, sb.BlockSize)
		dev.ReadAt(b, int64(blk)*int64(len(b)))
		b[layout.HeaderSize+4000/8+1] |= 1
		layout.Seal(b, sb.Seed(), 0)
		dev.WriteAt(b, int64(blk)*int64(len(b)))
		l, _, err := wal.Open(dev, logRegion(sb), sb.Seed(), wal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, err = OpenGroups(l, sb)
		if !errors.Is(err, layout.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("ag %d: block bitmap block 0", last)) {
			t.Fatalf("got %v", err)
		}
		errs := Verify(dev, sb, last)
		if len(errs) == 0 || !strings.Contains(errors.Join(errs...).Error(), "past the end") {
			t.Fatalf("verify: %v", errs)
		}
	})
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// TestVerifyCatchesEveryBitFlip flips one bit in each metadata block Verify
// covers and checks that it reports that block.
func TestVerifyCatchesEveryBitFlip(t *testing.T) {
	e := newEnv(t, testParams)
	// Initialise a second bitmap block and a few inode-table blocks.
	e.mustTx(func(tx *wal.Tx) error {
		a := e.gs.AG(2)
		if _, err := a.AllocBlocks(tx, 5, a.start+a.bm.BitsPerBlock()+1, Near); err != nil {
			return err
		}
		for range 7 {
			if _, err := a.AllocInode(tx, 0, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	e.log = nil
	clean := e.dev.(*disk.Mem).Bytes()
	bs := int(e.sb.BlockSize)
	rng := rand.New(rand.NewPCG(1, 1))
	checked := 0
	for ag := range e.sb.AGCount {
		h, err := layout.DecodeAGHeader(clean[int(e.sb.AGHeaderBlock(ag))*bs:][:bs], &e.sb.Geometry, e.sb.Seed(), ag)
		if err != nil {
			t.Fatal(err)
		}
		blocks := []uint64{e.sb.SuperBlock(ag), e.sb.AGHeaderBlock(ag)}
		for i := range uint64(h.BlockBitmapInit) {
			blocks = append(blocks, e.sb.BlockBitmapStart(ag)+i)
		}
		for i := range uint64(h.InodeBitmapInit) {
			blocks = append(blocks, e.sb.InodeBitmapStart(ag)+i)
		}
		for i := range uint64(h.InodeTableInit) {
			blocks = append(blocks, e.sb.InodeTableStart(ag)+i)
		}
		for _, blk := range blocks {
			for range 3 {
				bit := rng.IntN(bs * 8)
				flip := func() { clean[int(blk)*bs+bit/8] ^= 1 << (bit % 8) }
				flip()
				errs := Verify(disk.NewMemFrom(clean), e.sb, ag)
				flip()
				name := fmt.Sprintf("device block %d", blk)
				if blk == e.sb.AGHeaderBlock(ag) {
					name = fmt.Sprintf("block %d", blk)
				}
				found := false
				for _, err := range errs {
					if strings.Contains(err.Error(), name) && strings.HasPrefix(err.Error(), fmt.Sprintf("ag %d: ", ag)) {
						found = true
					}
				}
				if !found {
					t.Fatalf("ag %d: bit %d of block %d flipped: Verify said %v", ag, bit, blk, errs)
				}
				checked++
			}
		}
	}
	t.Logf("%d bit flips, all reported", checked)
	// And the clean image verifies.
	for ag := range e.sb.AGCount {
		if errs := Verify(disk.NewMemFrom(clean), e.sb, ag); len(errs) != 0 {
			t.Fatal(errs)
		}
	}
}
