package btree

import (
	"errors"
	"slices"
)

// Iter walks a tree's entries in key order, in either direction. It sits
// between two entries: Next returns the entry after it and moves past it,
// Prev the entry before it. Changing the tree invalidates its iterators.
type Iter struct {
	t     *Tree
	stack []iframe // root first; the leaf's idx is the position
	k, v  []byte
	err   error
}

type iframe struct {
	n   node
	idx int // interior: child followed; leaf: entries before the position
}

// Seek returns an iterator positioned before the first entry ≥ key:
// Next yields the entries ≥ key in ascending order, Prev those < key in
// descending order. Seek(nil) starts at the first entry.
func (t *Tree) Seek(key []byte) *Iter {
	return t.seek(func(n *node) int { s, _ := n.search(key); return s }, func(n *node) int { return n.childIndex(key) })
}

// SeekLE returns an iterator positioned after the last entry ≤ key: Prev
// yields the entries ≤ key in descending order.
func (t *Tree) SeekLE(key []byte) *Iter {
	return t.seek(func(n *node) int { return n.upper(key) }, func(n *node) int { return n.childIndex(key) })
}

// SeekLast returns an iterator positioned after the last entry: Prev
// yields every entry in descending order.
func (t *Tree) SeekLast() *Iter {
	last := func(n *node) int { return n.count() }
	return t.seek(last, func(n *node) int { return n.count() - 1 })
}

// Floor returns the entry with the largest key ≤ key (extent lookup: the
// extent starting at or before a file block). The slices are the caller's.
func (t *Tree) Floor(key []byte) (k, v []byte, ok bool, err error) {
	it := t.SeekLE(key)
	if !it.Prev() {
		return nil, nil, false, it.Err()
	}
	return slices.Clone(it.Key()), slices.Clone(it.Value()), true, nil
}

func (t *Tree) seek(leafPos, childPos func(*node) int) *Iter {
	it := &Iter{t: t}
	if t.Root == 0 {
		it.err = errors.New("btree: tree destroyed")
		return it
	}
	blk, level := t.Root, -1
	for {
		b, err := t.read(blk, level)
		if err != nil {
			it.err = err
			return it
		}
		n := node{blk: blk, b: b}
		if n.leaf() {
			it.stack = append(it.stack, iframe{n: n, idx: leafPos(&n)})
			return it
		}
		if n.count() == 0 {
			it.err = corrupt(blk, t.cfg.Owner, "empty interior node")
			return it
		}
		i := childPos(&n)
		it.stack = append(it.stack, iframe{n: n, idx: i})
		blk, level = n.child(i), n.level()-1
	}
}

// Next moves past the next entry and reports whether there was one.
func (it *Iter) Next() bool {
	if it.err != nil || len(it.stack) == 0 {
		return false
	}
	leaf := &it.stack[len(it.stack)-1]
	for leaf.idx >= leaf.n.count() {
		if !it.step(true) {
			return false
		}
	}
	it.k, it.v = leaf.n.entry(leaf.idx)
	leaf.idx++
	return true
}

// Prev moves back past the previous entry and reports whether there was
// one.
func (it *Iter) Prev() bool {
	if it.err != nil || len(it.stack) == 0 {
		return false
	}
	leaf := &it.stack[len(it.stack)-1]
	for leaf.idx == 0 {
		if !it.step(false) {
			return false
		}
	}
	leaf.idx--
	it.k, it.v = leaf.n.entry(leaf.idx)
	return true
}

// step moves to the start of the next leaf (or the end of the previous
// one). At the end of the tree it changes nothing and returns false.
func (it *Iter) step(fwd bool) bool {
	j := len(it.stack) - 2
	for ; j >= 0; j-- {
		f := &it.stack[j]
		if fwd && f.idx+1 < f.n.count() || !fwd && f.idx > 0 {
			break
		}
	}
	if j < 0 {
		return false
	}
	if fwd {
		it.stack[j].idx++
	} else {
		it.stack[j].idx--
	}
	for l := j + 1; l < len(it.stack); l++ {
		p := &it.stack[l-1].n
		blk := p.child(it.stack[l-1].idx)
		b, err := it.t.read(blk, p.level()-1)
		if err != nil {
			it.err = err
			return false
		}
		n := node{blk: blk, b: b}
		if !n.leaf() && n.count() == 0 {
			it.err = corrupt(blk, it.t.cfg.Owner, "empty interior node")
			return false
		}
		idx := 0
		if !fwd {
			idx = n.count()
			if !n.leaf() {
				idx--
			}
		}
		it.stack[l] = iframe{n: n, idx: idx}
	}
	return true
}

// Key returns the entry the last Next or Prev moved past. The slice must
// not be changed; it stays valid after the iterator moves.
func (it *Iter) Key() []byte { return it.k }

// Value returns the value of the entry the last Next or Prev moved past,
// like Key.
func (it *Iter) Value() []byte { return it.v }

// Err returns the error that stopped the iterator, if any.
func (it *Iter) Err() error { return it.err }
