package orphan

import (
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"agfs/bitmap"
	"agfs/layout"
)

// Source is the filesystem as the scanner sees it (fs/scan.go implements
// it). Block numbers are absolute; inode numbers are the filesystem's.
type Source interface {
	Geometry() *layout.Geometry
	// SetWatch makes every commit from now on feed w (nil: stop).
	SetWatch(w *Watch)
	// Used returns AG a's block and inode bitmaps as committed, up to
	// their initialisation marks (bits beyond are free), with the AG's own
	// metadata blocks, inode index 0 and the root directory cleared: the
	// candidates, before the walk clears what it finds referenced.
	Used(a uint32) (blocks, inodes *bitmap.Bitmap, err error)
	// Walk visits at most count inode slots of AG a from index from, up to
	// the AG's initialised inode table, and reports to r what each used
	// inode references, reading each inode and its trees consistently (under
	// the inode's lock). It returns the next index and whether the AG is
	// done.
	Walk(a uint32, from, count uint32, r Refs) (next uint32, done bool, err error)
	// ReclaimBlocks frees, in one transaction holding the AG's lock, the
	// blocks of [start, start+n) (one AG) that are still marked used and
	// that w has not seen freed, and returns how many it freed.
	ReclaimBlocks(w *Watch, start, n uint64) (uint64, error)
	// ReclaimInode re-checks inode ino, found as kind k, under its lock
	// (unchanged since w began, not referenced) and frees it.
	ReclaimInode(w *Watch, k Kind, ino uint64) (Outcome, error)
	// Busy reports whether foreground work ran since the last call.
	Busy() bool
}

// Refs receives what the walk finds referenced.
type Refs interface {
	// Owns: blocks [start, start+n) belong to an inode (data or tree node).
	Owns(start, n uint64)
	// Names: a directory entry names ino.
	Names(ino uint64)
	// Unlinked: ino has link count 0 (called before the walk lets go of
	// the inode).
	Unlinked(ino uint64)
	// Freed: letting go of ino, just reported Unlinked, freed it, as
	// nothing else referenced it (the inode table's rule for a last close).
	Freed(ino uint64)
}

// Outcome is what a reclaim attempt did.
type Outcome uint8

const (
	Reclaimed Outcome = iota + 1 // freed
	Stale                        // not an orphan any more (changed, in use, gone)
	Deferred                     // still an orphan but not reclaimable now (referenced)
)

// Options set the scanner's pace.
type Options struct {
	// Interval is the pause before each pass.
	Interval time.Duration
	// Rate bounds the work per second: inode slots visited plus reclaims
	// attempted. 0 means no bound.
	Rate int
	// Logf reports reclaim failures (log.Printf if nil).
	Logf func(format string, args ...any)
}

// Default pace: a pass over a million inodes takes under a minute at
// DefaultRate, and the whole filesystem is looked at every few minutes.
const (
	DefaultInterval = 5 * time.Minute
	DefaultRate     = 20000
)

// chunk is how many inode slots one Walk call visits: the scanner checks
// for Stop, paces itself and yields between chunks, and holds no lock
// across them.
const chunk = 256

// Yielding: when foreground work ran during a chunk, the scanner waits
// this long more before the next one, doubling while the work goes on.
const (
	minYield = time.Millisecond
	maxYield = 100 * time.Millisecond
)

var errStopped = errors.New("orphan: scanner stopped")

// Scanner is the background scanner of one mounted filesystem.
//
// A pass (1) starts a Watch, (2) snapshots every AG's committed bitmaps,
// (3) walks every inode, clearing from the snapshots what inodes reference
// (blocks they own, inodes their entries name), (4) enters what is left
// in the tree, drops from the tree what this pass no longer found, and
// (5) asks the Source to reclaim each finding, which it re-checks under
// the lock that serialises it with the filesystem's own changes (the AG
// lock for blocks, the inode's lock for inodes) against the Watch, started
// before the snapshot. The re-check is done under those locks rather than
// by finding an orphan twice in two passes, because two passes are two
// samples of a moving filesystem and cannot prove the orphan stayed one
// between them; see Watch for why the locked re-check can.
type Scanner struct {
	src Source
	opt Options

	mu   sync.Mutex // guards tree and st
	tree *Tree
	st   Stats

	yield time.Duration
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// Start starts the scanner's goroutine.
func Start(src Source, o Options) *Scanner {
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	s := &Scanner{src: src, opt: o, tree: NewTree(), stop: make(chan struct{}), done: make(chan struct{}),
		yield: minYield}
	s.st.Enabled, s.st.Rate, s.st.Interval = true, o.Rate, o.Interval
	go s.loop()
	return s
}

// Stop stops the scanner and waits for it: a pass in progress ends at the
// next chunk or reclaim.
func (s *Scanner) Stop() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Stats returns the scanner's counters.
func (s *Scanner) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Pending = s.tree.Len()
	return st
}

// Orphan is one entry of the tree.
type Orphan struct {
	Key
	Entry
}

// Orphans returns the tree's entries in key order.
func (s *Scanner) Orphans() []Orphan {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Orphan, 0, s.tree.Len())
	for k, e := range s.tree.All() {
		out = append(out, Orphan{k, e})
	}
	return out
}

func (s *Scanner) loop() {
	defer close(s.done)
	for {
		if !s.sleep(s.opt.Interval) {
			return
		}
		start := time.Now()
		err := s.pass()
		s.mu.Lock()
		switch {
		case errors.Is(err, errStopped):
			s.mu.Unlock()
			return
		case err != nil:
			s.st.Aborted++
			s.st.Errors++
		default:
			s.st.Passes++
			s.st.LastPass = time.Since(start)
		}
		s.mu.Unlock()
		if err != nil {
			s.opt.Logf("agfs: orphan scan: %v (the next pass starts afresh)", err)
		}
	}
}

// sleep waits d, or until Stop; it reports false on Stop.
func (s *Scanner) sleep(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-s.stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.stop:
		return false
	case <-t.C:
		return true
	}
}

// pace waits as long as n units of work take at the configured rate, plus
// a growing pause while foreground work is running.
func (s *Scanner) pace(n int) error {
	var d time.Duration
	if s.opt.Rate > 0 {
		d = time.Duration(n) * time.Second / time.Duration(s.opt.Rate)
	}
	if s.src.Busy() {
		d += s.yield
		s.yield = min(2*s.yield, maxYield)
	} else {
		s.yield = minYield
	}
	if !s.sleep(d) {
		return errStopped
	}
	return nil
}

// agScan is one AG's candidates during a pass.
type agScan struct {
	blocks *bitmap.Bitmap // bit i: block AGStart+i
	inodes *bitmap.Bitmap // bit i: inode index i
}

// passRefs clears from the candidates what the walk finds referenced.
type passRefs struct {
	g        *layout.Geometry
	w        *Watch
	ags      []agScan
	unlinked map[uint64]bool // not unlinked during the pass
	freed    uint64          // of those, how many the walk freed
}

func (p *passRefs) Owns(start, n uint64) {
	for n > 0 && start < p.g.BlockCount {
		a := p.g.AGOf(start)
		rel := start - p.g.AGStart(a)
		k := min(n, p.g.AGLen(a)-rel)
		if bm := p.ags[a].blocks; rel < bm.Len() {
			bm.ClearRange(rel, min(k, bm.Len()-rel))
		}
		start, n = start+k, n-k
	}
}

func (p *passRefs) Names(ino uint64) {
	if a, i, ok := p.g.SplitIno(ino); ok {
		if bm := p.ags[a].inodes; uint64(i) < bm.Len() {
			bm.Clear(uint64(i))
		}
	}
}

func (p *passRefs) Unlinked(ino uint64) {
	// An inode with no link is no candidate for Unnamed: it is what it is.
	p.Names(ino)
	// One unlinked during the pass is on its way out by the filesystem's
	// own path (its last reference frees it), not an orphan.
	if !p.w.WasChanged(ino) {
		p.unlinked[ino] = true
	}
}

func (p *passRefs) Freed(ino uint64) {
	if p.unlinked[ino] {
		delete(p.unlinked, ino)
		p.freed++
	}
}

// maxRun bounds the blocks of one Unowned entry, so that reclaiming one
// is a small transaction (it logs a bitmap block's worth of bits at most).
const maxRun = 1 << 15

// finding is one orphan found by a pass.
type finding struct {
	k   Key
	len uint64
	how How
}

func (s *Scanner) pass() error {
	g := s.src.Geometry()
	w := NewWatch()
	s.src.SetWatch(w)
	defer s.src.SetWatch(nil)

	r := &passRefs{g: g, w: w, ags: make([]agScan, g.AGCount), unlinked: map[uint64]bool{}}
	for a := range g.AGCount {
		if !s.sleep(0) {
			return errStopped
		}
		b, i, err := s.src.Used(a)
		if err != nil {
			return fmt.Errorf("ag %d: reading the bitmaps: %w", a, err)
		}
		r.ags[a] = agScan{blocks: b, inodes: i}
	}
	for a := range g.AGCount {
		for from := uint32(0); ; {
			next, done, err := s.src.Walk(a, from, chunk, r)
			if err != nil {
				return fmt.Errorf("ag %d: %w", a, err)
			}
			s.mu.Lock()
			s.st.Scanned += uint64(next - from)
			s.mu.Unlock()
			if err := s.pace(int(next - from)); err != nil {
				return err
			}
			if done {
				break
			}
			from = next
		}
	}
	pass := s.record(r, s.findings(r))
	return s.reclaim(w, pass)
}

// findings lists what the walk left in the candidate bitmaps, with block
// candidates merged into runs. Candidates the Watch saw change during the
// pass are dropped at once: they were in use when the pass began (the
// walk missed them only because they moved), and the reclaim's re-check
// would drop them anyway.
func (s *Scanner) findings(r *passRefs) []finding {
	g := s.src.Geometry()
	var out []finding
	for ino := range r.unlinked {
		out = append(out, finding{Key{Unlinked, ino}, 1, ByLinkCount})
	}
	for a, x := range r.ags {
		for i, ok := x.inodes.NextSet(0); ok; i, ok = x.inodes.NextSet(i + 1) {
			if ino := g.Ino(uint32(a), uint32(i)); !r.w.WasChanged(ino) {
				out = append(out, finding{Key{Unnamed, ino}, 1, ByInodeBitmap})
			}
		}
		base, n := g.AGStart(uint32(a)), x.blocks.Len()
		for i, ok := x.blocks.NextSet(0); ok; i, ok = x.blocks.NextSet(i + 1) {
			if r.w.WasFreed(base + i) {
				x.blocks.Clear(i)
			}
		}
		for i, ok := x.blocks.NextSet(0); ok; {
			end, more := x.blocks.NextClear(i)
			if !more {
				end = n
			}
			for j := i; j < end; j += maxRun {
				out = append(out, finding{Key{Unowned, base + j}, min(maxRun, end-j), ByBlockBitmap})
			}
			if end >= n {
				break
			}
			i, ok = x.blocks.NextSet(end)
		}
	}
	return out
}

// record enters a pass's findings in the tree and drops the entries it
// did not find again (no longer orphans). It returns the pass number.
func (s *Scanner) record(r *passRefs, found []finding) uint64 {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	pass := s.st.Passes + s.st.Aborted + 1
	s.st.FoundUnlinked += r.freed
	s.st.ReclaimedUnlinked += r.freed
	for _, f := range found {
		if e, ok := s.tree.Lookup(f.k); ok && e.Len == f.len {
			e.Seen = pass
			s.tree.Put(f.k, e)
			continue
		}
		s.tree.Put(f.k, Entry{Len: f.len, Found: now, How: f.how, Pass: pass, Seen: pass})
		switch f.k.Kind {
		case Unlinked:
			s.st.FoundUnlinked++
		case Unnamed:
			s.st.FoundUnnamed++
		case Unowned:
			s.st.FoundBlocks += f.len
		}
	}
	var gone []Key
	for k, e := range s.tree.All() {
		if e.Seen != pass {
			gone = append(gone, k)
		}
	}
	for _, k := range gone {
		s.tree.Delete(k)
		s.st.Resolved++
	}
	return pass
}

// reclaim tries every orphan the pass found, in key order.
func (s *Scanner) reclaim(w *Watch, pass uint64) error {
	s.mu.Lock()
	var todo []Orphan
	for k, e := range s.tree.All() {
		if e.Seen == pass {
			todo = append(todo, Orphan{k, e})
		}
	}
	s.mu.Unlock()
	for _, o := range todo {
		var (
			out   Outcome
			freed uint64
			err   error
		)
		if o.Kind == Unowned {
			freed, err = s.src.ReclaimBlocks(w, o.Num, o.Len)
			out = Reclaimed
			if err == nil && freed == 0 {
				out = Stale
			}
		} else {
			out, err = s.src.ReclaimInode(w, o.Kind, o.Num)
			freed = 1
		}
		s.mu.Lock()
		switch {
		case err != nil:
			s.st.Errors++
			o.Attempts++
			s.tree.Put(o.Key, o.Entry)
		case out == Reclaimed:
			s.tree.Delete(o.Key)
			switch o.Kind {
			case Unlinked:
				s.st.ReclaimedUnlinked++
			case Unnamed:
				s.st.ReclaimedUnnamed++
			case Unowned:
				s.st.ReclaimedBlocks += freed
				if freed < o.Len {
					s.st.Stale++ // the rest of the run was in use again
				}
			}
		case out == Stale:
			s.tree.Delete(o.Key)
			s.st.Stale++
		default:
			s.st.Deferred++
			o.Attempts++
			s.tree.Put(o.Key, o.Entry)
		}
		s.mu.Unlock()
		if err != nil {
			s.opt.Logf("agfs: orphan scan: reclaiming %v %d: %v", o.Kind, o.Num, err)
		}
		if err := s.pace(1); err != nil {
			return err
		}
	}
	return nil
}
