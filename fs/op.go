package fs

import (
	"encoding/binary"
	"errors"
	"slices"
	"syscall"
	"time"

	"agfs/ag"
	"agfs/btree"
	"agfs/dir"
	"agfs/layout"
	"agfs/wal"
)

// An op is one filesystem operation: one wal transaction holding every
// metadata change it makes.
//
// Locks, in the order they are taken:
//
//  1. inode locks (the caller's), in increasing inode number;
//  2. AG locks, taken by the transaction as it allocates and frees (ag/lock.go:
//     increasing AG number, held until the transaction ends);
//  3. inode-table stripe locks, only inside commit, in increasing stripe
//     number, held until Commit returns.
//
// Nothing waits for a lock of an earlier kind while holding a later one.
//
// Inode slots are written only in commit: the operation changes working
// copies (w), and commit logs the bytes that differ from the committed
// inode. Because an inode-table block holds several inodes, the wal rule
// "hold a lock covering a block from its first change to the commit" is
// kept by the stripe locks taken there.
//
// Frees (blocks, inodes) and orphan-list edits are deferred to commit and
// done in increasing AG order. When that order cannot be kept (the
// transaction already holds a higher AG, or another transaction holds a
// lower one), the transaction fails with ag.ErrLockOrder; run then aborts
// it and runs the operation again with every AG it needs taken up front,
// in order.
type op struct {
	f      *FS
	tx     *wal.Tx
	ws     []*wnode
	frees  []ag.Extent
	ifrees []ifree
	orph   []orphOp
	held   map[uint32]bool // AGs the transaction holds (as far as we know)
	wanted []uint32        // AGs it failed to take in order
	next   map[uint64]uint64
	dirs   map[*inode]*dir.Dir // directory indexes opened by the op
	news   []*inode            // inodes this op created
	freed  []*inode            // inodes this op frees
	flush  bool                // data the commit depends on was written (new blocks, zeroed tails): flush before commit
	empty  bool                // commit logged no inode change
	// metaFreed are the tree nodes this op frees (see FS.reuseGuard).
	metaFreed []uint64
	lsn       wal.LSN
	now       int64
}

type wnode struct {
	n    *inode
	base layout.Inode // what the slot holds now
	in   layout.Inode // the working copy
}

type ifree struct {
	ino uint64
	dir bool
}

type orphOp struct {
	ino uint64
	add bool
}

func (f *FS) newOp() *op {
	return &op{f: f, tx: f.log.Begin(), held: map[uint32]bool{}, now: time.Now().UnixNano()}
}

// run runs fn in a transaction and commits it, retrying on a lock-order
// conflict with the AGs taken up front. fn may be run more than once: it
// must change nothing outside the op before the op commits (writes of
// data into newly allocated blocks are harmless).
func (f *FS) run(fn func(o *op) error) (*op, error) {
	if f.ro {
		return nil, syscall.EROFS
	}
	if f.closed.Load() && !f.closing.Load() {
		return nil, syscall.EIO
	}
	var pre []uint32
	for attempt := 0; ; attempt++ {
		o := f.newOp()
		err := o.pretake(pre)
		if err == nil {
			err = fn(o)
		}
		if err == nil {
			err = o.commit()
		} else {
			o.abort()
		}
		if err == nil {
			return o, nil
		}
		if errors.Is(err, ag.ErrLockOrder) && attempt < 8 {
			f.retries.Add(1)
			pre = o.ags()
			continue
		}
		return o, err
	}
}

func (o *op) pretake(ags []uint32) error {
	for _, a := range ags {
		if err := o.lockAG(a); err != nil {
			return err
		}
	}
	return nil
}

// ags returns, sorted, every AG the op used or was about to use.
func (o *op) ags() []uint32 {
	set := map[uint32]bool{}
	for a := range o.held {
		set[a] = true
	}
	for _, a := range o.wanted {
		set[a] = true
	}
	g := o.f.g
	for _, e := range o.frees {
		set[g.AGOf(e.Start)] = true
	}
	for _, x := range o.ifrees {
		a, _, _ := g.SplitIno(x.ino)
		set[a] = true
	}
	for _, x := range o.orph {
		a, _, _ := g.SplitIno(x.ino)
		set[a] = true
	}
	out := make([]uint32, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// lockAG makes the transaction hold AG a (to the end of the transaction)
// without allocating anything. A lock below one the transaction holds
// fails with ag.ErrLockOrder and is noted for the retry.
func (o *op) lockAG(a uint32) error {
	if o.held[a] {
		return nil
	}
	if err := o.f.gs.AG(a).Lock(o.tx); err != nil {
		o.wanted = append(o.wanted, a) // for the retry
		return err
	}
	o.held[a] = true
	return nil
}

// w returns the working copy of n's inode, making it on first use. The
// caller holds n.mu exclusively.
func (o *op) w(n *inode) *layout.Inode {
	for _, w := range o.ws {
		if w.n == n {
			return &w.in
		}
	}
	w := &wnode{n: n, base: n.d, in: n.d}
	o.ws = append(o.ws, w)
	return &w.in
}

// allocBlocks allocates n blocks near goal.
func (o *op) allocBlocks(n, goal uint64) ([]ag.Extent, error) {
	ext, err := o.f.gs.AllocBlocks(o.tx, n, goal, o.f.opt.Policy)
	if err != nil {
		return nil, err
	}
	for _, e := range ext {
		o.held[o.f.g.AGOf(e.Start)] = true
	}
	return ext, nil
}

// allocData allocates n blocks for file data near goal, making sure none
// of them can still be overwritten by the log (see FS.reuseGuard).
func (o *op) allocData(n, goal uint64) ([]ag.Extent, error) {
	ext, err := o.allocBlocks(n, goal)
	if err != nil {
		return nil, err
	}
	return ext, o.f.reuseGuard(ext)
}

// reuseGuard: a freed metadata block (a tree node) may still be dirty in
// the log's cache, to be written home by the next checkpoint, and the live
// log may hold records for it that recovery would replay. Either would
// overwrite file data put in the block. The wal has no revoke record, so
// a block freed as metadata is not used for data until a checkpoint that
// started after its free has moved the log tail past it: when an
// allocation for data returns such a block, reuseGuard checkpoints first.
// (Reuse as metadata is safe: the new owner logs it whole with Init.)
func (f *FS) reuseGuard(ext []ag.Extent) error {
	f.unsafeMu.Lock()
	if len(f.unsafe) == 0 {
		f.unsafeMu.Unlock()
		return nil
	}
	var hits []uint64
	need := uint64(0)
	for _, e := range ext {
		for b := e.Start; b < e.End(); b++ {
			if lsn, ok := f.unsafe[b]; ok {
				hits = append(hits, b)
				need = max(need, lsn)
			}
		}
	}
	f.unsafeMu.Unlock()
	if len(hits) == 0 {
		return nil
	}
	if uint64(f.log.Stats().Tail) <= need {
		if err := f.log.Checkpoint(); err != nil {
			return err
		}
		f.reuseCkpts.Add(1)
	}
	f.pruneUnsafe()
	return nil
}

// pruneUnsafe forgets the freed tree nodes the log tail has passed (a
// checkpoint wrote them home and no record of them is left to replay).
func (f *FS) pruneUnsafe() {
	tail := uint64(f.log.Stats().Tail)
	f.unsafeMu.Lock()
	for b, lsn := range f.unsafe {
		if lsn < tail {
			delete(f.unsafe, b)
		}
	}
	f.unsafeCap = max(4096, 2*len(f.unsafe))
	f.unsafeMu.Unlock()
}

// freeLater frees blocks [start, start+n) at commit.
func (o *op) freeLater(start, n uint64) {
	if n > 0 {
		o.frees = append(o.frees, ag.Extent{Start: start, Len: n})
	}
}

// newInode allocates an inode near parent and enters it in the table,
// pinned; its working copy starts from the free slot (whose generation it
// bumps). The caller sets the rest and puts it when done.
func (o *op) newInode(parent uint64, dirInode bool) (*inode, *layout.Inode, error) {
	f := o.f
	ino, err := f.gs.AllocInode(o.tx, parent, dirInode)
	if err != nil {
		return nil, nil, err
	}
	a, _, _ := f.g.SplitIno(ino)
	o.held[a] = true
	return o.enterInode(ino)
}

func (o *op) enterInode(ino uint64) (*inode, *layout.Inode, error) {
	f := o.f
	blk, off := f.slot(ino)
	b, err := o.tx.View(blk, f.tableVerifier)
	if err != nil {
		return nil, nil, err
	}
	var old layout.Inode
	if !allZero(b) {
		if err := old.Decode(b[off : off+layout.InodeSize]); err != nil {
			return nil, nil, err
		}
	}
	if old.Mode != 0 {
		return nil, nil, corruptf("inode %d: allocated, but its slot is in use (mode %#o)", ino, old.Mode)
	}
	n := &inode{ino: ino}
	n.once.Do(func() {})
	n.loaded.Store(true)
	n.pins = 1
	s := f.shard(ino)
	s.mu.Lock()
	if cur := s.m[ino]; cur != nil && cur.loaded.Load() && cur.lerr == nil && !cur.gone.Load() {
		s.mu.Unlock()
		return nil, nil, corruptf("inode %d: allocated, but it is in use in memory", ino)
	}
	s.m[ino] = n
	s.mu.Unlock()
	n.mu.Lock() // uncontended: nothing else knows the inode yet
	o.news = append(o.news, n)
	w := &wnode{n: n, base: old}
	w.in = layout.Inode{Generation: old.Generation + 1, Atime: o.now, Mtime: o.now, Ctime: o.now, Btime: o.now}
	o.ws = append(o.ws, w)
	return n, &w.in, nil
}

// freeInode frees n (whose working copy the caller has emptied of blocks)
// at commit: the inode bit, the orphan list entry, and the slot.
func (o *op) freeInode(n *inode, w *layout.Inode, onOrphanList bool) {
	o.ifrees = append(o.ifrees, ifree{ino: n.ino, dir: isDir(w.Mode)})
	if onOrphanList {
		o.orph = append(o.orph, orphOp{ino: n.ino})
	}
	*w = layout.Inode{Generation: w.Generation}
	o.freed = append(o.freed, n)
}

// orphan puts n on its AG's orphan list at commit.
func (o *op) orphan(n *inode) { o.orph = append(o.orph, orphOp{ino: n.ino, add: true}) }

func (o *op) abort() {
	o.tx.Abort()
	o.dropNews()
}

func (o *op) dropNews() {
	for _, n := range o.news {
		s := o.f.shard(n.ino)
		s.mu.Lock()
		n.gone.Store(true)
		if s.m[n.ino] == n {
			delete(s.m, n.ino)
		}
		s.mu.Unlock()
		n.mu.Unlock()
	}
	o.news = nil
}

// commit does the deferred frees and orphan-list edits, logs the inode
// changes and commits; then it publishes the working copies.
func (o *op) commit() (err error) {
	f := o.f
	defer func() {
		if err != nil {
			o.abort()
		}
	}()
	if o.flush {
		// Ordered data: the new blocks' contents reach the device before
		// any log write that can hold this commit (ordered.go).
		f.dev.dataWritten()
	}
	for n, d := range o.dirs {
		if w := o.w(n); w.Mode != 0 && d.RootChanged() {
			w.SetTreeRoot(d.Root())
		}
	}
	if err := o.agWork(); err != nil {
		return err
	}

	type slotWrite struct {
		blk  uint64
		off  int
		data []byte
	}
	var writes []slotWrite
	var a, b [layout.InodeSize]byte
	for _, w := range o.ws {
		base, in := w.base, w.in
		if isDir(in.Mode) {
			in.Size = in.Blocks * uint64(f.bs)
			w.in.Size = in.Size
		}
		base.NextOrphan, in.NextOrphan = 0, 0 // owned by the orphan list code
		base.Encode(a[:])
		in.Encode(b[:])
		blk, off := f.slot(w.n.ino)
		for i := 0; i < layout.InodeSize; {
			if a[i] == b[i] {
				i++
				continue
			}
			// A run of changed bytes; gaps of fewer than 16 equal bytes
			// cost less inside it than as a second record.
			j, last := i, i
			for j < layout.InodeSize && j-last < 16 {
				if a[j] != b[j] {
					last = j
				}
				j++
			}
			writes = append(writes, slotWrite{blk, off + i, slices.Clone(b[i : last+1])})
			i = last + 1
		}
	}
	for ino, nx := range o.next {
		blk, off := f.slot(ino)
		var v [8]byte
		binary.LittleEndian.PutUint64(v[:], nx)
		writes = append(writes, slotWrite{blk, off + offNextOrphan, v[:]})
	}
	o.empty = len(writes) == 0
	var stripes []int
	for _, w := range writes {
		s := int(w.blk % nStripes)
		if !slices.Contains(stripes, s) {
			stripes = append(stripes, s)
		}
	}
	slices.Sort(stripes)
	for _, s := range stripes {
		f.stripes[s].Lock()
	}
	unlock := func() {
		for i := len(stripes) - 1; i >= 0; i-- {
			f.stripes[stripes[i]].Unlock()
		}
		stripes = nil
	}
	defer func() { unlock() }()
	for _, w := range writes {
		if err := o.tx.Write(w.blk, w.off, w.data); err != nil {
			return err
		}
	}
	// Runs before the AG locks are released (deferred functions run last
	// in, first out): a freed inode leaves the table before its number
	// can be allocated again.
	o.tx.Defer(func(committed bool) {
		if !committed {
			return
		}
		f.noteCommit(o) // the orphan scanner's Watch (scan.go)
		for _, n := range o.freed {
			n.gone.Store(true)
			s := f.shard(n.ino)
			s.mu.Lock()
			if s.m[n.ino] == n {
				delete(s.m, n.ino)
			}
			s.mu.Unlock()
		}
	})
	lsn, err := o.tx.Commit()
	unlock()
	if err != nil {
		return err // the deferred abort drops the new inodes
	}
	o.lsn = lsn
	for {
		cur := f.lastLSN.Load()
		if uint64(lsn) <= cur || f.lastLSN.CompareAndSwap(cur, uint64(lsn)) {
			break
		}
	}
	if len(o.metaFreed) > 0 {
		f.unsafeMu.Lock()
		for _, b := range o.metaFreed {
			f.unsafe[b] = uint64(lsn)
		}
		big := len(f.unsafe) >= f.unsafeCap
		f.unsafeMu.Unlock()
		if big {
			f.pruneUnsafe()
		}
	}
	for _, w := range o.ws {
		n := w.n
		n.d = w.in
		n.lsn = max(n.lsn, lsn)
		n.nlink.Store(w.in.Nlink)
		if isDir(w.in.Mode) {
			n.parent.Store(w.in.Parent())
		}
	}
	for _, n := range o.news {
		n.mu.Unlock()
	}
	o.news = nil
	return nil
}

// nStripes is the number of inode-table block locks.
const nStripes = 256

// offNextOrphan is the byte offset of the next-orphan field in a slot.
const offNextOrphan = 80

// agWork does the deferred AG changes, in increasing AG order.
func (o *op) agWork() error {
	f := o.f
	type work struct {
		frees  []ag.Extent
		ifrees []ifree
		orph   []orphOp
	}
	byAG := map[uint32]*work{}
	at := func(a uint32) *work {
		w := byAG[a]
		if w == nil {
			w = &work{}
			byAG[a] = w
		}
		return w
	}
	for _, e := range o.frees {
		// Split at AG boundaries (extents never cross one, but be safe).
		for e.Len > 0 {
			a := f.g.AGOf(e.Start)
			end := min(e.End(), f.g.AGStart(a)+f.g.AGLen(a))
			at(a).frees = append(at(a).frees, ag.Extent{Start: e.Start, Len: end - e.Start})
			e.Len -= end - e.Start
			e.Start = end
		}
	}
	for _, x := range o.ifrees {
		a, _, _ := f.g.SplitIno(x.ino)
		at(a).ifrees = append(at(a).ifrees, x)
	}
	for _, x := range o.orph {
		a, _, _ := f.g.SplitIno(x.ino)
		at(a).orph = append(at(a).orph, x)
	}
	order := make([]uint32, 0, len(byAG))
	for a := range byAG {
		order = append(order, a)
	}
	slices.Sort(order)
	for _, a := range order {
		w := byAG[a]
		for _, x := range w.ifrees {
			if err := f.gs.FreeInode(o.tx, x.ino, x.dir); err != nil {
				return err
			}
			o.held[a] = true
		}
		slices.SortFunc(w.frees, func(x, y ag.Extent) int {
			switch {
			case x.Start < y.Start:
				return -1
			case x.Start > y.Start:
				return 1
			}
			return 0
		})
		// Coalesce adjacent runs.
		var merged []ag.Extent
		for _, e := range w.frees {
			if k := len(merged); k > 0 && merged[k-1].End() == e.Start {
				merged[k-1].Len += e.Len
				continue
			}
			merged = append(merged, e)
		}
		for _, e := range merged {
			if err := f.gs.FreeBlocks(o.tx, e.Start, e.Len); err != nil {
				return err
			}
			o.held[a] = true
		}
		if len(w.orph) > 0 {
			if err := o.lockAG(a); err != nil {
				return err
			}
			if err := o.editOrphans(a, w.orph); err != nil {
				return err
			}
		}
	}
	return nil
}

// editOrphans applies the orphan-list changes of AG a (whose lock the
// transaction holds): additions go to the head; a removal unlinks the
// inode from wherever it is. The next-orphan fields are written in commit.
func (o *op) editOrphans(a uint32, ops []orphOp) error {
	f := o.f
	hblk := f.g.AGHeaderBlock(a)
	hdr, err := o.tx.View(hblk, func(blk uint64, b []byte) error {
		_, err := layout.DecodeAGHeader(b, f.g, f.seed, a)
		return err
	})
	if err != nil {
		return err
	}
	head := binary.LittleEndian.Uint64(hdr[layout.OffAGOrphanHead:])
	orig := head
	if o.next == nil {
		o.next = map[uint64]uint64{}
	}
	next := func(ino uint64) (uint64, error) {
		if v, ok := o.next[ino]; ok {
			return v, nil
		}
		if !f.validIno(ino) {
			return 0, corruptf("ag %d: orphan list names inode %d, which is no inode", a, ino)
		}
		blk, off := f.slot(ino)
		b, err := o.tx.View(blk, f.tableVerifier)
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b[off+offNextOrphan:]), nil
	}
	for _, x := range ops {
		if x.add {
			o.next[x.ino] = head
			head = x.ino
			continue
		}
		prev, cur := uint64(0), head
		for steps := 0; cur != 0 && cur != x.ino; steps++ {
			if steps > int(f.g.InodesPerAG) {
				return corruptf("ag %d: orphan list loops", a)
			}
			nx, err := next(cur)
			if err != nil {
				return err
			}
			prev, cur = cur, nx
		}
		if cur == 0 {
			continue // not on the list (a crash left it off): nothing to unlink
		}
		nx, err := next(x.ino)
		if err != nil {
			return err
		}
		if prev == 0 {
			head = nx
		} else {
			o.next[prev] = nx
		}
		o.next[x.ino] = 0
	}
	if head != orig {
		var v [8]byte
		binary.LittleEndian.PutUint64(v[:], head)
		if err := o.tx.Write(hblk, layout.OffAGOrphanHead, v[:]); err != nil {
			return err
		}
	}
	return nil
}

// treeAlloc allocates and frees the nodes of one inode's trees (extents,
// directory, attributes) and keeps the inode's block count.
type treeAlloc struct {
	o  *op
	in *layout.Inode
}

var _ btree.Allocator = (*treeAlloc)(nil)

func (t *treeAlloc) AllocBlock(_ *wal.Tx, goal uint64) (uint64, error) {
	ext, err := t.o.allocBlocks(1, goal)
	if err != nil {
		return 0, err
	}
	t.in.Blocks++
	return ext[0].Start, nil
}

func (t *treeAlloc) FreeBlock(_ *wal.Tx, blk uint64) error {
	t.o.freeLater(blk, 1)
	t.o.metaFreed = append(t.o.metaFreed, blk)
	t.in.Blocks--
	return nil
}

// noAlloc is the allocator of trees opened for reading.
type noAlloc struct{}

func (noAlloc) AllocBlock(*wal.Tx, uint64) (uint64, error) { return 0, syscall.EROFS }
func (noAlloc) FreeBlock(*wal.Tx, uint64) error            { return syscall.EROFS }

// goal returns an allocation goal near inode ino: the start of its AG.
func (f *FS) goal(ino uint64) uint64 {
	a, _, _ := f.g.SplitIno(ino)
	return f.g.AGStart(a)
}
