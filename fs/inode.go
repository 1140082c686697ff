package fs

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"agfs/layout"
	"agfs/wal"
)

// The inode table holds, in memory, every inode that the kernel references
// (nlookup), that an open handle references (nopen), or that an operation
// is using right now (pins). It is sharded by inode number; each shard has
// its own mutex, which guards the maps and the three counts. Each inode has
// its own lock (mu) that operations hold while they read or change it;
// operations on several inodes take their locks in increasing inode
// number. The decoded inode (d) is the committed state: a transaction
// changes a working copy (op.w) and d is replaced after the commit.
//
// An inode is freed (its blocks, attributes and slot) only when its link
// count, kernel references and open handles are all zero; until then an
// inode whose last link went is on its AG's on-disk orphan list.

const nShards = 64

type shard struct {
	mu sync.Mutex
	m  map[uint64]*inode
}

type inode struct {
	ino    uint64
	once   sync.Once
	lerr   error       // load error (set once)
	loaded atomic.Bool // d holds the slot (set once)

	mu  sync.RWMutex
	d   layout.Inode // committed state, under mu (written once by the loader before)
	lsn wal.LSN      // last transaction that changed the inode, under mu

	// Mirrors readable without mu.
	gone      atomic.Bool   // freed: the slot may already belong to another file
	nlink     atomic.Uint32 // d.Nlink
	parent    atomic.Uint64 // directories: the parent directory
	dataDirty atomic.Bool   // data written in place since the last device flush
	broken    atomic.Bool   // could not be freed: left for the next mount

	// Under the shard's mu.
	nlookup    uint64
	nopen      int64
	pins       int64
	reclaiming bool
}

func (f *FS) shard(ino uint64) *shard { return &f.shards[(ino^ino>>17)%nShards] }

// slot returns the inode-table block and byte offset of ino.
func (f *FS) slot(ino uint64) (uint64, int) {
	a, i, _ := f.g.SplitIno(ino)
	return f.g.InodeLocation(a, i)
}

func (f *FS) validIno(ino uint64) bool {
	_, i, ok := f.g.SplitIno(ino)
	return ok && i != 0
}

// tableVerifier checks an inode-table block read from the device. A block
// that was never written (beyond the AG's init mark) reads as all zeroes:
// it holds no inode, which the caller sees as free slots.
func (f *FS) tableVerifier(blk uint64, b []byte) error {
	if allZero(b) {
		return nil
	}
	return layout.Check(b, f.seed, layout.MagicInodeTable, blk, uint64(f.g.AGOf(blk)))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// readSlot decodes ino's slot as committed.
func (f *FS) readSlot(ino uint64) (layout.Inode, error) {
	var d layout.Inode
	blk, off := f.slot(ino)
	b, err := f.log.View(blk, f.tableVerifier)
	if err != nil {
		return d, err
	}
	if err := d.Decode(b[off : off+layout.InodeSize]); err != nil {
		return d, fmt.Errorf("inode %d: %w", ino, err)
	}
	return d, nil
}

func (f *FS) load(n *inode) error {
	d, err := f.readSlot(n.ino)
	if err != nil {
		return err
	}
	if d.Mode == 0 {
		return syscall.ESTALE
	}
	n.d = d
	n.lsn = wal.LSN(f.lastLSN.Load())
	n.nlink.Store(d.Nlink)
	if isDir(d.Mode) {
		n.parent.Store(d.Parent())
	}
	n.loaded.Store(true)
	return nil
}

// get returns ino's in-memory inode, loading it, pinned: the caller puts
// it back with put. A number that names no live inode is ESTALE.
func (f *FS) get(ino uint64) (*inode, error) {
	if !f.validIno(ino) {
		return nil, syscall.ESTALE
	}
	s := f.shard(ino)
	s.mu.Lock()
	n := s.m[ino]
	if n == nil {
		n = &inode{ino: ino}
		s.m[ino] = n
	}
	n.pins++
	s.mu.Unlock()
	n.once.Do(func() { n.lerr = f.load(n) })
	if n.lerr != nil || n.gone.Load() {
		err := n.lerr
		if err == nil {
			err = syscall.ESTALE
		}
		f.put(n)
		return nil, err
	}
	return n, nil
}

// put drops a pin. When nothing references the inode any more it leaves
// the table, and if it has no link it is reclaimed first.
func (f *FS) put(n *inode) {
	s := f.shard(n.ino)
	s.mu.Lock()
	n.pins--
	rec := f.idle(s, n)
	s.mu.Unlock()
	if rec {
		f.reclaim(n)
	}
}

// idle (shard mu held) decides what happens to an inode whose counts may
// have dropped to zero: it reports true when the caller must reclaim it
// (and then holds a pin for it).
func (f *FS) idle(s *shard, n *inode) bool {
	if n.pins > 0 || n.nlookup > 0 || n.nopen > 0 || n.reclaiming {
		return false
	}
	if n.lerr == nil && n.loaded.Load() && !n.gone.Load() && !n.broken.Load() && n.nlink.Load() == 0 && !f.ro && !f.closed.Load() {
		n.reclaiming = true
		n.pins++
		return true
	}
	if n.dataDirty.Load() {
		f.strayDirty.Store(true) // Fsync of a reloaded inode must still flush
	}
	if s.m[n.ino] == n {
		delete(s.m, n.ino)
	}
	return false
}

// Ref adds a kernel reference (a successful lookup, create, mknod, mkdir,
// symlink, link or readdirplus entry).
func (f *FS) Ref(ino uint64) {
	n, err := f.get(ino)
	if err != nil {
		return
	}
	s := f.shard(ino)
	s.mu.Lock()
	n.nlookup++
	s.mu.Unlock()
	f.put(n)
}

// Forget drops k kernel references (FUSE FORGET).
func (f *FS) Forget(ino uint64, k uint64) {
	s := f.shard(ino)
	s.mu.Lock()
	n := s.m[ino]
	if n == nil {
		s.mu.Unlock()
		return
	}
	n.nlookup -= min(k, n.nlookup)
	rec := f.idle(s, n)
	s.mu.Unlock()
	if rec {
		f.reclaim(n)
	}
}

// OpenFile adds an open handle.
func (f *FS) OpenFile(ino uint64) error {
	n, err := f.get(ino)
	if err != nil {
		return errno(err)
	}
	s := f.shard(ino)
	s.mu.Lock()
	n.nopen++
	s.mu.Unlock()
	f.put(n)
	return nil
}

// Release drops an open handle.
func (f *FS) Release(ino uint64) {
	s := f.shard(ino)
	s.mu.Lock()
	n := s.m[ino]
	if n == nil || n.nopen == 0 {
		s.mu.Unlock()
		return
	}
	n.nopen--
	rec := f.idle(s, n)
	s.mu.Unlock()
	if rec {
		f.reclaim(n)
	}
}

// lockAll locks the distinct inodes of ns exclusively in increasing
// inode-number order and returns the function that unlocks them.
func lockAll(ns ...*inode) func() {
	u := make([]*inode, 0, len(ns))
	for _, n := range ns {
		if n != nil && !slices.Contains(u, n) {
			u = append(u, n)
		}
	}
	slices.SortFunc(u, func(a, b *inode) int {
		switch {
		case a.ino < b.ino:
			return -1
		case a.ino > b.ino:
			return 1
		}
		return 0
	})
	for _, n := range u {
		n.mu.Lock()
	}
	return func() {
		for i := len(u) - 1; i >= 0; i-- {
			u[i].mu.Unlock()
		}
	}
}

// Mode helpers.
func isDir(mode uint32) bool { return mode&syscall.S_IFMT == syscall.S_IFDIR }
func isReg(mode uint32) bool { return mode&syscall.S_IFMT == syscall.S_IFREG }
func isLnk(mode uint32) bool { return mode&syscall.S_IFMT == syscall.S_IFLNK }

// dtype is the directory-entry file type of mode (DT_*).
func dtype(mode uint32) uint8 { return uint8(mode >> 12 & 0xF) }

// Attr is an inode's attributes as stat(2) shows them.
type Attr struct {
	Ino                        uint64
	Gen                        uint32
	Mode                       uint32 // st_mode incl. file type
	Nlink                      uint32
	UID, GID                   uint32
	Rdev                       uint32
	Size                       uint64
	Blocks                     uint64 // in 512-byte units, like st_blocks
	Atime, Mtime, Ctime, Btime int64  // Unix ns
}

func (f *FS) attr(ino uint64, d *layout.Inode) Attr {
	return Attr{Ino: ino, Gen: d.Generation, Mode: d.Mode, Nlink: d.Nlink, UID: d.UID, GID: d.GID,
		Rdev: d.Rdev, Size: d.Size, Blocks: d.Blocks * uint64(f.bs/512),
		Atime: d.Atime, Mtime: d.Mtime, Ctime: d.Ctime, Btime: d.Btime}
}

// reading runs fn with inode ino referenced and read-locked, the shape of
// every operation that only looks at one inode; errors come back as errnos.
func reading[T any](f *FS, ino uint64, fn func(n *inode) (T, error)) (T, error) {
	n, err := f.get(ino)
	if err != nil {
		var zero T
		return zero, errno(err)
	}
	defer f.put(n)
	n.mu.RLock()
	defer n.mu.RUnlock()
	v, err := fn(n)
	return v, errno(err)
}

// GetAttr returns ino's attributes.
func (f *FS) GetAttr(ino uint64) (Attr, error) {
	return reading(f, ino, func(n *inode) (Attr, error) { return f.attr(ino, &n.d), nil })
}
