package orphan

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestTreeModel runs random insertions, replacements, deletions, lookups
// and ordered walks against a map, checking the red-black invariants
// (black height, no red-red, key order, size) after every operation.
func TestTreeModel(t *testing.T) {
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tr := NewTree()
		model := map[Key]Entry{}
		key := func() Key { return Key{Kind(1 + rng.IntN(3)), uint64(rng.IntN(300))} }
		for op := range 4000 {
			k := key()
			e := Entry{Len: uint64(rng.IntN(9)), Found: time.Unix(int64(op), 0), How: How(1 + rng.IntN(3)),
				Pass: uint64(op), Attempts: uint32(rng.IntN(4))}
			switch r := rng.IntN(10); {
			case r < 4:
				_, had := model[k]
				if got := tr.Insert(k, e); got == had {
					t.Fatalf("seed %d op %d: Insert(%v) = %v with the key present = %v", seed, op, k, got, had)
				}
				if !had {
					model[k] = e
				}
			case r < 5:
				tr.Put(k, e)
				model[k] = e
			case r < 8:
				got, ok := tr.Delete(k)
				want, had := model[k]
				if ok != had || got != want {
					t.Fatalf("seed %d op %d: Delete(%v) = %+v %v, want %+v %v", seed, op, k, got, ok, want, had)
				}
				delete(model, k)
			case r < 9:
				got, ok := tr.Lookup(k)
				want, had := model[k]
				if ok != had || got != want {
					t.Fatalf("seed %d op %d: Lookup(%v) = %+v %v, want %+v %v", seed, op, k, got, ok, want, had)
				}
			default:
				keys := slices.SortedFunc(maps.Keys(model), compareKeys)
				i, _ := slices.BinarySearchFunc(keys, k, compareKeys)
				var got []Key
				for gk, ge := range tr.From(k) {
					if ge != model[gk] {
						t.Fatalf("seed %d op %d: entry of %v is %+v, want %+v", seed, op, gk, ge, model[gk])
					}
					got = append(got, gk)
				}
				if !slices.Equal(got, keys[i:]) {
					t.Fatalf("seed %d op %d: From(%v) = %v, want %v", seed, op, k, got, keys[i:])
				}
			}
			if err := tr.Check(); err != nil {
				t.Fatalf("seed %d op %d: %v", seed, op, err)
			}
			if tr.Len() != len(model) {
				t.Fatalf("seed %d op %d: Len %d, want %d", seed, op, tr.Len(), len(model))
			}
		}
		var all []Key
		for k := range tr.All() {
			all = append(all, k)
		}
		if want := slices.SortedFunc(maps.Keys(model), compareKeys); !slices.Equal(all, want) {
			t.Fatalf("seed %d: All = %v, want %v", seed, all, want)
		}
	}
}

// TestKeyOrder: kinds first, then numbers.
func TestKeyOrder(t *testing.T) {
	ks := []Key{{Unnamed, 1}, {Unowned, 0}, {Unlinked, 9}, {Unnamed, 0}, {Unlinked, 10}}
	slices.SortFunc(ks, compareKeys)
	want := []Key{{Unlinked, 9}, {Unlinked, 10}, {Unnamed, 0}, {Unnamed, 1}, {Unowned, 0}}
	if !slices.Equal(ks, want) {
		t.Fatalf("order %v, want %v", ks, want)
	}
}

// TestWatch: ranges across word boundaries, and nothing else set.
func TestWatch(t *testing.T) {
	w := NewWatch()
	w.Freed(60, 10)   // 60..69, across a word boundary
	w.Freed(128, 64)  // one whole word
	w.Freed(1<<40, 1) // far away
	w.Changed(5)
	for b := uint64(0); b < 300; b++ {
		want := b >= 60 && b < 70 || b >= 128 && b < 192
		if w.WasFreed(b) != want {
			t.Fatalf("block %d: freed %v, want %v", b, w.WasFreed(b), want)
		}
	}
	if !w.WasFreed(1<<40) || w.WasFreed(1<<40+1) {
		t.Fatal("block 1<<40")
	}
	if !w.WasChanged(5) || w.WasChanged(4) || w.WasChanged(60) {
		t.Fatal("inodes")
	}
}
