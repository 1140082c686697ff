package ag

import (
	"errors"
	"slices"
	"syscall"
	"testing"

	"agfs/bitmap"
	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// testParams is a small filesystem: 4 AGs of 8192 1-KiB blocks (two
// block-bitmap blocks per AG, so the lazy-init mark can be crossed), 129
// inodes per AG (43 inode-table blocks of 3 inodes) and a 256-block log.
var testParams = layout.Params{
	DeviceBytes:   4 * 8192 * 1024,
	BlockSize:     1024,
	AGCount:       4,
	BytesPerInode: 64 << 10,
	LogBytes:      256 << 10,
}

func newSB(t testing.TB, p layout.Params) *layout.Superblock {
	t.Helper()
	g, err := layout.NewGeometry(p)
	if err != nil {
		t.Fatal(err)
	}
	sb := &layout.Superblock{
		Geometry: g,
		UUID:     [16]byte{0xa9, 0xf5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14},
		RootIno:  layout.RootIno,
		Version:  layout.FormatVersion,
	}
	return sb
}

func logRegion(sb *layout.Superblock) wal.Region {
	return wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
}

// mkfs formats the log and every AG onto dev.
func mkfs(t testing.TB, dev disk.Device, sb *layout.Superblock) {
	t.Helper()
	if err := wal.Format(dev, logRegion(sb), sb.Seed()); err != nil {
		t.Fatal(err)
	}
	for i := range sb.AGCount {
		if err := Format(dev, sb, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
}

// env is a formatted filesystem over a device, with its log and AGs open.
type env struct {
	t   testing.TB
	dev disk.Device
	sb  *layout.Superblock
	log *wal.Log
	gs  *Groups
}

func newEnv(t testing.TB, p layout.Params) *env {
	t.Helper()
	sb := newSB(t, p)
	dev := disk.NewMem(int64(sb.BlockCount) * int64(sb.BlockSize))
	mkfs(t, dev, sb)
	e := &env{t: t, dev: dev, sb: sb}
	e.open()
	t.Cleanup(func() {
		if e.log != nil {
			e.log.Close()
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	l, _, err := wal.Open(e.dev, logRegion(e.sb), e.sb.Seed(), wal.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	gs, err := OpenGroups(l, e.sb)
	if err != nil {
		l.Close()
		e.t.Fatal(err)
	}
	e.log, e.gs = l, gs
}

// reopen closes the log (checkpointing everything home) and opens the
// filesystem again from the device alone.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.log.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.log = nil
	e.open()
}

// verify checkpoints and runs Verify on every AG; it fails on any problem.
func (e *env) verify() {
	e.t.Helper()
	if err := e.log.Checkpoint(); err != nil {
		e.t.Fatal(err)
	}
	for i := range e.sb.AGCount {
		for _, err := range Verify(e.dev, e.sb, i) {
			e.t.Errorf("verify: %v", err)
		}
	}
	if e.t.Failed() {
		e.t.FailNow()
	}
}

// tx runs fn in a transaction and commits it (aborts it if fn fails).
func (e *env) tx(fn func(tx *wal.Tx) error) error {
	tx := e.log.Begin()
	if err := fn(tx); err != nil {
		tx.Abort()
		return err
	}
	_, err := tx.Commit()
	return err
}

func (e *env) mustTx(fn func(tx *wal.Tx) error) {
	e.t.Helper()
	if err := e.tx(fn); err != nil {
		e.t.Fatal(err)
	}
}

// settle makes every freed extent allocatable again (as a later durable
// commit would).
func (e *env) settle() {
	e.t.Helper()
	for _, a := range e.gs.ags {
		a.mu.Lock()
		a.ensureIndex()
		err := a.reapBusy(true)
		a.mu.Unlock()
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

// pattern leaves AG agno with exactly the given AG-relative runs free
// (everything else from its reserved blocks on in use), settled.
func (e *env) pattern(agno uint32, free []Extent) {
	e.t.Helper()
	a := e.gs.AG(agno)
	// Free whatever is in use, then take it all, then free the pattern.
	e.mustTx(func(tx *wal.Tx) error {
		for s := a.reserved; s < a.length; {
			u, ok := a.bm.NextSet(s)
			if !ok {
				break
			}
			f, ok := a.bm.NextClear(u)
			if !ok {
				f = a.length
			}
			if err := a.FreeBlocks(tx, a.start+u, f-u); err != nil {
				return err
			}
			s = f
		}
		return nil
	})
	e.settle()
	e.mustTx(func(tx *wal.Tx) error {
		if n := a.length - a.reserved; n > 0 {
			if _, err := a.AllocBlocks(tx, n, a.start+a.reserved, Contiguous); err != nil {
				return err
			}
		}
		for _, f := range free {
			if err := a.FreeBlocks(tx, a.start+f.Start, f.Len); err != nil {
				return err
			}
		}
		return nil
	})
	e.settle()
}

// snapshot is an AG's complete in-memory state, for comparisons.
type snapshot struct {
	hdr     layout.AGHeader
	bpay    [][]byte
	ipay    [][]byte
	extents []Extent
}

func payloads(b *bitmap.Bitmap) [][]byte {
	out := make([][]byte, b.Blocks())
	for i := range out {
		out[i] = make([]byte, b.PayloadSize())
		b.BlockPayload(i, out[i])
	}
	return out
}

func (a *AG) snap() snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := snapshot{hdr: a.hdr, bpay: payloads(a.bm), ipay: payloads(a.im)}
	if a.idx != nil {
		for st, v := range a.idx.byStart.All() {
			s.extents = append(s.extents, Extent{st, v.n})
		}
	}
	return s
}

func (s snapshot) equal(o snapshot, withIndex bool) bool {
	if s.hdr != o.hdr || !slices.EqualFunc(s.bpay, o.bpay, slices.Equal) || !slices.EqualFunc(s.ipay, o.ipay, slices.Equal) {
		return false
	}
	return !withIndex || slices.Equal(s.extents, o.extents)
}

// checkIndex verifies that the AG's free-extent index is exactly the free
// runs of its bitmap minus the busy extents, and that the trees are sound.
func (a *AG) checkIndex(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.idx == nil {
		return
	}
	if err := a.idx.byStart.Check(); err != nil {
		t.Fatal(err)
	}
	if err := a.idx.bySize.Check(); err != nil {
		t.Fatal(err)
	}
	want := buildFreeIndex(a.bm)
	for _, e := range append(slices.Clone(a.busy), a.pend...) {
		want.remove(e.s, e.n)
	}
	var got, exp []Extent
	for s, v := range a.idx.byStart.All() {
		got = append(got, Extent{s, v.n})
	}
	for s, v := range want.byStart.All() {
		exp = append(exp, Extent{s, v.n})
	}
	if !slices.Equal(got, exp) {
		t.Fatalf("ag %d: free index %v, bitmap says %v", a.no, got, exp)
	}
	if a.idx.bySize.Len() != a.idx.byStart.Len() || a.idx.free != want.free {
		t.Fatalf("ag %d: index sizes %d/%d free %d, want free %d", a.no, a.idx.byStart.Len(), a.idx.bySize.Len(), a.idx.free, want.free)
	}
	if a.hdr.FreeBlocks != a.idx.free+a.busyBlocks {
		t.Fatalf("ag %d: header free %d, index %d + busy %d", a.no, a.hdr.FreeBlocks, a.idx.free, a.busyBlocks)
	}
}

func isENOSPC(err error) bool { return errors.Is(err, syscall.ENOSPC) }
