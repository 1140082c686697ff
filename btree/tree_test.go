package btree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"agfs/internal/treetest"
	"agfs/layout"
	"agfs/wal"
)

func TestLimits(t *testing.T) {
	want := map[int]Limits{
		1024:  {218, 226, 226},
		2048:  {474, 482, 482},
		4096:  {512, 512, 994},
		8192:  {512, 512, 1024},
		65536: {512, 512, 1024},
	}
	for bs, w := range want {
		l := LimitsFor(bs)
		if l != w {
			t.Errorf("LimitsFor(%d) = %+v, want %+v (update the package doc)", bs, l, w)
		}
		c := bs - NodeHeaderSize
		if 4*cost(l.MaxEntry, 0) > c || 4*cost(l.MaxKey, childSize) > c || l.MaxValue > l.MaxEntry {
			t.Errorf("bs %d: four largest entries do not fit in %d bytes", bs, c)
		}
	}

	e := newEnv(t, 1024, 256, 64, wal.Options{})
	tx := e.Log.Begin()
	defer tx.Abort()
	tr, err := Create(tx, e.cfg(layout.MagicXattrNode, 3))
	if err != nil {
		t.Fatal(err)
	}
	lim := tr.Limits()
	for _, c := range []struct{ k, v int }{{lim.MaxKey + 1, 0}, {1, lim.MaxValue + 1}, {lim.MaxKey, lim.MaxEntry - lim.MaxKey + 1}} {
		err := tr.Put(make([]byte, c.k), make([]byte, c.v))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Put(%d, %d bytes) = %v, want ErrTooLarge", c.k, c.v, err)
		}
	}
	// Largest entries: every node holds at least four.
	for i := range 40 {
		k := bytes.Repeat([]byte{byte(i)}, lim.MaxKey)
		if err := tr.Put(k, make([]byte, lim.MaxEntry-lim.MaxKey)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	err = tr.Walk(func(blk uint64, level int) error {
		b, err := tx.Read(blk, nil)
		if err != nil {
			return err
		}
		if n := (&node{b: b}); n.count() < 2 {
			return fmt.Errorf("node %d level %d: %d entries", blk, level, n.count())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// occupancy returns the tree's leaves and their average fill.
func occupancy(t *testing.T, tx *wal.Tx, tr *Tree) (leaves int, fill float64) {
	t.Helper()
	used := 0
	err := tr.Walk(func(blk uint64, level int) error {
		if level > 0 {
			return nil
		}
		b, err := tx.Read(blk, nil)
		if err != nil {
			return err
		}
		n := &node{b: b}
		leaves++
		used += n.used()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return leaves, float64(used) / float64(leaves*(tr.cfg.BlockSize-NodeHeaderSize))
}

// TestSequential: ascending keys (extents appended to a file) fill the
// nodes completely; descending and ascending deletes empty the tree.
func TestSequential(t *testing.T) {
	e := newEnv(t, 4096, 4096, 512, wal.Options{})
	cfg := e.cfg(layout.MagicExtentNode, 12)
	tx := e.Log.Begin()
	tr, err := Create(tx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40000
	val := make([]byte, 16)
	for i := range n {
		binary.LittleEndian.PutUint64(val, uint64(i))
		if err := tr.Put(key8(uint64(i)), val); err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 {
			e.Commit(tx)
			tx = e.Log.Begin()
			tr.SetTx(tx)
		}
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	leaves, fill := occupancy(t, tx, tr)
	d, _ := tr.Depth()
	t.Logf("%d ascending keys: depth %d, %d leaves, %.1f%% full", n, d, leaves, 100*fill)
	if fill < 0.97 {
		t.Fatalf("ascending inserts left the leaves %.1f%% full", 100*fill)
	}
	// Delete the upper half descending, then the rest ascending.
	for i := n - 1; i >= 0; i-- {
		k := uint64(i)
		if i < n/2 {
			k = uint64(n/2 - 1 - i)
		}
		if ok, err := tr.Delete(key8(k)); !ok || err != nil {
			t.Fatalf("delete %d: %v %v", k, ok, err)
		}
		if i%4999 == 0 {
			if err := tr.Check(); err != nil {
				t.Fatalf("at %d: %v", i, err)
			}
			e.Commit(tx)
			tx = e.Log.Begin()
			tr.SetTx(tx)
		}
	}
	e.Commit(tx)
	tx = e.Log.Begin()
	defer tx.Abort()
	tr.SetTx(tx)
	if d, err := tr.Depth(); d != 1 || err != nil || e.Alloc.InUse() != 1 {
		t.Fatalf("empty: depth %d (%v), %d blocks", d, err, e.Alloc.InUse())
	}
}

// TestMerge: deleting most entries at random merges the sparse leaves.
func TestMerge(t *testing.T) {
	e := newEnv(t, 1024, 4096, 512, wal.Options{})
	cfg := e.cfg(layout.MagicDirNode, 8)
	tx := e.Log.Begin()
	tr, err := Create(tx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	keys := r.Perm(20000)
	for i, k := range keys {
		if err := tr.Put(key8(uint64(k)), []byte("0123456789abcdef")); err != nil {
			t.Fatal(err)
		}
		if i%200 == 0 {
			e.Commit(tx)
			tx = e.Log.Begin()
			tr.SetTx(tx)
		}
	}
	before, fill0 := occupancy(t, tx, tr)
	for i, k := range keys[:19000] {
		if ok, err := tr.Delete(key8(uint64(k))); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if i%200 == 0 {
			e.Commit(tx)
			tx = e.Log.Begin()
			tr.SetTx(tx)
		}
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	after, fill := occupancy(t, tx, tr)
	t.Logf("20000 random keys: %d leaves %.0f%% full; 1000 left: %d leaves %.0f%% full; %d merges",
		before, 100*fill0, after, 100*fill, tr.Stats().Merges)
	if fill < 0.4 || tr.Stats().Merges == 0 {
		t.Fatalf("after deletes the leaves are %.0f%% full (%d merges)", 100*fill, tr.Stats().Merges)
	}
	e.Commit(tx)
}

// TestFailedOpChangesNothing: allocations failing at random points in
// splits leave the transaction as it was, and it can go on.
func TestFailedOpChangesNothing(t *testing.T) {
	e := newEnv(t, 1024, 4096, 512, wal.Options{})
	cfg := e.cfg(layout.MagicDirNode, 8)
	tx := e.Log.Begin()
	tr, err := Create(tx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 7))
	m := map[uint64]bool{}
	failures := 0
	for i := range 6000 {
		k := r.Uint64N(1 << 20)
		e.Alloc.Fail = 1 + r.IntN(4)
		err := tr.Put(key8(k), bytes.Repeat([]byte{1}, 40))
		switch {
		case errors.Is(err, treetest.ErrNoSpace):
			failures++
		case err != nil:
			t.Fatal(err)
		default:
			m[k] = true
		}
		e.Alloc.Fail = 0
		if i%50 == 0 {
			if err := tr.Check(); err != nil {
				t.Fatalf("after %d puts: %v", i, err)
			}
			e.Commit(tx)
			tx = e.Log.Begin()
			tr.SetTx(tx)
			if n := countNodes(t, tr, e.Alloc); n != e.Alloc.InUse() {
				t.Fatalf("%d nodes, %d blocks allocated", n, e.Alloc.InUse())
			}
		}
	}
	it := tr.Seek(nil)
	n := 0
	for it.Next() {
		if !m[binary.BigEndian.Uint64(it.Key())] {
			t.Fatalf("key %x was not put", it.Key())
		}
		n++
	}
	if n != len(m) || it.Err() != nil {
		t.Fatalf("%d keys, want %d (%v)", n, len(m), it.Err())
	}
	if failures < 50 {
		t.Fatalf("only %d failed puts", failures)
	}
	e.Commit(tx)
}

// TestLoggedBytes measures what a Put logs, for 8-byte keys and 16-byte
// values: the tree's own writes (ranges passed to tx.Write and whole
// blocks to tx.Init) and what the log appends (with the log's images of
// blocks first changed after a checkpoint, and commit records).
func TestLoggedBytes(t *testing.T) {
	for _, order := range []string{"random", "ascending"} {
		t.Run(order, func(t *testing.T) {
			const bs, warm, measured = 4096, 20000, 10000
			e := newEnv(t, bs, 4096, 4096, wal.Options{CacheBlocks: 8192})
			cfg := e.cfg(layout.MagicDirNode, 8)
			tx := e.Log.Begin()
			tr, err := Create(tx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(3, 3))
			val := make([]byte, 16)
			next := uint64(0)
			key := func() []byte {
				next++
				if order == "random" {
					return key8(r.Uint64())
				}
				return key8(next)
			}
			for range warm {
				if err := tr.Put(key(), val); err != nil {
					t.Fatal(err)
				}
			}
			e.Commit(tx)
			if err := e.Log.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			s0, w0 := tr.Stats(), e.Log.Stats()
			for i := range measured {
				tx = e.Log.Begin()
				tr.SetTx(tx)
				val[0] = byte(i)
				if err := tr.Put(key(), val); err != nil {
					t.Fatal(err)
				}
				e.Commit(tx)
			}
			s1, w1 := tr.Stats(), e.Log.Stats()
			writes, wbytes, inits := s1.Writes-s0.Writes, s1.WriteBytes-s0.WriteBytes, s1.Inits-s0.Inits
			// A delta record is 13 bytes of header and the bytes before
			// and after; an init record 9 bytes and the block.
			records := 13*writes + 2*wbytes + inits*(9+bs)
			perPut := float64(records) / measured
			t.Logf("%s puts at %d entries: %.2f ranges and %.1f bytes written per put; %.1f delta+init record bytes per put (%.1f in deltas alone); log appends %.1f bytes per put (one commit per put: images of first-touched blocks and a 21-byte commit record included)",
				order, warm, float64(writes)/measured, float64(wbytes)/measured, perPut,
				float64(13*writes+2*wbytes)/measured, float64(w1.BytesLogged-w0.BytesLogged)/measured)
			if perPut > 500 {
				t.Fatalf("%.0f logged bytes per put", perPut)
			}
		})
	}
}

// TestEmptyAndRoot: an empty tree, the root moving on a split and back on
// a collapse, and a destroyed tree.
func TestEmptyAndRoot(t *testing.T) {
	e := newEnv(t, 1024, 256, 64, wal.Options{})
	cfg := e.cfg(layout.MagicExtentNode, 3)
	tx := e.Log.Begin()
	tr, err := Create(tx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tr.RootChanged() {
		t.Fatal("RootChanged after Create")
	}
	if _, ok, err := tr.Get(nil); ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, _, ok, err := tr.Floor([]byte{0xff}); ok || err != nil {
		t.Fatal(ok, err)
	}
	if it := tr.Seek(nil); it.Next() || it.Prev() || it.Err() != nil {
		t.Fatal("iterator over an empty tree moved")
	}
	if ok, err := tr.Delete([]byte("x")); ok || err != nil {
		t.Fatal(ok, err)
	}
	// The empty key and value are allowed.
	if err := tr.Put(nil, nil); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := tr.Get([]byte{}); !ok || err != nil || len(v) != 0 {
		t.Fatal(v, ok, err)
	}
	root := tr.Root
	for i := 0; !tr.RootChanged(); i++ {
		if err := tr.Put(key8(uint64(i)), make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := tr.Depth(); d != 2 || tr.Root == root {
		t.Fatalf("after the root split: depth %d, root %d (was %d)", d, tr.Root, root)
	}
	e.Commit(tx)
	tx = e.Log.Begin()
	tr.SetTx(tx)
	if tr.RootChanged() {
		t.Fatal("RootChanged after SetTx")
	}
	it := tr.SeekLast()
	for it.Prev() {
		if ok, err := tr.Delete(bytes.Clone(it.Key())); !ok || err != nil {
			t.Fatal(ok, err)
		}
		it = tr.SeekLast() // deletes invalidate iterators
	}
	if d, _ := tr.Depth(); d != 1 || !tr.RootChanged() {
		t.Fatalf("after deleting everything: depth %d, root changed %v", d, tr.RootChanged())
	}
	if err := tr.Destroy(); err != nil {
		t.Fatal(err)
	}
	if tr.Root != 0 {
		t.Fatal("Root after Destroy")
	}
	if err := tr.Put([]byte("a"), nil); err == nil {
		t.Fatal("Put on a destroyed tree")
	}
	e.Commit(tx)
	if e.Alloc.InUse() != 0 {
		t.Fatalf("%d blocks in use", e.Alloc.InUse())
	}
	if _, err := Open(e.Log.Begin(), Config{Owner: 3, BlockSize: 1024, Alloc: e.Alloc}, 1); err == nil {
		t.Fatal("Open without a magic")
	}
	if _, err := Create(e.Log.Begin(), Config{Magic: 1, BlockSize: 1000, Alloc: e.Alloc}); err == nil {
		t.Fatal("Create with a 1000-byte block")
	}
}
