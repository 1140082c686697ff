// Package btree is agfs's on-disk B+tree: one implementation behind file
// extent maps (magic AGEX), large hashed directories (AGDR) and xattr
// blocks (AGXA). Keys and values are byte strings; keys are ordered with
// bytes.Compare, so callers encode numbers big-endian. Every change goes
// through a wal.Tx and logs only the byte ranges it changed.
//
// # Node format
//
// A node is one metadata block: the common 64-byte header (layout, magic
// and owner given per tree: owner = inode number), the node header, a
// slotted page. All integers little-endian.
//
//	off  size field
//	  0    64 common header   magic, blkno, owner (inode), lsn, checksum
//	 64     2 level           0 = leaf; the root has the highest level
//	 66     2 count           entries in the node
//	 68     4 body start      lowest byte of the entry-body area; the block
//	                          size when the node is empty
//	 72     4 garbage         dead bytes inside [body start, block end): bodies
//	                          of removed entries, reclaimed by compaction
//	 76     4 reserved        zero
//	 80     8 right sibling   leaves: next leaf in key order, 0 = none;
//	                          interior nodes: 0
//	 88     8 reserved        zero
//	 96  2×count slots        u16 offset of each entry body, sorted by key
//	  …       free space
//	body start … block end    entry bodies, packed from the block end:
//	    +0  2 key length
//	    +2  2 value length
//	    +4  … key, then value
//
// Free space is (body start − (96 + 2×count)) contiguous bytes plus
// garbage; live body bytes + garbage = block size − body start exactly.
// Block sizes are powers of two from 1 KiB to 64 KiB (a body never starts
// at 65536, so slots fit in u16).
//
// Leaf entries map a key to its value. Interior entries map a separator
// key to a child block (value = u64 block number, 8 bytes): child i holds
// the keys k with key[i] ≤ k < key[i+1] (within the node's own range).
// Lookups follow the last entry whose key is ≤ the key sought.
// The first key of every interior node is empty (length 0) and stands for
// the node's lower bound, so child 0 holds everything below key[1]; the
// other separators are strictly increasing and non-empty. A child's level
// is its parent's level − 1. Leaf separators are the shortest prefix of
// the right leaf's first key that is greater than the left leaf's last
// key.
//
// # Limits
//
// Any node holds at least four entries of the largest size: with C =
// block size − 96, an entry costs 2 (slot) + 4 + key + value bytes, so
// key + value ≤ C/4 − 6 (MaxEntry). Keys are at most min(512, MaxEntry − 8)
// bytes (an interior entry is key + 8) and values at most
// min(512, MaxEntry) bytes:
//
//	block size  MaxKey  MaxValue  MaxEntry (key+value)
//	    1 KiB      218       226        226
//	    2 KiB      474       482        482
//	    4 KiB      512       512        994
//	  ≥ 8 KiB      512       512       1024
//
// Put rejects longer keys or values with an error wrapping ErrTooLarge.
// Trees are at most MaxDepth levels deep.
//
// # Balancing
//
// A full node splits at the middle by bytes; an insert past the last entry
// of the rightmost node of a level keeps the old node full and starts a new
// one (sequential keys, such as extents appended to a file, fill nodes
// completely). Deletion frees empty nodes, merges a node at most half full
// with a sibling (same parent) when both fit in three quarters of a node —
// the quarter kept free stops an insert from splitting a node that a
// delete has just merged — and collapses a root with one child.
//
// # Logging
//
// An operation changes private copies of the nodes and then logs, per
// changed node, the byte ranges that really differ (ranges closer than 7
// bytes are joined: a log record header costs 13 bytes, an unchanged byte
// inside a range 2). Inserting an entry logs the shifted part of the slot
// array, the new body and the count and body-start fields; new nodes
// (splits, a new root) are logged whole with tx.Init. The entries moved out
// of a split node are not rewritten: their bodies become garbage, reclaimed
// by a compaction that slides only the bodies below a hole.
//
// # Verification
//
// VerifyNode, the read verifier, runs on device reads: layout.Check, then
// the node header (level < MaxDepth, reserved fields zero, no right
// sibling in interior nodes), every entry inside the body area and within
// the limits, bodies not overlapping and adding up with the garbage to the
// body area, keys strictly ascending, interior entries of 8 bytes with a
// non-zero child and an empty first key. Every read, cached or not, also
// checks the identity fields (magic, self-address, owner), the level the
// parent implies and the slot array's bounds. Check verifies the whole
// tree: every node fully, key ranges across levels, the sibling chain, no
// block reached twice. Errors wrap layout.ErrCorrupt and name node and
// owner; no block read from the device makes the package panic.
//
// # Transactions and the root
//
// A Tree works inside one transaction at a time (Open, Create, SetTx). An
// operation gathers its changes in memory and writes them to the
// transaction only when it has succeeded: one that fails on a corrupt
// node, an allocation failure (no space) or a size limit changes nothing —
// it gives back the blocks it allocated — and the transaction can go on.
// Only a failure of the transaction itself while writing (the log failed)
// leaves it half done; the caller aborts it. After a root split or
// collapse Tree.Root changes: the caller persists it (in the inode) in the
// same transaction; RootChanged reports it. A Tree is not safe for
// concurrent use; the caller's inode lock covers it.
package btree
