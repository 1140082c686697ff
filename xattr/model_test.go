package xattr

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"

	"agfs/wal"
)

// TestModel runs random Set/Get/List/Remove/SetRoom operations against a
// map, in transactions that commit (or now and then abort, restoring the
// model), reopening the Set from the persisted inode fields or carrying
// it over with SetTx, and reopening the log (empty cache: every node read
// back from the device and verified) periodically. Values run from 0 to
// 65536 bytes, names from 1 byte to the 255-byte limit (plain and hashed
// keys), the inline room from 0 to 160 bytes. At every commit the block
// accounting is checked (allocator = inode count = BlockDelta sum), and
// every few commits the whole structure (Check, Walk).
func TestModel(t *testing.T) {
	for _, tc := range []struct{ bs, ops int }{{4096, 20_000}, {1024, 8_000}} {
		t.Run(fmt.Sprint(tc.bs), func(t *testing.T) {
			ops := tc.ops
			if testing.Short() {
				ops /= 10
			}
			runModel(t, tc.bs, ops, uint64(tc.bs))
		})
	}
}

type modelGen struct {
	r     *rand.Rand
	names []string
}

func newModelGen(seed uint64) *modelGen {
	g := &modelGen{r: rand.New(rand.NewPCG(seed, 7))}
	prefixes := []string{"user.", "trusted.", "security.", "system."}
	for i := range 48 {
		p := prefixes[i%4]
		var n int
		switch i % 6 {
		case 0, 1, 2:
			n = 1 + g.r.IntN(12)
		case 3:
			n = 110 + g.r.IntN(20) // around the plain/hashed boundary
		case 4:
			n = 255 - len(p) // the longest name
		default:
			n = 1 + g.r.IntN(255-len(p))
		}
		b := make([]byte, n)
		for j := range b {
			const alpha = "abc.\x01\xffXYZ"
			b[j] = alpha[g.r.IntN(len(alpha))]
		}
		b[0] = byte('A' + i%26) // names differ
		g.names = append(g.names, p+fmt.Sprintf("%02d", i)+string(b[:max(0, n-2)]))
	}
	return g
}

func (g *modelGen) vlen() int {
	switch x := g.r.IntN(200); {
	case x < 70:
		return g.r.IntN(17)
	case x < 130:
		return g.r.IntN(256)
	case x < 160:
		return 200 + g.r.IntN(100)
	case x < 194:
		return g.r.IntN(4097)
	case x < 198:
		return g.r.IntN(SizeMax + 1)
	default:
		return SizeMax - g.r.IntN(2) // the largest, and one byte less
	}
}

func (g *modelGen) val() []byte {
	b := make([]byte, g.vlen())
	f := byte(g.r.Uint32())
	for i := range b {
		b[i] = f + byte(i) + byte(i>>8)*3
	}
	return b
}

func runModel(t *testing.T, bs, ops int, seed uint64) {
	e := newEnv(t, bs, 16384, 8192)
	g := newModelGen(seed)
	r := g.r
	in := e.newInode(42, 80)
	m := map[string][]byte{}
	committed := maps.Clone(m)

	var tx *wal.Tx
	var s *Set
	begin := func() {
		tx = e.Log.Begin()
		s = in.open(tx)
	}
	begin()
	commits, aborts, reopens, sets, maxBlocks, ends := 0, 0, 0, 0, 0, 0
	inTx := 0
	for op := 0; op < ops; op++ {
		name := g.names[r.IntN(len(g.names))]
		want, exists := m[name]
		switch x := r.IntN(100); {
		case x < 45: // Set
			v := g.val()
			flags := 0
			switch r.IntN(4) {
			case 0:
				flags = Create
			case 1:
				flags = Replace
			}
			err := s.Set(name, v, flags)
			switch {
			case flags == Create && exists:
				if err != syscall.EEXIST {
					t.Fatalf("op %d: Set Create existing %.20q: %v", op, name, err)
				}
			case flags == Replace && !exists:
				if err != syscall.ENODATA {
					t.Fatalf("op %d: Set Replace missing %.20q: %v", op, name, err)
				}
			case err != nil:
				t.Fatalf("op %d: Set %.20q (%d bytes): %v", op, name, len(v), err)
			default:
				m[name] = v
				sets++
			}
		case x < 65: // Get, with every kind of buffer
			var dst []byte
			switch r.IntN(4) {
			case 0:
			case 1:
				dst = make([]byte, len(want))
			case 2:
				dst = make([]byte, len(want)+1+r.IntN(10))
			default:
				if len(want) > 1 {
					dst = make([]byte, 1+r.IntN(len(want)-1))
				}
			}
			n, err := s.Get(name, dst)
			switch {
			case !exists:
				if err != syscall.ENODATA {
					t.Fatalf("op %d: Get missing %.20q: %d, %v", op, name, n, err)
				}
			case len(dst) != 0 && len(dst) < len(want):
				if err != syscall.ERANGE {
					t.Fatalf("op %d: Get %.20q into %d bytes: %d, %v", op, name, len(dst), n, err)
				}
			case err != nil || n != len(want):
				t.Fatalf("op %d: Get %.20q: %d, %v; want %d", op, name, n, err, len(want))
			case len(dst) != 0 && !bytes.Equal(dst[:n], want):
				t.Fatalf("op %d: Get %.20q: wrong value", op, name)
			}
		case x < 80: // Remove
			err := s.Remove(name)
			if exists && err != nil || !exists && err != syscall.ENODATA {
				t.Fatalf("op %d: Remove %.20q (exists %v): %v", op, name, exists, err)
			}
			delete(m, name)
		case x < 92: // List
			checkList(t, s, m, r)
		default: // the data fork needs more or less room
			if err := s.SetRoom(r.IntN(161)); err != nil {
				t.Fatalf("op %d: SetRoom: %v", op, err)
			}
		}
		if s.Empty() != (len(m) == 0) {
			t.Fatalf("op %d: Empty %v with %d attributes", op, s.Empty(), len(m))
		}
		if len(s.Inline()) > s.Room() {
			t.Fatalf("op %d: inline %d bytes in a room of %d", op, len(s.Inline()), s.Room())
		}

		// End the transaction now and then.
		if inTx++; r.IntN(4) != 0 {
			continue
		}
		inTx, ends = 0, ends+1
		carry := false
		if r.IntN(12) == 0 {
			tx.Abort()
			aborts++
			m = maps.Clone(committed)
		} else {
			in.persist(s)
			e.Commit(tx)
			commits++
			committed = maps.Clone(m)
			if int64(e.Alloc.InUse()) != in.blocks {
				t.Fatalf("op %d: allocator has %d blocks in use, inode counts %d", op, e.Alloc.InUse(), in.blocks)
			}
			maxBlocks = max(maxBlocks, e.Alloc.InUse())
			carry = r.IntN(3) == 0
		}
		if r.IntN(40) == 0 {
			e.Reopen()
			reopens++
			carry = false
		}
		switch {
		case ends%25 == 0:
			begin()
			checkAll(t, s, e, in, m)
		case carry:
			// Carry the Set over to the next transaction.
			tx = e.Log.Begin()
			s.SetTx(tx)
		default:
			begin()
		}
	}
	tx.Abort()
	// Remove everything: every block comes back.
	m = maps.Clone(committed)
	in.do(func(s *Set) {
		checkAll(t, s, e, in, m)
		for k := range m {
			if err := s.Remove(k); err != nil {
				t.Fatal(err)
			}
		}
		if !s.Empty() || s.Root() != 0 {
			t.Fatal("not empty after removing everything")
		}
	})
	if e.Alloc.InUse() != 0 || in.blocks != 0 {
		t.Fatalf("%d blocks allocated after removing everything (inode %d)", e.Alloc.InUse(), in.blocks)
	}
	t.Logf("bs %d: %d ops, %d sets, %d commits, %d aborts, %d log reopens, max %d tree blocks",
		bs, ops, sets, commits, aborts, reopens, maxBlocks)
}

func checkList(t *testing.T, s *Set, m map[string][]byte, r *rand.Rand) {
	t.Helper()
	var filter func(Namespace) bool
	if r.IntN(2) == 0 {
		filter = func(ns Namespace) bool { return ns != Trusted }
	}
	var want []string
	size := 0
	for k := range m {
		if filter == nil || !strings.HasPrefix(k, "trusted.") {
			want = append(want, k)
			size += len(k) + 1
		}
	}
	slices.Sort(want)
	n, err := s.List(nil, filter)
	if err != nil || n != size {
		t.Fatalf("List size = %d, %v; want %d", n, err, size)
	}
	if size > 1 {
		if _, err := s.List(make([]byte, 1+r.IntN(size-1)), filter); err != syscall.ERANGE {
			t.Fatalf("List into a short buffer: %v", err)
		}
	}
	if got := names(t, s, filter); !slices.Equal(got, want) {
		t.Fatalf("List = %q\nwant %q", got, want)
	}
}

// checkAll verifies the whole structure and every value, and the block
// accounting.
func checkAll(t *testing.T, s *Set, e *env, in *inode, m map[string][]byte) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if n := treeBlocks(t, s, e.Alloc); n != e.Alloc.InUse() || int64(n) != in.blocks {
		t.Fatalf("tree has %d blocks, allocator %d, inode %d", n, e.Alloc.InUse(), in.blocks)
	}
	for k, v := range m {
		if got := mustGet(t, s, k); !bytes.Equal(got, v) {
			t.Fatalf("%.20q: %d bytes, want %d", k, len(got), len(v))
		}
	}
	if got := names(t, s, nil); !slices.Equal(got, slices.Sorted(maps.Keys(m))) {
		t.Fatalf("names differ")
	}
}
