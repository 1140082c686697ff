package ag

import (
	"math/rand/v2"
	"sync"
	"testing"

	"agfs/bitmap"
	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// benchParams: 4 AGs of 16384 4-KiB blocks (64 MiB each), default inode
// density, 16 MiB log.
var benchParams = layout.Params{
	DeviceBytes: 4 * 16384 * 4096,
	BlockSize:   4096,
	AGCount:     4,
	LogBytes:    16 << 20,
}

func benchEnv(b *testing.B) *env {
	sb := newSB(b, benchParams)
	dev := disk.NewMem(int64(sb.BlockCount) * int64(sb.BlockSize))
	mkfs(b, dev, sb)
	e := &env{t: b, dev: dev, sb: sb}
	e.open()
	b.Cleanup(func() { e.log.Close() })
	return e
}

// BenchmarkAlloc measures allocations of 1 and 16 blocks, each in its own
// transaction committed without waiting, over 4 AGs, from 1 goroutine
// (round robin over the AGs) and from 4 (one per AG). When an AG runs low,
// its goroutine frees what it allocated, 512 extents per transaction; that
// cost is included, amortised (about one free per allocation).
func BenchmarkAlloc(b *testing.B) {
	for _, n := range []uint64{1, 16} {
		for _, workers := range []int{1, 4} {
			b.Run(benchName(n, workers), func(b *testing.B) {
				e := benchEnv(b)
				per := make([]int, workers)
				for i := range b.N {
					per[i%workers]++
				}
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						benchWorker(b, e, w, workers, per[w], n)
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
			})
		}
	}
}

func benchName(n uint64, workers int) string {
	s := "1block"
	if n == 16 {
		s = "16blocks"
	}
	if workers == 1 {
		return s + "/1goroutine"
	}
	return s + "/4goroutines"
}

func benchWorker(b *testing.B, e *env, w, workers, count int, n uint64) {
	var mine [4][]Extent
	ags := []uint32{uint32(w)}
	if workers == 1 {
		ags = []uint32{0, 1, 2, 3}
	}
	for i := range count {
		ag := ags[i%len(ags)]
		a := e.gs.AG(ag)
		if a.pubFree.Load() < a.length/4 {
			// Give back all we have, in transactions of 512 frees in one
			// AG each.
			for fa := range mine {
				l := mine[fa]
				for len(l) > 0 {
					k := min(len(l), 512)
					if err := e.tx(func(tx *wal.Tx) error {
						for _, x := range l[:k] {
							if err := e.gs.FreeBlocks(tx, x.Start, x.Len); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Error(err)
						return
					}
					l = l[k:]
				}
				mine[fa] = mine[fa][:0]
			}
		}
		tx := e.log.Begin()
		x, err := e.gs.AllocBlocks(tx, n, a.start, Near)
		if err != nil {
			tx.Abort()
			b.Error(err)
			return
		}
		if _, err := tx.Commit(); err != nil {
			b.Error(err)
			return
		}
		for _, ext := range x {
			g := e.sb.AGOf(ext.Start)
			mine[g] = append(mine[g], ext)
		}
	}
}

// fragmented returns a 262,144-block bitmap about 90% full: used runs of
// 5–40 blocks between free runs of 1–3 blocks, with a free run of 8–40
// blocks once every ~150 free runs.
func fragmented() *bitmap.Bitmap {
	const nbits = 262144
	bm := bitmap.New(nbits, (4096-layout.HeaderSize)*8)
	rng := rand.New(rand.NewPCG(90, 10))
	for pos := uint64(0); pos < nbits; {
		used := min(5+rng.Uint64N(36), nbits-pos)
		bm.SetRange(pos, used)
		pos += used
		free := 1 + rng.Uint64N(3)
		if rng.IntN(150) == 0 {
			free = 8 + rng.Uint64N(33)
		}
		pos += free
	}
	return bm
}

// BenchmarkFindFree compares finding room for n blocks near a random goal
// in a 262,144-block AG 90% full and fragmented: the free-extent index
// (what AllocBlocks uses) against a bitmap scan (FindFreeRun). Runs of 8
// blocks are found within a few thousand bits of any goal; runs of 32 are
// rare, so the scan goes far.
func BenchmarkFindFree(b *testing.B) {
	bm := fragmented()
	idx := buildFreeIndex(bm)
	_, longest, _ := idx.longest()
	b.Logf("%d blocks, %.1f%% used, %d free runs, longest %d",
		bm.Len(), 100*float64(bm.Weight())/float64(bm.Len()), idx.byStart.Len(), longest)
	goals := make([]uint64, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range goals {
		goals[i] = rng.Uint64N(bm.Len())
	}
	for _, n := range []uint64{8, 32} {
		name := map[uint64]string{8: "8blocks", 32: "32blocks"}[n]
		b.Run(name+"/index-near", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				g := goals[i%len(goals)]
				if s, l, ok := idx.containing(g); ok && s+l-g >= n {
					continue
				}
				if _, _, ok := idx.firstFit(g, n); !ok {
					if _, _, ok := idx.lastFit(g, n); !ok {
						b.Fatal("no run")
					}
				}
			}
		})
		b.Run(name+"/bitmap-near", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, ok := bm.FindFreeRun(n, 1, goals[i%len(goals)]); !ok {
					b.Fatal("no run")
				}
			}
		})
		b.Run(name+"/index-bestfit", func(b *testing.B) {
			for b.Loop() {
				if _, _, ok := idx.bestFit(n); !ok {
					b.Fatal("no run")
				}
			}
		})
		b.Run(name+"/bitmap-bestfit", func(b *testing.B) {
			// Without an index, best fit means walking every free run.
			for b.Loop() {
				best := uint64(0)
				for i := uint64(0); i < bm.Len(); {
					s, ok := bm.NextClear(i)
					if !ok {
						break
					}
					e, ok := bm.NextSet(s)
					if !ok {
						e = bm.Len()
					}
					if l := e - s; l >= n && (best == 0 || l < best) {
						best = l
					}
					i = e
				}
				if best == 0 {
					b.Fatal("no run")
				}
			}
		})
	}
	// An allocation and its free, both kept in the index (the steady state
	// of a busy AG).
	b.Run("index-alloc+free", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			g := goals[i%len(goals)]
			s, _, ok := idx.firstFit(g, 8)
			if !ok {
				s, _, _ = idx.firstFit(0, 8)
			}
			idx.remove(s, 8)
			idx.insert(s, 8)
		}
	})
	b.Run("build-index", func(b *testing.B) {
		for b.Loop() {
			buildFreeIndex(bm)
		}
	})
}
