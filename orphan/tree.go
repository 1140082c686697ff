// Package orphan keeps agfs's orphans — things allocated that nothing
// references — and runs the background scanner that finds and reclaims
// them while the filesystem is mounted.
//
// The orphans found are kept in a Tree, a red-black tree (package rbtree)
// keyed by (kind, number), so insertion, deletion, lookup and the ordered
// walk of the reclaim phase cost O(log n) each however many a damaged
// filesystem holds.
//
// The Scanner (scanner.go) owns the loop: pacing, the tree, the decision
// to reclaim and the counters. It reaches the filesystem only through the
// Source interface, which package fs implements (fs/scan.go): the bitmaps
// as committed, a walk of the inodes reporting what they reference, and
// reclaim calls that re-check a finding under the filesystem's locks and
// free it in a log transaction. The on-disk orphan lists (files unlinked
// while open) belong to fs, which empties them at mount.
package orphan

import (
	"cmp"
	"fmt"
	"iter"
	"time"

	"agfs/rbtree"
)

// Kind is what sort of orphan an entry is.
type Kind uint8

const (
	// Unlinked is an inode whose link count is 0: reclaimable once nothing
	// references it (no kernel reference, no open handle).
	Unlinked Kind = iota + 1
	// Unnamed is an inode marked used, with links, that no directory names.
	Unnamed
	// Unowned is a run of blocks marked used in a block bitmap that no
	// inode owns (as data, or as a node of one of its trees). Its number is
	// the run's first block; Entry.Len its length.
	Unowned
)

func (k Kind) String() string {
	switch k {
	case Unlinked:
		return "unlinked inode"
	case Unnamed:
		return "unnamed inode"
	case Unowned:
		return "unowned blocks"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Key orders the tree: by kind, then by number (inode or first block).
type Key struct {
	Kind Kind
	Num  uint64
}

func compareKeys(a, b Key) int {
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return cmp.Compare(a.Num, b.Num)
}

// How says which check found an orphan.
type How uint8

const (
	// ByBlockBitmap: used in the block bitmap, owned by no inode.
	ByBlockBitmap How = iota + 1
	// ByInodeBitmap: used in the inode bitmap, named by no directory entry.
	ByInodeBitmap
	// ByLinkCount: link count 0 while something still references the
	// inode (a file unlinked while open): it waits for its last reference.
	ByLinkCount
)

func (h How) String() string {
	switch h {
	case ByBlockBitmap:
		return "block bitmap against extents"
	case ByInodeBitmap:
		return "inode bitmap against directory entries"
	case ByLinkCount:
		return "link count 0, still referenced"
	}
	return fmt.Sprintf("How(%d)", uint8(h))
}

// Entry is what the tree knows of one orphan.
type Entry struct {
	Len      uint64    // Unowned: blocks in the run; 1 for inodes
	Found    time.Time // when a pass first found it
	How      How
	Pass     uint64 // the pass that first found it
	Seen     uint64 // the last pass that found it again
	Attempts uint32 // reclaim attempts that did not free it
}

// Tree is the set of known orphans, ordered by Key. It is not safe for
// concurrent use: the Scanner locks it.
type Tree struct {
	t *rbtree.Tree[Key, Entry]
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{t: rbtree.New[Key, Entry](compareKeys)} }

// Insert adds k with e if k is absent and reports whether it did.
func (t *Tree) Insert(k Key, e Entry) bool { return t.t.Insert(k, e) }

// Put stores e under k, replacing any entry there.
func (t *Tree) Put(k Key, e Entry) { t.t.Put(k, e) }

// Delete removes k and returns its entry.
func (t *Tree) Delete(k Key) (Entry, bool) { return t.t.Delete(k) }

// Lookup returns the entry of k.
func (t *Tree) Lookup(k Key) (Entry, bool) { return t.t.Get(k) }

// Len is the number of orphans in the tree.
func (t *Tree) Len() int { return t.t.Len() }

// All returns the entries in key order. The loop body must not change
// the tree.
func (t *Tree) All() iter.Seq2[Key, Entry] { return t.t.All() }

// From returns the entries with keys ≥ k in key order. The loop body must
// not change the tree.
func (t *Tree) From(k Key) iter.Seq2[Key, Entry] { return t.t.From(k) }

// Check verifies the red-black invariants (for the tests).
func (t *Tree) Check() error { return t.t.Check() }
