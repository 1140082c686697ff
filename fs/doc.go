// Package fs is the filesystem core of agfs: the superblock, inodes, file
// data, directories, symlinks and extended attributes, on top of the log
// (wal), the allocation groups (ag) and the on-disk trees (btree, dir,
// xattr). It knows nothing of FUSE: package fs/fusefs serves this API to
// the kernel (docs/fs-api.md is the contract between the two).
//
// # Operations and transactions
//
// Every metadata change of one operation is one wal transaction (op.go);
// several are used only where one could outgrow the log (truncating or
// freeing a file with many extents is done in batches while the inode is
// on the orphan list or past its new size). There is no global lock: an
// operation locks the inodes it touches (in increasing inode number), its
// transaction takes AG locks as it allocates and frees (increasing AG
// number; an operation that would break the order is run again with its
// AGs taken up front), and inode-table blocks are locked by stripe only
// while the changed inode bytes are logged and committed. Cross-directory
// renames are serialised (as in Linux) for the ancestry check.
//
// # The inode table
//
// The inodes in memory are those the kernel references (Ref/Forget), those
// with open handles (OpenFile/Release), and those an operation is using.
// An inode whose last link goes while it is referenced is put on its AG's
// on-disk orphan list (AG header orphan head, Inode.NextOrphan) in the
// same transaction; it is freed, and taken off the list, when its last
// reference goes. Open frees what the lists hold after a crash.
//
// # What fs stores where (to be merged into docs/FORMAT.md)
//
// Directories (data format DataBTree, fork count 1):
//
//	fork[0:8]   root block of the directory index (package dir, node magic AGDR, owner = the directory)
//	fork[8:16]  parent directory's inode number (".."); the root's is 1
//	size        blocks × block size; nlink = 2 + subdirectories
//
// Regular files: extents inline (DataExtents, fork count extent records
// from fork[0]), or an extent B+tree (DataBTree, node magic AGEX, owner =
// the inode, root block in fork[0:8], fork count 1) whose keys are the
// first file block (8 bytes, big-endian) and whose values are the first
// device block (u64), length (u32) and flags (u32, bit 0 unwritten),
// little-endian. A tree that shrinks to one leaf whose extents fit inline
// goes back inline.
//
// Symbolic links: a target of up to 160 bytes is stored inline
// (DataInline, size = its length); a longer one (up to 4095 bytes) in data
// blocks mapped like a file's.
//
// Extended attributes: inline entries (package xattr) in the fork tail
// from fork offset (0 = none inline); when attributes first go inline the
// area starts where the data fork ends: after max(1, fork count) extent
// records, at 16 for DataBTree inodes, after the target of an inline
// symlink. Extents that no longer fit before the fork offset move to an
// extent tree. The xattr tree's root is Inode.XattrBlock. Inode.Blocks
// counts data blocks and every tree node (extent, directory, xattr).
//
// The root directory (inode 1, 0755) and /lost+found (0700) are made by
// mkfs (Init). Generation starts at 1 and grows each time a slot is reused.
//
// # Data
//
// File data goes straight to the device, block-aligned; only metadata goes
// through the log. Ordered data: blocks a write newly maps (new, or
// unwritten until then) are written before the transaction mapping them
// commits, and the device is flushed before the log next writes anything
// (orderedDev, the device as the log sees it: one flush per log write, not
// per file write), so a crash never shows a file another file's old bytes. Freed blocks are not reused before the free is durable
// (ag's busy extents), and a freed tree node is not reused for data before
// a checkpoint has moved the log tail past it (reuseGuard in op.go), since
// the log would otherwise write or replay the old node over the data.
package fs
