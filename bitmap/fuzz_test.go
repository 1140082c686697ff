package bitmap

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"agfs/layout"
)

// fuzzCodec has small blocks (512 bits) so the fuzzer can reach every byte;
// fuzzBits leaves the last of three blocks partial.
var fuzzCodec = Codec{Magic: layout.MagicBlockBitmap, Seed: 42, Owner: 1, FirstBlock: 10, BlockSize: 128}

const fuzzBits = 2*512 + 276

// FuzzDecode feeds arbitrary bytes to Decode as one block. It must never
// panic, must accept exactly the blocks an independent check calls valid,
// must load an accepted block's bits exactly, and must leave the bitmap
// untouched on rejection. With reseal set the input is checksummed first,
// so mutations reach the header fields and payload checks behind the
// checksum.
func FuzzDecode(f *testing.F) {
	c := fuzzCodec
	rng := rand.New(rand.NewPCG(1, 2))
	b := randomBitmap(rng, fuzzBits, c.BitsPerBlock(), 0.5)
	for blk, src := range encodeAll(c, b) {
		f.Add(src, uint8(blk), false)
		bad := bytes.Clone(src)
		bad[len(bad)-1] ^= 0x80
		f.Add(bad, uint8(blk), true)
	}
	f.Add(make([]byte, c.BlockSize), uint8(0), false)
	f.Add([]byte{1, 2, 3}, uint8(1), true)

	f.Fuzz(func(t *testing.T, data []byte, sel uint8, reseal bool) {
		src := bytes.Clone(data)
		if reseal && len(src) > layout.HeaderSize {
			layout.Seal(src, c.Seed, 5)
		}
		blk := int(sel) % 3
		target := randomBitmap(rand.New(rand.NewPCG(3, 4)), fuzzBits, c.BitsPerBlock(), 0.5)
		before := encodeAll(c, target)

		err := c.Decode(target, blk, src)
		if verr := c.Verify(src, blk, fuzzBits); (err == nil) != (verr == nil) {
			t.Fatalf("Decode says %v, Verify says %v", err, verr)
		}
		if valid := fuzzValid(src, blk); valid != (err == nil) {
			t.Fatalf("valid %v, Decode error %v", valid, err)
		}
		after := encodeAll(c, target)
		for i := range after {
			switch {
			case err == nil && i == blk:
				if !bytes.Equal(after[i][layout.HeaderSize:], src[layout.HeaderSize:]) {
					t.Fatal("accepted block's bits were not loaded exactly")
				}
			case !bytes.Equal(after[i], before[i]):
				t.Fatalf("block %d changed (Decode error %v)", i, err)
			}
		}
		if err != nil && !errors.Is(err, layout.ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
		var ones uint64
		for i := range target.Len() {
			if target.Test(i) {
				ones++
			}
		}
		if ones != target.Weight() {
			t.Fatalf("Weight %d, counted %d", target.Weight(), ones)
		}
	})
}

// fuzzValid is an independent statement of what a valid block blk is.
func fuzzValid(src []byte, blk int) bool {
	c := fuzzCodec
	if len(src) != c.BlockSize {
		return false
	}
	h := layout.ReadHeader(src)
	if h.Magic != c.Magic || h.Blkno != c.FirstBlock+uint64(blk) || h.Owner != c.Owner ||
		h.Sum != layout.Checksum(src, c.Seed) {
		return false
	}
	for j := uint64(0); j < c.BitsPerBlock(); j++ {
		if uint64(blk)*c.BitsPerBlock()+j >= fuzzBits && src[layout.HeaderSize+j/8]&(1<<(j%8)) != 0 {
			return false
		}
	}
	return true
}
