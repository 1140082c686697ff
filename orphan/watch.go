package orphan

import "sync"

// A Watch records, for the length of one pass, the filesystem changes that
// can make a finding of that pass stale: every block freed and every inode
// changed by a committed transaction. The filesystem feeds it (fs calls
// Freed and Changed from every commit while a pass runs); the reclaim
// calls consult it under the lock that orders them after those commits.
//
// Why this is enough (the re-check rule, see Scanner): a pass snapshots the
// committed bitmaps of an AG before its walk of the inodes starts. A block
// marked used in that snapshot, found in no inode by the walk and not freed
// since the Watch started, has been marked used without a break since
// before the walk; a block changes owner only by being freed and allocated
// again, so whatever inode owned it owned it for the whole walk, and the
// walk (which reads each inode under the inode's lock) would have seen it.
// Likewise an inode gains or loses a name only in a transaction that
// changes the inode itself (creation, link, unlink, rename set its link
// count or ctime), so an inode unchanged since the Watch started, named by
// no directory the walk read, is named by none.
//
// Sets are sparse (a map of 64-bit words), so memory follows the activity
// during the pass, not the size of the filesystem.
type Watch struct {
	mu     sync.Mutex
	blocks words // blocks freed
	inodes words // inodes changed
}

// NewWatch returns an empty watch.
func NewWatch() *Watch { return &Watch{blocks: words{}, inodes: words{}} }

// Freed records that blocks [start, start+n) were freed.
func (w *Watch) Freed(start, n uint64) {
	w.mu.Lock()
	w.blocks.setRange(start, n)
	w.mu.Unlock()
}

// Changed records that inode ino changed.
func (w *Watch) Changed(ino uint64) {
	w.mu.Lock()
	w.inodes.setRange(ino, 1)
	w.mu.Unlock()
}

// WasFreed reports whether block b was freed since the watch began.
func (w *Watch) WasFreed(b uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.blocks.test(b)
}

// WasChanged reports whether inode ino changed since the watch began.
func (w *Watch) WasChanged(ino uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inodes.test(ino)
}

// words is a sparse bit set: word index → word.
type words map[uint64]uint64

func (s words) setRange(start, n uint64) {
	for end := start + n; start < end; {
		k, bit := start/64, start%64
		m := ^uint64(0) << bit
		if span := end - start; bit+span < 64 {
			m &= 1<<(bit+span) - 1
		}
		s[k] |= m
		start = (k + 1) * 64
	}
}

func (s words) test(i uint64) bool { return s[i/64]&(1<<(i%64)) != 0 }
