// Package ag manages allocation groups: the block and inode allocators of
// agfs. An AG is a fixed slice of the device with its own header
// (counters and lazy-init marks), block bitmap, inode bitmap and inode
// table (see layout.Geometry); it knows nothing of files or directories.
//
// An AG keeps both bitmaps in memory, authoritative while it is open, and
// an index of its free extents (two red-black trees) so that allocation
// costs O(log n) rather than a bitmap scan. Every change is made inside a
// wal transaction: the bitmap bytes that changed and the header counters
// are logged with tx.Write; bitmap and inode-table blocks beyond the
// header's high-water marks are created with tx.Init when first used.
//
// Groups is the front over every AG of a filesystem: it picks the AG for
// an allocation (near the goal for blocks, near the parent for file inodes,
// spread out for directories) and totals the counters for statfs.
//
// See lock.go for the locking rules, and Format and Verify for mkfs and
// fsck.
package ag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"agfs/bitmap"
	"agfs/layout"
	"agfs/wal"
)

// Policy chooses where in an AG a block allocation goes.
type Policy uint8

const (
	// Near (the default) allocates at the goal if the goal starts a free
	// run long enough, else at the start of the nearest long-enough free
	// run after the goal, else of the nearest one before it, staying in the
	// goal's AG (the "cling" policy: a file's blocks follow each other).
	Near Policy = iota
	// BestFit takes the smallest free run that holds the request (the
	// lowest-addressed among equals), keeping long runs for long requests.
	BestFit
	// FirstFit takes the lowest-addressed free run that holds the request.
	FirstFit
	// Contiguous is Near, but all or nothing: one extent of exactly the
	// request, or an error wrapping syscall.ENOSPC.
	Contiguous
)

func (p Policy) String() string {
	switch p {
	case Near:
		return "near"
	case BestFit:
		return "best-fit"
	case FirstFit:
		return "first-fit"
	case Contiguous:
		return "contiguous"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// Extent is a run of Len device blocks starting at absolute block Start.
type Extent struct {
	Start, Len uint64
}

// End is the block after the extent.
func (e Extent) End() uint64 { return e.Start + e.Len }

// AG is one open allocation group.
type AG struct {
	*agGeom
	no     uint32
	log    *wal.Log
	hdrBlk uint64

	mu    sync.Mutex             // held by a transaction from first use to its end
	owner atomic.Pointer[wal.Tx] // the transaction holding mu, if any

	// Guarded by mu.
	hdr   layout.AGHeader
	bm    *bitmap.Bitmap // block bitmap: bit i is block start+i
	im    *bitmap.Bitmap // inode bitmap: bit i is inode index i
	idx   *freeIndex     // nil until the first allocation
	pay   []byte         // scratch: one bitmap payload
	img   []byte         // scratch: one block
	reaps int            // allocations since busy extents were last checked

	// Busy extents: blocks freed by a transaction stay out of the free
	// index until that transaction is durable. Otherwise another file could
	// be given them and write its data there while a crash could still
	// undo the free, leaving the first file with the second one's bytes.
	pend       []busyExt // freed by the current transaction
	busy       []busyExt // freed by committed transactions, maybe not durable yet; by mark
	busyBlocks uint64    // blocks in busy and pend

	// The current transaction's changes, for abort.
	saved layout.AGHeader
	undo  []undoRec
	dirty bool

	// Published when a transaction releases the AG (and at Open), for
	// lock-free readers: Groups' choices and statfs totals.
	pubFree, pubFreeIno, pubDirs, pubLongest atomic.Uint64
}

// busyExt is a freed extent (AG-relative) and the log position after which
// a durable commit proves the free durable.
type busyExt struct {
	s, n uint64
	mark uint64
}

type undoOp uint8

const (
	undoAllocBlocks undoOp = iota + 1
	undoFreeBlocks
	undoAllocInode
	undoFreeInode
)

type undoRec struct {
	op   undoOp
	s, n uint64
}

// Open loads AG ag through log (which has recovered the device): the
// header and every initialised bitmap block are read and verified (blocks
// beyond the init marks are all free and not read), and the header's
// counters are cross-checked against the bitmaps. A checksum error, a bit
// set past the end of the AG, a reserved block or inode marked free, or a
// counter that disagrees with the bitmaps is an error wrapping
// layout.ErrCorrupt that names the AG and the block.
func Open(log *wal.Log, sb *layout.Superblock, ag uint32) (*AG, error) {
	x, err := newAGGeom(sb, ag)
	if err != nil {
		return nil, err
	}
	if log.BlockSize() != x.bs {
		return nil, fmt.Errorf("ag %d: log block size %d, filesystem block size %d", ag, log.BlockSize(), x.bs)
	}
	a := &AG{
		agGeom: x,
		no:     ag,
		log:    log,
		hdrBlk: x.g.AGHeaderBlock(ag),
		bm:     x.newBlockBitmap(),
		im:     x.newInodeBitmap(),
		img:    make([]byte, x.bs),
	}
	a.pay = make([]byte, a.bm.PayloadSize())
	if err := a.load(); err != nil {
		return nil, err
	}
	a.pubLongest.Store(math.MaxUint64)
	a.publish()
	return a, nil
}

func (a *AG) corrupt(format string, args ...any) error {
	return fmt.Errorf("ag %d: %w: "+format, append([]any{a.no, layout.ErrCorrupt}, args...)...)
}

func (a *AG) load() error {
	g, buf := a.g, a.img
	err := a.log.Read(a.hdrBlk, func(_ uint64, b []byte) error {
		_, err := layout.DecodeAGHeader(b, g, a.seed, a.no)
		return err
	}, buf)
	if err != nil {
		return fmt.Errorf("ag %d: header block %d: %w", a.no, a.hdrBlk, err)
	}
	// A cached copy carries the checksum of its last home write, not of
	// its current content: reseal a private copy to decode it.
	layout.Seal(buf, a.seed, layout.ReadHeader(buf).LSN)
	h, err := layout.DecodeAGHeader(buf, g, a.seed, a.no)
	if err != nil {
		return err
	}
	a.hdr = *h

	if err := a.loadBitmap("block", a.bcodec, a.bm, h.BlockBitmapInit); err != nil {
		return err
	}
	if err := a.loadBitmap("inode", a.icodec, a.im, h.InodeBitmapInit); err != nil {
		return err
	}

	if h.BlockBitmapInit < a.initialBitmapBlocks() {
		return a.corrupt("header block %d: block bitmap init mark %d leaves reserved blocks uncovered", a.hdrBlk, h.BlockBitmapInit)
	}
	if c, ok := a.bm.NextClear(0); ok && c < a.reserved {
		blk := c / a.bm.BitsPerBlock()
		return a.corrupt("block bitmap block %d (device block %d): reserved block %d marked free",
			blk, a.bcodec.FirstBlock+blk, a.start+c)
	}
	if want := a.length - a.bm.Weight(); h.FreeBlocks != want {
		return a.corrupt("header block %d: %d free blocks, the block bitmap has %d", a.hdrBlk, h.FreeBlocks, want)
	}
	if h.InodeBitmapInit == 0 || !a.im.Test(0) {
		return a.corrupt("inode bitmap block 0 (device block %d): reserved inode index 0 marked free", a.icodec.FirstBlock)
	}
	if want := uint64(g.InodesPerAG) - a.im.Weight(); h.FreeInodes != want {
		return a.corrupt("header block %d: %d free inodes, the inode bitmap has %d", a.hdrBlk, h.FreeInodes, want)
	}
	if used := a.im.Weight() - 1; h.Dirs > used {
		return a.corrupt("header block %d: %d directories but %d inodes in use", a.hdrBlk, h.Dirs, used)
	}
	if first := max(1, uint64(h.InodeTableInit)*uint64(g.InodesPerBlock())); first < a.im.Len() {
		if i, ok := a.im.NextSet(first); ok {
			return a.corrupt("inode bitmap: index %d in use beyond the inode table init mark %d", i, h.InodeTableInit)
		}
	}
	return nil
}

// loadBitmap reads the first init blocks of a bitmap through the log.
func (a *AG) loadBitmap(kind string, c bitmap.Codec, b *bitmap.Bitmap, init uint32) error {
	buf := a.img
	for i := range int(init) {
		blk := c.FirstBlock + uint64(i)
		past := i >= b.Blocks() // a block beyond what a short last AG needs
		v := func(_ uint64, src []byte) error {
			if past {
				return layout.Check(src, c.Seed, c.Magic, blk, c.Owner)
			}
			return c.Verify(src, i, b.Len())
		}
		if err := a.log.Read(blk, v, buf); err != nil {
			return fmt.Errorf("ag %d: %s bitmap block %d (device block %d): %w", a.no, kind, i, blk, err)
		}
		if past {
			if !allZero(buf[layout.HeaderSize:]) {
				return a.corrupt("%s bitmap block %d (device block %d): bits set past the end of the AG", kind, i, blk)
			}
			continue
		}
		if err := b.LoadPayload(i, buf[layout.HeaderSize:]); err != nil {
			return fmt.Errorf("ag %d: %s bitmap block %d (device block %d): %w", a.no, kind, i, blk, err)
		}
	}
	return nil
}

// Number is the AG's number.
func (a *AG) Number() uint32 { return a.no }

// Start is the AG's first absolute block; Len its length in blocks.
func (a *AG) Start() uint64 { return a.start }

// Len is the number of blocks in the AG.
func (a *AG) Len() uint64 { return a.length }

// begin starts a transaction's hold on a (mu held).
func (a *AG) begin() {
	a.saved = a.hdr
	a.undo = a.undo[:0]
	a.pend = a.pend[:0]
	a.dirty = false
}

// commit ends a hold by a committed transaction: its frees become busy
// until a commit after it is durable.
func (a *AG) commit() {
	if len(a.pend) > 0 {
		mark := uint64(a.log.Stats().Head)
		for _, p := range a.pend {
			p.mark = mark
			a.busy = append(a.busy, p)
		}
		a.pend = a.pend[:0]
	}
	a.undo = a.undo[:0]
}

// rollback undoes the current transaction's in-memory changes, newest
// first, and restores the header.
func (a *AG) rollback() {
	for i := len(a.undo) - 1; i >= 0; i-- {
		u := a.undo[i]
		switch u.op {
		case undoAllocBlocks:
			a.bm.ClearRange(u.s, u.n)
			if a.idx != nil {
				a.idx.insert(u.s, u.n)
			}
		case undoFreeBlocks:
			// Freed blocks never entered the index (they were pending).
			a.bm.SetRange(u.s, u.n)
		case undoAllocInode:
			a.im.Clear(u.s)
		case undoFreeInode:
			a.im.Set(u.s)
		}
	}
	for _, p := range a.pend {
		a.busyBlocks -= p.n
	}
	a.pend = a.pend[:0]
	a.undo = a.undo[:0]
	a.hdr = a.saved
}

// publish makes the counters visible to lock-free readers (mu held).
func (a *AG) publish() {
	a.pubFree.Store(a.hdr.FreeBlocks)
	a.pubFreeIno.Store(a.hdr.FreeInodes)
	a.pubDirs.Store(a.hdr.Dirs)
	if a.idx != nil {
		_, l, _ := a.idx.longest()
		a.pubLongest.Store(l)
	}
}

func (a *AG) put64(tx *wal.Tx, off int, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return a.logErr(tx.Write(a.hdrBlk, off, b[:]))
}

func (a *AG) put32(tx *wal.Tx, off int, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return a.logErr(tx.Write(a.hdrBlk, off, b[:]))
}

func (a *AG) logErr(err error) error {
	if err != nil {
		return fmt.Errorf("ag %d: %w", a.no, err)
	}
	return nil
}

// logBits logs the bytes of bitmap b that hold bits [s, s+n), all just
// set (or all just cleared) to v, in every block below init (blocks from
// init on are created whole by initBitmapBlocks).
func (a *AG) logBits(tx *wal.Tx, c bitmap.Codec, b *bitmap.Bitmap, s, n uint64, v bool, init uint32) error {
	bpb := b.BitsPerBlock()
	for end := s + n; s < end; {
		blk, off, ln := b.ByteSpan(s, end-s)
		if blk < int(init) {
			data := a.pay[:ln]
			spanBytes(data, b, uint64(blk)*bpb+uint64(off)*8, s, end, v)
			if err := tx.Write(c.FirstBlock+uint64(blk), layout.HeaderSize+off, data); err != nil {
				return a.logErr(err)
			}
		}
		s = uint64(blk+1) * bpb
	}
	return nil
}

// spanBytes fills dst with the on-disk bytes of b's bits from bit first (a
// multiple of 8) on, knowing that the bits of [s, e) all equal v: only the
// two edge bytes need the bitmap, the others are all ones or all zeroes.
func spanBytes(dst []byte, b *bitmap.Bitmap, first, s, e uint64, v bool) {
	fill := byte(0)
	if v {
		fill = 0xFF
	}
	for j := range dst {
		lo := first + uint64(j)*8
		if lo >= s && lo+8 <= e {
			dst[j] = fill
			continue
		}
		var c byte
		for k := uint64(0); k < 8 && lo+k < b.Len(); k++ {
			if b.Test(lo + k) {
				c |= 1 << k
			}
		}
		dst[j] = c
	}
}

// initBitmapBlocks creates bitmap blocks [from, to) with tx.Init, each a
// header and the block's current bits.
func (a *AG) initBitmapBlocks(tx *wal.Tx, c bitmap.Codec, b *bitmap.Bitmap, from, to uint32) error {
	for i := from; i < to; i++ {
		blk := c.FirstBlock + uint64(i)
		layout.PutHeader(a.img, c.Magic, blk, c.Owner)
		if int(i) < b.Blocks() {
			b.BlockPayload(int(i), a.img[layout.HeaderSize:])
		} else {
			clear(a.img[layout.HeaderSize:])
		}
		if err := tx.Init(blk, a.img); err != nil {
			return a.logErr(err)
		}
	}
	return nil
}

// ensureIndex builds the free-extent index from the bitmap the first time
// it is needed. Busy and pending extents are clear in the bitmap but not
// yet allocatable, so they are taken out again.
func (a *AG) ensureIndex() {
	if a.idx != nil {
		return
	}
	a.idx = buildFreeIndex(a.bm)
	for _, e := range a.busy {
		a.idx.remove(e.s, e.n)
	}
	for _, e := range a.pend {
		a.idx.remove(e.s, e.n)
	}
}

// reapBusy moves busy extents whose free is durable into the index. With
// force it first makes every commit so far durable (log.Sync), so every
// busy extent goes. Without force it looks at the log at most once every
// reapEvery calls, as that takes the log's locks.
func (a *AG) reapBusy(force bool) error {
	if len(a.busy) == 0 {
		return nil
	}
	const reapEvery = 16
	var durable uint64
	if force {
		if err := a.log.Sync(); err != nil {
			return fmt.Errorf("ag %d: waiting for freed blocks to be durable: %w", a.no, err)
		}
		durable = math.MaxUint64
	} else {
		if a.reaps++; a.reaps < reapEvery {
			return nil
		}
		a.reaps = 0
		durable = uint64(a.log.Stats().Durable)
	}
	// Marks grow along the list (commits in an AG are serialised).
	k := 0
	for ; k < len(a.busy) && a.busy[k].mark <= durable; k++ {
		e := a.busy[k]
		a.idx.insert(e.s, e.n)
		a.busyBlocks -= e.n
	}
	if k > 0 {
		a.busy = append(a.busy[:0], a.busy[k:]...)
	}
	return nil
}

func (a *AG) enospc(format string, args ...any) error {
	return fmt.Errorf("ag %d: "+format+": %w", append(append([]any{a.no}, args...), syscall.ENOSPC)...)
}

func einval(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, syscall.EINVAL)...)
}

// AllocBlocks allocates n blocks in the AG for tx, placed by policy p
// around goal (an absolute block; a goal outside the AG means its start).
//
// When no single free run holds n blocks, every policy but Contiguous
// returns several extents, best effort: the longest free runs first, whole,
// then the smallest run that holds the rest (so few extents, and no long
// run broken for a short tail); the extents come back in address order.
// If the AG has fewer than n free blocks, or p is Contiguous and no run
// holds n, the error wraps syscall.ENOSPC and nothing is allocated.
//
// The bitmap bytes and header counters that change are written through tx;
// bitmap blocks beyond the init mark are created with tx.Init and the mark
// advanced. Any other error means tx must be aborted.
func (a *AG) AllocBlocks(tx *wal.Tx, n, goal uint64, p Policy) ([]Extent, error) {
	if n == 0 || p > Contiguous {
		return nil, einval("ag %d: allocation of %d blocks with policy %v", a.no, n, p)
	}
	if err := a.lock(tx); err != nil {
		return nil, err
	}
	return a.alloc(tx, n, goal, p, p != Contiguous)
}

// alloc allocates with a held; multi allows several extents.
func (a *AG) alloc(tx *wal.Tx, n, goal uint64, p Policy, multi bool) ([]Extent, error) {
	a.ensureIndex()
	if err := a.reapBusy(false); err != nil {
		return nil, err
	}
	plan, err := a.plan(n, a.relGoal(goal), p, multi)
	if errors.Is(err, syscall.ENOSPC) && len(a.busy) > 0 {
		if rerr := a.reapBusy(true); rerr != nil {
			return nil, rerr
		}
		plan, err = a.plan(n, a.relGoal(goal), p, multi)
	}
	if err != nil {
		return nil, err
	}
	out := make([]Extent, 0, len(plan))
	for _, e := range plan {
		if err := a.markUsed(tx, e.Start, e.Len); err != nil {
			return nil, err
		}
		out = append(out, Extent{Start: a.start + e.Start, Len: e.Len})
	}
	return out, nil
}

// relGoal turns an absolute goal into an AG-relative one. A goal outside
// the AG means its start. A goal in a block-bitmap block beyond the first
// uninitialised one is moved back to the start of that block, so an
// allocation never makes a transaction initialise a stretch of empty
// bitmap blocks that its own blocks do not need.
func (a *AG) relGoal(goal uint64) uint64 {
	if goal < a.start || goal-a.start >= a.length {
		return 0
	}
	g := goal - a.start
	bpb := a.bm.BitsPerBlock()
	if mark := uint64(a.hdr.BlockBitmapInit); g/bpb > mark {
		g = mark * bpb
	}
	return g
}

// plan chooses the AG-relative extents for a request, changing nothing.
func (a *AG) plan(n, g uint64, p Policy, multi bool) ([]Extent, error) {
	x := a.idx
	if s, ok := a.single(n, g, p); ok {
		return []Extent{{s, n}}, nil
	}
	_, longest, _ := x.longest()
	if !multi {
		return nil, a.enospc("no free run of %d blocks (the longest is %d)", n, longest)
	}
	if x.free < n {
		return nil, a.enospc("%d blocks wanted, %d free", n, x.free)
	}
	var out []Extent
	taken := map[uint64]bool{}
	for rem := n; rem > 0; {
		// The smallest run not yet taken that holds the rest ends it.
		done := false
		x.bySize.Ascend(sizeKey{rem, 0}, func(k sizeKey, _ struct{}) bool {
			if taken[k.start] {
				return true
			}
			out = append(out, Extent{k.start, rem})
			done = true
			return false
		})
		if done {
			break
		}
		// Otherwise the longest run not yet taken goes whole.
		x.bySize.Descend(sizeKey{math.MaxUint64, math.MaxUint64}, func(k sizeKey, _ struct{}) bool {
			if taken[k.start] {
				return true
			}
			taken[k.start] = true
			out = append(out, Extent{k.start, k.n})
			rem -= k.n
			return false
		})
	}
	slices.SortFunc(out, func(a, b Extent) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	return out, nil
}

// single finds one AG-relative start for n blocks under policy p.
func (a *AG) single(n, g uint64, p Policy) (uint64, bool) {
	x := a.idx
	switch p {
	case BestFit:
		s, _, ok := x.bestFit(n)
		return s, ok
	case FirstFit:
		s, _, ok := x.firstFit(0, n)
		return s, ok
	}
	// Near and Contiguous: at the goal, else the nearest fitting run
	// after it, else the nearest one before it.
	if s, l, ok := x.containing(g); ok && s+l-g >= n {
		return g, true
	}
	if s, _, ok := x.firstFit(g, n); ok {
		return s, true
	}
	if s, _, ok := x.lastFit(g, n); ok {
		return s, true
	}
	return 0, false
}

// markUsed allocates AG-relative blocks [s, s+n), free in the index, and
// logs the change.
func (a *AG) markUsed(tx *wal.Tx, s, n uint64) error {
	if s < a.reserved || s+n > a.length || !a.bm.RangeIsClear(s, n) {
		// The index and the bitmap disagree: a bug, not bad media.
		return a.corrupt("free-extent index offers blocks [%d, %d) that are not free", a.start+s, a.start+s+n)
	}
	bpb := a.bm.BitsPerBlock()
	oldMark := a.hdr.BlockBitmapInit
	lastBlk := uint32((s + n - 1) / bpb)

	a.dirty = true
	a.bm.SetRange(s, n)
	a.idx.remove(s, n)
	a.undo = append(a.undo, undoRec{op: undoAllocBlocks, s: s, n: n})
	a.hdr.FreeBlocks -= n
	if lastBlk >= oldMark {
		a.hdr.BlockBitmapInit = lastBlk + 1
	}

	if lastBlk >= oldMark {
		if err := a.initBitmapBlocks(tx, a.bcodec, a.bm, oldMark, lastBlk+1); err != nil {
			return err
		}
		if err := a.put32(tx, layout.OffAGBlockBitmapInit, a.hdr.BlockBitmapInit); err != nil {
			return err
		}
	}
	if err := a.logBits(tx, a.bcodec, a.bm, s, n, true, oldMark); err != nil {
		return err
	}
	return a.put64(tx, layout.OffAGFreeBlocks, a.hdr.FreeBlocks)
}

// FreeBlocks frees n blocks from absolute block start, which must all lie
// in this AG, outside its reserved blocks, and be allocated: freeing a free
// block is an error wrapping layout.ErrCorrupt, and nothing is changed.
// The blocks become allocatable again once the freeing transaction is
// durable (see busy extents in AG).
func (a *AG) FreeBlocks(tx *wal.Tx, start, n uint64) error {
	if n == 0 || start < a.start || start-a.start >= a.length || n > a.length-(start-a.start) {
		return einval("ag %d: free of blocks [%d, +%d) outside the AG [%d, %d)", a.no, start, n, a.start, a.start+a.length)
	}
	s := start - a.start
	if s < a.reserved {
		return a.corrupt("free of blocks [%d, %d) that hold the AG's metadata", start, start+n)
	}
	if err := a.lock(tx); err != nil {
		return err
	}
	if !a.bm.RangeIsSet(s, n) {
		c, _ := a.bm.NextClear(s)
		return a.corrupt("free of blocks [%d, %d): block %d is already free", start, start+n, a.start+c)
	}
	a.dirty = true
	a.bm.ClearRange(s, n)
	a.pend = append(a.pend, busyExt{s: s, n: n})
	a.busyBlocks += n
	a.undo = append(a.undo, undoRec{op: undoFreeBlocks, s: s, n: n})
	a.hdr.FreeBlocks += n
	if err := a.logBits(tx, a.bcodec, a.bm, s, n, false, a.hdr.BlockBitmapInit); err != nil {
		return err
	}
	return a.put64(tx, layout.OffAGFreeBlocks, a.hdr.FreeBlocks)
}

// Stats describes an AG's free space.
type Stats struct {
	AG          uint32
	Blocks      uint64 // blocks in the AG
	FreeBlocks  uint64 // the header's count: free, busy included
	BusyBlocks  uint64 // freed by transactions not known durable yet
	Inodes      uint64 // inode slots (index 0 included, never usable)
	FreeInodes  uint64
	Dirs        uint64
	FreeExtents int    // free runs in the index (busy extents excluded)
	LongestFree uint64 // the longest of them
	// Fragmentation is 1 − LongestFree / (FreeBlocks − BusyBlocks): 0 when
	// the free space is one run (or there is none), approaching 1 as it
	// shatters into many small runs.
	Fragmentation float64
}

// Stats returns the AG's free-space statistics. It takes the AG's lock, so
// it must not be called by a goroutine whose open transaction holds the AG.
func (a *AG) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ensureIndex()
	_, longest, _ := a.idx.longest()
	st := Stats{
		AG:          a.no,
		Blocks:      a.length,
		FreeBlocks:  a.hdr.FreeBlocks,
		BusyBlocks:  a.busyBlocks,
		Inodes:      uint64(a.g.InodesPerAG),
		FreeInodes:  a.hdr.FreeInodes,
		Dirs:        a.hdr.Dirs,
		FreeExtents: a.idx.byStart.Len(),
		LongestFree: longest,
	}
	if a.idx.free > 0 {
		st.Fragmentation = 1 - float64(longest)/float64(a.idx.free)
	}
	return st
}
