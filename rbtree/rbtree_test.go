package rbtree

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// model is a sorted slice of keys with a map of values: the obviously
// correct ordered map the tree is compared against.
type model struct {
	keys []int
	vals map[int]int
}

func newModel() *model { return &model{vals: map[int]int{}} }

func (m *model) put(k, v int) bool {
	_, had := m.vals[k]
	m.vals[k] = v
	if !had {
		i, _ := slices.BinarySearch(m.keys, k)
		m.keys = slices.Insert(m.keys, i, k)
	}
	return !had
}

func (m *model) del(k int) (int, bool) {
	v, had := m.vals[k]
	if had {
		delete(m.vals, k)
		i, _ := slices.BinarySearch(m.keys, k)
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	return v, had
}

func (m *model) ceil(k int) (int, bool) {
	i := sort.SearchInts(m.keys, k)
	if i == len(m.keys) {
		return 0, false
	}
	return m.keys[i], true
}

func (m *model) floor(k int) (int, bool) {
	i := sort.SearchInts(m.keys, k+1) - 1
	if i < 0 {
		return 0, false
	}
	return m.keys[i], true
}

// runModel performs ops random operations on keys in [0, keyRange) and
// compares every result with the model; with check set it also verifies the
// invariants after every operation.
func runModel(t *testing.T, seed uint64, ops, keyRange int, check bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	tr := New[int, int](cmp.Compare[int])
	m := newModel()
	for op := range ops {
		k := rng.IntN(keyRange)
		switch r := rng.IntN(100); {
		case r < 35:
			v := rng.Int()
			if got, want := tr.Put(k, v), m.put(k, v); got != want {
				t.Fatalf("op %d: Put(%d) added=%v, want %v", op, k, got, want)
			}
		case r < 45:
			v := rng.Int()
			_, had := m.vals[k]
			if got := tr.Insert(k, v); got == had {
				t.Fatalf("op %d: Insert(%d) added=%v with key present=%v", op, k, got, had)
			}
			if !had {
				m.put(k, v)
			}
		case r < 75:
			gv, gok := tr.Delete(k)
			wv, wok := m.del(k)
			if gok != wok || gv != wv {
				t.Fatalf("op %d: Delete(%d) = %d,%v, want %d,%v", op, k, gv, gok, wv, wok)
			}
		case r < 80:
			gk, gv, gok := tr.DeleteMin()
			if len(m.keys) == 0 {
				if gok {
					t.Fatalf("op %d: DeleteMin on empty tree returned %d", op, gk)
				}
				break
			}
			wk := m.keys[0]
			wv, _ := m.del(wk)
			if !gok || gk != wk || gv != wv {
				t.Fatalf("op %d: DeleteMin = %d,%d,%v, want %d,%d", op, gk, gv, gok, wk, wv)
			}
		case r < 88:
			gv, gok := tr.Get(k)
			wv, wok := m.vals[k]
			if gok != wok || gv != wv || tr.Has(k) != wok {
				t.Fatalf("op %d: Get(%d) = %d,%v, want %d,%v", op, k, gv, gok, wv, wok)
			}
		case r < 92:
			gk, gv, gok := tr.Ceil(k)
			wk, wok := m.ceil(k)
			if gok != wok || (wok && (gk != wk || gv != m.vals[wk])) {
				t.Fatalf("op %d: Ceil(%d) = %d,%v, want %d,%v", op, k, gk, gok, wk, wok)
			}
		case r < 96:
			gk, gv, gok := tr.Floor(k)
			wk, wok := m.floor(k)
			if gok != wok || (wok && (gk != wk || gv != m.vals[wk])) {
				t.Fatalf("op %d: Floor(%d) = %d,%v, want %d,%v", op, k, gk, gok, wk, wok)
			}
		case r < 98:
			// Ascend a few keys from k.
			i := sort.SearchInts(m.keys, k)
			n := 0
			tr.Ascend(k, func(gk, gv int) bool {
				if i+n >= len(m.keys) || m.keys[i+n] != gk || m.vals[gk] != gv {
					t.Fatalf("op %d: Ascend(%d) step %d gave %d", op, k, n, gk)
				}
				n++
				return n < 8
			})
			if want := min(8, len(m.keys)-i); n != want {
				t.Fatalf("op %d: Ascend(%d) gave %d keys, want %d", op, k, n, want)
			}
		default:
			gk, _, gok := tr.Min()
			hk, _, hok := tr.Max()
			if gok != (len(m.keys) > 0) || hok != gok {
				t.Fatalf("op %d: Min/Max ok=%v/%v with %d keys", op, gok, hok, len(m.keys))
			}
			if gok && (gk != m.keys[0] || hk != m.keys[len(m.keys)-1]) {
				t.Fatalf("op %d: Min/Max = %d/%d, want %d/%d", op, gk, hk, m.keys[0], m.keys[len(m.keys)-1])
			}
		}
		if tr.Len() != len(m.keys) {
			t.Fatalf("op %d: Len %d, want %d", op, tr.Len(), len(m.keys))
		}
		if check {
			if err := tr.Check(); err != nil {
				t.Fatalf("op %d: %v", op, err)
			}
		}
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	i := 0
	for k, v := range tr.All() {
		if k != m.keys[i] || v != m.vals[k] {
			t.Fatalf("All: position %d is %d=%d, want %d=%d", i, k, v, m.keys[i], m.vals[m.keys[i]])
		}
		i++
	}
	if i != len(m.keys) {
		t.Fatalf("All gave %d keys, want %d", i, len(m.keys))
	}
}

func TestModel(t *testing.T) {
	ops := 200_000
	if testing.Short() {
		ops = 100_000
	}
	runModel(t, 1, ops, 5000, false)
	runModel(t, 2, ops, 200, false) // dense: many hits and deletes of present keys
}

func TestModelChecked(t *testing.T) {
	for seed := uint64(10); seed < 14; seed++ {
		runModel(t, seed, 5000, 300, true)
	}
}

func TestSequentialInsertDelete(t *testing.T) {
	tr := New[int, string](cmp.Compare[int])
	const n = 10000
	for i := range n {
		tr.Put(i, "x")
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	// The height of a red-black tree is at most 2·log2(n+1).
	if h := height(tr.root); h > 28 {
		t.Fatalf("height %d for %d sequential keys", h, n)
	}
	for i := n - 1; i >= 0; i -= 2 {
		tr.Delete(i)
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	if tr.Len() != n/2 {
		t.Fatalf("Len %d", tr.Len())
	}
	for i := range n {
		if tr.Has(i) != (i%2 == 0) {
			t.Fatalf("Has(%d) = %v", i, tr.Has(i))
		}
	}
	tr.Clear()
	if tr.Len() != 0 || tr.Check() != nil {
		t.Fatal("Clear left something")
	}
}

func height[K, V any](x *node[K, V]) int {
	if x == nil {
		return 0
	}
	return 1 + max(height(x.left), height(x.right))
}

func TestIter(t *testing.T) {
	tr := New[int, int](cmp.Compare[int])
	for i := 0; i < 100; i += 10 {
		tr.Put(i, i*i)
	}
	it := tr.Seek(25)
	var got []int
	for ; it.Valid(); it.Next() {
		got = append(got, it.Key())
		if it.Value() != it.Key()*it.Key() {
			t.Fatalf("value of %d is %d", it.Key(), it.Value())
		}
	}
	if !slices.Equal(got, []int{30, 40, 50, 60, 70, 80, 90}) {
		t.Fatalf("Seek(25) forward: %v", got)
	}
	got = nil
	for it := tr.SeekLE(25); it.Valid(); it.Prev() {
		got = append(got, it.Key())
	}
	if !slices.Equal(got, []int{20, 10, 0}) {
		t.Fatalf("SeekLE(25) backward: %v", got)
	}
	got = nil
	for it := tr.Last(); it.Valid(); it.Prev() {
		got = append(got, it.Key())
	}
	if len(got) != 10 || got[0] != 90 || got[9] != 0 {
		t.Fatalf("Last backward: %v", got)
	}
	got = nil
	for k := range tr.From(70) {
		got = append(got, k)
	}
	if !slices.Equal(got, []int{70, 80, 90}) {
		t.Fatalf("From(70): %v", got)
	}
	got = nil
	tr.Descend(35, func(k, _ int) bool { got = append(got, k); return k > 10 })
	if !slices.Equal(got, []int{30, 20, 10}) {
		t.Fatalf("Descend(35): %v", got)
	}
	if it := tr.Seek(91); it.Valid() {
		t.Fatal("Seek past the end is valid")
	}
	if first := tr.First(); first.Key() != 0 {
		t.Fatalf("First is %d", first.Key())
	}
	empty := New[int, int](cmp.Compare[int])
	if it := empty.First(); it.Valid() {
		t.Fatal("First of empty tree is valid")
	}
	if it := empty.Last(); it.Valid() {
		t.Fatal("Last of empty tree is valid")
	}
	for range empty.All() {
		t.Fatal("All of empty tree yields")
	}
}

// run is an augmented value: a length and the largest length in the subtree.
type run struct{ n, maxN int }

func fixRun(self, l, r *run) {
	self.maxN = self.n
	if l != nil {
		self.maxN = max(self.maxN, l.maxN)
	}
	if r != nil {
		self.maxN = max(self.maxN, r.maxN)
	}
}

func TestAugmented(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tr := NewAugmented[int, run](cmp.Compare[int], fixRun)
	vals := map[int]int{}
	const keys = 2000
	for op := range 40000 {
		k := rng.IntN(keys)
		if rng.IntN(2) == 0 {
			n := 1 + rng.IntN(100)
			tr.Put(k, run{n: n})
			vals[k] = n
		} else {
			tr.Delete(k)
			delete(vals, k)
		}
		if op%97 == 0 {
			if err := tr.Check(); err != nil {
				t.Fatalf("op %d: %v", op, err)
			}
		}
		// First key ≥ from with n ≥ need, and last key ≤ from with n ≥ need.
		from, need := rng.IntN(keys+10)-5, 1+rng.IntN(110)
		wantF, wantL := -1, -1
		for i := max(from, 0); i < keys; i++ {
			if vals[i] >= need {
				wantF = i
				break
			}
		}
		for i := min(from, keys-1); i >= 0; i-- {
			if vals[i] >= need {
				wantL = i
				break
			}
		}
		maybe := func(v *run) bool { return v.maxN >= need }
		match := func(v *run) bool { return v.n >= need }
		gk, gv, ok := tr.FirstMatch(from, maybe, match)
		if (wantF >= 0) != ok || (ok && (gk != wantF || gv.n != vals[wantF])) {
			t.Fatalf("op %d: FirstMatch(%d, n≥%d) = %d,%v, want %d", op, from, need, gk, ok, wantF)
		}
		gk, _, ok = tr.LastMatch(from, maybe, match)
		if (wantL >= 0) != ok || (ok && gk != wantL) {
			t.Fatalf("op %d: LastMatch(%d, n≥%d) = %d,%v, want %d", op, from, need, gk, ok, wantL)
		}
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckCatches(t *testing.T) {
	tr := New[int, int](cmp.Compare[int])
	for i := range 50 {
		tr.Put(i, i)
	}
	tr.root.red = true
	if err := tr.Check(); !errors.Is(err, ErrInvariant) {
		t.Fatalf("red root: %v", err)
	}
	tr.root.red = false
	tr.n++
	if err := tr.Check(); !errors.Is(err, ErrInvariant) {
		t.Fatalf("wrong size: %v", err)
	}
	tr.n--
	tr.root.left.key, tr.root.right.key = tr.root.right.key, tr.root.left.key
	if err := tr.Check(); !errors.Is(err, ErrInvariant) {
		t.Fatalf("swapped keys: %v", err)
	}
	tr.root.left.key, tr.root.right.key = tr.root.right.key, tr.root.left.key
	x := minimum(tr.root)
	x.red = !x.red
	if err := tr.Check(); !errors.Is(err, ErrInvariant) {
		t.Fatalf("recoloured leaf: %v", err)
	}
	x.red = !x.red
	if err := tr.Check(); err != nil {
		t.Fatalf("restored: %v", err)
	}

	a := NewAugmented[int, run](cmp.Compare[int], fixRun)
	for i := range 20 {
		a.Put(i, run{n: i})
	}
	a.root.val.maxN = 1
	if err := a.Check(); !errors.Is(err, ErrInvariant) {
		t.Fatalf("bad summary: %v", err)
	}
}

func BenchmarkPut(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, 1<<16)
	for i := range keys {
		keys[i] = rng.Uint64()
	}
	tr := New[uint64, uint64](cmp.Compare[uint64])
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := keys[i&(len(keys)-1)]
		tr.Put(k, k)
		if tr.Len() >= len(keys) {
			tr.Clear()
		}
	}
}

func BenchmarkGet(b *testing.B) {
	tr := New[uint64, uint64](cmp.Compare[uint64])
	const n = 1 << 16
	for i := range uint64(n) {
		tr.Put(i*7, i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Get(uint64(i%n) * 7)
	}
}

// BenchmarkChurn deletes and re-inserts keys of a tree of steady size, as
// a free-extent index does.
func BenchmarkChurn(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	tr := New[uint64, uint64](cmp.Compare[uint64])
	const n = 1 << 16
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = rng.Uint64()
		tr.Put(keys[i], 0)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i & (n - 1)
		tr.Delete(keys[j])
		keys[j] = rng.Uint64()
		tr.Put(keys[j], 0)
	}
}

func BenchmarkFirstMatch(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	tr := NewAugmented[int, run](cmp.Compare[int], fixRun)
	const n = 1 << 16
	for i := range n {
		tr.Put(i*10, run{n: 1 + rng.IntN(64)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		need := 1 + i%64
		tr.FirstMatch((i*7919)%(n*10), func(v *run) bool { return v.maxN >= need }, func(v *run) bool { return v.n >= need })
	}
}
