package btree

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"agfs/layout"
	"agfs/wal"
)

const benchEntries = 1_000_000

// benchFixture is a tree of benchEntries entries (8-byte keys, 16-byte
// values) over a Mem device, built once per process and kept: the
// benchmark functions run several times with growing b.N.
type benchFixture struct {
	e    *env
	cfg  Config
	root uint64
	keys func(i uint64) []byte
	next uint64 // keys [0, next) are in the tree
}

var fixtures = map[string]*benchFixture{}

// keyRandom maps i to a pseudo-random 8-byte key (a bijection, so keys
// are distinct): hashed directory names.
func keyRandom(i uint64) []byte {
	x := i*0x9E3779B97F4A7C15 + 1
	x ^= x >> 31
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 29
	return binary.BigEndian.AppendUint64(nil, x)
}

func fixture(b *testing.B, name string, keys func(uint64) []byte) *benchFixture {
	if f := fixtures[name]; f != nil {
		f.e.T = b
		return f
	}
	b.Helper()
	// The log stays open for the later runs, until the process ends.
	e := makeEnv(b, 4096, 40000, 8192, wal.Options{CacheBlocks: 1 << 16})
	f := &benchFixture{e: e, cfg: e.cfg(layout.MagicDirNode, 42), keys: keys}
	tx := e.Log.Begin()
	tr, err := Create(tx, f.cfg)
	if err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 16)
	for f.next = 0; f.next < benchEntries; f.next++ {
		binary.LittleEndian.PutUint64(val, f.next)
		if err := tr.Put(keys(f.next), val); err != nil {
			b.Fatal(err)
		}
		if f.next%1000 == 999 {
			e.Commit(tx)
			tx = e.Log.Begin()
			tr.SetTx(tx)
		}
	}
	e.Commit(tx)
	f.root = tr.Root
	fixtures[name] = f
	return f
}

func (f *benchFixture) open(b *testing.B) (*wal.Tx, *Tree) {
	tx := f.e.Log.Begin()
	tr, err := Open(tx, f.cfg, f.root)
	if err != nil {
		b.Fatal(err)
	}
	return tx, tr
}

func reportDepth(b *testing.B, tr *Tree) {
	d, err := tr.Depth()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(d), "depth")
}

// benchPut inserts new keys into a tree of a million entries, committing
// every 100 puts.
func benchPut(b *testing.B, name string, keys func(uint64) []byte) {
	f := fixture(b, name, keys)
	tx, tr := f.open(b)
	val := make([]byte, 16)
	s0 := tr.Stats()
	b.ResetTimer()
	for i := range b.N {
		if err := tr.Put(keys(f.next), val); err != nil {
			b.Fatal(err)
		}
		f.next++
		if i%100 == 99 {
			if _, err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			tx = f.e.Log.Begin()
			tr.SetTx(tx)
		}
	}
	b.StopTimer()
	if _, err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	f.root = tr.Root
	s := tr.Stats()
	b.ReportMetric(float64(13*(s.Writes-s0.Writes)+2*(s.WriteBytes-s0.WriteBytes)+(s.Inits-s0.Inits)*(9+4096))/float64(b.N), "logB/op")
	tx, tr = f.open(b)
	reportDepth(b, tr)
	tx.Abort()
}

func BenchmarkPut(b *testing.B) {
	b.Run("random-1M", func(b *testing.B) { benchPut(b, "random", keyRandom) })
	b.Run("ascending-1M", func(b *testing.B) { benchPut(b, "ascending", key8) })
}

// BenchmarkGet looks up existing keys at random in a tree of a million
// entries (all cached).
func BenchmarkGet(b *testing.B) {
	b.Run("random-1M", func(b *testing.B) {
		f := fixture(b, "random", keyRandom)
		tx, tr := f.open(b)
		defer tx.Abort()
		r := rand.New(rand.NewPCG(1, 1))
		b.ResetTimer()
		for range b.N {
			if _, ok, err := tr.Get(keyRandom(r.Uint64N(benchEntries))); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
		b.StopTimer()
		reportDepth(b, tr)
	})
}

// BenchmarkFloor looks up the entry at or before random keys.
func BenchmarkFloor(b *testing.B) {
	f := fixture(b, "ascending", key8)
	tx, tr := f.open(b)
	defer tx.Abort()
	r := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for range b.N {
		if _, _, ok, err := tr.Floor(key8(r.Uint64N(benchEntries))); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkScan iterates over entries, reported per entry.
func BenchmarkScan(b *testing.B) {
	f := fixture(b, "ascending", key8)
	tx, tr := f.open(b)
	defer tx.Abort()
	b.ResetTimer()
	it := tr.Seek(nil)
	for range b.N {
		if !it.Next() {
			if it.Err() != nil {
				b.Fatal(it.Err())
			}
			it = tr.Seek(nil)
		}
	}
}
