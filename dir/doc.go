// Package dir is the index of one directory: a set of entries name →
// (inode number, file type), kept in an on-disk B+tree (package btree,
// node magic "AGDR", node owner = the directory's inode number). It knows
// nothing of inodes or FUSE; "." and ".." are not stored (the fs layer
// makes them up, with cookies 1 and 2).
//
// # Names
//
// A name is 1..255 bytes without '/' or NUL, and is not "." or "..".
// Longer names fail with ENAMETOOLONG, other bad names with EINVAL. At a
// 1 KiB block size a B+tree entry is at most 226 bytes (btree.Limits), so
// names there are at most 209 bytes (MaxName); longer ones also fail with
// ENAMETOOLONG. At 2 KiB and larger blocks every name of up to 255 bytes
// fits.
//
// # Hash and position
//
// Every entry has a position, a 63-bit number that is its key prefix and
// its readdir cookie. The home position of a name is
//
//	h = xxhash64(name, seed = superblock directory hash seed) & (2^63 − 1)
//	if h < 3 { h += 3 }   // 0 = start of readdir, 1 = ".", 2 = ".."
//
// The seed is random per filesystem, so positions cannot be predicted (nor
// collisions prepared) without it. An entry's position is its home unless
// another entry held the home when it was inserted (see Collisions).
// Positions are unique within a directory and never change while the entry
// exists, so a cookie stays valid however other entries come and go, and
// fits FUSE's 64-bit offset and telldir's signed long.
//
// # Encoding
//
// Keys are compared bytewise (so the position is big-endian and entries
// are in position order); every other integer is little-endian, as
// everywhere in agfs.
//
// Key:
//
//	off  size field
//	  0     8 position   u64 big-endian, 3 ≤ position ≤ 2^63 − 1
//	  8     n name       1 ≤ n ≤ 255 bytes; absent (n = 0) in a tombstone
//
// Value of an entry (9 bytes):
//
//	off  size field
//	  0     8 inode      u64 little-endian, non-zero
//	  8     1 type       file type as in dirent d_type: DT_FIFO 1, DT_CHR 2,
//	                     DT_DIR 4, DT_BLK 6, DT_REG 8, DT_LNK 10, DT_SOCK 12
//
// Value of a tombstone: empty (0 bytes).
//
// # Collisions
//
// Positions are allocated by linear probing over the position space
// 3 … 2^63 − 1 (after 2^63 − 1 comes 3 again). A run is a maximal
// sequence of consecutive occupied positions, occupied by an entry or a
// tombstone (a key holding only a position). The invariants are:
//
//  1. Reachability: every position from an entry's home up to (not
//     including) its own position is occupied. So an entry lies in the
//     run containing its home, at or after the home.
//  2. No tombstone ends a run: the position after a tombstone is occupied.
//
// Lookup(name) walks the run from home(name) (one Seek, then consecutive
// keys) until it finds an entry with the name or a free position. Insert
// does the same walk (EEXIST if the name is found) and takes the first
// tombstone it passed or else the free position that ended the walk.
// Remove deletes the entry; if the next position is occupied, an entry
// after it may have probed through, so a tombstone takes its place (same
// position, so nothing moves); otherwise the position becomes free, and so
// do the tombstones just before it, which no walk needs any more
// (invariant 2). Entries never move, so the cookie of every entry present
// throughout a readdir is stable, and Iterate, which returns the entries
// with position > cookie in position order, returns each of them exactly
// once. With a 63-bit keyed hash a collision is very unlikely (about n²/2^64
// for n names), so runs are almost always of length one and tombstones
// almost never exist; tests force them with a weak hash.
//
// Check (fsck) verifies the tree (btree.Check), every entry's encoding,
// name and type, the positions unique, and the two invariants: an entry
// whose name no longer hashes to a position at or before it within its run
// is reported as corrupt.
//
// # Costs
//
// Lookup, Insert, Replace and Remove are O(log n): a constant number of
// root-to-leaf descents (more only inside a run of collisions). Empty is
// O(log n). Count and Check read every leaf; the fs layer keeps whatever
// count it needs (link counts, size) in the inode itself.
//
// # Transactions and the root
//
// A Dir works inside one wal transaction at a time (Create, Open, SetTx)
// and is not safe for concurrent use: the caller's inode lock covers it.
// The root block moves when the tree grows or shrinks a level; after every
// change the caller checks RootChanged and persists Root in the inode in
// the same transaction. An operation that fails may leave the transaction
// half changed: the caller aborts it (and reopens the Dir from the root it
// had before).
package dir
