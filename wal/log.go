package wal

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"agfs/disk"
	"agfs/layout"

	"github.com/cespare/xxhash/v2"
)

// Options tune an open log.
type Options struct {
	// CacheBlocks is the buffer cache capacity in blocks (default 4096).
	// Dirty blocks are pinned until a checkpoint writes them home, clean
	// ones are evicted least recently used first. A commit that would make
	// more than CacheBlocks blocks dirty waits for a checkpoint.
	CacheBlocks int
	// CheckpointAt starts a background checkpoint when the log is this
	// full (default 0.5).
	CheckpointAt float64
	// ReadOnly recovers in memory only: replayed blocks live in the cache
	// and nothing is ever written to the device. Transactions fail with
	// ErrReadOnly.
	ReadOnly bool
}

const (
	defaultCacheBlocks  = 4096
	defaultCheckpointAt = 0.5
	writebackBytes      = 256 << 10 // staged full blocks that start a background log write
	maxIO               = 1 << 20   // largest single device write
)

// Stats are counters of an open log.
type Stats struct {
	Commits          uint64        // non-empty transactions committed
	EmptyCommits     uint64        // transactions committed with no change
	Aborts           uint64        // transactions aborted (or failed in Commit)
	BytesLogged      uint64        // record bytes appended to the log
	LogWrites        uint64        // device writes to the log region
	LogBytesWritten  uint64        // bytes written to the log region, rewrites included
	Flushes          uint64        // device flushes made for log durability (group commits)
	Checkpoints      uint64        // checkpoints that wrote something
	CheckpointBlocks uint64        // blocks written home by checkpoints
	SpaceWaits       uint64        // commits that waited for log space or cache room
	MaxCommitStall   time.Duration // longest Commit call
	MaxSpaceWait     time.Duration // longest wait of a Commit for log space or cache room
	CacheHits        uint64
	CacheMisses      uint64
	Evictions        uint64
	CachedBlocks     int
	DirtyBlocks      int
	Head             LSN // next byte to append
	Tail             LSN // durable tail
	Durable          LSN // last durable commit
}

// Log is an open write-ahead log with its buffer cache.
type Log struct {
	dev  disk.Device
	g    geom
	seed uint64
	opt  Options
	c    cache
	ro   bool

	// mu is the append lock: it orders commits and guards the in-memory
	// log (head, staging), tail and the space queue, and orders changes
	// of nextTail with commits.
	mu         sync.Mutex
	space      *sync.Cond // on mu: log space or cache room was freed
	head       uint64     // payload position of the next byte to append
	tail       uint64     // durable tail (in the log superblock)
	epoch      uint32
	txSeq      uint64
	stage      staging
	closed     bool
	nextTicket uint64 // FIFO among commits waiting for space
	serving    uint64
	queued     int

	lastCommit atomic.Uint64 // LSN of the last commit appended
	nextTail   atomic.Uint64 // tail the running (or last) checkpoint moves to; set under mu

	// round serialises flushRound: the flusher's background writes and
	// the group commits that Wait runs itself. A waiter that finds a round
	// in progress queues on it and, once it holds it, finds its commit
	// durable or leads the next round for everyone queued behind.
	round sync.Mutex

	// dmu guards durable.
	dmu     sync.Mutex
	durable uint64 // LSN of the last commit known durable

	failed atomic.Pointer[error] // sticky I/O error

	// state of flushRound (round held)
	headWritten uint64 // head position the head block was last written at
	wbuf        []byte
	digest      *xxhash.Digest

	ckptMu sync.Mutex // one checkpoint at a time; guards sbSeq and arena
	sbSeq  uint64
	arena  []byte // the checkpoint's copies of dirty blocks

	flushKick chan struct{}
	ckptKick  chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup

	st struct {
		commits, empty, aborts, bytes, writes, wbytes, flushes, ckpts, ckptBlocks, waits atomic.Uint64
		maxStall, maxWait                                                                atomic.Int64
	}
}

// staging holds the unwritten part of the log stream: whole blocks in the
// sector format, payloads filled, headers filled when written.
type staging struct {
	base   uint64   // stream position of blocks[0] (block aligned)
	blocks [][]byte // the last one holds the head
	free   [][]byte
}

// Open recovers the log in region r of dev (in memory only when
// o.ReadOnly) and starts it.
func Open(dev disk.Device, r Region, seed uint64, o Options) (*Log, *Report, error) {
	g, err := newGeom(dev, r)
	if err != nil {
		return nil, nil, err
	}
	if o.CacheBlocks <= 0 {
		o.CacheBlocks = defaultCacheBlocks
	}
	if o.CheckpointAt <= 0 || o.CheckpointAt > 1 {
		o.CheckpointAt = defaultCheckpointAt
	}
	rec, rep, err := recoverLog(dev, &g, seed, o.ReadOnly)
	if err != nil {
		return nil, nil, err
	}
	l := &Log{dev: dev, g: g, seed: seed, opt: o, ro: o.ReadOnly,
		flushKick: make(chan struct{}, 1), ckptKick: make(chan struct{}, 1), stop: make(chan struct{}),
		digest: xxhash.NewWithSeed(seed)}
	l.space = sync.NewCond(&l.mu)
	l.c.init(o.CacheBlocks)
	sb := rec.sb
	l.epoch = sb.epoch
	l.head, l.tail, l.headWritten = sb.tail, sb.tail, sb.tail
	l.nextTail.Store(sb.tail)
	l.durable = max(sb.tail, rec.last)
	l.lastCommit.Store(l.durable)
	l.sbSeq = sb.seq
	if l.ro {
		// Replayed blocks live in the cache, pinned, since the device
		// does not hold them.
		for blk, b := range rec.blocks {
			e := &centry{blk: blk, data: b, lsn: layout.ReadHeader(b).LSN}
			l.c.m[blk] = e
			l.c.setDirty(e)
		}
		return l, rep, nil
	}
	// From here on this session writes sectors of this epoch at and after
	// the tail: the superblock must no longer say the log is clean.
	l.sbSeq++
	if err := writeSuper(dev, &l.g, super{seq: l.sbSeq, tail: l.tail, epoch: l.epoch}, seed); err != nil {
		return nil, nil, fmt.Errorf("wal: open: %w", err)
	}
	l.wg.Add(2)
	go l.flusher()
	go l.checkpointer()
	return l, rep, nil
}

func (l *Log) err() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail makes err sticky and wakes the commits that wait for space.
// (Waiters for durability see it when they take the round lock.)
func (l *Log) fail(err error) {
	l.failed.CompareAndSwap(nil, &err)
	l.mu.Lock()
	l.space.Broadcast()
	l.mu.Unlock()
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// appendBytes appends record bytes at the head. mu held.
func (l *Log) appendBytes(p []byte) {
	st, bs := &l.stage, l.g.bs
	for len(p) > 0 {
		h := l.head
		bstart := h - h%bs
		if len(st.blocks) == 0 {
			st.base = bstart
		}
		idx := int((bstart - st.base) / bs)
		for len(st.blocks) <= idx {
			st.blocks = append(st.blocks, l.newStageBlock())
		}
		n := min(len(p), int(sectorSize-h%sectorSize))
		copy(st.blocks[idx][h%bs:], p[:n])
		l.head = advance(h, uint64(n))
		p = p[n:]
	}
	if uint64(len(st.blocks)-1)*bs >= writebackBytes {
		kick(l.flushKick)
	}
}

func (l *Log) newStageBlock() []byte {
	st := &l.stage
	if n := len(st.free); n > 0 {
		b := st.free[n-1]
		st.free = st.free[:n-1]
		clear(b)
		return b
	}
	return make([]byte, l.g.bs)
}

// flusher writes full staged blocks in the background once writebackBytes
// have accumulated. It never writes the head block or flushes the device:
// group commits are Wait's.
func (l *Log) flusher() {
	defer l.wg.Done()
	for {
		select {
		case <-l.flushKick:
		case <-l.stop:
			return
		}
		for l.err() == nil {
			l.round.Lock()
			did, err := l.flushRound(false)
			l.round.Unlock()
			if err != nil {
				l.fail(err)
				break
			}
			if !did {
				break
			}
		}
	}
}

// flushRound writes the staged log: every full block and, when durable,
// the partial head block and then a device flush. It reports whether it
// did anything. The caller holds round.
func (l *Log) flushRound(durable bool) (bool, error) {
	bs := l.g.bs
	l.mu.Lock()
	end, endCommit := l.head, l.lastCommit.Load()
	st := &l.stage
	hb := end - end%bs
	var full [][]byte
	fullBase := st.base
	if len(st.blocks) > 0 && hb > st.base {
		n := int((hb - st.base) / bs)
		full = slices.Clone(st.blocks[:n])
		st.blocks = slices.Delete(st.blocks, 0, n)
		st.base = hb
	}
	var head []byte
	if durable && end%bs > sectorHdr && end != l.headWritten && len(st.blocks) > 0 {
		if cap(l.wbuf) < int(bs) {
			l.wbuf = make([]byte, bs)
		}
		head = l.wbuf[:bs]
		copy(head, st.blocks[0])
	}
	l.mu.Unlock()

	if !durable && len(full) == 0 {
		return false, nil
	}
	// Seal the sectors. Full blocks are no longer shared with appenders.
	for i, b := range full {
		lsn := fullBase + uint64(i)*bs
		for s := uint64(0); s < bs; s += sectorSize {
			sealSector(l.digest, b[s:s+sectorSize], lsn+s, sectorPayload, l.epoch, l.seed)
		}
	}
	if head != nil {
		for s := uint64(0); s < bs; s += sectorSize {
			lsn := hb + s
			switch {
			case lsn+sectorSize <= end:
				sealSector(l.digest, head[s:s+sectorSize], lsn, sectorPayload, l.epoch, l.seed)
			case lsn < end && end-lsn > sectorHdr:
				sealSector(l.digest, head[s:s+sectorSize], lsn, int(end-lsn-sectorHdr), l.epoch, l.seed)
			}
		}
	}
	blocks := full
	if head != nil {
		blocks = append(blocks, head)
	}
	if err := l.writeLog(fullBase, blocks); err != nil {
		return false, err
	}
	if head != nil {
		l.headWritten = end
	}
	if len(full) > 0 {
		l.mu.Lock()
		st.free = append(st.free, full...)
		l.mu.Unlock()
	}
	if !durable {
		return true, nil
	}
	if err := l.dev.Flush(); err != nil {
		return false, fmt.Errorf("wal: flushing the log: %w", err)
	}
	l.st.flushes.Add(1)
	l.dmu.Lock()
	if endCommit > l.durable {
		l.durable = endCommit
	}
	l.dmu.Unlock()
	return true, nil
}

// writeLog writes consecutive stream blocks starting at stream position
// base, coalescing them into large writes that do not cross the ring's end.
func (l *Log) writeLog(base uint64, blocks [][]byte) error {
	bs := l.g.bs
	var buf []byte
	start := base
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if _, err := l.dev.WriteAt(buf, l.g.physOff(start)); err != nil {
			return fmt.Errorf("wal: writing the log at LSN %d: %w", start, err)
		}
		l.st.writes.Add(1)
		l.st.wbytes.Add(uint64(len(buf)))
		start += uint64(len(buf))
		buf = buf[:0]
		return nil
	}
	if len(blocks) == 1 {
		buf = blocks[0]
		return flush()
	}
	for i, b := range blocks {
		p := base + uint64(i)*bs
		if len(buf) > 0 && (p%l.g.ring == 0 || len(buf) >= maxIO) {
			if err := flush(); err != nil {
				return err
			}
		}
		buf = append(buf, b...)
	}
	return flush()
}

// Wait returns when the transaction with LSN lsn (and every earlier one) is
// durable: the log is written up to it and the device flushed.
//
// The caller does the group commit itself rather than handing it to a
// goroutine, which would cost two thread wake-ups on the fsync path. Callers
// arriving while a round is in progress queue on the round lock; the first
// to get it writes and flushes everything committed by then, so the rest
// usually find their commit durable and return: one log write and one
// device flush serve them all.
func (l *Log) Wait(lsn LSN) error {
	for {
		if l.isDurable(lsn) {
			return nil
		}
		if err := l.err(); err != nil {
			return err
		}
		if last := l.lastCommit.Load(); uint64(lsn) > last {
			return fmt.Errorf("wal: wait: LSN %d was never committed (last is %d)", lsn, last)
		}
		if l.ro {
			return ErrReadOnly
		}
		l.round.Lock()
		var err error
		if !l.isDurable(lsn) && l.err() == nil {
			_, err = l.flushRound(true)
		}
		l.round.Unlock()
		if err != nil {
			l.fail(err)
			return err
		}
	}
}

func (l *Log) isDurable(lsn LSN) bool {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	return uint64(lsn) <= l.durable
}

// Sync makes everything committed so far durable.
func (l *Log) Sync() error {
	if l.ro {
		return nil
	}
	return l.Wait(LSN(l.lastCommit.Load()))
}

// Read copies the committed content of blk into dst (one block long),
// reading it from the device and verifying it with v on a cache miss.
func (l *Log) Read(blk uint64, v Verifier, dst []byte) error {
	if len(dst) != int(l.g.bs) {
		return fmt.Errorf("wal: read: block %d: buffer of %d bytes, block size %d", blk, len(dst), l.g.bs)
	}
	b, err := l.View(blk, v)
	if err != nil {
		return err
	}
	copy(dst, b)
	return nil
}

// checkpointer runs background checkpoints.
func (l *Log) checkpointer() {
	defer l.wg.Done()
	for {
		select {
		case <-l.ckptKick:
		case <-l.stop:
			return
		}
		l.ckptMu.Lock()
		err := l.checkpoint()
		l.ckptMu.Unlock()
		if err != nil {
			l.fail(err)
			return
		}
	}
}

// Checkpoint writes every dirty block home, then moves the log tail past
// everything committed before it started.
func (l *Log) Checkpoint() error {
	if l.ro {
		return ErrReadOnly
	}
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	if err := l.checkpoint(); err != nil {
		l.fail(err)
		return err
	}
	return nil
}

type ckptBlock struct {
	blk, lsn uint64
	data     []byte
}

// checkpoint does the work of Checkpoint. ckptMu held.
func (l *Log) checkpoint() error {
	if err := l.err(); err != nil {
		return err
	}
	l.mu.Lock()
	snapEnd, snapLSN := l.head, l.lastCommit.Load()
	l.nextTail.Store(snapEnd) // later changes to any block log a fresh image
	l.c.mu.Lock()
	copies := make([]ckptBlock, 0, len(l.c.dirty))
	for _, e := range l.c.dirty {
		// A reference is enough here: commits and checkpoints replace a
		// cached block's buffer rather than change it.
		copies = append(copies, ckptBlock{blk: e.blk, lsn: e.lsn, data: e.data})
	}
	l.c.mu.Unlock()
	tail := l.tail
	l.mu.Unlock()
	// Copy into one arena, reused from one checkpoint to the next (they
	// run one at a time), to spare the garbage collector.
	if need := len(copies) * int(l.g.bs); cap(l.arena) < need {
		l.arena = make([]byte, need)
	}
	for i := range copies {
		b := l.arena[i*int(l.g.bs) : (i+1)*int(l.g.bs) : (i+1)*int(l.g.bs)]
		copy(b, copies[i].data)
		copies[i].data = b
	}
	if len(copies) == 0 && snapEnd == tail {
		return nil
	}
	if err := l.Wait(LSN(snapLSN)); err != nil {
		return err
	}
	slices.SortFunc(copies, func(a, b ckptBlock) int {
		switch {
		case a.blk < b.blk:
			return -1
		case a.blk > b.blk:
			return 1
		}
		return 0
	})
	if err := l.writeHome(copies); err != nil {
		return err
	}
	if err := l.dev.Flush(); err != nil {
		return fmt.Errorf("wal: checkpoint: flush: %w", err)
	}
	l.sbSeq++
	if err := writeSuper(l.dev, &l.g, super{seq: l.sbSeq, tail: snapEnd, epoch: l.epoch}, l.seed); err != nil {
		return fmt.Errorf("wal: checkpoint: %w", err)
	}

	// The copies are home: unpin the blocks no commit changed since.
	l.mu.Lock()
	l.c.mu.Lock()
	for _, cb := range copies {
		e := l.c.m[cb.blk]
		if e == nil || !e.dirty || e.lsn != cb.lsn {
			continue
		}
		// The cached copy now equals the home copy, header included. A
		// new buffer, since readers may hold the old one (view).
		e.data = slices.Clone(cb.data)
		l.c.setClean(e)
	}
	l.c.evict()
	l.c.mu.Unlock()
	l.tail = snapEnd
	l.space.Broadcast()
	l.mu.Unlock()
	l.st.ckpts.Add(1)
	l.st.ckptBlocks.Add(uint64(len(copies)))
	return nil
}

// ckptWriters is how many writes a checkpoint keeps in flight: devices
// (and O_DIRECT files) are much faster with a queue of requests than one at
// a time.
const ckptWriters = 16

// writeHome seals the copies (sorted by block) and writes them home,
// coalescing adjacent blocks into one write; the runs are issued in block
// order by ckptWriters concurrent writers.
func (l *Log) writeHome(copies []ckptBlock) error {
	bs := l.g.bs
	type run struct {
		start uint64
		data  []byte
	}
	var runs []run
	for _, cb := range copies {
		layout.Seal(cb.data, l.seed, cb.lsn)
		if n := len(runs); n > 0 {
			r := &runs[n-1]
			if cb.blk == r.start+uint64(len(r.data))/bs && len(r.data) < maxIO {
				r.data = append(r.data, cb.data...)
				continue
			}
		}
		runs = append(runs, run{start: cb.blk, data: cb.data})
	}
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range min(ckptWriters, len(runs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for failed.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(runs) {
					return
				}
				r := runs[i]
				if _, err := l.dev.WriteAt(r.data, int64(r.start*bs)); err != nil {
					err = fmt.Errorf("wal: checkpoint: writing blocks [%d, %d): %w", r.start, r.start+uint64(len(r.data))/bs, err)
					failed.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Close checkpoints everything, leaves the log empty and cleanly closed,
// and stops the log's goroutines. It does not close the device. The log
// must not be used afterwards (no transaction may be in flight).
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.space.Broadcast()
	l.mu.Unlock()
	if l.ro {
		return nil
	}
	l.ckptMu.Lock()
	err := l.checkpoint()
	l.ckptMu.Unlock()
	close(l.stop)
	l.wg.Wait()
	if err == nil {
		// Nothing is in the log and nothing more will be: leave it empty,
		// at the canonical position, and clean.
		l.mu.Lock()
		t := canon(l.head, l.g.bs)
		l.mu.Unlock()
		l.sbSeq++
		if err = writeSuper(l.dev, &l.g, super{seq: l.sbSeq, tail: t, epoch: l.epoch, clean: true}, l.seed); err != nil {
			err = fmt.Errorf("wal: close: %w", err)
		}
	}
	if err != nil {
		l.fail(err)
		return err
	}
	l.fail(ErrClosed) // later commits and waits fail
	return nil
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	var s Stats
	s.Commits = l.st.commits.Load()
	s.EmptyCommits = l.st.empty.Load()
	s.Aborts = l.st.aborts.Load()
	s.BytesLogged = l.st.bytes.Load()
	s.LogWrites = l.st.writes.Load()
	s.LogBytesWritten = l.st.wbytes.Load()
	s.Flushes = l.st.flushes.Load()
	s.Checkpoints = l.st.ckpts.Load()
	s.CheckpointBlocks = l.st.ckptBlocks.Load()
	s.SpaceWaits = l.st.waits.Load()
	s.MaxCommitStall = time.Duration(l.st.maxStall.Load())
	s.MaxSpaceWait = time.Duration(l.st.maxWait.Load())
	l.mu.Lock()
	s.Head, s.Tail = LSN(l.head), LSN(l.tail)
	l.mu.Unlock()
	l.c.mu.Lock()
	s.CacheHits, s.CacheMisses, s.Evictions = l.c.hits, l.c.misses, l.c.evictions
	s.CachedBlocks, s.DirtyBlocks = len(l.c.m), len(l.c.dirty)
	l.c.mu.Unlock()
	l.dmu.Lock()
	s.Durable = LSN(l.durable)
	l.dmu.Unlock()
	return s
}

// BlockSize is the log's block size.
func (l *Log) BlockSize() int { return int(l.g.bs) }

// usage is how full the log is, 0..1. mu held.
func (l *Log) usage() float64 { return float64(l.head-l.tail) / float64(l.g.capacity) }

func storeMax(v *atomic.Int64, x int64) {
	for {
		m := v.Load()
		if x <= m || v.CompareAndSwap(m, x) {
			return
		}
	}
}
