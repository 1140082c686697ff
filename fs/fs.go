package fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"agfs/ag"
	"agfs/dir"
	"agfs/disk"
	"agfs/layout"
	"agfs/orphan"
	"agfs/wal"
)

// Options tune an open filesystem.
type Options struct {
	// ReadOnly never writes the device: a dirty log is replayed in memory
	// only, orphans are left for the next read-write open, and every
	// change fails with EROFS.
	ReadOnly bool
	// CacheBlocks is the wal buffer cache size (metadata), in blocks.
	CacheBlocks int
	// Policy places file data (ag.Near by default).
	Policy ag.Policy
	// CheckpointInterval, when positive, checkpoints the log at least
	// this often (the log also checkpoints by itself when it fills).
	CheckpointInterval time.Duration
	// NoScan turns the background orphan scanner off (scan.go).
	NoScan bool
	// ScanInterval is the scanner's pause before each pass
	// (orphan.DefaultInterval if zero).
	ScanInterval time.Duration
	// ScanRate bounds the scanner's inode slots and reclaims per second:
	// orphan.DefaultRate if zero, no bound if negative.
	ScanRate int
}

// writeBehindBytes bounds the file data written asynchronously and not
// yet on the device (disk.WriteBehind).
const writeBehindBytes = 64 << 20

// FS is an open agfs filesystem.
type FS struct {
	dev     *orderedDev // the device, with ordered data for the log (ordered.go)
	sb      layout.Superblock
	g       *layout.Geometry
	seed    uint64
	bs      int
	log     *wal.Log
	gs      *ag.Groups
	opt     Options
	ro      bool
	maxName int

	shards  [nShards]shard
	stripes [nStripes]sync.Mutex // inode-table blocks (see op.commit)

	renameMu sync.Mutex // cross-directory renames (the ancestry check)
	sbMu     sync.Mutex // the primary superblock's mutable fields

	closed  atomic.Bool
	closing atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
	bounce  sync.Pool
	// strayDirty: an inode with data written in place left the table
	// before an Fsync flushed it.
	strayDirty atomic.Bool
	// lastLSN is the LSN of the latest commit: an inode loaded into the
	// table takes it as its last LSN, since its own is not known.
	lastLSN atomic.Uint64

	unsafeMu   sync.Mutex
	unsafe     map[uint64]uint64 // freed tree node → LSN of the freeing commit
	unsafeCap  int               // prune when unsafe grows to this
	reuseCkpts atomic.Uint64     // checkpoints forced by reuseGuard
	retries    atomic.Uint64     // operations retried for the AG lock order

	scanner *orphan.Scanner              // nil when not scanning
	watch   atomic.Pointer[orphan.Watch] // the running pass's, fed by commits

	// Replay is what the log recovery did at Open.
	Replay *wal.Report
	// Orphans is the number of on-disk orphans reclaimed at Open.
	Orphans int
}

func (f *FS) dataFlushes() uint64 { return f.dev.flushes.Load() }

// Superblock field offsets this package changes (through the log).
const (
	offSBState       = 184
	offSBLastMounted = 200
	offSBLastWritten = 208
	offSBMountCount  = 216
)

// ReadSuperblock reads and verifies the primary superblock of dev. Its
// errors are one line naming what is wrong.
func ReadSuperblock(dev disk.Device) (*layout.Superblock, error) {
	n := min(dev.Size(), layout.MaxBlockSize) &^ (disk.SectorSize - 1)
	if n < layout.MinBlockSize {
		return nil, fmt.Errorf("agfs: device of %d bytes is too small to hold a filesystem", dev.Size())
	}
	b := make([]byte, n)
	if _, err := dev.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("agfs: reading the superblock: %w", err)
	}
	sb, err := layout.DecodeSuperblock(b, 0)
	if err != nil {
		return nil, fmt.Errorf("agfs: %w", err)
	}
	if sb.BlockSize < layout.MinFSBlockSize {
		return nil, fmt.Errorf("agfs: block size %d is below the %d agfs needs", sb.BlockSize, layout.MinFSBlockSize)
	}
	if need := int64(sb.BlockCount) * int64(sb.BlockSize); need > dev.Size() {
		return nil, fmt.Errorf("agfs: the device (%d bytes) is smaller than the filesystem on it (%d bytes): truncated image?", dev.Size(), need)
	}
	return sb, nil
}

// Open opens the filesystem on dev: it verifies the superblock, recovers
// the log, opens the allocation groups, reclaims the inodes left on the
// on-disk orphan lists and marks the superblock not clean. The device
// stays the caller's: Close does not close it.
func Open(dev disk.Device, o Options) (*FS, error) {
	sb, err := ReadSuperblock(dev)
	if err != nil {
		return nil, err
	}
	if sb.ReadOnlyOnly() && !o.ReadOnly {
		return nil, fmt.Errorf("agfs: the filesystem has read-only-compatible features %#x this agfs does not know: open it read-only", sb.ROCompat&^layout.KnownROCompat)
	}
	region := wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
	wb := disk.NewWriteBehind(dev, writeBehindBytes)
	odev := &orderedDev{Device: wb, wb: wb, logLo: int64(sb.LogStart) * int64(sb.BlockSize),
		logHi: int64(sb.LogStart+sb.LogBlocks) * int64(sb.BlockSize)}
	log, rep, err := wal.Open(odev, region, sb.Seed(), wal.Options{CacheBlocks: o.CacheBlocks, ReadOnly: o.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("agfs: log: %w", err)
	}
	gs, err := ag.OpenGroups(log, sb)
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("agfs: %w", err)
	}
	f := newFS(odev, sb, log, gs, o)
	f.Replay = rep
	fail := func(err error) (*FS, error) {
		f.closed.Store(true)
		f.log.Close()
		return nil, err
	}
	root, err := f.get(layout.RootIno)
	if errors.Is(err, syscall.ESTALE) {
		return fail(fmt.Errorf("agfs: the root directory (inode %d) does not exist (%w): an interrupted mkfs?", layout.RootIno, layout.ErrCorrupt))
	}
	if err != nil {
		return fail(fmt.Errorf("agfs: root directory (inode %d): %w", layout.RootIno, err))
	}
	isDir := root.d.Mode&syscall.S_IFMT == syscall.S_IFDIR
	f.put(root)
	if !isDir {
		return fail(fmt.Errorf("agfs: root inode %d is not a directory (%w)", layout.RootIno, layout.ErrCorrupt))
	}
	if !f.ro {
		if err := f.processOrphans(); err != nil {
			return fail(fmt.Errorf("agfs: reclaiming orphans: %w", err))
		}
		if err := f.markSuper(false); err != nil {
			return fail(fmt.Errorf("agfs: marking the superblock in use: %w", err))
		}
	}
	if o.CheckpointInterval > 0 && !f.ro {
		f.wg.Add(1)
		go f.checkpointer(o.CheckpointInterval)
	}
	f.startScanner()
	return f, nil
}

func newFS(dev disk.Device, sb *layout.Superblock, log *wal.Log, gs *ag.Groups, o Options) *FS {
	od, ok := dev.(*orderedDev)
	if !ok {
		od = &orderedDev{Device: dev, logLo: int64(sb.LogStart) * int64(sb.BlockSize),
			logHi: int64(sb.LogStart+sb.LogBlocks) * int64(sb.BlockSize)}
	}
	f := &FS{dev: od, sb: *sb, seed: sb.Seed(), bs: int(sb.BlockSize), log: log, gs: gs, opt: o,
		ro: o.ReadOnly, stop: make(chan struct{})}
	f.g = &f.sb.Geometry
	f.unsafe = map[uint64]uint64{}
	f.unsafeCap = 4096
	f.maxName = dir.MaxName(f.bs)
	for i := range f.shards {
		f.shards[i].m = make(map[uint64]*inode)
	}
	bs := f.bs
	f.bounce.New = func() any { b := make([]byte, bs); return &b }
	return f
}

func (f *FS) checkpointer(every time.Duration) {
	defer f.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.log.Checkpoint()
		}
	}
}

// markSuper sets (clean) or clears the superblock's clean flag through
// the log, with the mount count and times.
func (f *FS) markSuper(clean bool) error {
	f.sbMu.Lock()
	defer f.sbMu.Unlock()
	tx := f.log.Begin()
	b, err := tx.Read(0, nil)
	if err != nil {
		tx.Abort()
		return err
	}
	le := binary.LittleEndian
	state := le.Uint32(b[offSBState:])
	now := uint64(time.Now().UnixNano())
	var buf [8]byte
	put64 := func(off int, v uint64) error {
		le.PutUint64(buf[:], v)
		return tx.Write(0, off, buf[:])
	}
	if clean {
		state |= layout.StateClean
		err = put64(offSBLastWritten, now)
	} else {
		state &^= layout.StateClean
		if err = put64(offSBLastMounted, now); err == nil {
			err = put64(offSBMountCount, le.Uint64(b[offSBMountCount:])+1)
		}
	}
	if err == nil {
		le.PutUint32(buf[:4], state)
		err = tx.Write(0, offSBState, buf[:4])
	}
	if err != nil {
		tx.Abort()
		return err
	}
	_, err = tx.Commit()
	return err
}

// Close reclaims the inodes that are still referenced but unlinked,
// marks the superblock clean, checkpoints the log and flushes the device.
// No request may be in flight. The device is not closed.
func (f *FS) Close() error {
	// The scanner first: its passes need the filesystem open.
	f.stopScanner()
	if f.closed.Swap(true) {
		return syscall.EBADF
	}
	close(f.stop)
	f.wg.Wait()
	if f.ro {
		return f.log.Close()
	}
	f.closing.Store(true)
	var errs []error
	// Unlinked inodes still referenced: nobody can use them any more.
	var late []*inode
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		for _, n := range s.m {
			if n.lerr == nil && n.loaded.Load() && !n.gone.Load() && n.nlink.Load() == 0 && !n.reclaiming {
				n.reclaiming = true
				n.pins++
				late = append(late, n)
			}
		}
		s.mu.Unlock()
	}
	for _, n := range late {
		if err := f.reclaim(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := f.markSuper(true); err != nil {
		errs = append(errs, fmt.Errorf("marking the superblock clean: %w", err))
	}
	if err := f.log.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := f.dev.Flush(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agfs: close: %w", err)
	}
	return nil
}

// StatFS describes the filesystem's capacity (statfs(2)).
type StatFS struct {
	Blocks, Bfree, Bavail, Files, Ffree uint64
	Bsize                               uint32
	NameLen                             uint32
}

// StatFS returns the exact free counts, summed over the AGs.
func (f *FS) StatFS() StatFS {
	fb, fi := f.gs.Totals()
	files := uint64(f.g.AGCount) * uint64(f.g.InodesPerAG-1)
	return StatFS{Blocks: f.g.BlockCount, Bfree: fb, Bavail: fb, Files: files, Ffree: fi,
		Bsize: uint32(f.bs), NameLen: uint32(f.maxName)}
}

// Sync makes everything done so far durable (syncfs).
func (f *FS) Sync() error {
	if f.ro {
		return nil
	}
	if err := f.log.Sync(); err != nil {
		return errno(err)
	}
	return errno(f.dev.Flush())
}

// BlockSize is the filesystem block size.
func (f *FS) BlockSize() int { return f.bs }

// Superblock returns the filesystem's superblock as read at Open.
func (f *FS) Superblock() layout.Superblock { return f.sb }

// Log returns the write-ahead log (statistics).
func (f *FS) Log() *wal.Log { return f.log }

// Groups returns the allocation groups (statistics).
func (f *FS) Groups() *ag.Groups { return f.gs }

// Stats are counters of an open filesystem.
type Stats struct {
	Inodes          int    // inodes in memory (referenced or in use)
	DataFlushes     uint64 // device flushes so new data blocks precede the transaction mapping them
	LockRetries     uint64 // operations run again to take AG locks in order
	ReuseCheckpoint uint64 // checkpoints forced before reusing a freed tree node for data
	OrphansAtOpen   int    // on-disk orphans reclaimed by Open
	Log             wal.Stats
	Scan            orphan.Stats
}

// Stats returns the filesystem's counters.
func (f *FS) Stats() Stats {
	n := 0
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	st := Stats{Inodes: n, DataFlushes: f.dataFlushes(), LockRetries: f.retries.Load(),
		ReuseCheckpoint: f.reuseCkpts.Load(), OrphansAtOpen: f.Orphans, Log: f.log.Stats()}
	if f.scanner != nil {
		st.Scan = f.scanner.Stats()
	}
	st.Scan.AtMount = uint64(f.Orphans)
	return st
}
