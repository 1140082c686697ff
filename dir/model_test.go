package dir

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"syscall"
	"testing"

	"agfs/wal"
)

// randName makes a valid name of 1..max bytes: mostly short, some long,
// any byte but '/' and NUL.
func randName(r *rand.Rand, max int) string {
	var n int
	switch x := r.IntN(100); {
	case x < 70:
		n = 1 + r.IntN(16)
	case x < 95:
		n = 1 + r.IntN(64)
	default:
		n = 1 + r.IntN(max)
	}
	b := make([]byte, n)
	for i := range b {
		for b[i] == 0 || b[i] == '/' {
			b[i] = byte(r.IntN(256))
		}
		if r.IntN(2) == 0 {
			b[i] = 'a' + byte(r.IntN(4)) // shared prefixes
		}
	}
	if s := string(b); s == "." || s == ".." {
		return s + "x"
	}
	return string(b)
}

// TestModel runs random inserts, removes, lookups and renames against a
// map, committing every so often, aborting a few transactions and
// reopening the log (cold cache: every node re-read and verified).
func TestModel(t *testing.T) {
	cases := []struct {
		name  string
		bs    int
		ops   int
		pool  int
		hash  func(string) uint64
		tombs bool
	}{
		{"xxhash-4k", 4096, 60000, 12000, nil, false},
		{"weak-1k", 1024, 50000, 1500, weakHash(MaxPos-3000, 4096), true},
	}
	if testing.Short() {
		for i := range cases {
			cases[i].ops /= 5
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(c.bs), 42))
			e := newEnv(t, c.bs, 8192, 2048, wal.Options{CacheBlocks: 1024}, c.hash)
			maxName := MaxName(c.bs)
			pool := make([]string, c.pool)
			for i := range pool {
				pool[i] = randName(r, maxName)
			}
			model := map[string]ent{}
			var saved map[string]ent // model as of the last commit
			commit := func() { e.commit(); saved = maps.Clone(model) }
			commit()
			nextIno := uint64(1)
			var stats [8]int
			maxTombs := uint64(0)
			for op := range c.ops {
				name := pool[r.IntN(len(pool))]
				cur, exists := model[name]
				switch x := r.IntN(100); {
				case x < 35: // insert
					nextIno++
					typ := types[r.IntN(len(types))]
					_, err := e.d.Insert(name, nextIno, typ)
					if exists {
						if err != syscall.EEXIST {
							t.Fatalf("op %d: insert existing %q: %v", op, name, err)
						}
						stats[0]++
					} else {
						if err != nil {
							t.Fatalf("op %d: insert %q: %v", op, name, err)
						}
						model[name] = ent{nextIno, typ}
						stats[1]++
					}
				case x < 60: // remove
					ino, typ, err := e.d.Remove(name)
					if exists {
						if err != nil || ino != cur.ino || typ != cur.typ {
							t.Fatalf("op %d: remove %q = %d %d %v, want %v", op, name, ino, typ, err, cur)
						}
						delete(model, name)
						stats[2]++
					} else {
						if err != syscall.ENOENT {
							t.Fatalf("op %d: remove absent %q: %v", op, name, err)
						}
						stats[3]++
					}
				case x < 85: // lookup
					ino, typ, err := e.d.Lookup(name)
					if exists {
						if err != nil || ino != cur.ino || typ != cur.typ {
							t.Fatalf("op %d: lookup %q = %d %d %v, want %v", op, name, ino, typ, err, cur)
						}
					} else if err != syscall.ENOENT {
						t.Fatalf("op %d: lookup absent %q: %v", op, name, err)
					}
					stats[4]++
				default: // rename name → to, as the fs layer does it
					if !exists {
						continue
					}
					to := pool[r.IntN(len(pool))]
					if to == name {
						continue
					}
					if old, ok := model[to]; ok {
						oi, ot, err := e.d.Replace(to, cur.ino, cur.typ)
						if err != nil || oi != old.ino || ot != old.typ {
							t.Fatalf("op %d: replace %q = %d %d %v, want %v", op, to, oi, ot, err, old)
						}
						stats[5]++
					} else {
						if _, err := e.d.Insert(to, cur.ino, cur.typ); err != nil {
							t.Fatalf("op %d: rename insert %q: %v", op, to, err)
						}
						stats[6]++
					}
					if _, _, err := e.d.Remove(name); err != nil {
						t.Fatalf("op %d: rename remove %q: %v", op, name, err)
					}
					delete(model, name)
					model[to] = cur
				}
				switch {
				case op%10007 == 10006:
					e.reopen()
					saved = maps.Clone(model)
				case op%3001 == 3000:
					// Throw away the changes since the last commit.
					e.abort()
					model = maps.Clone(saved)
					stats[7]++
				case op%97 == 0:
					commit()
				}
				if op%5000 == 0 {
					e.sameAs(model)
					maxTombs = max(maxTombs, e.check().Tombstones)
				}
			}
			e.reopen()
			e.sameAs(model)
			info := e.check()
			t.Logf("%d ops: %d entries, depth %d, %d tombstones (max seen %d); inserts %d (EEXIST %d), removes %d (ENOENT %d), lookups %d, renames over %d, renames %d, aborts %d",
				c.ops, info.Entries, info.Depth, info.Tombstones, maxTombs, stats[1], stats[0], stats[2], stats[3], stats[4], stats[5], stats[6], stats[7])
			if info.Depth < 2 {
				t.Errorf("depth %d: the tree never split", info.Depth)
			}
			if c.tombs && maxTombs == 0 && info.Tombstones == 0 {
				t.Errorf("the weak hash made no tombstone")
			}
			// Empty it completely: no tombstone and no node but the root
			// may be left.
			for name := range model {
				if _, _, err := e.d.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
			e.reopen()
			if info := e.check(); info.Entries != 0 || info.Tombstones != 0 || info.Depth != 1 {
				t.Fatalf("emptied: %+v", info)
			}
			if e.Alloc.InUse() != 1 {
				t.Fatalf("emptied: %d blocks allocated, want 1", e.Alloc.InUse())
			}
		})
	}
}

// TestReaddirStable lists a directory in small batches, resuming from
// cookies, while other entries come and go between batches: every entry
// present throughout is returned exactly once, nothing is returned twice,
// cookies only grow, and what is returned is there at the time.
func TestReaddirStable(t *testing.T) {
	cases := []struct {
		name           string
		hash           func(string) uint64
		stable, churn  int
		rounds         int
		wantTombstones bool
	}{
		{"xxhash", nil, 3000, 1000, 3, false},
		{"weak", weakHash(MaxPos-700, 1024), 500, 300, 3, true},
		{"const", constHash(12345), 60, 40, 3, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(c.stable)))
			e := newEnv(t, 1024, 4096, 2048, wal.Options{}, c.hash)
			stable := map[string]uint64{}
			for i := range c.stable {
				name := fmt.Sprintf("stable-%d", i)
				if _, err := e.d.Insert(name, uint64(i+1), syscall.DT_REG); err != nil {
					t.Fatal(err)
				}
				stable[name] = uint64(i + 1)
			}
			churn := map[string]bool{}
			serial := 0
			addChurn := func() {
				serial++
				name := fmt.Sprintf("churn-%d", serial)
				if _, err := e.d.Insert(name, 1<<40+uint64(serial), syscall.DT_DIR); err != nil {
					t.Fatal(err)
				}
				churn[name] = true
			}
			delChurn := func() {
				for name := range churn { // random enough
					if _, _, err := e.d.Remove(name); err != nil {
						t.Fatal(err)
					}
					delete(churn, name)
					return
				}
			}
			for range c.churn {
				addChurn()
			}
			e.commit()
			maxTombs := uint64(0)
			for round := range c.rounds {
				seen := map[string]int{}
				cookie := uint64(0)
				batches := 0
				for {
					n := 0
					limit := 1 + r.IntN(8)
					err := e.d.Iterate(cookie, func(name string, ino uint64, typ uint8, ck uint64) bool {
						if ck <= cookie {
							t.Fatalf("cookie %#x not after %#x", ck, cookie)
						}
						seen[name]++
						if want, ok := stable[name]; ok && (ino != want || typ != syscall.DT_REG) {
							t.Fatalf("%s: ino %d typ %d, want %d", name, ino, typ, want)
						} else if !ok && !churn[name] {
							t.Fatalf("%s returned but not in the directory", name)
						}
						cookie = ck
						n++
						return n < limit
					})
					if err != nil {
						t.Fatal(err)
					}
					if n == 0 {
						break
					}
					batches++
					// Between batches: others come and go.
					for range r.IntN(6) {
						if r.IntN(2) == 0 || len(churn) == 0 {
							addChurn()
						} else {
							delChurn()
						}
					}
					if batches%10 == 0 {
						e.commit()
						maxTombs = max(maxTombs, e.check().Tombstones)
					}
					if batches%50 == 0 {
						e.reopen()
					}
				}
				for name, k := range seen {
					if k != 1 {
						t.Fatalf("round %d: %s returned %d times", round, name, k)
					}
				}
				for name := range stable {
					if seen[name] != 1 {
						t.Fatalf("round %d: stable %s returned %d times", round, name, seen[name])
					}
				}
				t.Logf("round %d: %d batches, %d entries returned, %d churn names now", round, batches, len(seen), len(churn))
			}
			if c.wantTombstones && maxTombs == 0 {
				t.Error("no tombstone was ever made")
			}
		})
	}
}
