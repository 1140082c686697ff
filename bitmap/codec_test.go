package bitmap

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"agfs/layout"
)

// testCodec is a 4 KiB-block codec: 32256 bits per block.
var testCodec = Codec{Magic: layout.MagicInodeBitmap, Seed: 0x5eed, Owner: 9, FirstBlock: 1234, BlockSize: 4096}

// randomBitmap returns a bitmap of nbits with about a density p of bits set.
func randomBitmap(rng *rand.Rand, nbits, bpb uint64, p float64) *Bitmap {
	b := New(nbits, bpb)
	for i := range nbits {
		if rng.Float64() < p {
			b.Set(i)
		}
	}
	return b
}

func encodeAll(c Codec, b *Bitmap) [][]byte {
	blocks := make([][]byte, b.Blocks())
	for blk := range blocks {
		blocks[blk] = make([]byte, c.BlockSize)
		c.Encode(b, blk, blocks[blk])
	}
	return blocks
}

func sameBits(a, b *Bitmap) bool {
	if a.Len() != b.Len() || a.Weight() != b.Weight() {
		return false
	}
	for blk := range a.Blocks() {
		if a.BlockFree(blk) != b.BlockFree(blk) {
			return false
		}
	}
	for i := range a.Len() {
		if a.Test(i) != b.Test(i) {
			return false
		}
	}
	return true
}

func TestCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	c := testCodec
	nbits := 3*c.BitsPerBlock() + 1000 // last block partial, not a multiple of 64
	b := randomBitmap(rng, nbits, c.BitsPerBlock(), 0.3)
	blocks := encodeAll(c, b)
	got := New(nbits, c.BitsPerBlock())
	for blk, src := range blocks {
		h := layout.ReadHeader(src)
		if h.Magic != c.Magic || h.Blkno != c.FirstBlock+uint64(blk) || h.Owner != c.Owner || h.LSN != 0 {
			t.Fatalf("block %d header %+v", blk, h)
		}
		if err := c.Verify(src, blk, nbits); err != nil {
			t.Fatalf("Verify block %d: %v", blk, err)
		}
		if err := c.Decode(got, blk, src); err != nil {
			t.Fatalf("Decode block %d: %v", blk, err)
		}
	}
	if !sameBits(b, got) {
		t.Fatal("round trip changed the bitmap")
	}
	// A logged block is resealed with its LSN and still decodes.
	layout.Seal(blocks[1], c.Seed, 77)
	if err := c.Decode(got, 1, blocks[1]); err != nil {
		t.Fatalf("Decode of a resealed block: %v", err)
	}
}

// TestCodecDetectsFlips flips one bit anywhere in each block (header or
// payload) and expects Decode and Verify to reject it, naming the block,
// and Decode to leave the bitmap alone.
func TestCodecDetectsFlips(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	c := testCodec
	nbits := 4*c.BitsPerBlock() - 77
	b := randomBitmap(rng, nbits, c.BitsPerBlock(), 0.5)
	blocks := encodeAll(c, b)
	for blk, src := range blocks {
		name := fmt.Sprintf("bitmap block %d (device block %d)", blk, c.FirstBlock+uint64(blk))
		for range 200 {
			bit := rng.IntN(8 * c.BlockSize)
			bad := bytes.Clone(src)
			bad[bit/8] ^= 1 << (bit % 8)
			target := New(nbits, c.BitsPerBlock())
			err := c.Decode(target, blk, bad)
			if err == nil || !errors.Is(err, layout.ErrCorrupt) || !strings.Contains(err.Error(), name) {
				t.Fatalf("block %d, bit %d flipped: Decode error %v, want ErrCorrupt naming %q", blk, bit, err, name)
			}
			if target.Weight() != 0 {
				t.Fatalf("block %d: failed Decode changed the bitmap", blk)
			}
			if err := c.Verify(bad, blk, nbits); err == nil || !errors.Is(err, layout.ErrCorrupt) || !strings.Contains(err.Error(), name) {
				t.Fatalf("block %d, bit %d flipped: Verify error %v", blk, bit, err)
			}
		}
	}
}

func TestCodecRejects(t *testing.T) {
	c := testCodec
	bpb := c.BitsPerBlock()
	nbits := 2*bpb - 5
	b := New(nbits, bpb)
	b.SetRange(100, 50000)
	good := encodeAll(c, b)

	resealed := func(blk int, edit func([]byte)) []byte {
		p := bytes.Clone(good[blk])
		edit(p)
		layout.Seal(p, c.Seed, 0)
		return p
	}
	cases := []struct {
		name string
		blk  int
		src  []byte
		want string
	}{
		{"misdirected", 0, good[1], "claims to be block"},
		{"never written", 1, make([]byte, c.BlockSize), "never written"},
		{"short", 0, good[0][:100], "block is 100 bytes"},
		{"wrong magic", 0, resealed(0, func(p []byte) { p[0] = 'X' }), "magic"},
		{"wrong owner", 0, resealed(0, func(p []byte) { p[16]++ }), "owner"},
		{"bit past the end", 1, resealed(1, func(p []byte) { p[len(p)-1] |= 0x80 }), "past the end"},
		{"first bit past the end", 1, resealed(1, func(p []byte) {
			j := nbits - bpb // first invalid payload bit of block 1
			p[layout.HeaderSize+int(j/8)] |= 1 << (j % 8)
		}), "past the end"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := New(nbits, bpb)
			err := c.Decode(target, tc.blk, tc.src)
			if err == nil || !errors.Is(err, layout.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), fmt.Sprintf("bitmap block %d (device block %d)", tc.blk, c.FirstBlock+uint64(tc.blk))) {
				t.Fatalf("Decode: %v, want ErrCorrupt mentioning %q", err, tc.want)
			}
			if target.Weight() != 0 {
				t.Fatal("failed Decode changed the bitmap")
			}
			if err := c.Verify(tc.src, tc.blk, nbits); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v, want mention of %q", err, tc.want)
			}
		})
	}
	// The last valid bit of block 1 is fine.
	ok := resealed(1, func(p []byte) {
		j := nbits - bpb - 1
		p[layout.HeaderSize+int(j/8)] |= 1 << (j % 8)
	})
	if err := c.Verify(ok, 1, nbits); err != nil {
		t.Fatalf("last valid bit set: %v", err)
	}
	// Another filesystem's seed.
	other := c
	other.Seed++
	if err := other.Decode(New(nbits, bpb), 0, good[0]); !errors.Is(err, layout.ErrChecksum) {
		t.Fatalf("foreign seed: %v, want ErrChecksum", err)
	}
}

// TestLoadPayloadCounts checks that loading over a block keeps Weight and
// BlockFree right, and that a zero payload reads as all free.
func TestLoadPayloadCounts(t *testing.T) {
	b := New(1000, 512)
	b.SetRange(0, 1000)
	if err := b.LoadPayload(1, make([]byte, b.PayloadSize())); err != nil {
		t.Fatal(err)
	}
	if b.Weight() != 512 || b.BlockFree(0) != 0 || b.BlockFree(1) != 488 || !b.RangeIsClear(512, 488) {
		t.Fatalf("after loading zeroes: weight %d, free %d/%d", b.Weight(), b.BlockFree(0), b.BlockFree(1))
	}
}

func TestPanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	b := New(100, 64)
	mustPanic("New with 100 bits per block", func() { New(10, 100) })
	mustPanic("New with 0 bits per block", func() { New(10, 0) })
	mustPanic("Set past the end", func() { b.Set(100) })
	mustPanic("Test past the end", func() { b.Test(100) })
	mustPanic("SetRange past the end", func() { b.SetRange(90, 11) })
	mustPanic("ClearRange overflowing", func() { b.ClearRange(1, ^uint64(0)) })
	mustPanic("FindFreeRun of 0 bits", func() { b.FindFreeRun(0, 1, 0) })
	mustPanic("ByteSpan of nothing", func() { b.ByteSpan(5, 0) })
	mustPanic("BlockFree past the end", func() { b.BlockFree(2) })
	mustPanic("Verify past the last block", func() { testCodec.Verify(make([]byte, 4096), 1, 32256) })
	mustPanic("Encode with another block size", func() { testCodec.Encode(b, 0, make([]byte, 4096)) })
}

// TestEmpty checks a zero-length bitmap answers without panicking.
func TestEmpty(t *testing.T) {
	b := New(0, 64)
	if b.Blocks() != 0 || b.Len() != 0 || b.Weight() != 0 {
		t.Fatal("empty bitmap is not empty")
	}
	if _, ok := b.FindFirstZero(0); ok {
		t.Fatal("FindFirstZero found a bit")
	}
	if _, ok := b.FindFreeRun(1, 0, 0); ok {
		t.Fatal("FindFreeRun found a run")
	}
	if _, ok := b.NextSet(0); ok {
		t.Fatal("NextSet found a bit")
	}
	if !b.RangeIsClear(0, 0) || !b.RangeIsSet(0, 0) {
		t.Fatal("empty range is not both clear and set")
	}
}
