package wal

import (
	"fmt"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Tx is a transaction over metadata blocks. Changes go to private copies
// of the blocks; Commit logs them and publishes them in the cache at once;
// Abort drops them.
//
// Contract: a caller changing a block holds a lock of its own that covers
// the block from before its first Read or Write until Commit or Abort
// returns (Defer lets it release the lock after that), so no two open
// transactions change the same block. Commit order is then log order. A Tx
// is used by one goroutine at a time.
type Tx struct {
	l      *Log
	blocks map[uint64]*txBlock
	order  []uint64 // blocks in first-change order
	defers []func(committed bool)
	done   bool
	err    error // fails every operation (read-only or closed log)
}

type txBlock struct {
	data   []byte
	init   bool
	deltas []delta
}

type delta struct {
	off           int
	before, after []byte
}

// Begin starts a transaction. On a read-only log every change fails with
// ErrReadOnly (reads work).
func (l *Log) Begin() *Tx {
	t := &Tx{l: l}
	if l.ro {
		t.err = ErrReadOnly
	}
	return t
}

func (t *Tx) check() error {
	if t.done {
		return ErrTxDone
	}
	if t.err != nil {
		return t.err
	}
	return t.l.err()
}

// Read returns the transaction's view of blk, its own changes included, as
// a private copy the caller may keep. On a cache miss the block is read
// from the device and checked with v.
func (t *Tx) Read(blk uint64, v Verifier) ([]byte, error) {
	b, shared, err := t.view(blk, v)
	if err == nil && shared {
		b = slices.Clone(b)
	}
	return b, err
}

// View returns blk as the transaction sees it, like Read, but the slice
// may be the cache's, shared with every reader: the caller must not
// change it. It does not change either (a block the transaction has
// changed comes as a copy), so it stays valid after later Writes; it
// saves Read's copy where the block is only looked at, as most tree nodes
// on a path are.
func (t *Tx) View(blk uint64, v Verifier) ([]byte, error) {
	b, _, err := t.view(blk, v)
	return b, err
}

// view returns blk and whether the slice is the cache's.
func (t *Tx) view(blk uint64, v Verifier) ([]byte, bool, error) {
	if t.done {
		return nil, false, ErrTxDone
	}
	if b := t.blocks[blk]; b != nil {
		return slices.Clone(b.data), false, nil
	}
	b, err := t.l.View(blk, v)
	return b, true, err
}

// block returns the private copy of blk, making it on the first change.
func (t *Tx) block(blk uint64) (*txBlock, error) {
	if b := t.blocks[blk]; b != nil {
		return b, nil
	}
	if err := t.l.g.checkBlock(blk); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	b := &txBlock{}
	if t.blocks == nil {
		t.blocks = make(map[uint64]*txBlock)
	}
	t.blocks[blk] = b
	t.order = append(t.order, blk)
	return b, nil
}

// Write changes len(data) bytes of blk at off. It logs the before and
// after bytes of exactly that range, so callers pass only what changed. A
// block the transaction has not read yet is read without verification.
func (t *Tx) Write(blk uint64, off int, data []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	bs := int(t.l.g.bs)
	if off < 0 || off > bs || len(data) > bs-off {
		return fmt.Errorf("wal: block %d: write of %d bytes at offset %d outside a %d-byte block", blk, len(data), off, bs)
	}
	if len(data) == 0 {
		return nil
	}
	if t.blocks[blk] == nil {
		if err := t.l.g.checkBlock(blk); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		cur, err := t.l.View(blk, nil)
		if err != nil {
			return err
		}
		b, _ := t.block(blk)
		b.data = slices.Clone(cur)
	}
	b := t.blocks[blk]
	if b.init {
		copy(b.data[off:], data)
		return nil
	}
	for len(data) > 0 {
		n := min(len(data), maxDelta)
		d := delta{off: off, before: make([]byte, 2*n)}
		d.before, d.after = d.before[:n:n], d.before[n:]
		copy(d.before, b.data[off:off+n])
		copy(d.after, data[:n])
		copy(b.data[off:], data[:n])
		b.deltas = append(b.deltas, d)
		off += n
		data = data[n:]
	}
	return nil
}

// Init makes blk a whole new block with content img (one block long),
// without reading it from the device: the log records the whole block.
func (t *Tx) Init(blk uint64, img []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	if len(img) != int(t.l.g.bs) {
		return fmt.Errorf("wal: block %d: init with %d bytes, block size %d", blk, len(img), t.l.g.bs)
	}
	b, err := t.block(blk)
	if err != nil {
		return err
	}
	b.data = append(b.data[:0], img...)
	b.init, b.deltas = true, nil
	return nil
}

// Defer registers fn to run when the transaction ends: after Commit with
// true (the changes are in the cache, not necessarily durable) or after
// Abort, or a failed Commit, with false. Deferred functions run last in,
// first out.
func (t *Tx) Defer(fn func(committed bool)) {
	t.defers = append(t.defers, fn)
}

func (t *Tx) finish(committed bool) {
	t.done = true
	t.blocks, t.order = nil, nil
	for i := len(t.defers) - 1; i >= 0; i-- {
		t.defers[i](committed)
	}
	t.defers = nil
}

// Abort drops the transaction's changes. It is a no-op on a finished Tx.
func (t *Tx) Abort() {
	if t.done {
		return
	}
	t.l.st.aborts.Add(1)
	t.finish(false)
}

func (t *Tx) fail(err error) (LSN, error) {
	t.l.st.aborts.Add(1)
	t.finish(false)
	return 0, err
}

// imageSize is the size of an image or init record.
func (l *Log) imageSize() int { return imageHdr + int(l.g.bs) }

// Commit logs the transaction (in memory) and publishes its changes in the
// cache, then runs the deferred functions. It returns the transaction's
// LSN, for Wait; it does not wait for durability. A transaction that
// changed nothing returns the LSN of the last durable commit. Commit waits
// (without holding the append lock) when the log or the cache is too full,
// until a checkpoint makes room.
func (t *Tx) Commit() (LSN, error) {
	if t.done {
		return 0, ErrTxDone
	}
	if err := t.check(); err != nil {
		return t.fail(err)
	}
	l := t.l
	if len(t.order) == 0 {
		l.dmu.Lock()
		d := l.durable
		l.dmu.Unlock()
		l.st.empty.Add(1)
		t.finish(true)
		return LSN(d), nil
	}
	start := time.Now()

	// The body: inits and deltas, block by block in first-change order.
	var body []byte
	count := 0
	worst := commitSize
	type initAt struct {
		blk uint64
		off int // in the body
	}
	var inits []initAt
	for _, blk := range t.order {
		b := t.blocks[blk]
		if b.init {
			inits = append(inits, initAt{blk, len(body)})
			body = putImage(body, recInit, blk, b.data)
			count++
			continue
		}
		for _, d := range b.deltas {
			body = putDelta(body, blk, d.off, d.before, d.after)
			count++
		}
		worst += l.imageSize()
	}
	worst += len(body)
	if uint64(worst) > l.g.maxPayload() {
		return t.fail(fmt.Errorf("wal: commit: %w: %d bytes of records, the log holds %d", ErrTooLarge, worst, l.g.maxPayload()))
	}

	// Image records (of the blocks as committed before this transaction)
	// come first. Which blocks need one is decided, and the records are
	// encoded and hashed, outside the append lock; the decision is checked
	// again under it, and a checkpoint that started in between (rare)
	// makes us encode again.
	var imgs, check []uint64
	var recs []byte
	var hash uint64
	prepare := func() {
		imgs = l.needImages(t, imgs[:0])
		recs = recs[:0]
		for _, blk := range imgs {
			recs = putImage(recs, recImage, blk, t.before(blk))
		}
		recs = append(recs, body...)
		d := xxhash.NewWithSeed(l.seed)
		d.Write(recs)
		hash = d.Sum64()
	}
	prepare()

	l.mu.Lock()
	ticket, queued, waited := uint64(0), false, false
	var waitStart time.Time
	leaveQueue := func() {
		if queued {
			l.serving++
			l.queued--
			queued = false
			l.space.Broadcast()
		}
	}
	for {
		if err := l.err(); err != nil {
			leaveQueue()
			l.mu.Unlock()
			return t.fail(err)
		}
		if l.closed {
			leaveQueue()
			l.mu.Unlock()
			return t.fail(ErrClosed)
		}
		if check = l.needImages(t, check[:0]); !slices.Equal(check, imgs) {
			l.mu.Unlock() // keeping our place in the queue, if any
			prepare()
			l.mu.Lock()
			continue
		}
		newDirty := 0
		l.c.mu.Lock()
		for _, blk := range t.order {
			if e := l.c.m[blk]; e == nil || !e.dirty {
				newDirty++
			}
		}
		dirty := len(l.c.dirty)
		l.c.mu.Unlock()
		fits := advance(l.head, uint64(len(recs)+commitSize))-l.tail <= l.g.capacity &&
			(dirty+newDirty <= l.opt.CacheBlocks || dirty == 0)
		myTurn := (queued && ticket == l.serving) || (!queued && l.queued == 0)
		if fits && myTurn {
			break
		}
		if !queued {
			ticket, queued = l.nextTicket, true
			l.nextTicket++
			l.queued++
		}
		if !waited {
			waited, waitStart = true, time.Now()
			l.st.waits.Add(1)
		}
		if !fits {
			kick(l.ckptKick)
		}
		l.space.Wait()
	}
	leaveQueue()
	if waited {
		storeMax(&l.st.maxWait, int64(time.Since(waitStart)))
	}

	pos := l.head
	lsn := advance(pos, uint64(len(recs)))
	l.txSeq++
	var commit [commitSize]byte
	putCommit(commit[:0], uint64(l.epoch)<<32|l.txSeq&0xFFFFFFFF, uint32(count+len(imgs)), hash)
	l.appendBytes(recs)
	l.appendBytes(commit[:])
	l.lastCommit.Store(lsn)

	// Publish the private copies: the cache only ever holds committed
	// state, in commit order.
	l.c.mu.Lock()
	for _, blk := range t.order {
		b := t.blocks[blk]
		e := l.c.m[blk]
		switch {
		case e == nil:
			e = &centry{blk: blk}
			l.c.m[blk] = e
		case e.loading:
			e.loading = false
			close(e.done)
		}
		e.data, e.lsn = b.data, lsn
		l.c.setDirty(e)
	}
	for i, blk := range imgs {
		l.c.m[blk].imgLSN = advance(pos, uint64(i*l.imageSize()))
	}
	for _, in := range inits {
		l.c.m[in.blk].imgLSN = advance(pos, uint64(len(imgs)*l.imageSize()+in.off))
	}
	l.c.evict()
	dirty := len(l.c.dirty)
	l.c.mu.Unlock()
	if l.usage() >= l.opt.CheckpointAt || dirty >= l.opt.CacheBlocks/2 {
		kick(l.ckptKick)
	}
	l.mu.Unlock()

	l.st.commits.Add(1)
	l.st.bytes.Add(uint64(len(recs) + commitSize))
	storeMax(&l.st.maxStall, int64(time.Since(start)))
	t.finish(true)
	return LSN(lsn), nil
}

// needImages appends to dst the blocks of t, in first-change order, that
// need an image record: changed (not created) by t, and whose last image or
// init record is before the tail the latest checkpoint moves to (or
// unknown: not cached).
func (l *Log) needImages(t *Tx, dst []uint64) []uint64 {
	nt := l.nextTail.Load()
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	for _, blk := range t.order {
		if t.blocks[blk].init {
			continue
		}
		if e := l.c.m[blk]; e == nil || e.loading || e.imgLSN < nt {
			dst = append(dst, blk)
		}
	}
	return dst
}

// before reconstructs blk as it was before this transaction by undoing its
// deltas on a copy.
func (t *Tx) before(blk uint64) []byte {
	b := t.blocks[blk]
	img := append([]byte(nil), b.data...)
	for i := len(b.deltas) - 1; i >= 0; i-- {
		d := b.deltas[i]
		copy(img[d.off:], d.before)
	}
	return img
}
