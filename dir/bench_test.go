package dir

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"agfs/wal"
)

// BenchmarkDir measures Lookup and Insert+Remove in directories of 1k,
// 100k and 1M entries (4 KiB blocks, the tree cached). Node reads per
// operation (reads/op) follow the tree's depth: log n.
//
//	go test -run '^$' -bench Dir -benchtime 200000x ./dir
func BenchmarkDir(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		if testing.Short() && n > 100_000 {
			continue
		}
		e := newEnv(b, 4096, 40_000, 20_000, wal.Options{CacheBlocks: 65536}, nil)
		name := func(i int) string { return fmt.Sprintf("file-%08d", i) }
		for i := range n {
			if _, err := e.d.Insert(name(i), uint64(i+1), syscall.DT_REG); err != nil {
				b.Fatal(err)
			}
			if i%1000 == 999 {
				e.commit()
			}
		}
		e.commit()
		depth, _ := e.d.Tree().Depth()
		b.Run(fmt.Sprintf("lookup/n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			reads := e.d.Tree().Stats().Reads
			b.ResetTimer()
			for range b.N {
				if _, _, err := e.d.Lookup(name(r.IntN(n))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(e.d.Tree().Stats().Reads-reads)/float64(b.N), "reads/op")
			b.ReportMetric(float64(depth), "depth")
		})
		b.Run(fmt.Sprintf("lookup-miss/n=%d", n), func(b *testing.B) {
			for i := range b.N {
				if _, _, err := e.d.Lookup(fmt.Sprintf("nope-%d", i)); err != syscall.ENOENT {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("insert+remove/n=%d", n), func(b *testing.B) {
			reads := e.d.Tree().Stats().Reads
			for i := range b.N {
				nm := fmt.Sprintf("new-%08d", i)
				if _, err := e.d.Insert(nm, 7, syscall.DT_REG); err != nil {
					b.Fatal(err)
				}
				if _, _, err := e.d.Remove(nm); err != nil {
					b.Fatal(err)
				}
				if i%500 == 499 {
					e.commit()
				}
			}
			e.commit()
			b.ReportMetric(float64(e.d.Tree().Stats().Reads-reads)/float64(b.N), "reads/op")
		})
		b.Run(fmt.Sprintf("insert/n=%d", n), func(b *testing.B) {
			// Insert fresh names in chunks of n/10 (at most 500), each
			// committed and then removed with the timer stopped, so the
			// directory stays within 10% of n.
			chunk := min(n/10, 500)
			for done := 0; done < b.N; {
				k := min(chunk, b.N-done)
				for i := range k {
					if _, err := e.d.Insert(fmt.Sprintf("more-%08d", i), 7, syscall.DT_REG); err != nil {
						b.Fatal(err)
					}
				}
				e.commit()
				b.StopTimer()
				for i := range k {
					if _, _, err := e.d.Remove(fmt.Sprintf("more-%08d", i)); err != nil {
						b.Fatal(err)
					}
				}
				e.commit()
				b.StartTimer()
				done += k
			}
		})
		if _, err := e.tx.Commit(); err != nil {
			b.Fatal(err)
		}
		e.tx = nil
		e.Log.Close()
		e.Log = nil
	}
}
