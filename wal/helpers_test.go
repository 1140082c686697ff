package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"agfs/disk"
	"agfs/layout"

	"github.com/cespare/xxhash/v2"
)

const testMagic = layout.MagicExtentNode

// env is a small device with a log and some metadata blocks outside it.
type env struct {
	t    testing.TB
	dev  disk.Device
	r    Region
	seed uint64
	bs   int
}

// newEnv makes a zeroed Mem device of devBlocks blocks with a formatted
// log at [logStart, logStart+logBlocks).
func newEnv(t testing.TB, bs int, devBlocks, logStart, logBlocks uint64) *env {
	t.Helper()
	e := &env{t: t, dev: disk.NewMem(int64(devBlocks) * int64(bs)), r: Region{BlockSize: bs, Start: logStart, Blocks: logBlocks}, seed: 0x5eed, bs: bs}
	if err := Format(e.dev, e.r, e.seed); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) verify(blk uint64, b []byte) error {
	return layout.Check(b, e.seed, testMagic, blk, 0)
}

// fresh returns an empty metadata block for blk (header only).
func (e *env) fresh(blk uint64) []byte {
	b := make([]byte, e.bs)
	layout.PutHeader(b, testMagic, blk, 0)
	return b
}

// mkfs writes sealed empty metadata blocks straight to the device.
func (e *env) mkfs(blks ...uint64) {
	e.t.Helper()
	for _, blk := range blks {
		b := e.fresh(blk)
		layout.Seal(b, e.seed, 0)
		if _, err := e.dev.WriteAt(b, int64(blk)*int64(e.bs)); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) open(o Options) *Log {
	e.t.Helper()
	l, _, err := Open(e.dev, e.r, e.seed, o)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// home reads blk from the device.
func (e *env) home(blk uint64) []byte {
	b := make([]byte, e.bs)
	if _, err := e.dev.ReadAt(b, int64(blk)*int64(e.bs)); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func u64at(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// sameContent compares two blocks ignoring the LSN and checksum fields.
func sameContent(a, b []byte) bool {
	return bytes.Equal(a[:layout.OffLSN], b[:layout.OffLSN]) && bytes.Equal(a[layout.OffChecksum+8:], b[layout.OffChecksum+8:])
}

// devBytes returns a copy of the whole device.
func devBytes(t testing.TB, dev disk.Device) []byte {
	t.Helper()
	b := make([]byte, dev.Size())
	if _, err := dev.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// sliceSource is a byteSource over a byte slice, positions counted from
// a base as if the bytes were one long sector payload (no headers): used to
// test record decoding alone.
type sliceSource struct {
	b []byte
	p int
}

func (s *sliceSource) next(n int) ([]byte, bool) {
	if n > len(s.b)-s.p {
		s.p = len(s.b)
		return nil, false
	}
	b := s.b[s.p : s.p+n]
	s.p += n
	return b, true
}

func (s *sliceSource) pos() uint64 { return uint64(s.p) }

// crash stops l as a power cut would: nothing more reaches the device.
func crash(l *Log) {
	l.fail(errCrash)
	close(l.stop)
	l.wg.Wait()
}

var errCrash = errors.New("crashed")

// writeStream writes data as the log stream from payload position start,
// in sealed sectors of the given epoch (earlier payload bytes of the first
// sector are zero).
func writeStream(t testing.TB, dev disk.Device, g *geom, seed uint64, epoch uint32, start uint64, data []byte) {
	t.Helper()
	d := newDigest(seed)
	p := start
	for len(data) > 0 {
		s := p - p%sectorSize
		sec := make([]byte, sectorSize)
		off := int(p % sectorSize)
		n := copy(sec[off:], data)
		sealSector(d, sec, s, off-sectorHdr+n, epoch, seed)
		if _, err := dev.WriteAt(sec, g.physOff(s)); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
		p = advance(p, uint64(n))
	}
}

// txRecords builds the records of one committed transaction.
func txRecords(seed uint64, txid uint64, recs ...[]byte) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, r...)
	}
	h := newDigest(seed)
	h.Write(b)
	return putCommit(b, txid, uint32(len(recs)), h.Sum64())
}

func newDigest(seed uint64) *xxhash.Digest { return xxhash.NewWithSeed(seed) }
