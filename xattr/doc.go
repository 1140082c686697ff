// Package xattr stores the extended attributes of one inode: the small
// ones inline, in a byte area the caller carves out of the inode's fork
// area, the rest in a B+tree of AGXA blocks (package btree, owner = the
// inode number) whose root the inode's `xattr block` field holds. It
// knows nothing of inodes or FUSE: the caller hands it the inline bytes,
// the root and a btree.Config, and persists what it hands back.
//
// # Names
//
// A name is a namespace prefix and a non-empty suffix. The namespaces and
// their on-disk numbers:
//
//	1 "user."   2 "trusted."   3 "security."   4 "system."
//
// Checks follow Linux (fs/xattr.c), in its order: Set flags other than
// Create and Replace are EINVAL; a full name (prefix included) of 0 or
// more than 255 bytes (XATTR_NAME_MAX) is ERANGE; a value over 65536
// bytes (XATTR_SIZE_MAX) is E2BIG; a name in no known namespace is
// EOPNOTSUPP; an empty suffix ("user.") is EINVAL. Names
// never contain NUL (they are C strings; one that does is EINVAL).
// Errors are syscall.Errno values; corruption wraps layout.ErrCorrupt.
//
// # Placement
//
// Each attribute lives in exactly one place: inline or in the tree, never
// both. Set puts an attribute inline when its value is at most 255 bytes
// and its entry fits in the inline room left (counting the bytes its old
// inline entry frees); otherwise in the tree. When the tree loses data
// (Remove, a value moved inline or shortened) and it is a single leaf
// whose attributes all fit in the free inline room, they all move inline
// and the tree is freed, so an inode whose attributes shrink gets its
// block back. SetRoom shrinks the inline room (the data fork needs it),
// moving the largest inline entries to the tree, or grows it.
//
// # Inline area
//
// The area is a sequence of entries from its first byte, ended by a zero
// namespace byte or by the end of the area. The caller stores Inline() at
// the start of the area and zeroes the rest (an area with no entries is
// "fork offset 0"). Entry:
//
//	off  size  field
//	  0     1  namespace   1..4 (0 = end of the entries)
//	  1     1  name length n: suffix bytes, 1..255, prefix + n ≤ 255
//	  2     1  value length v: 0..255
//	  3     n  name suffix (no NUL)
//	3+n     v  value
//
// Entries are in no particular order; a name appears at most once.
//
// # Tree
//
// An attribute in the tree is a byte stream cut into chunks, chunk i
// being the value of key (prefix, i). Two key forms:
//
// Plain form, for a suffix of at most 120 bytes (all the usual names):
//
//	off   size  field
//	  0      1  namespace   1..4
//	  1      n  name suffix
//	1+n      1  0x00        (ends the name: an attribute's keys are contiguous)
//	2+n      2  chunk index, big-endian
//
// Hashed form, for a longer suffix (121..250 bytes), which would leave too
// little room for the value at 1 KiB blocks:
//
//	off   size  field
//	  0      1  namespace | 0x80
//	  1      8  hash: xxhash64 of the suffix seeded with the checksum seed, big-endian
//	  9      2  chunk index, big-endian
//
// The stream:
//
//	off   size  field
//	  0      4  value length v (≤ 65536), little-endian
//	            hashed form only:
//	  4      1  suffix length n
//	  5      n  suffix (the full name is kept here; Get compares it)
//	  …      v  value
//
// Chunks are numbered from 0 without gaps and concatenate to exactly the
// stream. Writers fill every chunk but the last to min(MaxValue,
// MaxEntry − key length) of btree.LimitsFor(block size) (512 bytes at
// 4 KiB blocks); readers only concatenate. Two long names of one
// namespace with the same hash cannot both be stored: the second Set
// fails with ENOSPC (the seed, secret to users, makes this a 2^-64 event).
//
// # Transactions
//
// A Set works in one wal transaction at a time (Open, SetTx). Get, List
// and Empty change nothing. A failed Set, Remove, SetRoom or Destroy
// returning a validation errno (ERANGE, E2BIG, EINVAL, EOPNOTSUPP, EEXIST,
// ENODATA) has changed nothing; after any other error the caller aborts
// the transaction and discards the Set. After a successful change the
// caller persists Inline() and Root() in the inode, and adds BlockDelta()
// to its block count, in the same transaction. A Set is not safe for
// concurrent use (the inode lock covers it).
package xattr
