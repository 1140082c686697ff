package wal

import (
	"bytes"
	"container/list"
	"fmt"
	"sync"
)

// Verifier checks a block read from the device (and only then: blocks
// found in the cache are not verified again). A nil Verifier accepts
// anything.
type Verifier func(blk uint64, b []byte) error

// centry is a cached block. Its data holds committed content only; it is
// replaced (never modified in place) by commits and checkpoints, under
// cache.mu, so a reader may keep the slice it got (view).
type centry struct {
	blk     uint64
	data    []byte
	loading bool          // a device read is in flight; wait on done
	done    chan struct{} // closed when loading ends
	dirty   bool          // changed since it was last written home: pinned
	lsn     uint64        // LSN of the last transaction that changed it
	imgLSN  uint64        // position of its last image or init record in the log
	elem    *list.Element // in lru while clean and loaded
}

// cache is the buffer cache: committed content of metadata blocks. Clean
// blocks are kept in LRU order and evicted beyond the capacity; dirty blocks
// are pinned until a checkpoint writes them home.
type cache struct {
	mu    sync.Mutex
	m     map[uint64]*centry
	lru   list.List // clean loaded entries, most recent first
	dirty map[uint64]*centry
	cap   int

	hits, misses, evictions uint64
}

func (c *cache) init(capacity int) {
	c.m = make(map[uint64]*centry)
	c.dirty = make(map[uint64]*centry)
	c.cap = capacity
}

// evict drops least recently used clean blocks until the cache fits. Only
// dirty and loading blocks can make it exceed its capacity.
func (c *cache) evict() {
	for len(c.m) > c.cap && c.lru.Len() > 0 {
		e := c.lru.Remove(c.lru.Back()).(*centry)
		e.elem = nil
		delete(c.m, e.blk)
		c.evictions++
	}
}

func (c *cache) touch(e *centry) {
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
	}
}

// setDirty makes e dirty (pinned), mu held.
func (c *cache) setDirty(e *centry) {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	if !e.dirty {
		e.dirty = true
		c.dirty[e.blk] = e
	}
}

// setClean unpins e, mu held.
func (c *cache) setClean(e *centry) {
	if e.dirty {
		e.dirty = false
		delete(c.dirty, e.blk)
	}
	if e.elem == nil {
		e.elem = c.lru.PushFront(e)
	}
}

// View returns the committed content of blk, like Read but without a
// copy, reading it from the device (and verifying it with v) on a miss.
// The slice is the cache's: callers must not change it, and nothing else
// does (commits and checkpoints replace a cached block's buffer), so it
// may be read without the lock and stays as it was for as long as the
// caller holds it; a later commit may make it stale.
func (l *Log) View(blk uint64, v Verifier) ([]byte, error) {
	if err := l.g.checkBlock(blk); err != nil {
		return nil, fmt.Errorf("wal: read: %w", err)
	}
	c := &l.c
	c.mu.Lock()
	for {
		e := c.m[blk]
		if e == nil {
			break
		}
		if e.loading {
			ch := e.done
			c.mu.Unlock()
			<-ch
			c.mu.Lock()
			continue
		}
		c.hits++
		c.touch(e)
		b := e.data
		c.mu.Unlock()
		return b, nil
	}
	c.misses++
	e := &centry{blk: blk, loading: true, done: make(chan struct{})}
	c.m[blk] = e
	c.mu.Unlock()

	b := make([]byte, l.g.bs)
	_, err := l.dev.ReadAt(b, int64(blk*l.g.bs))
	if err != nil {
		err = fmt.Errorf("wal: block %d: %w", blk, err)
	} else if v != nil {
		if verr := v(blk, b); verr != nil {
			err = fmt.Errorf("wal: block %d: %w", blk, verr)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if !e.loading {
		// A commit installed newer content while we were reading.
		return e.data, nil
	}
	e.loading = false
	close(e.done)
	if err != nil {
		delete(c.m, blk)
		return nil, err
	}
	e.data = b
	c.setClean(e)
	c.evict()
	return b, nil
}

// CheckCache compares every clean cached block with its home copy on the
// device and reports the first that differs. A clean block was read from
// home or written there by a checkpoint, so a difference means that
// something changed a slice View handed out, which every reader shares.
// It is for tests: it reads each cached block from the device, it assumes
// nothing but the log writes the blocks it caches, and it must not run
// beside commits or checkpoints.
//
// only chooses the blocks to check (nil: all): a block freed from metadata
// and reused for file data keeps a stale clean copy, harmlessly, since
// metadata blocks are always written whole when allocated again.
func (l *Log) CheckCache(only func(blk uint64) bool) error {
	type clean struct {
		blk  uint64
		data []byte
	}
	var cs []clean
	l.c.mu.Lock()
	for blk, e := range l.c.m {
		if !e.loading && !e.dirty {
			cs = append(cs, clean{blk, e.data})
		}
	}
	l.c.mu.Unlock()
	home := make([]byte, l.g.bs)
	for _, c := range cs {
		if only != nil && !only(c.blk) {
			continue
		}
		if _, err := l.dev.ReadAt(home, int64(c.blk*l.g.bs)); err != nil {
			return fmt.Errorf("wal: cache check: block %d: %w", c.blk, err)
		}
		if !bytes.Equal(home, c.data) {
			return fmt.Errorf("wal: cache check: clean block %d differs from its home copy: a shared view was changed", c.blk)
		}
	}
	return nil
}
