// Package wal is agfs's write-ahead log: transactions over metadata
// blocks, a bounded buffer cache, group commit, checkpoints and crash
// recovery. It knows nothing of what the blocks mean, except that every
// block a transaction changes is a metadata block starting with the common
// 64-byte header of package layout, whose LSN and checksum fields the log
// fills in when it writes the block home.
//
// # Using it
//
// Format writes an empty log (mkfs). Open recovers the log and starts it;
// Recover alone is fsck's replay. A transaction is Begin, then Read, Write
// and Init of blocks, then Commit or Abort:
//
//   - Write changes a tx-private copy of the block and records the before
//     and after bytes of exactly the range written; Init gives a whole new
//     block without reading the device. Read returns the transaction's view.
//   - Commit encodes the records, appends them with a commit record to the
//     in-memory log under the append lock, and then publishes the private
//     copies in the cache, so the cache only ever holds committed state, in
//     commit order. It returns the transaction's LSN without waiting for
//     the disk. Wait(lsn) (the fsync path) returns when the transaction is
//     durable; waiters share log writes and device flushes (group commit,
//     run by the first waiter for everyone queued behind it, so the fsync
//     path wakes no other goroutine).
//   - Callers hold their own locks covering the blocks they change from the
//     first Read or Write until Commit or Abort returns (Defer runs
//     functions after the end, LIFO, with the outcome, to release them or
//     undo in-memory state on abort). So two open transactions never change
//     the same block, and commit order is log order.
//   - The cache holds CacheBlocks blocks. Dirty blocks are pinned until a
//     checkpoint writes them home (no-steal); clean ones are evicted least
//     recently used first. A Verifier runs only when a block is read from
//     the device.
//   - A checkpoint starts in the background when the log is CheckpointAt
//     full or half the cache is dirty. A commit that finds too little log
//     space or cache room waits for it (in FIFO order, without holding the
//     append lock); it never fails for that reason. Only a transaction
//     larger than the whole log fails (ErrTooLarge).
//
// # Placement
//
// The log is Region.Blocks blocks of Region.BlockSize bytes (B) at block
// Region.Start. Blocks Start and Start+1 are the two copies, A and B, of
// the log superblock. The rest, from byte (Start+2)*B, is a ring of
// N = (Blocks-2)*B/512 sectors of 512 bytes.
//
// # LSNs
//
// An LSN is a byte position in the unwrapped stream of sectors: sector k of
// the stream starts at LSN k*512 and lives in ring sector k mod N. LSNs
// count sector headers too, and only grow. The record bytes live in the
// sector payloads: payload byte i of sector k is at LSN k*512+32+i; head
// and tail are always such payload positions (a position at the end of a
// full sector is written as the first payload byte of the next). The log
// holds the live range [tail, head); head-tail never exceeds N*512-B, so
// the whole-block write at the head never touches the block holding the
// tail. A transaction's LSN is the LSN of its commit record's first byte.
//
// # Sectors
//
// Every sector is a 32-byte header and 480 bytes of payload:
//
//	off size field
//	  0    4 magic     "AGLG" (0x474c4741 little-endian)
//	  4    2 used      payload bytes in use, 0..480; used < 480 ends the stream
//	  6    2 reserved  zero
//	  8    8 lsn       LSN of the sector's start (k*512): a sector left from
//	                   an earlier lap of the ring has the wrong one
//	 16    4 epoch     epoch of the log (see below)
//	 20    4 reserved  zero
//	 24    8 checksum  xxhash64, seeded with the filesystem seed, of the 512
//	                   bytes with this field zero
//	 32  480 payload   record bytes
//
// A sector is valid at stream position k*512 when its magic, lsn and
// checksum are right, used <= 480, and its epoch equals the epoch in the
// log superblock. The payloads of consecutive valid sectors, from the tail,
// form one byte stream of records; records cross sector boundaries freely.
// The stream ends at the first invalid sector or after the first sector
// with used < 480.
//
// The log is written in whole, aligned blocks. The block holding the head
// is written partly filled (sectors past the head are zero, hence invalid)
// and rewritten as it fills: a rewrite keeps every earlier payload byte
// identical, so a torn rewrite loses nothing that was durable. A flusher
// goroutine also writes full blocks in the background when 256 KiB have
// accumulated, without flushing.
//
// # Epoch
//
// The epoch starts at 1 and is bumped by every recovery that finds the log
// not cleanly closed. All sectors written by one session carry the epoch in
// the superblock. After a recovery the new tail is past everything
// committed, and any sector of the old epoch beyond it (the unfinished
// transaction at the crash) fails the epoch test, so the next session's
// stream can never run on into it even if one of its own writes is lost.
//
// # Log superblock
//
// One block, written alternately to copy A (even sequence numbers) and B
// (odd), each write followed by a device flush. The valid copy with the
// higher sequence number is in force, so a torn superblock write never
// loses the log.
//
//	off size field
//	  0   64 common header: magic "AGLS", blkno = its own block, owner =
//	         OwnerNone, lsn = tail, checksum (layout.Seal)
//	 64    8 seq        sequence number
//	 72    8 tail       LSN where the live log starts (a payload position)
//	 80    4 epoch
//	 84    4 flags      bit 0 "clean": no sector of this epoch exists at or
//	                    after the tail (set by Format, Recover and Close;
//	                    cleared by Open before the session appends)
//	 88    4 blocksize  B
//	 92    4 version    1
//	 96    8 start      Region.Start
//	104    8 blocks     Region.Blocks
//	112    - reserved, zero to the end of the block
//
// Format writes both copies (seq 0 and 1, tail 32, epoch 1, clean) and
// zeroes the first block of the ring; nothing else, so formatting a 1 GiB
// log costs three block writes. Sectors never written are simply invalid.
//
// # Records
//
// Little-endian, packed back to back in the stream. A transaction is its
// records, then one commit record. The first byte of a record is its kind:
//
//	kind 1, delta  (13+2n bytes): u8 kind, u64 block, u16 offset, u16 n,
//	               n bytes before, n bytes after (1 <= n, offset+n <= B)
//	kind 2, image  (9+B bytes):   u8 kind, u64 block, the whole block as it
//	               was just before this transaction
//	kind 3, init   (9+B bytes):   u8 kind, u64 block, the whole new block
//	kind 4, commit (21 bytes):    u8 kind, u64 txid (epoch<<32 | sequence),
//	               u32 count of records before it, u64 hash: xxhash64,
//	               seeded with the filesystem seed, of the transaction's
//	               record bytes (everything before the commit record)
//
// Within a transaction the image records come first, then, for each block
// in the order the transaction first changed it, its init record or its
// deltas in the order written. A block gets an image record the first time
// it is changed after a checkpoint started (precisely: when the position of
// its last image or init record in the log is before the tail the latest
// checkpoint moves to). So in the live log the first record of every block
// is an image or an init, and recovery can rebuild any home block a
// checkpoint tore. A single-block allocation (one bitmap byte and one
// 8-byte counter) logs 65 bytes when no image is needed.
//
// # Home blocks and checkpoints
//
// Home block LSNs are compared with log LSNs, which only grow for the life
// of a filesystem. A stale block with a valid checksum and a larger LSN
// could only come from an earlier filesystem formatted with the same seed;
// agfs derives the seed from the UUID, new at every mkfs.
//
// A checkpoint, under the append lock, notes head and the last commit LSN,
// makes that head the next tail (so later changes log fresh images) and
// copies the dirty blocks with the LSN of the last transaction that changed
// each. Then, without the lock: Wait for that commit, stamp each copy with
// its LSN and seal it (layout.Seal), write the copies home in block order
// (adjacent blocks coalesced, several writes in flight), flush, write the
// next log superblock with the new tail, flush. Blocks not changed since
// their copy become clean (evictable).
//
// Close checkpoints everything and writes a clean superblock whose tail is
// the canonical empty position after the head: the first payload byte of
// the next block boundary (the head itself when it is one).
//
// # Recovery
//
//  1. Read both log superblocks; the valid one with the higher sequence
//     number gives tail, epoch and the clean flag. (Neither valid: error.)
//  2. Scan the sectors from the tail (at most one ring's worth), checking
//     magic, lsn, checksum, epoch; the stream ends as described above.
//  3. Parse transactions: records until a commit record whose count and
//     hash match. A transaction cut short, a bad commit record or a
//     malformed record (unknown kind, delta range outside the block) ends
//     the scan: that transaction is discarded (Report.StopReason says why).
//     A committed transaction naming a block outside the device or inside
//     the log region is corruption: Recover refuses with an error and
//     writes nothing.
//  4. For each committed transaction in LSN order, for each of its records:
//     the block's home copy is read once; if its checksum and self-address
//     are valid, its header LSN h says which transactions it holds and those
//     with LSN <= h are skipped; if invalid (torn), the block is rebuilt from
//     its first image or init record (a delta with nothing to apply it to is
//     corruption: error). Image and init records replace the block, deltas
//     patch it.
//  5. Undo: a delta of the discarded transaction whose after-bytes are in a
//     valid home block carrying an LSN at or past the record is reverted to
//     its before-bytes. (With no-steal and checkpoints waiting for
//     durability this cannot happen; it is there for robustness.)
//  6. Write every rebuilt block home stamped with the LSN of the last
//     transaction applied to it and sealed, in block order; flush; write the
//     next superblock copy with epoch+1, clean, and tail = the canonical
//     empty position at or after the end of the last committed transaction;
//     flush. Crashing anywhere in here and recovering again gives the same
//     home blocks. A log that is clean with nothing in it is left untouched.
//
// With Options.ReadOnly, Open does steps 1 to 5 in memory only: the rebuilt
// blocks stay pinned in the cache and nothing is ever written.
//
// # Choices that differ from the first design
//
//   - Sector epoch: a sector is valid only if its epoch equals the
//     superblock's (the spec: non-decreasing along the stream and no greater
//     than the superblock's). Stricter, and needed: the first sector after
//     a recovery's new tail may be a valid sector of the old epoch.
//   - The tail after recovery (and at Close) is rounded up to the next
//     block boundary's first payload byte rather than the exact end of the
//     last committed transaction, so a new session starts with an empty
//     head block and never has to reproduce bytes it did not write.
//   - The superblock has a clean flag (and version, geometry fields) so
//     that recovering a cleanly closed log writes nothing.
//   - Records carry a kind byte; commit records also count image records;
//     the hash is seeded with the filesystem seed. Image records come first
//     in a transaction.
//   - Recovery checks a home block's self-address as well as its checksum.
//   - Format also zeroes the first block of the ring.
package wal
