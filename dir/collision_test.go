package dir

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"agfs/wal"

	"github.com/cespare/xxhash/v2"
)

// constHash sends every name home to h.
func constHash(h uint64) func(string) uint64 { return func(string) uint64 { return h } }

// positions returns the cookie of every entry.
func positions(t *testing.T, d *Dir) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	if err := d.Iterate(0, func(name string, _ uint64, _ uint8, c uint64) bool {
		m[name] = c
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCollisionRun puts every name at the same home: one long run.
func TestCollisionRun(t *testing.T) {
	for _, home := range []uint64{1000, MaxPos - 20, MaxPos, 0} {
		t.Run(fmt.Sprintf("home=%#x", home), func(t *testing.T) {
			e := newEnv(t, 1024, 1024, 512, wal.Options{}, constHash(home))
			const n = 60
			h := fold(home)
			model := map[string]ent{}
			for i := range n {
				name := fmt.Sprintf("f%d", i)
				c, err := e.d.Insert(name, uint64(i+1), syscall.DT_REG)
				if err != nil {
					t.Fatal(err)
				}
				want := h
				for range i {
					want = next(want)
				}
				if c != want {
					t.Fatalf("%s at %#x, want %#x", name, c, want)
				}
				model[name] = ent{uint64(i + 1), syscall.DT_REG}
			}
			if _, err := e.d.Insert("f7", 1, syscall.DT_REG); err != syscall.EEXIST {
				t.Fatalf("duplicate in a run: %v", err)
			}
			e.sameAs(model)
			before := positions(t, e.d)

			// Remove from the middle: tombstones keep the rest reachable and
			// nothing moves.
			for _, i := range []int{0, 10, 11, 12, 30} {
				if _, _, err := e.d.Remove(fmt.Sprintf("f%d", i)); err != nil {
					t.Fatal(err)
				}
				delete(model, fmt.Sprintf("f%d", i))
			}
			e.sameAs(model)
			if info := e.check(); info.Tombstones != 5 {
				t.Fatalf("%d tombstones, want 5", info.Tombstones)
			}
			for name, c := range positions(t, e.d) {
				if before[name] != c {
					t.Fatalf("%s moved from %#x to %#x", name, before[name], c)
				}
			}
			e.reopen()

			// A new name takes the first tombstone.
			c, err := e.d.Insert("new", 99, syscall.DT_DIR)
			if err != nil || c != h {
				t.Fatalf("new at %#x (%v), want the tombstone at %#x", c, err, h)
			}
			model["new"] = ent{99, syscall.DT_DIR}
			e.sameAs(model)
			if info := e.check(); info.Tombstones != 4 {
				t.Fatalf("%d tombstones, want 4", info.Tombstones)
			}

			// Removing the tail frees it and the tombstones before it.
			for i := n - 1; i >= 31; i-- {
				if _, _, err := e.d.Remove(fmt.Sprintf("f%d", i)); err != nil {
					t.Fatal(err)
				}
				delete(model, fmt.Sprintf("f%d", i))
				e.check()
			}
			if info := e.check(); info.Tombstones != 3 {
				t.Fatalf("after removing the tail past the tombstone: %d tombstones, want 3", info.Tombstones)
			}
			for i := 13; i <= 29; i++ {
				if _, _, err := e.d.Remove(fmt.Sprintf("f%d", i)); err != nil {
					t.Fatal(err)
				}
				delete(model, fmt.Sprintf("f%d", i))
			}
			// f29 ended the run: the tombstones of f13…f28 and f10…f12
			// before it are freed with it.
			if info := e.check(); info.Tombstones != 0 || info.Entries != 10 {
				t.Fatalf("%+v, want 10 entries (new, f1…f9) and no tombstone", info)
			}
			e.sameAs(model)
			for name := range model {
				if _, _, err := e.d.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
			info := e.check()
			if info.Entries != 0 || info.Tombstones != 0 {
				t.Fatalf("emptied: %+v", info)
			}
			if empty, err := e.d.Empty(); err != nil || !empty {
				t.Fatalf("Empty = %v, %v", empty, err)
			}
		})
	}
}

// TestCollisionWrap checks a run crossing MaxPos → MinPos, and Iterate on
// it.
func TestCollisionWrap(t *testing.T) {
	e := newEnv(t, 4096, 1024, 512, wal.Options{}, constHash(MaxPos-1))
	for i := range 5 {
		if _, err := e.d.Insert(fmt.Sprintf("w%d", i), uint64(i+1), syscall.DT_REG); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{"w0": MaxPos - 1, "w1": MaxPos, "w2": 3, "w3": 4, "w4": 5}
	got := positions(t, e.d)
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s at %#x, want %#x", k, got[k], v)
		}
	}
	// A name whose home is 3: it must probe past w2…w4.
	e.cfg.hash = func(s string) uint64 {
		if s == "three" {
			return 3
		}
		return MaxPos - 1
	}
	e.d.cfg.hash = e.cfg.hash
	if c, err := e.d.Insert("three", 9, syscall.DT_REG); err != nil || c != 6 {
		t.Fatalf("three at %#x, %v", c, err)
	}
	e.check()
	for _, n := range []string{"w1", "w0", "w3"} {
		if _, _, err := e.d.Remove(n); err != nil {
			t.Fatal(err)
		}
		e.check()
		for _, m := range []string{"w2", "w4", "three"} {
			if _, _, err := e.d.Lookup(m); err != nil {
				t.Fatalf("after removing %s, lookup %s: %v", n, m, err)
			}
		}
	}
	if info := e.check(); info.Tombstones != 3 {
		t.Fatalf("%+v, want 3 tombstones", info)
	}
	for _, n := range []string{"three", "w4"} {
		if _, _, err := e.d.Remove(n); err != nil {
			t.Fatal(err)
		}
		e.check()
	}
	// w2 is left, at 3, behind tombstones at MaxPos-1, MaxPos.
	if info := e.check(); info.Tombstones != 2 || info.Entries != 1 {
		t.Fatalf("%+v", info)
	}
	if _, _, err := e.d.Remove("w2"); err != nil {
		t.Fatal(err)
	}
	if info := e.check(); info.Tombstones != 0 || info.Entries != 0 {
		t.Fatalf("%+v, want nothing left", info)
	}
}

// weakHash has only 'span' values: collisions and long runs everywhere.
func weakHash(base, span uint64) func(string) uint64 {
	return func(s string) uint64 { return base + xxhash.Sum64String(s)%span }
}

// TestCollisionRandom churns a small hash space hard and checks the
// invariants after every operation.
func TestCollisionRandom(t *testing.T) {
	for _, base := range []uint64{100, MaxPos - 40} {
		e := newEnv(t, 1024, 2048, 1024, wal.Options{}, weakHash(base, 64))
		r := rand.New(rand.NewPCG(base, 1))
		model := map[string]ent{}
		tombs := 0
		for i := range 3000 {
			name := fmt.Sprintf("n%d", r.IntN(150))
			if _, ok := model[name]; ok {
				if _, _, err := e.d.Remove(name); err != nil {
					t.Fatal(err)
				}
				delete(model, name)
			} else {
				if _, err := e.d.Insert(name, uint64(i+1), syscall.DT_REG); err != nil {
					t.Fatal(err)
				}
				model[name] = ent{uint64(i + 1), syscall.DT_REG}
			}
			info := e.check()
			if info.Entries != uint64(len(model)) {
				t.Fatalf("op %d: %d entries, model %d", i, info.Entries, len(model))
			}
			tombs = max(tombs, int(info.Tombstones))
			if i%100 == 0 {
				e.sameAs(model)
				e.commit()
			}
		}
		e.sameAs(model)
		if tombs == 0 {
			t.Fatal("no tombstone was ever made")
		}
	}
}
