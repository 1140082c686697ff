package wal

import (
	"bytes"
	"fmt"
	"slices"

	"agfs/disk"
	"agfs/layout"

	"github.com/cespare/xxhash/v2"
)

// Report says what recovery found and did.
type Report struct {
	SuperCopy int    // log superblock copy in force: 0 = A, 1 = B
	SuperSeq  uint64 // its sequence number
	Tail      LSN    // log tail from the superblock: where the scan started
	Head      LSN    // where the valid sector stream ended
	End       LSN    // end of the last committed transaction (Tail if none)
	NewTail   LSN    // tail of the emptied log: where the next session appends
	Epoch     uint32 // epoch in force after recovery

	Sectors       int    // valid sectors read
	Replayed      int    // committed transactions in the log
	Discarded     int    // transactions without a valid commit record (0 or 1)
	Records       int    // records of the committed transactions
	Blocks        int    // distinct blocks the committed transactions touch
	BlocksWritten int    // blocks rebuilt and written home (held in memory when read-only)
	Undone        int    // deltas of the discarded transaction reverted in home blocks
	Mismatches    int    // deltas whose before-bytes differed from the block (should be 0)
	StopReason    string // why the scan stopped
	Clean         bool   // the log was empty and cleanly closed: nothing was written
}

// Recover replays the log in region r of dev onto the home blocks and
// empties it (fsck and mount both start with it). It is idempotent, and a
// crash at any point inside it is recovered by running it again. On a log
// that is already empty and cleanly closed it writes nothing.
func Recover(dev disk.Device, r Region, seed uint64) (*Report, error) {
	g, err := newGeom(dev, r)
	if err != nil {
		return nil, err
	}
	_, rep, err := recoverLog(dev, &g, seed, false)
	return rep, err
}

// recovered is what recoverLog leaves for Open.
type recovered struct {
	sb     super             // the superblock in force afterwards
	blocks map[uint64][]byte // read-only: rebuilt blocks (sealed)
	last   uint64            // LSN of the last committed transaction (0 if none)
}

// rblock is a block being rebuilt.
type rblock struct {
	data      []byte
	homeValid bool
	home      uint64 // LSN in the valid home copy
	base      bool   // data holds a state deltas can apply to
	last      uint64 // LSN of the last transaction applied
	dirty     bool
}

func recoverLog(dev disk.Device, g *geom, seed uint64, readOnly bool) (*recovered, *Report, error) {
	rep := &Report{}
	sb, which, err := readSupers(dev, g, seed)
	if err != nil {
		return nil, nil, err
	}
	rep.SuperCopy, rep.SuperSeq, rep.Tail, rep.Epoch = which, sb.seq, LSN(sb.tail), sb.epoch

	blocks := map[uint64]*rblock{}
	state := func(blk uint64) (*rblock, error) {
		if st := blocks[blk]; st != nil {
			return st, nil
		}
		b := make([]byte, g.bs)
		if _, err := dev.ReadAt(b, int64(blk*g.bs)); err != nil {
			return nil, fmt.Errorf("wal: recover: block %d: reading home copy: %w", blk, err)
		}
		st := &rblock{data: b}
		if h := layout.ReadHeader(b); h.Blkno == blk && layout.Checksum(b, seed) == h.Sum {
			st.homeValid, st.home, st.base = true, h.LSN, true
		}
		blocks[blk] = st
		return st, nil
	}

	sc := newScanner(dev, g, seed, sb.epoch, sb.tail)
	hash := xxhash.NewWithSeed(seed)
	end, last := sb.tail, uint64(0)
	var pending []record // the transaction being parsed
	touched := map[uint64]bool{}
	for {
		pending = pending[:0]
		hash.ResetWithSeed(seed)
		committed := false
		for {
			rec, ok, err := decodeRecord(sc, int(g.bs), func(b []byte) { hash.Write(b) })
			if sc.err != nil {
				return nil, nil, sc.err
			}
			if err != nil {
				sc.stop = fmt.Sprintf("record at LSN %d: %v", rec.pos, err)
				break
			}
			if !ok {
				break
			}
			if rec.kind != recCommit {
				pending = append(pending, rec)
				continue
			}
			if int(rec.count) != len(pending) || rec.hash != hash.Sum64() {
				sc.stop = fmt.Sprintf("commit record at LSN %d: %d records, hash %#016x; found %d records, hash %#016x",
					rec.pos, rec.count, rec.hash, len(pending), hash.Sum64())
				break
			}
			committed = true
			t := rec.pos
			for _, r := range pending {
				if err := g.checkBlock(r.blk); err != nil {
					return nil, nil, fmt.Errorf("wal: recover: record at LSN %d in transaction %d: %w: %v", r.pos, t, ErrCorrupt, err)
				}
			}
			for _, r := range pending {
				st, err := state(r.blk)
				if err != nil {
					return nil, nil, err
				}
				touched[r.blk] = true
				if st.homeValid && t <= st.home {
					continue // the home copy already holds this transaction
				}
				switch r.kind {
				case recImage, recInit:
					st.data, st.base = r.after, true
				case recDelta:
					if !st.base {
						return nil, nil, fmt.Errorf("wal: recover: block %d: %w: home copy is invalid and the log holds no image of it before LSN %d",
							r.blk, ErrCorrupt, r.pos)
					}
					n := len(r.after)
					if !bytes.Equal(st.data[r.off:r.off+n], r.before) {
						rep.Mismatches++
					}
					copy(st.data[r.off:], r.after)
				}
				st.last, st.dirty = t, true
			}
			rep.Replayed++
			rep.Records += len(pending)
			end, last = sc.pos(), t
			break
		}
		if !committed {
			break
		}
	}
	rep.Head, rep.End, rep.Sectors, rep.StopReason = LSN(sc.pos()), LSN(end), sc.sectors, sc.stop
	rep.Blocks = len(touched)

	// Undo: a delta of the discarded transaction whose after-bytes are in a
	// home block that carries an LSN at or past the record is reverted.
	if len(pending) > 0 {
		rep.Discarded = 1
		for i := len(pending) - 1; i >= 0; i-- {
			r := pending[i]
			if r.kind != recDelta || g.checkBlock(r.blk) != nil {
				continue
			}
			st, err := state(r.blk)
			if err != nil {
				return nil, nil, err
			}
			n := len(r.after)
			if st.homeValid && st.home >= r.pos && bytes.Equal(st.data[r.off:r.off+n], r.after) {
				copy(st.data[r.off:], r.before)
				st.last, st.dirty = max(st.last, st.home), true
				rep.Undone++
			}
		}
	}

	var dirty []uint64
	for blk, st := range blocks {
		if st.dirty {
			dirty = append(dirty, blk)
			layout.Seal(st.data, seed, st.last)
		}
	}
	slices.Sort(dirty)
	rep.BlocksWritten = len(dirty)

	out := &recovered{sb: sb, last: last}
	newTail := canon(end, g.bs)
	rep.NewTail = LSN(newTail)
	if readOnly {
		out.blocks = make(map[uint64][]byte, len(dirty))
		for _, blk := range dirty {
			out.blocks[blk] = blocks[blk].data
		}
		return out, rep, nil
	}
	if sb.clean && rep.Replayed == 0 && len(pending) == 0 && sb.tail == newTail {
		rep.Clean = true
		return out, rep, nil
	}

	// Write the rebuilt blocks home in block order, coalescing runs.
	const maxRun = 1 << 20
	var run []byte
	runStart := uint64(0)
	flushRun := func() error {
		if len(run) == 0 {
			return nil
		}
		if _, err := dev.WriteAt(run, int64(runStart*g.bs)); err != nil {
			return fmt.Errorf("wal: recover: writing blocks [%d, %d) home: %w", runStart, runStart+uint64(len(run))/g.bs, err)
		}
		run = run[:0]
		return nil
	}
	for _, blk := range dirty {
		if len(run) > 0 && (blk != runStart+uint64(len(run))/g.bs || len(run) >= maxRun) {
			if err := flushRun(); err != nil {
				return nil, nil, err
			}
		}
		if len(run) == 0 {
			runStart = blk
		}
		run = append(run, blocks[blk].data...)
	}
	if err := flushRun(); err != nil {
		return nil, nil, err
	}
	if err := dev.Flush(); err != nil {
		return nil, nil, fmt.Errorf("wal: recover: flushing home blocks: %w", err)
	}
	nsb := super{seq: sb.seq + 1, tail: newTail, epoch: sb.epoch + 1, clean: true}
	if err := writeSuper(dev, g, nsb, seed); err != nil {
		return nil, nil, fmt.Errorf("wal: recover: %w", err)
	}
	out.sb = nsb
	rep.Epoch = nsb.epoch
	return out, rep, nil
}

// readSupers reads both log superblocks and returns the valid one with the
// higher sequence number and which copy it is.
func readSupers(dev disk.Device, g *geom, seed uint64) (super, int, error) {
	b := make([]byte, 2*g.bs)
	if _, err := dev.ReadAt(b, int64(g.Start*g.bs)); err != nil {
		return super{}, 0, fmt.Errorf("wal: recover: reading log superblocks: %w", err)
	}
	var sbs [2]super
	var errs [2]error
	for i := range 2 {
		sbs[i], errs[i] = decodeSuper(b[uint64(i)*g.bs:uint64(i+1)*g.bs], g, g.Start+uint64(i), seed)
	}
	switch {
	case errs[0] != nil && errs[1] != nil:
		return super{}, 0, fmt.Errorf("wal: recover: no valid log superblock: A: %v; B: %w", errs[0], errs[1])
	case errs[0] != nil:
		return sbs[1], 1, nil
	case errs[1] != nil || sbs[0].seq > sbs[1].seq:
		return sbs[0], 0, nil
	}
	return sbs[1], 1, nil
}

// writeSuper writes s to its copy (seq&1: even A, odd B) and flushes.
func writeSuper(dev disk.Device, g *geom, s super, seed uint64) error {
	blk := g.Start + s.seq&1
	b := make([]byte, g.bs)
	encodeSuper(b, g, blk, s, seed)
	if _, err := dev.WriteAt(b, int64(blk*g.bs)); err != nil {
		return fmt.Errorf("writing log superblock %d: %w", blk, err)
	}
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("flushing log superblock %d: %w", blk, err)
	}
	return nil
}

// Format writes an empty log into region r: both log superblocks and the
// first block of sectors (zeroed, so a stale log left by an earlier
// filesystem on the device is never read). The rest of the region is left
// as it is: a sector that was never written is simply invalid.
func Format(dev disk.Device, r Region, seed uint64) error {
	g, err := newGeom(dev, r)
	if err != nil {
		return err
	}
	b := make([]byte, 3*g.bs)
	encodeSuper(b[:g.bs], &g, g.Start, super{seq: 0, tail: sectorHdr, epoch: 1, clean: true}, seed)
	encodeSuper(b[g.bs:2*g.bs], &g, g.Start+1, super{seq: 1, tail: sectorHdr, epoch: 1, clean: true}, seed)
	if _, err := dev.WriteAt(b, int64(g.Start*g.bs)); err != nil {
		return fmt.Errorf("wal: format: %w", err)
	}
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("wal: format: %w", err)
	}
	return nil
}

// scanner reads the sector stream from the tail and serves it as a byte
// stream of record bytes.
type scanner struct {
	dev   disk.Device
	g     *geom
	seed  uint64
	epoch uint32
	d     *xxhash.Digest

	p     uint64 // payload position of the next byte
	first uint64 // start of the tail's sector
	ended bool
	stop  string
	err   error

	chunk    []byte // sectors read ahead
	chunkLSN uint64 // stream position of chunk[0]
	secLSN   uint64 // the current sector, validated
	secUsed  int
	secOK    bool
	sectors  int
	out      []byte
}

const scanChunk = 128 << 10

func newScanner(dev disk.Device, g *geom, seed uint64, epoch uint32, tail uint64) *scanner {
	return &scanner{dev: dev, g: g, seed: seed, epoch: epoch, d: xxhash.NewWithSeed(seed),
		p: tail, first: tail - tail%sectorSize}
}

func (s *scanner) pos() uint64 { return s.p }

// sector makes the sector holding s.p current, or ends the stream.
func (s *scanner) sector() bool {
	start := s.p - s.p%sectorSize
	if s.secOK && s.secLSN == start {
		return true
	}
	if start-s.first > s.g.capacity {
		s.end("the stream is longer than the log can hold")
		return false
	}
	if len(s.chunk) == 0 || start < s.chunkLSN || start+sectorSize > s.chunkLSN+uint64(len(s.chunk)) {
		// Read ahead up to scanChunk bytes, not past the ring's end.
		phys := start % s.g.ring
		n := min(uint64(scanChunk), s.g.ring-phys)
		if cap(s.chunk) < int(n) {
			s.chunk = make([]byte, scanChunk)
		}
		s.chunk = s.chunk[:n]
		if _, err := s.dev.ReadAt(s.chunk, s.g.dataOff+int64(phys)); err != nil {
			s.err = fmt.Errorf("wal: recover: reading the log at LSN %d: %w", start, err)
			s.end("read error")
			return false
		}
		s.chunkLSN = start
	}
	sec := s.chunk[start-s.chunkLSN : start-s.chunkLSN+sectorSize]
	used, err := checkSector(s.d, sec, start, s.epoch, s.seed)
	if err != nil {
		s.end(fmt.Sprintf("sector at LSN %d: %v", start, err))
		return false
	}
	s.secLSN, s.secUsed, s.secOK = start, used, true
	s.sectors++
	return true
}

func (s *scanner) end(why string) {
	if !s.ended {
		s.ended, s.stop = true, why
	}
}

// next implements byteSource.
func (s *scanner) next(n int) ([]byte, bool) {
	s.out = s.out[:0]
	for need := n; need > 0; {
		if s.ended || !s.sector() {
			return nil, false
		}
		off := int(s.p%sectorSize) - sectorHdr
		if off >= s.secUsed {
			s.end(fmt.Sprintf("end of the stream at LSN %d (sector holds %d bytes)", s.p, s.secUsed))
			return nil, false
		}
		k := min(need, s.secUsed-off)
		base := s.secLSN - s.chunkLSN + uint64(s.p%sectorSize)
		src := s.chunk[base : base+uint64(k)]
		if k == n {
			s.p = advance(s.p, uint64(k))
			return src, true
		}
		s.out = append(s.out, src...)
		s.p = advance(s.p, uint64(k))
		need -= k
	}
	return s.out, true
}

var _ byteSource = (*scanner)(nil)
