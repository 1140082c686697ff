// Package rbtree is a generic ordered map implemented as a red-black tree.
//
// The algorithm is the textbook one of Cormen, Leiserson, Rivest and Stein
// (Introduction to Algorithms, chapter 13): every node is red or black, the
// root is black, a red node has no red child, and every path from a node
// down to a missing child passes through the same number of black nodes.
// Those rules keep the height below 2·log2(n+1), so Get, Put, Delete, Min,
// Max, Ceil and Floor are O(log n), and stepping an iterator is O(1)
// amortised. Nodes carry parent pointers, so iteration needs no stack and
// the CLRS insertion and deletion fix-ups apply as printed (with nil in the
// place of the book's sentinel leaf, which is why deletion tracks the
// parent of the node it fixes up separately).
//
// A tree may be augmented (see NewAugmented): every node's value then also
// summarises its subtree (for example the largest extent length below it),
// and FirstMatch/LastMatch use that summary to find, in O(log n), the first
// key at or after a bound whose value satisfies a predicate.
//
// A Tree is not safe for concurrent use; callers lock.
package rbtree

import (
	"errors"
	"fmt"
	"iter"
	"reflect"
)

type node[K, V any] struct {
	key                 K
	val                 V
	left, right, parent *node[K, V]
	red                 bool
}

// Tree is an ordered map from K to V. The zero value is not usable: make
// one with New or NewAugmented.
type Tree[K, V any] struct {
	root *node[K, V]
	cmp  func(a, b K) int
	fix  func(self, left, right *V) // augmentation; nil if none
	n    int

	// free recycles deleted nodes (linked through right) so that a tree
	// whose size hovers around a level, such as a free-extent index under
	// allocation and free, does not allocate on every insertion.
	free  *node[K, V]
	nfree int
}

// maxFree bounds the recycled-node list.
const maxFree = 256

// New returns an empty tree ordered by cmp, which returns a negative number
// when a < b, zero when a == b and a positive number when a > b (as
// cmp.Compare does).
func New[K, V any](cmp func(a, b K) int) *Tree[K, V] {
	return &Tree[K, V]{cmp: cmp}
}

// NewAugmented returns an empty tree ordered by cmp whose values summarise
// their subtrees. The tree calls fix(self, left, right) whenever the
// subtree below a node may have changed (after an insertion, deletion,
// rotation or value replacement), bottom up; left and right point to the
// children's values, or are nil for a missing child. fix must recompute the
// summary fields of *self from the node's own fields and the children's
// summaries, and must not change anything else of *self.
func NewAugmented[K, V any](cmp func(a, b K) int, fix func(self, left, right *V)) *Tree[K, V] {
	return &Tree[K, V]{cmp: cmp, fix: fix}
}

// Len returns the number of keys in the tree.
func (t *Tree[K, V]) Len() int { return t.n }

// Clear removes every key.
func (t *Tree[K, V]) Clear() {
	t.root, t.n = nil, 0
}

func (t *Tree[K, V]) newNode(k K, v V, parent *node[K, V]) *node[K, V] {
	z := t.free
	if z != nil {
		t.free = z.right
		t.nfree--
		*z = node[K, V]{key: k, val: v, parent: parent, red: true}
		return z
	}
	return &node[K, V]{key: k, val: v, parent: parent, red: true}
}

func (t *Tree[K, V]) recycle(z *node[K, V]) {
	if t.nfree >= maxFree {
		return
	}
	var zk K
	var zv V
	*z = node[K, V]{key: zk, val: zv, right: t.free}
	t.free = z
	t.nfree++
}

// find returns the node holding k, or nil.
func (t *Tree[K, V]) find(k K) *node[K, V] {
	x := t.root
	for x != nil {
		c := t.cmp(k, x.key)
		switch {
		case c < 0:
			x = x.left
		case c > 0:
			x = x.right
		default:
			return x
		}
	}
	return nil
}

// Get returns the value stored under k.
func (t *Tree[K, V]) Get(k K) (v V, ok bool) {
	if x := t.find(k); x != nil {
		return x.val, true
	}
	return v, false
}

// Has reports whether k is in the tree.
func (t *Tree[K, V]) Has(k K) bool { return t.find(k) != nil }

// Put stores v under k, replacing any value already there. It reports
// whether k was added (false: an existing value was replaced).
func (t *Tree[K, V]) Put(k K, v V) (added bool) {
	return t.insert(k, v, true)
}

// Insert stores v under k only if k is absent. It reports whether it did.
func (t *Tree[K, V]) Insert(k K, v V) (added bool) {
	return t.insert(k, v, false)
}

// insert is CLRS RB-INSERT: a plain binary-search-tree insertion of a red
// node, then insertFixup to restore the colour rules.
func (t *Tree[K, V]) insert(k K, v V, replace bool) bool {
	var p *node[K, V]
	x := t.root
	c := 0
	for x != nil {
		p = x
		c = t.cmp(k, x.key)
		switch {
		case c < 0:
			x = x.left
		case c > 0:
			x = x.right
		default:
			if replace {
				x.val = v
				t.fixUp(x)
			}
			return false
		}
	}
	z := t.newNode(k, v, p)
	switch {
	case p == nil:
		t.root = z
	case c < 0:
		p.left = z
	default:
		p.right = z
	}
	t.n++
	// The new leaf changes the summary of every ancestor; rotations in the
	// fix-up below keep summaries right locally.
	t.fixUp(z)
	t.insertFixup(z)
	return true
}

// insertFixup restores the red-black properties after z, a red node, was
// added. The only rule that can be broken is "no red node has a red
// child", between z and its parent; each iteration either moves the
// violation two levels up (case 1: red uncle, recolour) or ends it with at
// most two rotations (cases 2 and 3: black uncle).
func (t *Tree[K, V]) insertFixup(z *node[K, V]) {
	for z.parent != nil && z.parent.red {
		p := z.parent
		g := p.parent // exists: a red node is never the root
		if p == g.left {
			u := g.right
			if isRed(u) { // case 1
				p.red, u.red, g.red = false, false, true
				z = g
				continue
			}
			if z == p.right { // case 2: turn into case 3
				z = p
				t.rotateLeft(z)
				p = z.parent
			}
			p.red, g.red = false, true // case 3
			t.rotateRight(g)
		} else { // mirror image
			u := g.left
			if isRed(u) {
				p.red, u.red, g.red = false, false, true
				z = g
				continue
			}
			if z == p.left {
				z = p
				t.rotateRight(z)
				p = z.parent
			}
			p.red, g.red = false, true
			t.rotateLeft(g)
		}
	}
	t.root.red = false
}

// Delete removes k and returns the value it held.
func (t *Tree[K, V]) Delete(k K) (v V, ok bool) {
	z := t.find(k)
	if z == nil {
		return v, false
	}
	v = z.val
	t.deleteNode(z)
	return v, true
}

// DeleteMin removes the smallest key and returns it with its value.
func (t *Tree[K, V]) DeleteMin() (k K, v V, ok bool) {
	if t.root == nil {
		return k, v, false
	}
	z := minimum(t.root)
	k, v = z.key, z.val
	t.deleteNode(z)
	return k, v, true
}

// deleteNode is CLRS RB-DELETE. If z has fewer than two children it is
// spliced out; otherwise its successor y (the minimum of its right subtree,
// which has no left child) takes its place and colour, and y's right child
// takes y's old place. Either way one node of colour yRed left its old
// position; if it was black, a black is missing on the paths through x (the
// node that moved into that position, possibly nil, whose parent is xp)
// and deleteFixup restores it.
func (t *Tree[K, V]) deleteNode(z *node[K, V]) {
	var x, xp *node[K, V]
	yRed := z.red
	switch {
	case z.left == nil:
		x, xp = z.right, z.parent
		t.transplant(z, z.right)
	case z.right == nil:
		x, xp = z.left, z.parent
		t.transplant(z, z.left)
	default:
		y := minimum(z.right)
		yRed = y.red
		x = y.right
		if y.parent == z {
			xp = y
		} else {
			xp = y.parent
			t.transplant(y, y.right)
			y.right = z.right
			y.right.parent = y
		}
		t.transplant(z, y)
		y.left = z.left
		y.left.parent = y
		y.red = z.red
	}
	t.n--
	// Every node from xp up lost a descendant (or, for y, changed
	// children): refresh their summaries before rotating.
	t.fixUp(xp)
	if !yRed {
		t.deleteFixup(x, xp)
	}
	t.recycle(z)
}

// deleteFixup gives x an extra black and pushes it up the tree until it
// lands on a red node (which turns black) or the root, or until rotations
// at the sibling w absorb it (CLRS cases 1 to 4).
func (t *Tree[K, V]) deleteFixup(x, xp *node[K, V]) {
	for x != t.root && !isRed(x) {
		if x == xp.left {
			w := xp.right // not nil: the paths through w have a black more than x's
			if w.red {    // case 1: make the sibling black
				w.red, xp.red = false, true
				t.rotateLeft(xp)
				w = xp.right
			}
			if !isRed(w.left) && !isRed(w.right) { // case 2: move the extra black up
				w.red = true
				x, xp = xp, xp.parent
				continue
			}
			if !isRed(w.right) { // case 3: turn into case 4
				w.left.red, w.red = false, true
				t.rotateRight(w)
				w = xp.right
			}
			w.red, xp.red, w.right.red = xp.red, false, false // case 4
			t.rotateLeft(xp)
			x, xp = t.root, nil
		} else { // mirror image
			w := xp.left
			if w.red {
				w.red, xp.red = false, true
				t.rotateRight(xp)
				w = xp.left
			}
			if !isRed(w.right) && !isRed(w.left) {
				w.red = true
				x, xp = xp, xp.parent
				continue
			}
			if !isRed(w.left) {
				w.right.red, w.red = false, true
				t.rotateLeft(w)
				w = xp.left
			}
			w.red, xp.red, w.left.red = xp.red, false, false
			t.rotateRight(xp)
			x, xp = t.root, nil
		}
	}
	if x != nil {
		x.red = false
	}
}

// transplant puts v (possibly nil) in u's place under u's parent.
func (t *Tree[K, V]) transplant(u, v *node[K, V]) {
	switch {
	case u.parent == nil:
		t.root = v
	case u == u.parent.left:
		u.parent.left = v
	default:
		u.parent.right = v
	}
	if v != nil {
		v.parent = u.parent
	}
}

// rotateLeft turns x's right child y into x's parent:
//
//	  x              y
//	 / \            / \
//	a   y    →     x   c
//	   / \        / \
//	  b   c      a   b
//
// The in-order sequence is unchanged; only x and y have new subtrees, so
// only their summaries need refreshing (x first: it is now below y).
func (t *Tree[K, V]) rotateLeft(x *node[K, V]) {
	y := x.right
	x.right = y.left
	if y.left != nil {
		y.left.parent = x
	}
	t.transplant(x, y)
	y.left = x
	x.parent = y
	if t.fix != nil {
		t.fixOne(x)
		t.fixOne(y)
	}
}

// rotateRight is the mirror image of rotateLeft.
func (t *Tree[K, V]) rotateRight(x *node[K, V]) {
	y := x.left
	x.left = y.right
	if y.right != nil {
		y.right.parent = x
	}
	t.transplant(x, y)
	y.right = x
	x.parent = y
	if t.fix != nil {
		t.fixOne(x)
		t.fixOne(y)
	}
}

// fixOne recomputes x's summary from its children's.
func (t *Tree[K, V]) fixOne(x *node[K, V]) {
	var l, r *V
	if x.left != nil {
		l = &x.left.val
	}
	if x.right != nil {
		r = &x.right.val
	}
	t.fix(&x.val, l, r)
}

// fixUp recomputes the summaries of x and all its ancestors.
func (t *Tree[K, V]) fixUp(x *node[K, V]) {
	if t.fix == nil {
		return
	}
	for ; x != nil; x = x.parent {
		t.fixOne(x)
	}
}

func isRed[K, V any](x *node[K, V]) bool { return x != nil && x.red }

func minimum[K, V any](x *node[K, V]) *node[K, V] {
	for x.left != nil {
		x = x.left
	}
	return x
}

func maximum[K, V any](x *node[K, V]) *node[K, V] {
	for x.right != nil {
		x = x.right
	}
	return x
}

// successor returns the node after x in key order, or nil.
func successor[K, V any](x *node[K, V]) *node[K, V] {
	if x.right != nil {
		return minimum(x.right)
	}
	p := x.parent
	for p != nil && x == p.right {
		x, p = p, p.parent
	}
	return p
}

// predecessor returns the node before x in key order, or nil.
func predecessor[K, V any](x *node[K, V]) *node[K, V] {
	if x.left != nil {
		return maximum(x.left)
	}
	p := x.parent
	for p != nil && x == p.left {
		x, p = p, p.parent
	}
	return p
}

// Min returns the smallest key and its value.
func (t *Tree[K, V]) Min() (k K, v V, ok bool) {
	if t.root == nil {
		return k, v, false
	}
	x := minimum(t.root)
	return x.key, x.val, true
}

// Max returns the largest key and its value.
func (t *Tree[K, V]) Max() (k K, v V, ok bool) {
	if t.root == nil {
		return k, v, false
	}
	x := maximum(t.root)
	return x.key, x.val, true
}

// ceil returns the node with the smallest key ≥ k, or nil.
func (t *Tree[K, V]) ceil(k K) *node[K, V] {
	var best *node[K, V]
	x := t.root
	for x != nil {
		c := t.cmp(k, x.key)
		switch {
		case c < 0:
			best, x = x, x.left
		case c > 0:
			x = x.right
		default:
			return x
		}
	}
	return best
}

// floor returns the node with the largest key ≤ k, or nil.
func (t *Tree[K, V]) floor(k K) *node[K, V] {
	var best *node[K, V]
	x := t.root
	for x != nil {
		c := t.cmp(k, x.key)
		switch {
		case c < 0:
			x = x.left
		case c > 0:
			best, x = x, x.right
		default:
			return x
		}
	}
	return best
}

// Ceil returns the smallest key ≥ k and its value.
func (t *Tree[K, V]) Ceil(k K) (key K, v V, ok bool) {
	if x := t.ceil(k); x != nil {
		return x.key, x.val, true
	}
	return key, v, false
}

// Floor returns the largest key ≤ k and its value.
func (t *Tree[K, V]) Floor(k K) (key K, v V, ok bool) {
	if x := t.floor(k); x != nil {
		return x.key, x.val, true
	}
	return key, v, false
}

// Ascend calls fn for every key ≥ from in ascending order until fn
// returns false. fn must not modify the tree.
func (t *Tree[K, V]) Ascend(from K, fn func(k K, v V) bool) {
	for x := t.ceil(from); x != nil; x = successor(x) {
		if !fn(x.key, x.val) {
			return
		}
	}
}

// Descend calls fn for every key ≤ from in descending order until fn
// returns false. fn must not modify the tree.
func (t *Tree[K, V]) Descend(from K, fn func(k K, v V) bool) {
	for x := t.floor(from); x != nil; x = predecessor(x) {
		if !fn(x.key, x.val) {
			return
		}
	}
}

// All returns every key and value in ascending order, for range loops.
// The loop body must not modify the tree.
func (t *Tree[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		if t.root == nil {
			return
		}
		for x := minimum(t.root); x != nil; x = successor(x) {
			if !yield(x.key, x.val) {
				return
			}
		}
	}
}

// From returns the keys ≥ from and their values in ascending order, for
// range loops. The loop body must not modify the tree.
func (t *Tree[K, V]) From(from K) iter.Seq2[K, V] {
	return func(yield func(K, V) bool) { t.Ascend(from, yield) }
}

// Iter is a position in a tree. Any change to the tree invalidates every
// Iter over it (using one afterwards gives unspecified results).
type Iter[K, V any] struct {
	x *node[K, V]
}

// Seek returns an iterator at the smallest key ≥ k (not Valid if none).
func (t *Tree[K, V]) Seek(k K) Iter[K, V] { return Iter[K, V]{t.ceil(k)} }

// SeekLE returns an iterator at the largest key ≤ k (not Valid if none).
func (t *Tree[K, V]) SeekLE(k K) Iter[K, V] { return Iter[K, V]{t.floor(k)} }

// First returns an iterator at the smallest key.
func (t *Tree[K, V]) First() Iter[K, V] {
	if t.root == nil {
		return Iter[K, V]{}
	}
	return Iter[K, V]{minimum(t.root)}
}

// Last returns an iterator at the largest key.
func (t *Tree[K, V]) Last() Iter[K, V] {
	if t.root == nil {
		return Iter[K, V]{}
	}
	return Iter[K, V]{maximum(t.root)}
}

// Valid reports whether the iterator is at a key.
func (it *Iter[K, V]) Valid() bool { return it.x != nil }

// Key returns the key at the iterator, which must be Valid.
func (it *Iter[K, V]) Key() K { return it.x.key }

// Value returns the value at the iterator, which must be Valid.
func (it *Iter[K, V]) Value() V { return it.x.val }

// Next moves to the next larger key.
func (it *Iter[K, V]) Next() { it.x = successor(it.x) }

// Prev moves to the next smaller key.
func (it *Iter[K, V]) Prev() { it.x = predecessor(it.x) }

// FirstMatch returns the smallest key ≥ from whose value satisfies match,
// using the summaries of an augmented tree to skip subtrees: maybe(v) is
// asked of the summary stored in a subtree's root and must return true if
// any node of that subtree may satisfy match. When maybe is exact (true
// only if some node does satisfy match) the search is O(log n).
func (t *Tree[K, V]) FirstMatch(from K, maybe, match func(v *V) bool) (k K, v V, ok bool) {
	if x := t.firstMatch(t.root, from, maybe, match); x != nil {
		return x.key, x.val, true
	}
	return k, v, false
}

// firstMatch follows the search path of from; at every node where the path
// turns left, the node itself and then its right subtree (all keys > from)
// are the candidates after those in the left subtree. With an exact maybe
// only one unbounded descent (firstIn) is ever started that can fail
// deeper than its root, so the whole search is O(log n).
func (t *Tree[K, V]) firstMatch(x *node[K, V], from K, maybe, match func(v *V) bool) *node[K, V] {
	for x != nil && maybe(&x.val) {
		if t.cmp(x.key, from) < 0 {
			x = x.right
			continue
		}
		if r := t.firstMatch(x.left, from, maybe, match); r != nil {
			return r
		}
		if match(&x.val) {
			return x
		}
		return firstIn(x.right, maybe, match)
	}
	return nil
}

// firstIn returns the first node of x's subtree satisfying match.
func firstIn[K, V any](x *node[K, V], maybe, match func(v *V) bool) *node[K, V] {
	if x == nil || !maybe(&x.val) {
		return nil
	}
	if r := firstIn(x.left, maybe, match); r != nil {
		return r
	}
	if match(&x.val) {
		return x
	}
	return firstIn(x.right, maybe, match)
}

// LastMatch is the mirror image of FirstMatch: the largest key ≤ to whose
// value satisfies match.
func (t *Tree[K, V]) LastMatch(to K, maybe, match func(v *V) bool) (k K, v V, ok bool) {
	if x := t.lastMatch(t.root, to, maybe, match); x != nil {
		return x.key, x.val, true
	}
	return k, v, false
}

func (t *Tree[K, V]) lastMatch(x *node[K, V], to K, maybe, match func(v *V) bool) *node[K, V] {
	for x != nil && maybe(&x.val) {
		if t.cmp(x.key, to) > 0 {
			x = x.left
			continue
		}
		if r := t.lastMatch(x.right, to, maybe, match); r != nil {
			return r
		}
		if match(&x.val) {
			return x
		}
		return lastIn(x.left, maybe, match)
	}
	return nil
}

func lastIn[K, V any](x *node[K, V], maybe, match func(v *V) bool) *node[K, V] {
	if x == nil || !maybe(&x.val) {
		return nil
	}
	if r := lastIn(x.right, maybe, match); r != nil {
		return r
	}
	if match(&x.val) {
		return x
	}
	return lastIn(x.left, maybe, match)
}

// ErrInvariant is wrapped by every error Check returns.
var ErrInvariant = errors.New("rbtree: invariant violated")

// Check verifies the tree's invariants: keys in strictly ascending order,
// consistent parent pointers, a black root, no red node with a red child,
// the same number of black nodes on every path to a leaf, the recorded
// size, and, for an augmented tree, every node's summary (recomputed with
// fix and compared with reflect.DeepEqual). It takes O(n) time and is
// meant for tests.
func (t *Tree[K, V]) Check() error {
	if t.root == nil {
		if t.n != 0 {
			return fmt.Errorf("%w: empty tree has size %d", ErrInvariant, t.n)
		}
		return nil
	}
	if t.root.red {
		return fmt.Errorf("%w: root is red", ErrInvariant)
	}
	if t.root.parent != nil {
		return fmt.Errorf("%w: root has a parent", ErrInvariant)
	}
	count := 0
	var prev *node[K, V]
	var walk func(x *node[K, V]) (int, error)
	walk = func(x *node[K, V]) (int, error) {
		if x == nil {
			return 1, nil
		}
		for _, c := range []*node[K, V]{x.left, x.right} {
			if c == nil {
				continue
			}
			if c.parent != x {
				return 0, fmt.Errorf("%w: node %v: child %v has a wrong parent", ErrInvariant, x.key, c.key)
			}
			if x.red && c.red {
				return 0, fmt.Errorf("%w: red node %v has red child %v", ErrInvariant, x.key, c.key)
			}
		}
		lh, err := walk(x.left)
		if err != nil {
			return 0, err
		}
		if prev != nil && t.cmp(prev.key, x.key) >= 0 {
			return 0, fmt.Errorf("%w: key %v follows %v in order", ErrInvariant, x.key, prev.key)
		}
		prev = x
		count++
		rh, err := walk(x.right)
		if err != nil {
			return 0, err
		}
		if lh != rh {
			return 0, fmt.Errorf("%w: node %v: black height %d on the left, %d on the right", ErrInvariant, x.key, lh, rh)
		}
		if t.fix != nil {
			want := x.val
			var l, r *V
			if x.left != nil {
				l = &x.left.val
			}
			if x.right != nil {
				r = &x.right.val
			}
			t.fix(&want, l, r)
			if !reflect.DeepEqual(want, x.val) {
				return 0, fmt.Errorf("%w: node %v: summary %+v, recomputed %+v", ErrInvariant, x.key, x.val, want)
			}
		}
		if !x.red {
			lh++
		}
		return lh, nil
	}
	if _, err := walk(t.root); err != nil {
		return err
	}
	if count != t.n {
		return fmt.Errorf("%w: %d nodes, size says %d", ErrInvariant, count, t.n)
	}
	return nil
}
