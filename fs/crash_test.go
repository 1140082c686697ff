package fs_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
	"agfs/fsck"
	"agfs/layout"
)

// seeded returns the content of file seed: n bytes, none zero, so a zero
// byte can only be a hole or the zero-fill around written data.
func seeded(seed uint32, off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seedByte(seed, off+i)
	}
	return b
}

// seedByte is byte off of file seed: a mix of both, so two seeds agree
// at an offset only by chance (1 in 128), never along a whole block.
func seedByte(seed uint32, off int) byte {
	z := (uint64(seed)<<40 ^ uint64(off)) * 0x9e3779b97f4a7c15
	z = (z ^ z>>29) * 0xbf58476d1ce4e5b9
	return byte(z^z>>32) | 1
}

// crashExpect: between marks begin and end (event indexes) the name
// may hold any of allowed; after end only the last one.
type crashExpect struct {
	begin, end int
	name       string
	allowed    [][]byte
}

// TestCrash runs a workload with fsyncs on a recording device, then opens
// the image a crash would leave at every flush point and at random points
// with unflushed writes kept, dropped, reordered or torn. Every image must
// open (log recovery, orphans), pass fsck.Check and the deep check, show
// every fsync'd file with exactly its content, and no file may contain a
// byte it was not given (another file's old data).
var crashSeed = flag.Uint64("crash-seed", 11, "TestCrash: workload seed")

func TestCrash(t *testing.T) {
	const size = 24 << 20
	base := disk.NewMem(size)
	format(t, base, layout.Params{AGCount: 2, LogBytes: 1 << 20})
	rec := disk.NewRecorder(base.Bytes())
	f, err := fs.Open(rec, fs.Options{CacheBlocks: 512})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(*crashSeed, 12))
	var expects []crashExpect
	mark := func(what string) int {
		rec.Mark(what)
		return len(rec.Log()) - 1
	}
	durable := map[string][]byte{}
	d, err := f.Mkdir(root, "d", 0755, me)
	if err != nil {
		t.Fatal(err)
	}
	dirs := []uint64{root, d.Ino}
	dirName := map[uint64]string{root: "", d.Ino: "d/"}
	newFile := func(dir uint64, name string, seed uint32, n int) uint64 {
		a, err := f.Mknod(dir, name, syscall.S_IFREG|0644, 0, me)
		if err != nil {
			t.Fatal(err)
		}
		var s [4]byte
		binary.LittleEndian.PutUint32(s[:], seed)
		if err := f.SetXattr(a.Ino, "user.seed", s[:], 0); err != nil {
			t.Fatal(err)
		}
		for off := 0; off < n; {
			k := min(n-off, 1+rng.IntN(60000))
			if _, err := f.Write(a.Ino, seeded(seed, off, k), int64(off)); err != nil {
				t.Fatal(err)
			}
			off += k
		}
		return a.Ino
	}
	seed := uint32(1)
	var live []string // names of files (dir prefix included)
	inoOf := map[string]uint64{}
	parentOf := map[string]uint64{}
	for step := range 60 {
		seed++
		dir := dirs[rng.IntN(2)]
		switch k := rng.IntN(10); {
		case k < 4: // new file, fsync'd
			name := fmt.Sprintf("f%d", seed)
			n := 1 + rng.IntN(200000)
			ino := newFile(dir, name, seed, n)
			if err := f.Fsync(ino, false); err != nil {
				t.Fatal(err)
			}
			at := mark("fsync " + name)
			full := dirName[dir] + name
			durable[full] = seeded(seed, 0, n)
			expects = append(expects, crashExpect{begin: at, end: at, name: full, allowed: [][]byte{durable[full]}})
			live = append(live, full)
			inoOf[full], parentOf[full] = ino, dir
		case k < 6: // new file, not synced
			name := fmt.Sprintf("u%d", seed)
			full := dirName[dir] + name
			inoOf[full] = newFile(dir, name, seed, 1+rng.IntN(100000))
			parentOf[full] = dir
			live = append(live, full)
		case k < 8 && len(live) > 0: // delete (frees blocks for reuse)
			i := rng.IntN(len(live))
			full := live[i]
			if _, ok := durable[full]; ok {
				continue // fsync'd files stay, so their content can be checked
			}
			if err := f.Unlink(parentOf[full], full[strings.LastIndex(full, "/")+1:]); err != nil {
				t.Fatal(err)
			}
			live = slices.Delete(live, i, i+1)
		default: // atomic replace of a durable file: write tmp, fsync, rename, fsync dir
			var targets []string
			for _, x := range live {
				if _, ok := durable[x]; ok {
					targets = append(targets, x)
				}
			}
			if len(targets) == 0 {
				continue
			}
			slices.Sort(targets)
			target := targets[rng.IntN(len(targets))]
			pdir := parentOf[target]
			n := 1 + rng.IntN(150000)
			tmp := fmt.Sprintf("tmp%d", seed)
			ino := newFile(pdir, tmp, seed, n)
			if err := f.Fsync(ino, false); err != nil {
				t.Fatal(err)
			}
			begin := mark("rename " + target)
			if err := f.Rename(pdir, tmp, pdir, target[strings.LastIndex(target, "/")+1:], 0); err != nil {
				t.Fatal(err)
			}
			if err := f.FsyncDir(pdir); err != nil {
				t.Fatal(err)
			}
			end := mark("renamed " + target)
			nc := seeded(seed, 0, n)
			expects = append(expects, crashExpect{begin: begin, end: end, name: target, allowed: [][]byte{durable[target], nc}})
			durable[target] = nc
			inoOf[target] = ino
		}
		_ = step
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	checkCrashImages(t, rec, expects, 150)
}

// checkCrashImages opens the image of a crash at every flush point (every
// fourth under the race detector) and at random points (random of them)
// with unflushed writes kept, dropped or torn, and checks each.
func checkCrashImages(t *testing.T, rec *disk.Recorder, expects []crashExpect, random int) {
	t.Helper()
	log := rec.Log()
	points := rec.FlushPoints()
	images := 0
	verify := func(img []byte, point int, what string) {
		t.Helper()
		images++
		dev := disk.NewMemFrom(img)
		g, err := fs.Open(dev, fs.Options{})
		if err != nil {
			t.Fatalf("%s: open: %v", what, err)
		}
		if err := g.Deep(); err != nil {
			t.Fatalf("%s: deep check: %v", what, err)
		}
		// Expectations whose begin mark precedes the crash.
		want := map[string][][]byte{}
		for _, x := range expects {
			switch {
			case x.begin >= point:
			case x.end < point:
				want[x.name] = x.allowed[len(x.allowed)-1:]
			default:
				want[x.name] = x.allowed
			}
		}
		for name, allowed := range want {
			parent := root
			base := name
			if strings.HasPrefix(name, "d/") {
				a, err := g.Lookup(root, "d")
				if err != nil {
					t.Fatalf("%s: lookup d: %v", what, err)
				}
				parent, base = a.Ino, name[2:]
			}
			a, err := g.Lookup(parent, base)
			if err != nil {
				t.Fatalf("%s: fsync'd %s: %v", what, name, err)
			}
			buf := make([]byte, a.Size+1)
			k, _ := g.Read(a.Ino, buf, 0)
			ok := false
			for _, c := range allowed {
				ok = ok || bytes.Equal(buf[:k], c)
			}
			if !ok {
				t.Fatalf("%s: %s has %d bytes, not its fsync'd content", what, name, k)
			}
		}
		// No foreign bytes anywhere.
		for _, dir := range []uint64{root, 0} {
			if dir == 0 {
				a, err := g.Lookup(root, "d")
				if err != nil {
					break
				}
				dir = a.Ino
			}
			g.ReadDir(dir, 0, true, func(e fs.DirEntry) bool {
				if e.Attr == nil || e.Attr.Mode&syscall.S_IFMT != syscall.S_IFREG {
					return true
				}
				var s [4]byte
				if n, err := g.GetXattr(e.Ino, "user.seed", s[:]); err != nil || n != 4 {
					return true
				}
				sd := binary.LittleEndian.Uint32(s[:])
				buf := make([]byte, e.Attr.Size)
				k, _ := g.Read(e.Ino, buf, 0)
				exp := seeded(sd, 0, k)
				for i := range k {
					if buf[i] != 0 && buf[i] != exp[i] {
						t.Fatalf("%s: %s byte %d is %#x: not its own data (seed %d)", what, e.Name, i, buf[i], sd)
					}
				}
				return true
			})
		}
		if err := g.Close(); err != nil {
			t.Fatalf("%s: close: %v", what, err)
		}
		rep, err := fsck.Check(dev)
		if err != nil || !rep.Clean() {
			t.Fatalf("%s: fsck: %v %v", what, err, rep.Problems)
		}
	}
	stride := 1
	if testing.Short() || raceEnabled {
		stride = 4
	}
	for i := 0; i < len(points); i += stride {
		p := points[i]
		verify(rec.CrashImage(p, nil, nil), p, fmt.Sprintf("flush point %d (event %d)", i, p))
	}
	rr := rand.New(rand.NewPCG(5, *crashSeed))
	random /= stride
	for range random {
		p := rr.IntN(len(log))
		img, desc := rec.RandomCrashImage(p, rr, 0.5)
		verify(img, p, desc.String())
	}
	t.Logf("%d events, %d flush points; %d crash images checked (%d at flush points, %d random with reordered/torn writes)",
		len(log), len(points), images, images-random, random)
}

// TestCrashTreeReuse: tree nodes (a large directory's, fragmented files'
// extent trees, attribute trees) are freed and their blocks reused for
// file data; no crash image may show a stale node written or replayed over
// that data.
func TestCrashTreeReuse(t *testing.T) {
	// A log and cache large enough that no checkpoint happens by itself.
	base := disk.NewMem(32 << 20)
	format(t, base, layout.Params{AGCount: 1, LogBytes: 8 << 20})
	rec := disk.NewRecorder(base.Bytes())
	f, err := fs.Open(rec, fs.Options{CacheBlocks: 8192})
	if err != nil {
		t.Fatal(err)
	}
	var expects []crashExpect
	mk := func(dir uint64, name string, seed uint32) uint64 {
		a, err := f.Mknod(dir, name, syscall.S_IFREG|0644, 0, me)
		if err != nil {
			t.Fatal(err)
		}
		var s [4]byte
		binary.LittleEndian.PutUint32(s[:], seed)
		if err := f.SetXattr(a.Ino, "user.seed", s[:], 0); err != nil {
			t.Fatal(err)
		}
		return a.Ino
	}
	rounds := 3
	if raceEnabled {
		rounds = 1
	}
	for round := range rounds {
		d, err := f.Mkdir(root, fmt.Sprint("big", round), 0755, me)
		if err != nil {
			t.Fatal(err)
		}
		// Many entries (a multi-level directory index), each file
		// fragmented against its neighbour (extent trees), some with an
		// attribute tree.
		var inos []uint64
		for i := range 300 {
			inos = append(inos, mk(d.Ino, fmt.Sprintf("entry-with-a-long-name-%04d", i), uint32(1000*round+i)))
		}
		for blk := range 12 {
			for i, ino := range inos[:40] {
				seed := uint32(1000*round + i)
				if _, err := f.Write(ino, seeded(seed, blk*8192, 4096), int64(blk*8192)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, ino := range inos[40:50] {
			if err := f.SetXattr(ino, "user.big", bytes.Repeat([]byte{7}, 6000), 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		// Free it all.
		for i := range inos {
			if err := f.Unlink(d.Ino, fmt.Sprintf("entry-with-a-long-name-%04d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Rmdir(root, fmt.Sprint("big", round)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil { // the frees durable: the blocks are reusable
			t.Fatal(err)
		}
		// Reuse the space for data, fsync'd.
		for i := range 6 {
			seed := uint32(90000 + 100*round + i)
			name := fmt.Sprintf("data-%d-%d", round, i)
			ino := mk(root, name, seed)
			n := 300000
			// Block by block: each allocation fills the nearest hole,
			// freed tree nodes among them.
			for off := 0; off < n; off += 4096 {
				k := min(4096, n-off)
				if _, err := f.Write(ino, seeded(seed, off, k), int64(off)); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Fsync(ino, false); err != nil {
				t.Fatal(err)
			}
			rec.Mark("fsync " + name)
			at := len(rec.Log()) - 1
			expects = append(expects, crashExpect{begin: at, end: at, name: name, allowed: [][]byte{seeded(seed, 0, n)}})
		}
	}
	st := f.Stats()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("reuse checkpoints %d", st.ReuseCheckpoint)
	if st.ReuseCheckpoint == 0 {
		t.Error("no freed tree node was reused for data: the test tests nothing")
	}
	checkCrashImages(t, rec, expects, 60)
}

// TestCrashUnlinkOpen: a file with data (an extent tree of more extents
// than one reclaim transaction frees, an attribute tree) is unlinked while
// open and the unlink made durable; then it is released (reclaimed in
// several transactions), synced and the filesystem closed. A crash at
// every later event, with the writes since the last flush lost or all
// kept, must mount with the space back: free blocks and inodes as before
// the file was created, and a clean fsck before and after.
func TestCrashUnlinkOpen(t *testing.T) {
	base := disk.NewMemFrom(seeded(0, 0, 8<<20))
	format(t, base, layout.Params{AGCount: 2, LogBytes: 1 << 20})
	rec := disk.NewRecorder(base.Bytes())
	f, err := fs.Open(rec, fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := f.StatFS()
	a, err := f.Mknod(root, "victim", syscall.S_IFREG|0644, 0, me)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 600 { // every other block: one extent each
		if _, err := f.Write(a.Ino, seeded(1, i*8192, 4096), int64(i*8192)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.SetXattr(a.Ino, "user.big", seeded(2, 0, 3000), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Fsync(a.Ino, false); err != nil {
		t.Fatal(err)
	}
	if err := f.OpenFile(a.Ino); err != nil {
		t.Fatal(err)
	}
	if err := f.Unlink(root, "victim"); err != nil {
		t.Fatal(err)
	}
	if err := f.FsyncDir(root); err != nil {
		t.Fatal(err)
	}
	from := len(rec.Log())
	f.Release(a.Ino)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	log := rec.Log()
	images := 0
	check := func(img []byte, what string) {
		t.Helper()
		images++
		if rep, err := fsck.Check(disk.NewMemFrom(slices.Clone(img))); err != nil || !rep.Clean() {
			t.Fatalf("%s: fsck before recovery: %v %v", what, err, rep.Problems)
		}
		dev := disk.NewMemFrom(img)
		g, err := fs.Open(dev, fs.Options{})
		if err != nil {
			t.Fatalf("%s: open: %v", what, err)
		}
		if st := g.StatFS(); st.Bfree != before.Bfree || st.Ffree != before.Ffree {
			t.Errorf("%s: %d blocks and %d inodes free, %d and %d before the file", what, st.Bfree, st.Ffree, before.Bfree, before.Ffree)
		}
		if _, err := g.Lookup(root, "victim"); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s: the unlinked name: %v", what, err)
		}
		if err := g.Deep(); err != nil {
			t.Errorf("%s: deep check: %v", what, err)
		}
		if err := g.Close(); err != nil {
			t.Fatalf("%s: close: %v", what, err)
		}
		checkImage(t, dev)
	}
	all := func(int) bool { return true }
	for p := from; p < len(log); p++ {
		switch log[p].Kind {
		case disk.EventFlush:
			check(rec.CrashImage(p, nil, nil), fmt.Sprintf("flush at event %d", p))
		case disk.EventWrite:
			check(rec.CrashImage(p, nil, nil), fmt.Sprintf("event %d, unflushed writes lost", p))
			check(rec.CrashImage(p, all, nil), fmt.Sprintf("event %d, unflushed writes kept", p))
		}
	}
	t.Logf("%d events after the durable unlink: %d crash images", len(log)-from, images)
	if images < 10 {
		t.Errorf("only %d crash images: the reclaim did not span transactions", images)
	}
}
