package btree

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"agfs/layout"
	"agfs/wal"
)

// model is the reference: a sorted map.
type model struct {
	keys []string
	m    map[string][]byte
}

func newModel() *model { return &model{m: map[string][]byte{}} }

func (m *model) put(k string, v []byte) {
	if _, ok := m.m[k]; !ok {
		i := sort.SearchStrings(m.keys, k)
		m.keys = slices.Insert(m.keys, i, k)
	}
	m.m[k] = v
}

func (m *model) del(k string) bool {
	if _, ok := m.m[k]; !ok {
		return false
	}
	delete(m.m, k)
	i := sort.SearchStrings(m.keys, k)
	m.keys = slices.Delete(m.keys, i, i+1)
	return true
}

// gen makes keys and values of variable length with shared prefixes and
// extreme bytes, so separators, prefixes and limits are all exercised.
type gen struct {
	r        *rand.Rand
	lim      Limits
	prefixes []string
}

func newGen(seed uint64, lim Limits) *gen {
	g := &gen{r: rand.New(rand.NewPCG(seed, 99)), lim: lim}
	for i := range 4 {
		p := make([]byte, lim.MaxKey/2)
		for j := range p {
			p[j] = byte('p' + i + j%3)
		}
		g.prefixes = append(g.prefixes, string(p))
	}
	return g
}

func (g *gen) length(max int) int {
	switch x := g.r.IntN(100); {
	case x < 60:
		return 1 + g.r.IntN(min(12, max))
	case x < 90:
		return 1 + g.r.IntN(min(64, max))
	default:
		return 1 + g.r.IntN(max)
	}
}

func (g *gen) key() string {
	const alpha = "\x00\x01ab\xfe\xff"
	b := make([]byte, g.length(g.lim.MaxKey))
	for i := range b {
		b[i] = alpha[g.r.IntN(len(alpha))]
	}
	if g.r.IntN(3) == 0 {
		// A long shared prefix: long separators, low fanout.
		p := g.prefixes[g.r.IntN(len(g.prefixes))]
		b = append([]byte(p), b...)
		b = b[:min(len(b), g.lim.MaxKey)]
	}
	return string(b)
}

func (g *gen) val(k string) []byte {
	b := make([]byte, g.length(min(g.lim.MaxValue, g.lim.MaxEntry-len(k))))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

// pick returns an existing key most of the time, a fresh one otherwise.
func (g *gen) pick(m *model) string {
	if len(m.keys) > 0 && g.r.IntN(10) < 8 {
		return m.keys[g.r.IntN(len(m.keys))]
	}
	return g.key()
}

// TestModel runs random Put/Delete/Get/Seek/Floor operations against a
// sorted map, growing the tree to depth ≥ 3 and deleting it back to one
// empty leaf, again and again, committing every few operations, reopening
// the log (empty cache) now and then and checking the whole tree and the
// block accounting after every batch.
func TestModel(t *testing.T) {
	for _, tc := range []struct {
		bs, ops int
	}{{1024, 100_000}, {4096, 40_000}} {
		t.Run(fmt.Sprintf("bs=%d", tc.bs), func(t *testing.T) {
			ops := tc.ops
			if testing.Short() {
				ops /= 10
			}
			runModel(t, tc.bs, ops, uint64(tc.bs))
		})
	}
}

func runModel(t *testing.T, bs, ops int, seed uint64) {
	e := newEnv(t, bs, 8192, 1024, wal.Options{CacheBlocks: 2048})
	cfg := e.cfg(layout.MagicDirNode, 77)
	g := newGen(seed, LimitsFor(bs))
	r := g.r
	m := newModel()

	tx := e.Log.Begin()
	tr, err := Create(tx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	root := tr.Root
	e.Commit(tx)

	const batch = 250
	var total Stats
	growing, target := true, 3
	cycles, maxDepth, reopens := 0, 0, 0
	var counts [6]int
	nextCommit := 1
	done := 0
	tx = e.Log.Begin()
	tr.SetTx(tx)
	for done < ops {
		for range batch {
			done++
			op := r.IntN(100)
			switch {
			case growing && op < 60 || !growing && op < 15: // put
				counts[0]++
				k := g.pick(m)
				if r.IntN(2) == 0 {
					k = g.key()
				}
				v := g.val(k)
				if err := tr.Put([]byte(k), v); err != nil {
					t.Fatalf("put %x: %v", k, err)
				}
				m.put(k, v)
			case op < 70: // delete
				counts[1]++
				k := g.pick(m)
				ok, err := tr.Delete([]byte(k))
				if err != nil {
					t.Fatalf("delete %x: %v", k, err)
				}
				if want := m.del(k); ok != want {
					t.Fatalf("delete %x = %v, want %v", k, ok, want)
				}
			case op < 82: // get
				counts[2]++
				k := g.pick(m)
				v, ok, err := tr.Get([]byte(k))
				want, wok := m.m[k]
				if err != nil || ok != wok || !bytes.Equal(v, want) {
					t.Fatalf("get %x = %x %v %v, want %x %v", k, v, ok, err, want, wok)
				}
			case op < 92: // seek, forward then maybe back
				counts[3]++
				k := g.pick(m)
				if r.IntN(4) == 0 && len(k) > 1 {
					k = k[:len(k)-1] // a prefix: between entries
				}
				it := tr.Seek([]byte(k))
				i := sort.SearchStrings(m.keys, k)
				n := 1 + r.IntN(8)
				if r.IntN(3) == 0 {
					for j := 0; j < n; j++ {
						if i-1-j < 0 {
							if it.Prev() {
								t.Fatalf("seek %x prev: got %x past the start", k, it.Key())
							}
							break
						}
						want := m.keys[i-1-j]
						if !it.Prev() || string(it.Key()) != want || !bytes.Equal(it.Value(), m.m[want]) {
							t.Fatalf("seek %x prev %d: got %x (err %v), want %x", k, j, it.Key(), it.Err(), want)
						}
					}
				} else {
					for j := 0; j < n; j++ {
						if i+j >= len(m.keys) {
							if it.Next() {
								t.Fatalf("seek %x: got %x past the end", k, it.Key())
							}
							break
						}
						want := m.keys[i+j]
						if !it.Next() || string(it.Key()) != want || !bytes.Equal(it.Value(), m.m[want]) {
							t.Fatalf("seek %x next %d: got %x (err %v), want %x", k, j, it.Key(), it.Err(), want)
						}
					}
				}
				if it.Err() != nil {
					t.Fatal(it.Err())
				}
			default: // floor
				counts[4]++
				k := g.pick(m)
				if r.IntN(2) == 0 {
					k = g.key()
				}
				fk, fv, ok, err := tr.Floor([]byte(k))
				if err != nil {
					t.Fatal(err)
				}
				i := sort.Search(len(m.keys), func(i int) bool { return m.keys[i] > k }) - 1
				if i < 0 {
					if ok {
						t.Fatalf("floor %x = %x, want none", k, fk)
					}
				} else if want := m.keys[i]; !ok || string(fk) != want || !bytes.Equal(fv, m.m[want]) {
					t.Fatalf("floor %x = %x %v, want %x", k, fk, ok, want)
				}
			}
			if tr.RootChanged() {
				root = tr.Root // "persist" it
			}
			nextCommit--
			if nextCommit == 0 {
				e.Commit(tx)
				nextCommit = 1 + r.IntN(8)
				tx = e.Log.Begin()
				tr.SetTx(tx)
			}
		}
		// End of batch: commit, sometimes reopen the log, check everything.
		e.Commit(tx)
		if err := e.Log.CheckCache(nil); err != nil {
			t.Fatalf("after %d ops: %v", done, err) // a node changed in place
		}
		if r.IntN(8) == 0 {
			e.Reopen()
			reopens++
		}
		tx = e.Log.Begin()
		total.add(tr.Stats())
		if tr, err = Open(tx, cfg, root); err != nil {
			t.Fatal(err)
		}
		if err := tr.Check(); err != nil {
			t.Fatalf("after %d ops: %v", done, err)
		}
		if err := Check(tx, cfg, root); err != nil {
			t.Fatal(err)
		}
		if nodes := countNodes(t, tr, e.Alloc); nodes != e.Alloc.InUse() {
			t.Fatalf("after %d ops: %d nodes, %d blocks allocated", done, nodes, e.Alloc.InUse())
		}
		if r.IntN(4) == 0 {
			scan(t, tr, m)
		}
		d, err := tr.Depth()
		if err != nil {
			t.Fatal(err)
		}
		maxDepth = max(maxDepth, d)
		switch {
		case growing && d >= target && len(m.keys) > 300:
			growing = false
			if bs <= 1024 {
				target = 7 - target // alternately 3 and 4 levels
			}
		case !growing && len(m.keys) < 40:
			// Finish the shrink: delete the rest in random order.
			for _, i := range r.Perm(len(m.keys)) {
				k := m.keys[i]
				if ok, err := tr.Delete([]byte(k)); !ok || err != nil {
					t.Fatalf("delete %x: %v %v", k, ok, err)
				}
			}
			m = newModel()
			if tr.RootChanged() {
				root = tr.Root
			}
			e.Commit(tx) // frees take effect
			tx = e.Log.Begin()
			tr.SetTx(tx)
			if err := tr.Check(); err != nil {
				t.Fatal(err)
			}
			if d, _ := tr.Depth(); d != 1 || e.Alloc.InUse() != 1 {
				t.Fatalf("empty tree: depth %d, %d blocks allocated, want 1 and 1", d, e.Alloc.InUse())
			}
			growing = true
			cycles++
		}
	}
	e.Commit(tx)
	tx = e.Log.Begin()
	tr.SetTx(tx)
	if err := tr.Destroy(); err != nil {
		t.Fatal(err)
	}
	e.Commit(tx)
	if n := e.Alloc.InUse(); n != 0 {
		t.Fatalf("after Destroy: %d blocks allocated", n)
	}
	if cycles < 2 || maxDepth < 3 {
		t.Fatalf("only %d grow/shrink cycles, max depth %d", cycles, maxDepth)
	}
	total.add(tr.Stats())
	st := total
	t.Logf("%d ops (put %d, delete %d, get %d, seek %d, floor %d): %d grow/shrink cycles, max depth %d, %d log reopens; splits %d merges %d frees %d",
		done, counts[0], counts[1], counts[2], counts[3], counts[4], cycles, maxDepth, reopens, st.Splits, st.Merges, st.Frees)
}

// scan compares a full forward and backward iteration with the model.
func scan(t *testing.T, tr *Tree, m *model) {
	t.Helper()
	it := tr.Seek(nil)
	for i, k := range m.keys {
		if !it.Next() || string(it.Key()) != k || !bytes.Equal(it.Value(), m.m[k]) {
			t.Fatalf("scan %d: got %x (err %v), want %x", i, it.Key(), it.Err(), k)
		}
	}
	if it.Next() {
		t.Fatalf("scan: extra key %x", it.Key())
	}
	it = tr.SeekLast()
	for i := len(m.keys) - 1; i >= 0; i-- {
		k := m.keys[i]
		if !it.Prev() || string(it.Key()) != k {
			t.Fatalf("reverse scan %d: got %x (err %v), want %x", i, it.Key(), it.Err(), k)
		}
	}
	if it.Prev() || it.Err() != nil {
		t.Fatalf("reverse scan: extra key %x (err %v)", it.Key(), it.Err())
	}
}

func (s *Stats) add(o Stats) {
	s.Reads += o.Reads
	s.Writes += o.Writes
	s.WriteBytes += o.WriteBytes
	s.Inits += o.Inits
	s.Splits += o.Splits
	s.Merges += o.Merges
	s.Frees += o.Frees
}
