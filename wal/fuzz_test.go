package wal

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"

	"agfs/disk"
	"agfs/layout"
)

// Fuzz geometry: 1 KiB blocks, metadata blocks 1..8, an 8-block log at 16
// (12 sectors), 32 blocks in all.
const (
	fzBS, fzDev, fzLogStart, fzLogLen = 1024, 32, 16, 8
	fzSeed                            = 0xF022
)

var validLogOnce struct {
	sync.Once
	img []byte
}

// validLogImage is a device image whose log holds committed transactions
// not yet checkpointed (a crash after they became durable).
func validLogImage(t testing.TB) []byte {
	validLogOnce.Do(func() {
		e := newEnv(t, fzBS, fzDev, fzLogStart, fzLogLen)
		e.seed = fzSeed
		if err := Format(e.dev, e.r, e.seed); err != nil {
			t.Fatal(err)
		}
		e.mkfs(1, 2, 3, 4, 5, 6, 7, 8)
		l := e.open(Options{CheckpointAt: 1})
		for i := range 5 {
			tx := l.Begin()
			blk := uint64(1 + i%3)
			tx.Write(blk, 64+8*i, le64(uint64(i+1)))
			if i == 3 {
				tx.Init(6, e.fresh(6))
			}
			if _, err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		crash(l)
		validLogOnce.img = devBytes(t, e.dev)
	})
	return bytes.Clone(validLogOnce.img)
}

// mutateLog applies data to the log region of img: in mode 0 data is the
// raw content of the sectors; otherwise it is a list of (u16 offset, xor
// byte) edits of the sectors, after which, in mode 2, every sector that
// still has the right magic is resealed so the record parser sees the
// edited bytes.
func mutateLog(img []byte, mode byte, data []byte) {
	ring := img[(fzLogStart+2)*fzBS : (fzLogStart+fzLogLen)*fzBS]
	switch mode % 3 {
	case 0:
		copy(ring, data)
		return
	default:
		for len(data) >= 3 {
			off := int(binary.LittleEndian.Uint16(data)) % len(ring)
			ring[off] ^= data[2]
			data = data[3:]
		}
	}
	if mode%3 == 2 {
		d := newDigest(fzSeed)
		for s := 0; s < len(ring); s += sectorSize {
			sec := ring[s : s+sectorSize]
			if binary.LittleEndian.Uint32(sec) == sectorMagic {
				binary.LittleEndian.PutUint64(sec[soSum:], sectorSum(d, sec, fzSeed))
			}
		}
	}
}

// checkRecoverGarbage recovers a mutated image: it must return (no panic,
// no endless loop) with an error or a consistent result: a second recovery
// is a no-op and every block it wrote home verifies.
func checkRecoverGarbage(t *testing.T, mode byte, data []byte) {
	img := validLogImage(t)
	mutateLog(img, mode, data)
	dev := disk.NewMemFrom(img)
	r := Region{BlockSize: fzBS, Start: fzLogStart, Blocks: fzLogLen}
	rep, err := Recover(dev, r, fzSeed)
	if err != nil {
		return
	}
	once := dev.Bytes()
	rep2, err := Recover(dev, r, fzSeed)
	if err != nil || !rep2.Clean || !bytes.Equal(once, dev.Bytes()) {
		t.Fatalf("second recovery not a no-op: %v %+v (first: %+v)", err, rep2, rep)
	}
	if rep.Replayed > 0 {
		h := make([]byte, fzBS)
		for blk := uint64(1); blk < fzLogStart; blk++ {
			dev.ReadAt(h, int64(blk)*fzBS)
			if hd := layout.ReadHeader(h); hd.Magic != 0 && layout.Checksum(h, fzSeed) != hd.Sum {
				t.Fatalf("block %d does not verify after recovery (%+v)", blk, rep)
			}
		}
	}
}

func FuzzRecover(f *testing.F) {
	f.Add(byte(0), []byte{})
	f.Add(byte(0), bytes.Repeat([]byte{0xff}, 3000))
	f.Add(byte(1), []byte{0, 0, 1})
	f.Add(byte(1), []byte{40, 0, 0x80, 200, 1, 3})
	f.Add(byte(2), []byte{40, 0, 0x80})
	f.Add(byte(2), []byte{33, 0, 7, 34, 0, 0x10})
	f.Fuzz(checkRecoverGarbage)
}

// TestRecoverGarbage runs the fuzz check over random inputs in the
// default test run.
func TestRecoverGarbage(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range n {
		mode := byte(i % 3)
		var data []byte
		if mode == 0 {
			data = make([]byte, r.IntN(6*fzBS))
			for j := range data {
				data[j] = byte(r.Uint32())
			}
			if r.IntN(2) == 0 {
				// Start from the real log, so sector headers are plausible.
				img := validLogImage(t)
				data = append(bytes.Clone(img[(fzLogStart+2)*fzBS:(fzLogStart+fzLogLen)*fzBS]), data...)[:len(data)]
			}
		} else {
			for range 1 + r.IntN(8) {
				off := r.IntN(fzBS)
				if r.IntN(4) != 0 {
					off = r.IntN(2 * fzBS) // the live part
				}
				data = binary.LittleEndian.AppendUint16(data, uint16(off))
				data = append(data, byte(1+r.IntN(255)))
			}
		}
		checkRecoverGarbage(t, mode, data)
	}
}
