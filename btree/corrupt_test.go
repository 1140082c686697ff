package btree

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"agfs/disk"
	"agfs/internal/treetest"
	"agfs/layout"
	"agfs/wal"
)

func key8(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// buildTree makes a committed tree of n entries (8-byte keys 0, 3, 6, …),
// closes the log (every node goes home) and returns its root.
func buildTree(t *testing.T, e *env, cfg Config, n int) uint64 {
	t.Helper()
	tx := e.Log.Begin()
	tr, err := Create(tx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := tr.Put(key8(uint64(3*i)), []byte(fmt.Sprintf("value-%06d", i))); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			e.Commit(tx)
			tx = e.Log.Begin()
			tr.SetTx(tx)
		}
	}
	e.Commit(tx)
	return tr.Root
}

// leaves returns the tree's leaves in key order with their first keys.
func leaves(t *testing.T, e *env, cfg Config, root uint64) (blks []uint64, first [][]byte) {
	t.Helper()
	tx := e.Log.Begin()
	defer tx.Abort()
	tr, err := Open(tx, cfg, root)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Walk(func(blk uint64, level int) error {
		if level == 0 {
			b, err := tx.Read(blk, nil)
			if err != nil {
				return err
			}
			n := node{blk: blk, b: b}
			blks = append(blks, blk)
			first = append(first, append([]byte(nil), n.key(0)...))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blks, first
}

// mustCorrupt checks err is a corruption error naming blk and the owner.
func mustCorrupt(t *testing.T, what string, err error, blk, owner uint64) {
	t.Helper()
	if !errors.Is(err, layout.ErrCorrupt) {
		t.Fatalf("%s: error %v, want ErrCorrupt", what, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("node %d ", blk)) || !strings.Contains(msg, fmt.Sprintf("owner %d", owner)) {
		t.Fatalf("%s: error %q does not name node %d and owner %d", what, msg, blk, owner)
	}
}

func TestCorruptNode(t *testing.T) {
	const bs, owner = 1024, 4242
	damages := []struct {
		name   string
		reseal bool // checksum made valid again: the structural checks must catch it
		fn     func(b []byte)
	}{
		{"bit flip in an entry", false, func(b []byte) { b[len(b)-7] ^= 0x10 }},
		{"bit flip in the count", false, func(b []byte) { b[offCount] ^= 1 }},
		{"count too large", true, func(b []byte) { put16(b[offCount:], 5000) }},
		{"count one more", true, func(b []byte) { put16(b[offCount:], le16(b[offCount:])+1) }},
		{"slot outside the block", true, func(b []byte) { put16(b[NodeHeaderSize:], len(b)-2) }},
		{"slot before the body area", true, func(b []byte) { put16(b[NodeHeaderSize+2:], NodeHeaderSize) }},
		{"keys out of order", true, func(b []byte) {
			s0, s1 := le16(b[NodeHeaderSize:]), le16(b[NodeHeaderSize+2:])
			put16(b[NodeHeaderSize:], s1)
			put16(b[NodeHeaderSize+2:], s0)
		}},
		{"overlapping entries", true, func(b []byte) { put16(b[NodeHeaderSize+2:], le16(b[NodeHeaderSize:])+1) }},
		{"duplicate slot", true, func(b []byte) { put16(b[NodeHeaderSize+2:], le16(b[NodeHeaderSize:])) }},
		{"key length huge", true, func(b []byte) { put16(b[le16(b[NodeHeaderSize:]):], 0xffff) }},
		{"garbage wrong", true, func(b []byte) { put32(b[offGarbage:], le32(b[offGarbage:])+1) }},
		{"body start past the end", true, func(b []byte) { put32(b[offBodyStart:], len(b)+4) }},
		{"level changed", true, func(b []byte) { put16(b[offLevel:], 1) }},
		{"level huge", true, func(b []byte) { put16(b[offLevel:], 0xffff) }},
		{"reserved set", true, func(b []byte) { b[offReserved2] = 1 }},
		{"wrong owner", true, func(b []byte) { binary.LittleEndian.PutUint64(b[16:], owner+1) }},
		{"wrong magic", true, func(b []byte) { binary.LittleEndian.PutUint32(b[0:], layout.MagicExtentNode) }},
		{"misdirected", true, func(b []byte) { binary.LittleEndian.PutUint64(b[8:], 1) }},
		{"zeroed", false, func(b []byte) { clear(b) }},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			e := newEnv(t, bs, 1024, 256, wal.Options{})
			cfg := e.cfg(layout.MagicDirNode, owner)
			root := buildTree(t, e, cfg, 600)
			blks, first := leaves(t, e, cfg, root)
			if len(blks) < 3 {
				t.Fatalf("only %d leaves", len(blks))
			}
			victim, vkey := blks[1], first[1]
			if err := e.Log.Close(); err != nil {
				t.Fatal(err)
			}
			e.Log = nil
			b := make([]byte, bs)
			if _, err := e.Dev.ReadAt(b, int64(victim)*bs); err != nil {
				t.Fatal(err)
			}
			d.fn(b)
			if d.reseal {
				layout.Seal(b, e.Seed, 0)
			}
			if _, err := e.Dev.WriteAt(b, int64(victim)*bs); err != nil {
				t.Fatal(err)
			}
			e.Open() // empty cache: the victim is read from the device

			tx := e.Log.Begin()
			defer tx.Abort()
			tr, err := Open(tx, cfg, root)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = tr.Get(vkey)
			mustCorrupt(t, "Get", err, victim, owner)
			_, _, err = tr.Get(first[0]) // another leaf still reads
			if err != nil {
				t.Fatalf("Get in a sound leaf: %v", err)
			}
			mustCorrupt(t, "Put", tr.Put(vkey, []byte("x")), victim, owner)
			_, err = tr.Delete(vkey)
			mustCorrupt(t, "Delete", err, victim, owner)
			_, _, _, err = tr.Floor(vkey)
			mustCorrupt(t, "Floor", err, victim, owner)
			it := tr.Seek(nil)
			for it.Next() {
			}
			mustCorrupt(t, "scan", it.Err(), victim, owner)
			it = tr.SeekLast()
			for it.Prev() {
			}
			mustCorrupt(t, "reverse scan", it.Err(), victim, owner)
			mustCorrupt(t, "Check", tr.Check(), victim, owner)
		})
	}
}

func TestCorruptRoot(t *testing.T) {
	const bs, owner = 1024, 9
	e := newEnv(t, bs, 1024, 256, wal.Options{})
	cfg := e.cfg(layout.MagicExtentNode, owner)
	root := buildTree(t, e, cfg, 10)
	e.Log.Close()
	e.Log = nil
	var one [1]byte
	e.Dev.ReadAt(one[:], int64(root)*bs+200)
	one[0] ^= 4
	e.Dev.WriteAt(one[:], int64(root)*bs+200)
	e.Open()
	tx := e.Log.Begin()
	defer tx.Abort()
	_, err := Open(tx, cfg, root)
	mustCorrupt(t, "Open", err, root, owner)
	// Opened as another kind of tree: the magic does not match.
	e.Reopen()
	tx2 := e.Log.Begin()
	defer tx2.Abort()
	_, err = Open(tx2, e.cfg(layout.MagicXattrNode, owner), root)
	mustCorrupt(t, "Open with the wrong magic", err, root, owner)
}

// TestCheckFindsCrossNodeDamage damages the tree in ways each node's own
// verifier accepts: a leaf key outside its parent's range and a broken
// sibling chain. Check must find them.
func TestCheckFindsCrossNodeDamage(t *testing.T) {
	const bs, owner = 1024, 5
	for _, name := range []string{"key out of range", "sibling chain"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, bs, 1024, 256, wal.Options{})
			cfg := e.cfg(layout.MagicDirNode, owner)
			root := buildTree(t, e, cfg, 400)
			blks, _ := leaves(t, e, cfg, root)
			tx := e.Log.Begin()
			victim := blks[1]
			b, err := tx.Read(victim, nil)
			if err != nil {
				t.Fatal(err)
			}
			n := &node{blk: victim, b: b}
			switch name {
			case "key out of range":
				// The first key becomes smaller than the separator: still
				// sorted inside the leaf.
				k := n.key(0)
				off := n.slot(0) + entryHdr
				k2 := append([]byte(nil), k...)
				k2[len(k2)-1] = 0
				k2[0] = 0
				if err := tx.Write(victim, off, k2); err != nil {
					t.Fatal(err)
				}
			case "sibling chain":
				if err := tx.Write(victim, offRight, binary.LittleEndian.AppendUint64(nil, blks[0])); err != nil {
					t.Fatal(err)
				}
			}
			e.Commit(tx)
			tx = e.Log.Begin()
			defer tx.Abort()
			err = Check(tx, cfg, root)
			if !errors.Is(err, layout.ErrCorrupt) {
				t.Fatalf("Check: %v, want ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

// TestRandomDamage damages random bytes of random nodes (resealed, so the
// structural checks see them) and runs every operation over the damaged
// tree: errors are fine, panics are not, and an error about the tree's
// blocks wraps ErrCorrupt.
func TestRandomDamage(t *testing.T) {
	const bs, owner = 1024, 31
	e := newEnv(t, bs, 512, 128, wal.Options{})
	cfg := e.cfg(layout.MagicDirNode, owner)
	root := buildTree(t, e, cfg, 500)
	var blks []uint64
	tx := e.Log.Begin()
	tr, err := Open(tx, cfg, root)
	if err != nil {
		t.Fatal(err)
	}
	tr.Walk(func(blk uint64, _ int) error { blks = append(blks, blk); return nil })
	tx.Abort()
	if err := e.Log.Close(); err != nil {
		t.Fatal(err)
	}
	e.Log = nil
	img := make([]byte, e.Dev.Size())
	e.Dev.ReadAt(img, 0)
	r := rand.New(rand.NewPCG(8, 8))
	iters := 300
	if testing.Short() {
		iters = 50
	}
	for it := range iters {
		dev := disk.NewMemFrom(slices.Clone(img))
		for range 1 + r.IntN(3) {
			blk := blks[r.IntN(len(blks))]
			if r.IntN(4) == 0 {
				blk = root
			}
			b := make([]byte, bs)
			dev.ReadAt(b, int64(blk)*bs)
			for range 1 + r.IntN(4) {
				off := layout.HeaderSize + r.IntN(bs-layout.HeaderSize)
				if r.IntN(2) == 0 {
					off = offLevel + r.IntN(NodeHeaderSize-offLevel+16) // the node header and first slots
				}
				b[off] ^= byte(1 + r.IntN(255))
			}
			layout.Seal(b, e.Seed, 0)
			dev.WriteAt(b, int64(blk)*bs)
		}
		l, _, err := wal.Open(dev, e.R, e.Seed, wal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		alloc := treetest.NewAlloc(1, 511)
		for _, b := range blks {
			alloc.MarkUsed(b)
		}
		cfg := cfg
		cfg.Alloc = alloc
		check := func(what string, err error) {
			// A damaged pointer outside the device or into the log gets
			// wal's plain range error (no sentinel to wrap yet); a damaged
			// tree may make the allocator refuse a double free.
			if err != nil && !errors.Is(err, layout.ErrCorrupt) && !strings.Contains(err.Error(), "blockAlloc") &&
				!strings.Contains(err.Error(), "outside the device") && !strings.Contains(err.Error(), "inside the log") {
				t.Fatalf("iteration %d: %s: %v", it, what, err)
			}
		}
		tx := l.Begin()
		tr, err := Open(tx, cfg, root)
		check("Open", err)
		if err == nil {
			check("Check", tr.Check())
			for range 30 {
				k := key8(uint64(r.IntN(1600)))
				switch r.IntN(5) {
				case 0:
					_, _, err = tr.Get(k)
				case 1:
					err = tr.Put(k, make([]byte, r.IntN(100)))
				case 2:
					_, err = tr.Delete(k)
				case 3:
					_, _, _, err = tr.Floor(k)
				case 4:
					i := tr.Seek(k)
					for n := 0; n < 50 && i.Next(); n++ {
					}
					err = i.Err()
				}
				check("op", err)
			}
			check("Walk", tr.Walk(func(uint64, int) error { return nil }))
			check("Destroy", tr.Destroy())
		}
		tx.Abort()
		l.Close()
	}
}
