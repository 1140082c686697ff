package fsck

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/mkfs"
)

// The corruption campaign: a populated image, and trials that each damage
// one metadata block (random bytes, zeroes, one flipped bit, or an older
// valid version of the block) and then run fsck -y. Every trial must end
// without a panic or a hang, exit 0 or 1 (4 is counted and must come
// with a reason), leave a second check clean and a filesystem that opens,
// and every path whose metadata was not in the damaged block must read
// back identical (content, symlink target, attributes).
//
// A path's metadata is the inode-table block and tree nodes of its own
// inode and, for every directory on the way to it, that directory's
// inode-table block and index nodes: damage there may cost the path its
// name (the inode then survives in /lost+found, which the campaign counts
// but does not require).
//
// Reduced size by default (it runs under go test -race in CI);
// AGFS_CAMPAIGN=full runs 500 trials over 6,000 items made (over 5,000
// paths remain after the deletes and renames of the second half).

type campaignSize struct {
	files, trials int
	imageBytes    int64
}

func campaignConfig() campaignSize {
	if os.Getenv("AGFS_CAMPAIGN") == "full" {
		return campaignSize{files: 6000, trials: 500, imageBytes: 256 << 20}
	}
	return campaignSize{files: 400, trials: 40, imageBytes: 48 << 20}
}

// expected is what one path must read back as.
type expected struct {
	path   string
	ino    uint64
	mode   uint32
	size   uint64
	sum    [32]byte // content, or symlink target
	xattrs map[string]string
	meta   map[uint64]bool // the blocks its survival depends on
}

type campaignImage struct {
	sb      *layout.Superblock
	final   []byte
	older   []byte // the image after the first half of the population
	paths   []*expected
	meta    []uint64 // every metadata block of the final image
	oldMeta []uint64 // those whose older version differs and still verifies
}

func TestCorruptionCampaign(t *testing.T) {
	cfg := campaignConfig()
	start := time.Now()
	ci := buildCampaign(t, cfg)
	t.Logf("image: %s, %d paths, %d metadata blocks (%d with an older valid version), built in %v",
		layout.Bytes(cfg.imageBytes), len(ci.paths), len(ci.meta), len(ci.oldMeta), time.Since(start).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(uint64(cfg.trials), 7))
	kinds := []string{"random", "zeroes", "bitflip", "older"}
	type tally struct{ trials, detected, exit0, exit1, exit4 int }
	byKind := map[string]*tally{}
	var survived, required, bonus, affected int
	var slowest time.Duration
	rd := newReader()
	img := make([]byte, len(ci.final)) // reused: a fresh 256 MiB a trial costs more than the trial
	for trial := range cfg.trials {
		if trial > 0 && trial%50 == 0 {
			t.Logf("%d trials in %v", trial, time.Since(start).Round(time.Second))
		}
		kind := kinds[trial%len(kinds)]
		var blk uint64
		if kind == "older" {
			blk = ci.oldMeta[rng.IntN(len(ci.oldMeta))]
		} else {
			blk = ci.meta[rng.IntN(len(ci.meta))]
		}
		copy(img, ci.final)
		ci.corrupt(img, blk, kind, rng)
		bs := uint64(ci.sb.BlockSize)
		damaged := bytes.Clone(img[blk*bs : (blk+1)*bs])
		// keep saves the damaged image for a failure to be replayed.
		keep := func() string {
			name := fmt.Sprintf("%s/agfs-campaign-trial-%d.img", os.TempDir(), trial)
			out := bytes.Clone(ci.final)
			copy(out[blk*bs:], damaged)
			if err := os.WriteFile(name, out, 0o600); err != nil {
				return err.Error()
			}
			return name
		}

		dev := disk.NewMemFrom(img)
		t0 := time.Now()
		res, err := repairWithin(dev, time.Minute)
		if err != nil {
			t.Logf("damaged image kept in %s", keep())
		}
		slowest = max(slowest, time.Since(t0))
		if err != nil {
			t.Fatalf("trial %d (%s, block %d): repair: %v", trial, kind, blk, err)
		}
		k := byKind[kind]
		if k == nil {
			k = &tally{}
			byKind[kind] = k
		}
		k.trials++
		if !res.Before.Clean() {
			k.detected++
		} else {
			h := layout.ReadHeader(ci.final[blk*uint64(ci.sb.BlockSize):])
			t.Logf("trial %d (%s, block %d, %s): not detected", trial, kind, blk, layout.MagicName(h.Magic))
		}
		switch res.Code() {
		case ExitClean:
			k.exit0++
		case ExitCorrected:
			k.exit1++
		case ExitUncorrected:
			k.exit4++
			if len(res.Remaining()) == 0 {
				t.Errorf("trial %d (%s, block %d): exit 4 with no reason", trial, kind, blk)
			}
			t.Errorf("trial %d (%s, block %d): exit 4: %v", trial, kind, blk, res.Remaining())
			continue
		default:
			t.Fatalf("trial %d: exit %d", trial, res.Code())
		}
		// The second fsck -n: Repair's own check of the repaired device
		// (Result.After), or the first one when there was nothing to do.
		if left := res.Remaining(); len(left) > 0 {
			t.Errorf("trial %d (%s, block %d): second check: %v", trial, kind, blk, left)
			continue
		}
		f, err := fs.Open(dev, fs.Options{})
		if err != nil {
			t.Errorf("trial %d (%s, block %d): open after repair: %v", trial, kind, blk, err)
			continue
		}
		for _, e := range ci.paths {
			ok, hung := readsBackWithin(e, f, rd, time.Minute)
			if hung {
				t.Fatalf("trial %d (%s, block %d): reading %s (inode %d) back hangs; damaged image kept in %s",
					trial, kind, blk, e.path, e.ino, keep())
			}
			if e.meta[blk] {
				affected++
				if ok {
					bonus++
				}
				continue
			}
			required++
			if ok {
				survived++
			} else {
				t.Errorf("trial %d (%s, block %d): %s (inode %d) did not survive, though none of its metadata was damaged",
					trial, kind, blk, e.path, e.ino)
			}
		}
		if err := f.Close(); err != nil {
			t.Errorf("trial %d: close: %v", trial, err)
		}
	}
	total := tally{}
	for _, kind := range kinds {
		k := byKind[kind]
		if k == nil {
			continue
		}
		t.Logf("%-8s %4d trials, %4d detected (%5.1f%%), exit 0/1/4: %d/%d/%d", kind, k.trials, k.detected,
			100*float64(k.detected)/float64(k.trials), k.exit0, k.exit1, k.exit4)
		total.trials += k.trials
		total.detected += k.detected
	}
	t.Logf("all      %4d trials, %4d detected (%5.1f%%); paths that had to survive: %d of %d (%.2f%%); paths whose metadata was hit that survived anyway: %d of %d; slowest repair %v; total %v",
		total.trials, total.detected, 100*float64(total.detected)/float64(total.trials),
		survived, required, 100*float64(survived)/float64(max(required, 1)), bonus, affected,
		slowest.Round(time.Millisecond), time.Since(start).Round(time.Second))
}

// readsBackWithin is readsBack, or hung after limit.
func readsBackWithin(e *expected, f *fs.FS, rd *reader, limit time.Duration) (ok, hung bool) {
	done := make(chan bool, 1)
	go func() { done <- e.readsBack(f, rd) }()
	select {
	case ok := <-done:
		return ok, false
	case <-time.After(limit):
		return false, true
	}
}

// repairWithin runs Repair with -y, failing a hang or a panic.
func repairWithin(dev disk.Device, limit time.Duration) (*Result, error) {
	type out struct {
		res *Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- out{err: fmt.Errorf("panic: %v", r)}
			}
		}()
		res, err := Repair(dev, Options{Mode: Yes})
		done <- out{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-time.After(limit):
		return nil, fmt.Errorf("no answer in %v: hung", limit)
	}
}

func (ci *campaignImage) corrupt(img []byte, blk uint64, kind string, rng *rand.Rand) {
	bs := uint64(ci.sb.BlockSize)
	b := img[blk*bs : (blk+1)*bs]
	switch kind {
	case "random":
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	case "zeroes":
		clear(b)
	case "bitflip":
		i := rng.IntN(len(b) * 8)
		b[i/8] ^= 1 << (i % 8)
	case "older":
		copy(b, ci.older[blk*bs:(blk+1)*bs])
	}
}

// readsBack reports whether the path resolves to a file of the same type
// with the same content (or target) and attributes.
func (e *expected) readsBack(f *fs.FS, r *reader) bool {
	ino := uint64(layout.RootIno)
	var a fs.Attr
	var err error
	for _, name := range strings.Split(e.path, "/") {
		if a, err = f.Lookup(ino, name); err != nil {
			return false
		}
		ino = a.Ino
	}
	if a.Mode != e.mode || a.Size != e.size {
		return false // (a damaged size can be 2^57: do not read it)
	}
	got, err := r.contentSum(f, a)
	if err != nil || got != e.sum {
		return false
	}
	xs, err := r.xattrsOf(f, ino)
	return err == nil && maps(xs, e.xattrs)
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// reader reads files back with buffers it keeps: the campaign reads
// every file after every trial.
type reader struct{ data, list, val []byte }

func newReader() *reader {
	return &reader{data: make([]byte, 1<<20), list: make([]byte, 64<<10), val: make([]byte, 64<<10)}
}

func (r *reader) contentSum(f *fs.FS, a fs.Attr) ([32]byte, error) {
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		s, err := f.Readlink(a.Ino)
		return sha256.Sum256([]byte(s)), err
	case syscall.S_IFREG:
		h := sha256.New()
		buf := r.data
		for off := int64(0); off < int64(a.Size); {
			n, err := f.Read(a.Ino, buf, off)
			if err != nil {
				return [32]byte{}, err
			}
			if n == 0 {
				break
			}
			h.Write(buf[:n])
			off += int64(n)
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		return s, nil
	}
	return [32]byte{}, nil
}

func (r *reader) xattrsOf(f *fs.FS, ino uint64) (map[string]string, error) {
	list := r.list
	n, err := f.ListXattr(ino, list)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(list[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := r.val
		m, err := f.GetXattr(ino, name, val)
		if err != nil {
			return nil, err
		}
		out[name] = string(val[:m])
	}
	return out, nil
}

// buildCampaign populates an image in two halves, keeping the image
// after the first as the source of older block versions, and records
// what every path must read back as and which blocks it depends on.
func buildCampaign(t *testing.T, cfg campaignSize) *campaignImage {
	t.Helper()
	dev, sb := newImage(t, cfg.imageBytes, mkfs.Options{})
	ci := &campaignImage{sb: sb}
	rng := rand.New(rand.NewPCG(1, 2))
	var dirs []uint64
	half := cfg.files / 2
	made := 0
	for _, part := range []int{half, cfg.files - half} {
		f, err := fs.Open(dev, fs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if dirs == nil {
			dirs = []uint64{layout.RootIno}
		}
		for range part {
			populateOne(t, f, rng, &dirs, made)
			made++
		}
		if made == cfg.files {
			mutate(t, f, rng, dirs)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if ci.older == nil {
			ci.older = bytes.Clone(dev.Bytes())
		}
	}
	ci.final = bytes.Clone(dev.Bytes())
	if rep := mustCheck(t, dev); !rep.Clean() {
		t.Fatalf("populated image: %v", rep.Problems)
	}
	ci.index(t, dev)
	return ci
}

// populateOne makes file number i: a directory now and then, nested, and
// otherwise files of every kind the campaign wants.
func populateOne(t *testing.T, f *fs.FS, rng *rand.Rand, dirs *[]uint64, i int) {
	t.Helper()
	must := func(a fs.Attr, err error) fs.Attr {
		t.Helper()
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		return a
	}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	parent := (*dirs)[rng.IntN(len(*dirs))]
	name := fmt.Sprintf("n%05d", i)
	switch {
	case i%25 == 0:
		a := must(f.Mkdir(parent, name, 0755, me))
		*dirs = append(*dirs, a.Ino)
	case i%17 == 0:
		target := strings.Repeat("t", 1+rng.IntN(40))
		if i%51 == 0 {
			target = strings.Repeat("long/", 60) // 300 bytes: mapped by extents
		}
		must(f.Symlink(parent, name, target, me))
	case i%41 == 0:
		must(f.Mknod(parent, name, syscall.S_IFIFO|0644, 0, me))
	default:
		a := must(f.Mknod(parent, name, syscall.S_IFREG|0644, 0, me))
		size := rng.IntN(9000)
		switch {
		case i%97 == 0: // large
			size = 1<<20 + rng.IntN(1<<20)
		case i%13 == 0:
			size = 20000 + rng.IntN(40000)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if size > 0 {
			_, err := f.Write(a.Ino, data, 0)
			check(err)
		}
		if i%89 == 0 { // sparse and fragmented: every other block over 400 KiB
			blk := make([]byte, 4096)
			for k := range 50 {
				for j := range blk {
					blk[j] = byte(k + j)
				}
				_, err := f.Write(a.Ino, blk, int64(1<<20+2*k*4096))
				check(err)
			}
		}
		if i%9 == 0 {
			check(f.SetXattr(a.Ino, "user.small", []byte(fmt.Sprint(i)), 0))
		}
		if i%61 == 0 {
			check(f.SetXattr(a.Ino, "user.big", bytes.Repeat([]byte{byte(i)}, 3000), 0))
		}
		if i%23 == 0 && len(*dirs) > 1 {
			other := (*dirs)[rng.IntN(len(*dirs))]
			if _, err := f.Link(a.Ino, other, name+"-link"); err != nil && err != syscall.EEXIST {
				check(err)
			}
		}
	}
}

// mutate changes the second half's image after the snapshot: removals,
// renames, appends, attribute changes, so many blocks have an older
// version that differs.
func mutate(t *testing.T, f *fs.FS, rng *rand.Rand, dirs []uint64) {
	t.Helper()
	for _, d := range dirs {
		var names []string
		if err := f.ReadDir(d, 0, false, func(e fs.DirEntry) bool {
			if e.Name != "." && e.Name != ".." && e.Mode&syscall.S_IFMT == syscall.S_IFREG {
				names = append(names, e.Name)
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		for i, name := range names {
			switch rng.IntN(8) {
			case 0:
				if err := f.Unlink(d, name); err != nil {
					t.Fatal(err)
				}
			case 1:
				if err := f.Rename(d, name, dirs[i%len(dirs)], name+"-moved", 0); err != nil && err != syscall.EEXIST {
					t.Fatal(err)
				}
			case 2:
				a, err := f.Lookup(d, name)
				if err == nil {
					_, err = f.Write(a.Ino, []byte("appended"), int64(a.Size))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// index walks the final image: the expected state of every path, and the
// metadata blocks (from fsck's own scan) the trials damage.
func (ci *campaignImage) index(t *testing.T, dev *disk.Mem) {
	t.Helper()
	_, sc, err := check(dev, true)
	if err != nil || sc == nil {
		t.Fatalf("scan: %v", err)
	}
	g := &ci.sb.Geometry
	own := func(ino uint64, trees ...int) []uint64 {
		in := sc.all[ino]
		blks := []uint64{in.table}
		for _, tr := range trees {
			for _, nc := range in.rep.nodes[tr] {
				blks = append(blks, nc.blk)
			}
		}
		return blks
	}

	f, err := fs.Open(disk.NewMemFrom(bytes.Clone(ci.final)), fs.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := newReader()
	var walk func(d uint64, prefix string, above []uint64)
	walk = func(d uint64, prefix string, above []uint64) {
		above = append(slices.Clone(above), own(d, treeDir)...)
		var es []fs.DirEntry
		if err := f.ReadDir(d, 0, false, func(e fs.DirEntry) bool {
			if e.Name != "." && e.Name != ".." {
				es = append(es, e)
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			a, err := f.Lookup(d, e.Name)
			if err != nil {
				t.Fatal(err)
			}
			if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				walk(a.Ino, prefix+e.Name+"/", above)
				continue
			}
			x := &expected{path: prefix + e.Name, ino: a.Ino, mode: a.Mode, size: a.Size, meta: map[uint64]bool{}}
			if x.sum, err = rd.contentSum(f, a); err != nil {
				t.Fatal(err)
			}
			if x.xattrs, err = rd.xattrsOf(f, a.Ino); err != nil {
				t.Fatal(err)
			}
			for _, b := range append(slices.Clone(above), own(a.Ino, treeData, treeXattr)...) {
				x.meta[b] = true
			}
			ci.paths = append(ci.paths, x)
		}
	}
	walk(layout.RootIno, "", nil)

	// Every metadata block: superblocks, AG headers, initialised bitmap
	// and inode-table blocks, tree nodes, log superblocks.
	bs := uint64(ci.sb.BlockSize)
	seen := map[uint64]bool{}
	add := func(blk uint64) {
		if !seen[blk] {
			seen[blk] = true
			ci.meta = append(ci.meta, blk)
		}
	}
	for a := range g.AGCount {
		add(g.SuperBlock(a))
		hblk := g.AGHeaderBlock(a)
		add(hblk)
		h, err := layout.DecodeAGHeader(ci.final[hblk*bs:(hblk+1)*bs], g, ci.sb.Seed(), a)
		if err != nil {
			t.Fatal(err)
		}
		for i := range h.BlockBitmapInit {
			add(g.BlockBitmapStart(a) + uint64(i))
		}
		for i := range h.InodeBitmapInit {
			add(g.InodeBitmapStart(a) + uint64(i))
		}
		for i := range h.InodeTableInit {
			add(g.InodeTableStart(a) + uint64(i))
		}
	}
	inos := make([]uint64, 0, len(sc.all))
	for ino := range sc.all {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	for _, ino := range inos {
		for _, blk := range own(ino, treeData, treeDir, treeXattr) {
			add(blk)
		}
	}
	add(ci.sb.LogStart)
	add(ci.sb.LogStart + 1)
	slices.Sort(ci.meta)
	for _, blk := range ci.meta {
		old, cur := ci.older[blk*bs:(blk+1)*bs], ci.final[blk*bs:(blk+1)*bs]
		h := layout.ReadHeader(old)
		if bytes.Equal(old[layout.HeaderSize:], cur[layout.HeaderSize:]) ||
			layout.Check(old, ci.sb.Seed(), h.Magic, blk, h.Owner) != nil {
			continue
		}
		ci.oldMeta = append(ci.oldMeta, blk)
	}
}
