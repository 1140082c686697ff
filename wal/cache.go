package wal

import (
	"container/list"
	"fmt"
	"sync"
)

// Verifier checks a block read from the device (and only then: blocks
// found in the cache are not verified again). A nil Verifier accepts
// anything.
type Verifier func(blk uint64, b []byte) error

// centry is a cached block. Its data holds committed content only; it is
// replaced (never modified in place) by commits, under cache.mu.
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

// read calls fn with the committed content of blk under the cache lock,
// reading it from the device (and verifying it with v) on a miss.
func (l *Log) read(blk uint64, v Verifier, fn func([]byte)) error {
	if err := l.g.checkBlock(blk); err != nil {
		return fmt.Errorf("wal: read: %w", err)
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
		fn(e.data)
		c.mu.Unlock()
		return nil
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
		fn(e.data)
		return nil
	}
	e.loading = false
	close(e.done)
	if err != nil {
		delete(c.m, blk)
		return err
	}
	e.data = b
	c.setClean(e)
	fn(b)
	c.evict()
	return nil
}
