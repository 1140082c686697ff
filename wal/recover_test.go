package wal

import (
	"bytes"
	"strings"
	"testing"

	"agfs/layout"
)

// TestRecoverRefusesBadRecords: committed records naming a block inside
// the log or past the device, or a delta on a torn block with no image,
// are corruption: Recover refuses with a clear error and writes nothing.
func TestRecoverRefusesBadRecords(t *testing.T) {
	for _, c := range []struct {
		name string
		rec  []byte
		want string
	}{
		{"inside the log", putDelta(nil, 34, 100, []byte{0}, []byte{1}), "inside the log"},
		{"past the device", putImage(nil, recImage, 1000, make([]byte, 1024)), "outside the device"},
		{"delta without image", putDelta(nil, 5, 100, []byte{0}, []byte{1}), "no image"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 1024, 64, 32, 16)
			g, _ := newGeom(e.dev, e.r)
			writeStream(t, e.dev, &g, e.seed, 1, sectorHdr, txRecords(e.seed, 1, c.rec))
			before := devBytes(t, e.dev)
			_, err := Recover(e.dev, e.r, e.seed)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "wal: recover") {
				t.Fatalf("got %v, want an error about %q", err, c.want)
			}
			if !bytes.Equal(before, devBytes(t, e.dev)) {
				t.Fatal("a refused recovery wrote to the device")
			}
		})
	}
}

// TestRecoverHandBuilt replays a hand-built log: images, deltas, inits,
// a transaction already in its home block, and a torn transaction at the
// end.
func TestRecoverHandBuilt(t *testing.T) {
	e := newEnv(t, 1024, 64, 32, 16)
	g, _ := newGeom(e.dev, e.r)
	e.mkfs(1, 2)
	b1 := e.fresh(1)
	layout.Seal(b1, e.seed, 0)
	set := func(b []byte, off int, v string) []byte { c := bytes.Clone(b); copy(c[off:], v); return c }
	var stream []byte
	stream = append(stream, txRecords(e.seed, 1,
		putImage(nil, recImage, 1, b1),
		putDelta(nil, 1, 100, []byte("\x00\x00\x00"), []byte("abc")),
		putImage(nil, recInit, 3, set(e.fresh(3), 200, "new")))...)
	stream = append(stream, txRecords(e.seed, 2, putDelta(nil, 1, 103, []byte("\x00"), []byte("d")))...)
	partial := txRecords(e.seed, 3, putDelta(nil, 2, 100, []byte("\x00"), []byte("X")))
	stream = append(stream, partial[:len(partial)-3]...) // its commit record is cut short
	writeStream(t, e.dev, &g, e.seed, 1, sectorHdr, stream)
	rep, err := Recover(e.dev, e.r, e.seed)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 2 || rep.Discarded != 1 || rep.BlocksWritten != 2 || rep.Mismatches != 0 || rep.Epoch != 2 {
		t.Fatalf("report %+v", rep)
	}
	h1, h3 := e.home(1), e.home(3)
	if err := e.verify(1, h1); err != nil || string(h1[100:104]) != "abcd" {
		t.Fatalf("block 1: %v %q", err, h1[100:104])
	}
	if err := e.verify(3, h3); err != nil || string(h3[200:203]) != "new" {
		t.Fatalf("block 3: %v", err)
	}
	if h2 := e.home(2); h2[100] != 0 {
		t.Fatal("the torn transaction was applied")
	}
	if layout.ReadHeader(h1).LSN <= layout.ReadHeader(h3).LSN {
		t.Fatal("block 1 not stamped with the later transaction's LSN")
	}
	// Again: nothing to do, nothing written.
	before := devBytes(t, e.dev)
	rep, err = Recover(e.dev, e.r, e.seed)
	if err != nil || !rep.Clean || !bytes.Equal(before, devBytes(t, e.dev)) {
		t.Fatalf("second recovery: %+v %v", rep, err)
	}
}

// TestEpochAfterRecovery: after a crash left sectors of an unfinished
// transaction past the new tail, the next session's log must never run on
// into them, even when its own next write is lost.
func TestEpochAfterRecovery(t *testing.T) {
	e := newEnv(t, 1024, 128, 64, 32)
	e.mkfs(1, 2, 3, 4, 5, 6)
	l := e.open(Options{CheckpointAt: 1})
	tx := l.Begin()
	tx.Write(1, 100, []byte("A"))
	lsnA, _ := tx.Commit()
	if err := l.Wait(lsnA); err != nil {
		t.Fatal(err)
	}
	tx = l.Begin() // B: four whole blocks, over several log blocks
	for blk := uint64(2); blk <= 5; blk++ {
		tx.Init(blk, e.fresh(blk))
	}
	if _, err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	l.round.Lock()
	_, err := l.flushRound(false) // B's full blocks, not its commit
	l.round.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	crash(l)
	rep, err := Recover(e.dev, e.r, e.seed)
	if err != nil || rep.Replayed != 1 || rep.Discarded != 1 {
		t.Fatalf("first recovery: %+v %v", rep, err)
	}
	g, _ := newGeom(e.dev, e.r)

	l = e.open(Options{CheckpointAt: 1})
	var lsns []LSN
	commit := func(i int) {
		tx := l.Begin()
		tx.Write(6, 64+i, []byte{byte(i + 1)})
		lsn, err := tx.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Wait(lsn); err != nil {
			t.Fatal(err)
		}
		lsns = append(lsns, lsn)
	}
	commit(0) // logs an image of block 6: more than one log block
	head := uint64(l.Stats().Head)
	next := head - head%g.bs + g.bs // the log block after the head's
	stale := make([]byte, g.bs)
	e.dev.ReadAt(stale, g.physOff(next))
	if _, err := checkSector(newDigest(e.seed), stale[:sectorSize], next, 1, e.seed); err != nil {
		t.Fatalf("test setup: no stale sector of B at LSN %d: %v", next, err)
	}
	for i := 1; uint64(l.Stats().Head) <= next+sectorHdr; i++ {
		commit(i)
	}
	crash(l)
	e.dev.WriteAt(stale, g.physOff(next)) // the write of that block is lost
	want := 0
	for _, lsn := range lsns {
		if advance(uint64(lsn), commitSize) <= next+sectorHdr {
			want++
		}
	}
	rep, err = Recover(e.dev, e.r, e.seed)
	if err != nil {
		t.Fatal(err)
	}
	if want < 3 || len(lsns) == want {
		t.Fatalf("test setup: %d of %d transactions before the lost block", want, len(lsns))
	}
	if rep.Replayed != want || !strings.Contains(rep.StopReason, "epoch") {
		t.Fatalf("replayed %d of %d, want %d; stop: %s", rep.Replayed, len(lsns), want, rep.StopReason)
	}
	h := e.home(6)
	for i := range len(lsns) {
		if got, exp := h[64+i] != 0, i < want; got != exp {
			t.Fatalf("tx %d: present %v, want %v", i, got, exp)
		}
	}
}
