package bitmap

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// benchBits is one AG's block bitmap at 4 KiB blocks and 1 GiB AGs, laid
// out in 4 KiB bitmap blocks (32256 bits each, so the last of 9 is partial).
const (
	benchBits = 262144
	benchBPB  = (4096 - 64) * 8
)

// fragmented returns a bitmap that is about 90% full in random runs: used
// runs of 1..295 bits alternate with free runs of 1..32 bits. No free run
// reaches 64 bits, so a request for 64 is the worst case: it reads every
// word and fails.
func fragmented() *Bitmap {
	rng := rand.New(rand.NewPCG(90, 10))
	b := New(benchBits, benchBPB)
	for i := uint64(0); i < benchBits; {
		used := min(1+rng.Uint64N(295), benchBits-i)
		b.SetRange(i, used)
		i += used + 1 + rng.Uint64N(32)
	}
	return b
}

// timeEach runs op b.N times with varying hints and reports the median
// time of a call as well as the mean, since a search's cost depends on where
// the hint lands. Only every 8th call is timed, so the clock reads barely
// touch ns/op; they do add a few tens of ns to the median.
func timeEach(b *testing.B, op func(hint uint64)) {
	rng := rand.New(rand.NewPCG(1, 1))
	hints := make([]uint64, 1024)
	for i := range hints {
		hints[i] = rng.Uint64N(benchBits)
	}
	var times []time.Duration
	for i := 0; b.Loop(); i++ {
		hint := hints[i%len(hints)]
		if i%8 != 0 {
			op(hint)
			continue
		}
		t0 := time.Now()
		op(hint)
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "median-ns")
}

func BenchmarkFindFreeRun(b *testing.B) {
	bm := fragmented()
	b.Logf("fill %.1f%%", 100*float64(bm.Weight())/benchBits)
	for _, n := range []uint64{1, 8, 64} {
		for _, align := range []uint64{0, max(n, 8)} {
			b.Run(fmt.Sprintf("n=%d/align=%d", n, align), func(b *testing.B) {
				timeEach(b, func(hint uint64) { bm.FindFreeRun(n, align, hint) })
			})
		}
	}
}

func BenchmarkFindFirstZero(b *testing.B) {
	bm := fragmented()
	b.Run("fragmented", func(b *testing.B) {
		timeEach(b, func(hint uint64) { bm.FindFirstZero(hint) })
	})
	// One free bit at the end: every full block is stepped over by count.
	full := New(benchBits, benchBPB)
	full.SetRange(0, benchBits-1)
	b.Run("one-free", func(b *testing.B) {
		timeEach(b, func(hint uint64) { full.FindFirstZero(hint) })
	})
}

func BenchmarkSetClear(b *testing.B) {
	bm := fragmented()
	b.Run("bit", func(b *testing.B) {
		for i := uint64(0); b.Loop(); i++ {
			j := i * 7919 % benchBits
			bm.Set(j)
			bm.Clear(j)
		}
	})
	b.Run("range-1000", func(b *testing.B) {
		for i := uint64(0); b.Loop(); i++ {
			j := i * 7919 % (benchBits - 1000)
			bm.SetRange(j, 1000)
			bm.ClearRange(j, 1000)
		}
	})
}
