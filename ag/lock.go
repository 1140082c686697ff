package ag

import (
	"errors"
	"fmt"
	"sync"

	"agfs/wal"
)

// Locking
//
// Every AG has one mutex. A transaction takes it the first time it uses the
// AG (any allocation or free) and keeps it until the transaction commits or
// aborts: a deferred function registered with tx.Defer releases it, after
// the wal has published (or dropped) the transaction's changes, as the wal
// contract requires. On abort the same function first undoes the
// transaction's in-memory changes to the AG (bitmaps, free-extent index,
// header counters), so memory matches the blocks the wal dropped.
//
// Lock order: a transaction that uses several AGs must take them in
// increasing AG number. An AG method called with a transaction that already
// holds a higher-numbered AG returns an error wrapping ErrLockOrder at once
// (it never waits, so it cannot deadlock), and the transaction should be
// aborted. Groups never violates the order: when an allocation wants an AG
// below one the transaction holds, it only tries the lock and skips the AG
// if it is busy; a free, which cannot go elsewhere, tries for about a
// millisecond and then fails with ErrLockOrder (a caller freeing in several
// AGs avoids that by freeing in increasing AG order). An AG that Groups
// took for an allocation it then could not serve, and did not change, is
// released at once rather than at the end of the transaction.
//
// A transaction that ends (Commit or Abort) releases every AG it holds, so
// a transaction must always be ended, also after an error.
//
// Allocations in different AGs therefore run in parallel; allocations in
// one AG are serialised for as long as each transaction lasts, so callers
// should commit promptly after allocating.

// ErrLockOrder is wrapped by the error returned when a transaction asks for
// an AG below one it already holds.
var ErrLockOrder = errors.New("AG lock order violated: a transaction must take AGs in increasing order")

// txState is what one transaction holds across AGs.
type txState struct {
	held []*AG // in the order taken
	max  int   // highest AG number held, -1 if none
}

// txs maps each open transaction that holds AG locks to its txState. A
// transaction is used by one goroutine at a time, so its state needs no lock
// of its own; the map itself is shared.
var txs sync.Map // *wal.Tx → *txState

func stateOf(tx *wal.Tx) *txState {
	if v, ok := txs.Load(tx); ok {
		return v.(*txState)
	}
	return nil
}

// lock makes tx hold a, waiting for it; a must not be below an AG tx holds.
func (a *AG) lock(tx *wal.Tx) error {
	_, err := a.acquire(tx, false)
	return err
}

// acquire makes tx hold a. With try set it never waits: got is false when
// another transaction holds a. Without try, asking for an AG below one tx
// holds is an ErrLockOrder error. fresh reports whether this call took the
// lock (rather than tx already holding it).
func (a *AG) acquire(tx *wal.Tx, try bool) (fresh bool, err error) {
	if tx == nil {
		return false, fmt.Errorf("ag %d: nil transaction", a.no)
	}
	if a.owner.Load() == tx {
		return false, nil
	}
	st := stateOf(tx)
	if st != nil && int(a.no) < st.max && !try {
		return false, fmt.Errorf("ag %d: %w (it already holds ag %d)", a.no, ErrLockOrder, st.max)
	}
	if try {
		if !a.mu.TryLock() {
			return false, nil
		}
	} else {
		a.mu.Lock()
	}
	if st == nil {
		st = &txState{max: -1}
		txs.Store(tx, st)
		tx.Defer(func(committed bool) {
			for i := len(st.held) - 1; i >= 0; i-- {
				st.held[i].release(tx, committed)
			}
			st.held = nil
			txs.Delete(tx)
		})
	}
	a.owner.Store(tx)
	a.begin()
	st.held = append(st.held, a)
	st.max = max(st.max, int(a.no))
	return true, nil
}

// unlockUnused releases a, just taken by tx with acquire, if tx has not
// changed it: Groups calls it after finding the AG cannot serve a request,
// so that the AG is neither blocked for the rest of the transaction nor
// counted against the lock order. It reports whether it released a.
func (a *AG) unlockUnused(tx *wal.Tx) bool {
	if a.owner.Load() != tx || a.dirty {
		return false
	}
	st := stateOf(tx)
	for i, h := range st.held {
		if h == a {
			st.held = append(st.held[:i], st.held[i+1:]...)
			break
		}
	}
	st.max = -1
	for _, h := range st.held {
		st.max = max(st.max, int(h.no))
	}
	a.owner.Store(nil)
	a.publish()
	a.mu.Unlock()
	return true
}

// release ends tx's hold on a: it undoes tx's in-memory changes when the
// transaction did not commit, and unlocks.
func (a *AG) release(tx *wal.Tx, committed bool) {
	if a.owner.Load() != tx {
		return
	}
	if committed {
		a.commit()
	} else {
		a.rollback()
	}
	a.owner.Store(nil)
	a.publish()
	a.mu.Unlock()
}

// Lock makes tx hold a until the transaction ends, exactly as an
// allocation would, for callers that change AG metadata outside the
// allocator (the orphan list head in the AG header). It returns an error
// wrapping ErrLockOrder, without waiting, if tx holds a higher AG.
func (a *AG) Lock(tx *wal.Tx) error { return a.lock(tx) }
