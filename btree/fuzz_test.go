package btree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"agfs/layout"
)

const (
	fuzzBS    = 1024
	fuzzBlk   = 7
	fuzzOwner = 99
	fuzzSeed  = 1234
)

// fuzzSeeds returns sound nodes to start from: leaves of several shapes
// (with garbage and holes) and an interior node.
func fuzzSeeds() [][]byte {
	mk := func(level int, fill func(n *node)) []byte {
		b := make([]byte, fuzzBS)
		initNode(b, layout.MagicDirNode, fuzzBlk, fuzzOwner, level)
		n := &node{blk: fuzzBlk, b: b, fresh: true}
		fill(n)
		return b
	}
	var seeds [][]byte
	seeds = append(seeds, mk(0, func(n *node) {}))
	seeds = append(seeds, mk(0, func(n *node) {
		for i := range 20 {
			n.appendEntry(key8(uint64(i*5)), bytes.Repeat([]byte{byte(i)}, i))
		}
		n.removeAt(3)
		n.removeAt(10)
		n.setRight(12)
	}))
	seeds = append(seeds, mk(0, func(n *node) {
		lim := LimitsFor(fuzzBS)
		for i := range 4 {
			n.appendEntry(bytes.Repeat([]byte{byte(i + 1)}, lim.MaxKey), make([]byte, lim.MaxEntry-lim.MaxKey))
		}
	}))
	seeds = append(seeds, mk(2, func(n *node) {
		var c [8]byte
		for i := range 10 {
			binary.LittleEndian.PutUint64(c[:], uint64(100+i))
			var k []byte
			if i > 0 {
				k = []byte{byte(i), 'x'}
			}
			n.appendEntry(k, c[:])
		}
	}))
	return seeds
}

// FuzzNode feeds arbitrary node images to the verifier (with a valid
// checksum, so the structural checks are reached) and works on the ones it
// accepts: decoding, searching and changing them must not panic and must
// keep them valid.
func FuzzNode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, []byte("key"), uint8(0))
	}
	f.Add([]byte{}, []byte{}, uint8(1))
	f.Fuzz(func(t *testing.T, data, key []byte, op uint8) {
		b := make([]byte, fuzzBS)
		copy(b, data)
		if op&0x80 == 0 {
			// Make the common header right, so the node checks run.
			binary.LittleEndian.PutUint32(b[0:], layout.MagicDirNode)
			binary.LittleEndian.PutUint64(b[8:], fuzzBlk)
			binary.LittleEndian.PutUint64(b[16:], fuzzOwner)
			layout.Seal(b, fuzzSeed, 1)
		}
		err := VerifyNode(b, fuzzSeed, layout.MagicDirNode, fuzzBlk, fuzzOwner)
		if hErr := checkHeader(b, fuzzBS, layout.MagicDirNode, fuzzBlk, fuzzOwner, -1); err == nil && hErr != nil {
			t.Fatalf("VerifyNode accepted what checkHeader rejects: %v", hErr)
		}
		if err != nil {
			if !errors.Is(err, layout.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		n := &node{blk: fuzzBlk, b: b}
		cnt := n.count()
		for i := range cnt {
			k, _ := n.entry(i)
			if j, ok := n.search(k); !ok || j != i {
				t.Fatalf("search of entry %d's key: %d %v", i, j, ok)
			}
			if !n.leaf() {
				_ = n.child(i)
				if j := n.childIndex(k); j != i {
					t.Fatalf("childIndex of entry %d's key: %d", i, j)
				}
			}
		}
		i, found := n.search(key)
		_ = n.upper(key)
		if !n.leaf() {
			return
		}
		// Change the leaf as Put and Delete would; it must stay valid.
		lim := LimitsFor(fuzzBS)
		if len(key) > lim.MaxKey {
			key = key[:lim.MaxKey]
			i, found = n.search(key)
		}
		val := bytes.Repeat([]byte{op}, int(op)%min(64, lim.MaxEntry-len(key)+1))
		switch {
		case found && op&1 == 1:
			n.removeAt(i)
		case !found && n.free() >= cost(len(key), len(val)):
			n.insertAt(i, key, val)
		case cnt > 0:
			n.compact()
			n.truncate(int(op) % cnt)
		}
		if err := checkNode(b, fuzzBlk, fuzzOwner); err != nil {
			t.Fatalf("after a change: %v", err)
		}
		if err := checkHeader(b, fuzzBS, layout.MagicDirNode, fuzzBlk, fuzzOwner, 0); err != nil {
			t.Fatalf("after a change: %v", err)
		}
	})
}

// TestNodeRuns checks the logged ranges reproduce the node exactly.
func TestNodeRuns(t *testing.T) {
	for _, s := range fuzzSeeds() {
		n := &node{blk: fuzzBlk, b: bytes.Clone(s)}
		if n.leaf() {
			if n.free() >= cost(1, 3) {
				n.insertAt(0, []byte{0}, []byte("abc"))
			}
			n.compact()
			n.removeAt(n.count() - 1)
		} else {
			n.setChild(1, 12345)
			n.removeAt(2)
		}
		img := bytes.Clone(s)
		for _, r := range n.runs(nil) {
			copy(img[r.lo:], n.b[r.lo:r.hi])
		}
		if !bytes.Equal(img, n.b) {
			t.Fatal("the runs do not reproduce the node")
		}
		if err := checkNode(n.b, fuzzBlk, fuzzOwner); err != nil {
			t.Fatal(err)
		}
	}
}
