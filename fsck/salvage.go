package fsck

import (
	"encoding/binary"

	"agfs/btree"
	"agfs/layout"
)

// Salvage: a B+tree walk that survives damage, for repair. btree.Check
// stops at the first bad node; a tree being rebuilt wants everything that
// can still be read. salvageTree visits every node reachable from the root
// (and, for leaves, along the right-sibling chain, so that a damaged
// interior node does not hide the leaves beneath it) that passes the full
// node verifier with the tree's magic and owner, and hands back the nodes
// and the leaf entries. A node that fails is skipped with its subtree.

// nodeClaim is a tree node and the LSN of the block that points at it (the
// inode-table block for the root, the parent node otherwise): when two
// owners claim a block, the newer pointer wins (claims.go).
type nodeClaim struct {
	blk uint64
	lsn uint64
}

// leafEntry is one key/value pair of a verified leaf, with the leaf's LSN.
type leafEntry struct {
	key, val []byte
	lsn      uint64
}

type salvaged struct {
	nodes   []nodeClaim
	entries []leafEntry
	// complete: every node reachable from the root verified.
	complete bool
}

// btree node header fields (FORMAT.md §9.1).
const (
	offNodeLevel   = 64
	offNodeSibling = 80
)

// salvageTree walks the tree of owner rooted at root. rootLSN is the LSN
// of the block holding the root pointer. raw reads a block from the
// device: not through the log's cache, which would keep an unverified
// block and skip the verifier on the check's next read of it.
func salvageTree(raw func(blk uint64) ([]byte, error), g *layout.Geometry, seed uint64, magic uint32, owner, root, rootLSN uint64) *salvaged {
	s := &salvaged{complete: true}
	seen := map[uint64]bool{}
	// read returns the verified node at blk, or nil.
	read := func(blk uint64) []byte {
		if blk == 0 || blk >= g.BlockCount || seen[blk] {
			return nil
		}
		seen[blk] = true
		b, err := raw(blk)
		if err != nil || btree.VerifyNode(b, seed, magic, blk, owner) != nil {
			return nil
		}
		return b
	}
	type item struct {
		blk, lsn uint64
		level    int // the level the parent implies; -1 for the root
	}
	var leaves []uint64 // verified leaves, for the sibling walk
	stack := []item{{root, rootLSN, -1}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		b := read(it.blk)
		if b == nil {
			s.complete = false
			continue
		}
		level := int(binary.LittleEndian.Uint16(b[offNodeLevel:]))
		if it.level >= 0 && level != it.level {
			s.complete = false
			continue
		}
		s.nodes = append(s.nodes, nodeClaim{it.blk, it.lsn})
		lsn := layout.ReadHeader(b).LSN
		if level == 0 {
			s.leaf(b, lsn)
			leaves = append(leaves, it.blk)
			continue
		}
		var kids []item
		leafEntries(b, func(_ int, _, v []byte) bool {
			if len(v) == 8 {
				kids = append(kids, item{binary.LittleEndian.Uint64(v), lsn, level - 1})
			}
			return true
		})
		// Reversed, so the stack visits children left to right.
		for i := len(kids) - 1; i >= 0; i-- {
			stack = append(stack, kids[i])
		}
	}
	if s.complete {
		return s
	}
	// Leaves the damaged parts hid, through the sibling chain. Their
	// claim LSN is their left neighbour's: the block that points at them.
	for i := 0; i < len(leaves); i++ {
		prev := leaves[i]
		pb, err := raw(prev)
		if err != nil {
			continue
		}
		next := binary.LittleEndian.Uint64(pb[offNodeSibling:])
		b := read(next)
		if b == nil || binary.LittleEndian.Uint16(b[offNodeLevel:]) != 0 {
			continue
		}
		s.nodes = append(s.nodes, nodeClaim{next, layout.ReadHeader(pb).LSN})
		s.leaf(b, layout.ReadHeader(b).LSN)
		leaves = append(leaves, next)
	}
	return s
}

func (s *salvaged) leaf(b []byte, lsn uint64) {
	leafEntries(b, func(_ int, k, v []byte) bool {
		s.entries = append(s.entries, leafEntry{key: append([]byte(nil), k...), val: append([]byte(nil), v...), lsn: lsn})
		return true
	})
}
