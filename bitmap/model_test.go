package bitmap

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"agfs/layout"
)

var seedFlag = flag.Uint64("bitmap.seed", 0, "seed for the randomised bitmap tests (0: from the clock)")

// testSeed returns the seed to use and logs it, so a failure can be replayed
// with -bitmap.seed.
func testSeed(t testing.TB) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -bitmap.seed=%d)", s, s)
	return s
}

// model is the obviously correct bitmap the real one is checked against.
type model struct {
	bits []bool
	bpb  uint64
}

func (m *model) n() uint64 { return uint64(len(m.bits)) }

func (m *model) setRange(s, n uint64, v bool) {
	for i := s; i < s+n; i++ {
		m.bits[i] = v
	}
}

func (m *model) allAre(s, n uint64, v bool) bool {
	for i := s; i < s+n; i++ {
		if m.bits[i] != v {
			return false
		}
	}
	return true
}

func (m *model) weight() (w uint64) {
	for _, v := range m.bits {
		if v {
			w++
		}
	}
	return w
}

func (m *model) blocks() int { return int((m.n() + m.bpb - 1) / m.bpb) }

func (m *model) blockFree(blk int) (f uint64) {
	for i := uint64(blk) * m.bpb; i < min(uint64(blk+1)*m.bpb, m.n()); i++ {
		if !m.bits[i] {
			f++
		}
	}
	return f
}

// next returns the first bit at or after i equal to v, without wrapping.
func (m *model) next(i uint64, v bool) (uint64, bool) {
	for ; i < m.n(); i++ {
		if m.bits[i] == v {
			return i, true
		}
	}
	return 0, false
}

func (m *model) findFirstZero(hint uint64) (uint64, bool) {
	if hint >= m.n() {
		hint = 0
	}
	if i, ok := m.next(hint, false); ok {
		return i, true
	}
	if i, ok := m.next(0, false); ok && i < hint {
		return i, true
	}
	return 0, false
}

func (m *model) findFreeRun(n, align, hint uint64) (uint64, bool) {
	if align == 0 {
		align = 1
	}
	if hint >= m.n() {
		hint = 0
	}
	// clearFrom[i] is the length of the clear run starting at i.
	clearFrom := make([]uint64, m.n()+1)
	for i := int(m.n()) - 1; i >= 0; i-- {
		if !m.bits[i] {
			clearFrom[i] = clearFrom[i+1] + 1
		}
	}
	try := func(s uint64) bool { return s%align == 0 && clearFrom[s] >= n }
	for s := hint; s < m.n(); s++ {
		if try(s) {
			return s, true
		}
	}
	for s := uint64(0); s < hint; s++ {
		if try(s) {
			return s, true
		}
	}
	return 0, false
}

func (m *model) payload(blk int) []byte {
	p := make([]byte, m.bpb/8)
	for j := uint64(0); j < m.bpb; j++ {
		if i := uint64(blk)*m.bpb + j; i < m.n() && m.bits[i] {
			p[j/8] |= 1 << (j % 8)
		}
	}
	return p
}

// modelConfigs cover lengths that are and are not multiples of 64 and of
// the block size, one-block and one-bit bitmaps, and blocks of one word.
var modelConfigs = []struct{ nbits, bpb uint64 }{
	{1000, 192},
	{64*9 + 13, 64},
	{5000, 512},
	{130, 192},
	{1, 64},
	{3 * 128, 128},
	{777, 320},
}

func TestModel(t *testing.T) {
	seed := testSeed(t)
	const opsPerConfig = 20000
	for ci, cfg := range modelConfigs {
		t.Run(fmt.Sprintf("%d/%d", cfg.nbits, cfg.bpb), func(t *testing.T) {
			runModel(t, seed+uint64(ci), cfg.nbits, cfg.bpb, opsPerConfig)
		})
	}
}

func runModel(t *testing.T, seed, nbits, bpb uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 0x6167667362697473))
	b := New(nbits, bpb)
	m := &model{bits: make([]bool, nbits), bpb: bpb}
	op := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d (replay with -bitmap.seed), nbits %d, bpb %d, op %d: %s",
			seed, nbits, bpb, op, fmt.Sprintf(format, args...))
	}
	// pos picks a bit position, often next to a word or block boundary
	// where off-by-one bugs live; max is inclusive.
	pos := func(max uint64) uint64 {
		var p uint64
		switch rng.IntN(3) {
		case 0:
			p = rng.Uint64N(nbits/64+1)*64 + rng.Uint64N(5) - 2
		case 1:
			p = rng.Uint64N(nbits/bpb+1)*bpb + rng.Uint64N(5) - 2
		default:
			p = rng.Uint64N(max + 1)
		}
		if p > max {
			p = rng.Uint64N(max + 1)
		}
		return p
	}
	// span picks a valid range [s, s+n).
	span := func() (uint64, uint64) {
		s := pos(nbits)
		var n uint64
		switch rng.IntN(4) {
		case 0:
			n = rng.Uint64N(5)
		case 1:
			n = rng.Uint64N(130)
		case 2:
			n = rng.Uint64N(2*bpb + 1)
		default:
			n = pos(nbits - s)
		}
		return s, min(n, nbits-s)
	}
	runLen := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 1 + rng.Uint64N(4)
		case 1:
			return 1 + rng.Uint64N(70)
		case 2:
			return 1 + rng.Uint64N(2*bpb)
		default:
			return 1 + rng.Uint64N(nbits+1)
		}
	}
	aligns := []uint64{0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 100, 128, bpb, nbits, nbits + 5, 1 << 40}
	var runsFound, runsMissed int // both outcomes must be exercised

	for op = 0; op < ops; op++ {
		switch r := rng.IntN(100); {
		case r < 10:
			i := rng.Uint64N(nbits)
			b.Set(i)
			m.bits[i] = true
		case r < 20:
			i := rng.Uint64N(nbits)
			b.Clear(i)
			m.bits[i] = false
		case r < 28:
			s, n := span()
			b.SetRange(s, n)
			m.setRange(s, n, true)
		case r < 36:
			s, n := span()
			b.ClearRange(s, n)
			m.setRange(s, n, false)
		case r < 38:
			// Sprinkle: fragment the bitmap to a random density.
			p := rng.Float64()
			for range 1 + rng.IntN(int(nbits)) {
				i := rng.Uint64N(nbits)
				v := rng.Float64() < p
				if v {
					b.Set(i)
				} else {
					b.Clear(i)
				}
				m.bits[i] = v
			}
		case r < 42:
			i := rng.Uint64N(nbits)
			if got, want := b.Test(i), m.bits[i]; got != want {
				fail("Test(%d) = %v, want %v", i, got, want)
			}
		case r < 46:
			s, n := span()
			if got, want := b.RangeIsClear(s, n), m.allAre(s, n, false); got != want {
				fail("RangeIsClear(%d, %d) = %v, want %v", s, n, got, want)
			}
			if got, want := b.RangeIsSet(s, n), m.allAre(s, n, true); got != want {
				fail("RangeIsSet(%d, %d) = %v, want %v", s, n, got, want)
			}
		case r < 52:
			hint := pos(nbits + 3)
			gi, gok := b.FindFirstZero(hint)
			wi, wok := m.findFirstZero(hint)
			if gi != wi || gok != wok {
				fail("FindFirstZero(%d) = %d, %v; want %d, %v", hint, gi, gok, wi, wok)
			}
		case r < 72:
			n := runLen()
			align := aligns[rng.IntN(len(aligns))]
			hint := pos(nbits + 3)
			gi, gok := b.FindFreeRun(n, align, hint)
			wi, wok := m.findFreeRun(n, align, hint)
			if gi != wi || gok != wok {
				fail("FindFreeRun(%d, %d, %d) = %d, %v; want %d, %v", n, align, hint, gi, gok, wi, wok)
			}
			if gok {
				runsFound++
			} else {
				runsMissed++
			}
		case r < 80:
			i := pos(nbits + 3)
			gi, gok := b.NextSet(i)
			wi, wok := m.next(i, true)
			if gi != wi || gok != wok {
				fail("NextSet(%d) = %d, %v; want %d, %v", i, gi, gok, wi, wok)
			}
			gi, gok = b.NextClear(i)
			wi, wok = m.next(i, false)
			if gi != wi || gok != wok {
				fail("NextClear(%d) = %d, %v; want %d, %v", i, gi, gok, wi, wok)
			}
		case r < 88:
			s, n := span()
			if n == 0 {
				n = 1
				if s == nbits {
					s--
				}
			}
			checkByteSpan(fail, b, s, n)
		case r < 92:
			blk := rng.IntN(m.blocks())
			if got, want := b.BlockFree(blk), m.blockFree(blk); got != want {
				fail("BlockFree(%d) = %d, want %d", blk, got, want)
			}
			got := make([]byte, b.PayloadSize())
			b.BlockPayload(blk, got)
			if want := m.payload(blk); !bytes.Equal(got, want) {
				fail("BlockPayload(%d) = %x, want %x", blk, got, want)
			}
		case r < 94:
			// Load one block from the model's bytes into a bitmap whose
			// block differs, and check the counts follow.
			blk := rng.IntN(m.blocks())
			s, n := b.BlockRange(blk)
			b.SetRange(s+n/3, n/3)
			if err := b.LoadPayload(blk, m.payload(blk)); err != nil {
				fail("LoadPayload(%d): %v", blk, err)
			}
		default:
			if got, want := b.Weight(), m.weight(); got != want {
				fail("Weight() = %d, want %d", got, want)
			}
		}
		if op%1000 == 999 {
			checkAll(fail, b, m)
		}
	}
	checkAll(fail, b, m)
	t.Logf("FindFreeRun: %d found, %d not found", runsFound, runsMissed)
	if runsFound == 0 || runsMissed == 0 {
		fail("FindFreeRun: %d found, %d not found: the test does not exercise both", runsFound, runsMissed)
	}
}

// checkByteSpan checks ByteSpan(s, n) against a direct computation, and
// that walking the blocks with it covers the range exactly.
func checkByteSpan(fail func(string, ...any), b *Bitmap, s, n uint64) {
	bpb := b.BitsPerBlock()
	for n > 0 {
		blk, off, length := b.ByteSpan(s, n)
		bs := s - s%bpb
		end := min(s+n, bs+bpb) // exclusive
		wantOff, wantLen := int((s-bs)/8), int((end-1-bs)/8-(s-bs)/8+1)
		if blk != int(s/bpb) || off != wantOff || length != wantLen {
			fail("ByteSpan(%d, %d) = %d, %d, %d; want %d, %d, %d", s, n, blk, off, length, s/bpb, wantOff, wantLen)
		}
		if off+length > b.PayloadSize() {
			fail("ByteSpan(%d, %d) = %d, %d, %d: beyond the payload", s, n, blk, off, length)
		}
		n -= end - s
		s = end
	}
}

// checkAll compares the whole state, including a codec round trip.
func checkAll(fail func(string, ...any), b *Bitmap, m *model) {
	for i, v := range m.bits {
		if b.Test(uint64(i)) != v {
			fail("bit %d is %v, want %v", i, !v, v)
		}
	}
	if got, want := b.Weight(), m.weight(); got != want {
		fail("Weight() = %d, want %d", got, want)
	}
	if b.Blocks() != m.blocks() {
		fail("Blocks() = %d, want %d", b.Blocks(), m.blocks())
	}
	c := Codec{Magic: layout.MagicBlockBitmap, Seed: 7, Owner: 3, FirstBlock: 1000, BlockSize: int(m.bpb/8) + layout.HeaderSize}
	rt := New(m.n(), m.bpb)
	buf := make([]byte, c.BlockSize)
	for blk := range m.blocks() {
		if got, want := b.BlockFree(blk), m.blockFree(blk); got != want {
			fail("BlockFree(%d) = %d, want %d", blk, got, want)
		}
		c.Encode(b, blk, buf)
		if err := c.Verify(buf, blk, m.n()); err != nil {
			fail("Verify block %d: %v", blk, err)
		}
		if err := c.Decode(rt, blk, buf); err != nil {
			fail("Decode block %d: %v", blk, err)
		}
	}
	for i, v := range m.bits {
		if rt.Test(uint64(i)) != v {
			fail("after round trip, bit %d is %v, want %v", i, !v, v)
		}
	}
	if rt.Weight() != b.Weight() {
		fail("after round trip, Weight() = %d, want %d", rt.Weight(), b.Weight())
	}
}
