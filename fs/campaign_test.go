package fs_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
	"agfs/fsck"
	"agfs/layout"
)

// The crash campaign: CrashMonkey at the filesystem level. A workload runs
// on a recording device against a model of the namespace (cnode) that
// records, after every operation, the metadata state it leaves and what
// each sync made durable. Then every flush point, and random points with
// the unflushed writes kept, dropped, reordered or torn, become crash
// images, and each must
//
//   - pass fsck.Check as it is (fsck replays the log in memory, as the
//     next mount will);
//   - open (log recovery, orphan reclaim), pass fs.Deep, close, and pass
//     fsck.Check again;
//   - show a namespace (names, inodes, sizes, link counts, xattrs,
//     symlink targets) equal to the state after some operation j with
//     lo <= j <= hi: hi is the last operation begun before the crash, lo
//     the last one a completed fsync, fdatasync, fsync of a directory or
//     sync promised durable. One j for the whole tree is the prefix
//     property: metadata operations survive in the order they returned;
//   - hold in every regular file only bytes some version allows (dataOK):
//     exactly the content at its last completed fsync, changed only by
//     writes and zeroings begun since, where a zeroing (truncate, punch,
//     zero range) that is part of the durable prefix hides every older
//     version. Every write has its own nonzero pattern, so bytes nobody
//     wrote (another file's old data, stale data past a truncate) show.
//
// AGFS_CAMPAIGN=full runs the full size (thousands of images); the
// default is a sample sized for CI under the race detector.
var campaignFull = os.Getenv("AGFS_CAMPAIGN") == "full"

// cnode is a file, directory or symlink of the model.
type cnode struct {
	ino    uint64
	kind   byte // 'f' regular file, 'd' directory, 'l' symlink
	kids   map[string]*cnode
	parent *cnode
	target string
	xattr  map[string]string
	nlink  int    // files and symlinks
	data   []byte // files: the content now
	hist   []dataOp
	// lastMeta is the last operation that changed the inode (what fsync
	// makes durable), lastData the last that changed data or size, or
	// created it (fdatasync).
	lastMeta, lastData int
}

// dataOp is one change of a file's content, in operation order.
type dataOp struct {
	op   int
	kind byte  // 'w' write of seed's pattern, 'z' zeroing, 'b' base: the content at a sync
	off  int64 // 'w', 'z'
	n    int64 // 'z' to the end: math.MaxInt64
	seed uint32
	base []byte
}

// cop is one operation of a workload.
type cop struct {
	what       string
	begin, end int // event indexes of its marks
	// guarantee: for syncs, the last operation they made durable; -1
	// for the others.
	guarantee int
}

// cstate is the model after one operation.
type cstate struct {
	text  string
	files map[uint64]*cnode // regular files by inode number
}

type campaign struct {
	t      testing.TB
	rec    *disk.Recorder
	f      *fs.FS
	rng    *rand.Rand
	root   *cnode
	lf     *cnode
	seed   uint32
	ops    []cop
	states []cstate
}

// campaignDev is the device size of the campaign's workloads: small, as
// every crash image is a copy of it.
const campaignDev = 12 << 20

// newCampaign formats a device with p, opens it on a recorder and starts
// the model with the empty filesystem as operation 0.
func newCampaign(t testing.TB, p layout.Params, seed uint64) *campaign {
	// The device starts full of bytes nobody wrote (as a used disk does;
	// mkfs writes little), so a block mapped without its data shows.
	base := disk.NewMemFrom(seeded(0, 0, campaignDev))
	format(t, base, p)
	c := &campaign{t: t, rec: disk.NewRecorder(base.Bytes()), rng: rand.New(rand.NewPCG(seed, 77))}
	f, err := fs.Open(c.rec, fs.Options{CacheBlocks: 1024})
	if err != nil {
		t.Fatal(err)
	}
	c.f = f
	c.root = c.node('d', root)
	c.root.parent = c.root
	c.lf = c.node('d', c.lookupIno(root, fs.LostFound))
	c.lf.parent = c.root
	c.root.kids[fs.LostFound] = c.lf
	c.ops = []cop{{what: "open", begin: -1, end: -1, guarantee: -1}}
	c.states = []cstate{c.snapshot()}
	return c
}

func (c *campaign) lookupIno(dir uint64, name string) uint64 {
	a, err := c.f.Lookup(dir, name)
	if err != nil {
		c.t.Fatalf("lookup %s: %v", name, err)
	}
	return a.Ino
}

func (c *campaign) node(kind byte, ino uint64) *cnode {
	n := &cnode{ino: ino, kind: kind, xattr: map[string]string{}, nlink: 1}
	if kind == 'd' {
		n.kids = map[string]*cnode{}
	}
	return n
}

// do runs one operation between two marks: fn does it on the filesystem
// (an error fails the test), apply changes the model (k is the
// operation's index). Then the live filesystem must match the model.
func (c *campaign) do(what string, fn func() error, apply func(k int)) {
	c.t.Helper()
	k := len(c.ops)
	c.rec.Mark(fmt.Sprintf("begin %d", k))
	if err := fn(); err != nil {
		c.t.Fatalf("op %d %s: %v", k, what, err)
	}
	c.rec.Mark(fmt.Sprintf("end %d", k))
	c.ops = append(c.ops, cop{what: what, guarantee: -1})
	apply(k)
	st := c.snapshot()
	c.states = append(c.states, st)
	if got := fsText(c.f); got != st.text {
		c.t.Fatalf("op %d %s: the filesystem and the model differ:\n%s", k, what, textDiff(got, st.text))
	}
}

// snapshot renders the model's namespace.
func (c *campaign) snapshot() cstate {
	st := cstate{files: map[uint64]*cnode{}}
	var lines []string
	var walk func(d *cnode, path string)
	walk = func(d *cnode, path string) {
		subdirs := 0
		for name, n := range d.kids {
			p := path + "/" + name
			switch n.kind {
			case 'd':
				subdirs++
				walk(n, p)
			case 'f':
				st.files[n.ino] = n
				lines = append(lines, fileLine(p, n.ino, n.nlink, int64(len(n.data)), n.xattr))
			case 'l':
				lines = append(lines, symlinkLine(p, n.ino, n.nlink, n.target, n.xattr))
			}
		}
		lines = append(lines, dirLine(path, d.ino, 2+subdirs, d.xattr))
	}
	walk(c.root, "")
	slices.Sort(lines)
	st.text = strings.Join(lines, "\n")
	return st
}

func xattrText(x map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(x)) {
		fmt.Fprintf(&b, " %s=%d:%08x", k, len(x[k]), crc32.ChecksumIEEE([]byte(x[k])))
	}
	return b.String()
}

func fileLine(path string, ino uint64, nlink int, size int64, x map[string]string) string {
	return fmt.Sprintf("%s f ino=%d nlink=%d size=%d%s", path, ino, nlink, size, xattrText(x))
}

func symlinkLine(path string, ino uint64, nlink int, target string, x map[string]string) string {
	return fmt.Sprintf("%s l ino=%d nlink=%d -> %d:%08x%s", path, ino, nlink, len(target), crc32.ChecksumIEEE([]byte(target)), xattrText(x))
}

func dirLine(path string, ino uint64, nlink int, x map[string]string) string {
	if path == "" {
		path = "/"
	}
	return fmt.Sprintf("%s d ino=%d nlink=%d%s", path, ino, nlink, xattrText(x))
}

// fsText renders a filesystem's namespace as snapshot renders the model's;
// a failure to read it is part of the text, so it cannot match.
func fsText(f *fs.FS) string {
	var lines []string
	fail := func(format string, a ...any) { lines = append(lines, "ERROR "+fmt.Sprintf(format, a...)) }
	xattrs := func(ino uint64) map[string]string {
		x := map[string]string{}
		n, err := f.ListXattr(ino, nil)
		if err != nil {
			fail("inode %d: listxattr: %v", ino, err)
			return x
		}
		buf := make([]byte, n)
		if _, err := f.ListXattr(ino, buf); err != nil {
			fail("inode %d: listxattr: %v", ino, err)
		}
		for _, name := range strings.Split(string(buf), "\x00") {
			if name == "" {
				continue
			}
			v := make([]byte, 65536)
			k, err := f.GetXattr(ino, name, v)
			if err != nil {
				fail("inode %d: getxattr %s: %v", ino, name, err)
			}
			x[name] = string(v[:k])
		}
		return x
	}
	var walk func(dir uint64, path string, nlink uint32)
	walk = func(dir uint64, path string, nlink uint32) {
		subdirs := 0
		err := f.ReadDir(dir, 0, true, func(e fs.DirEntry) bool {
			if e.Name == "." || e.Name == ".." {
				return true
			}
			if e.Attr == nil {
				fail("%s/%s: no attributes", path, e.Name)
				return true
			}
			p, a := path+"/"+e.Name, *e.Attr
			switch a.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				subdirs++
				walk(e.Ino, p, a.Nlink)
			case syscall.S_IFREG:
				lines = append(lines, fileLine(p, e.Ino, int(a.Nlink), int64(a.Size), xattrs(e.Ino)))
			case syscall.S_IFLNK:
				target, err := f.Readlink(e.Ino)
				if err != nil {
					fail("%s: readlink: %v", p, err)
				}
				lines = append(lines, symlinkLine(p, e.Ino, int(a.Nlink), target, xattrs(e.Ino)))
			default:
				fail("%s: mode %#o", p, a.Mode)
			}
			return true
		})
		if err != nil {
			fail("%s: readdir: %v", path, err)
		}
		if nlink != uint32(2+subdirs) {
			fail("%s: nlink %d with %d subdirectories", path, nlink, subdirs)
		}
		lines = append(lines, dirLine(path, dir, int(nlink), xattrs(dir)))
	}
	a, err := f.GetAttr(root)
	if err != nil {
		return "ERROR root: " + err.Error()
	}
	walk(root, "", a.Nlink)
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// textDiff lists the lines only one of two renderings has.
func textDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "  fs:    %s\n", l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "  model: %s\n", l)
		}
	}
	return b.String()
}

// The operations. Each changes the filesystem and the model alike.

func (c *campaign) newSeed() uint32 {
	c.seed++
	return c.seed
}

func (c *campaign) create(d *cnode, name string) *cnode {
	c.t.Helper()
	return c.newEntry(d, name, 'f', "", func() (fs.Attr, error) {
		return c.f.Mknod(d.ino, name, syscall.S_IFREG|0644, 0, me)
	})
}

func (c *campaign) mkdir(d *cnode, name string) *cnode {
	c.t.Helper()
	return c.newEntry(d, name, 'd', "", func() (fs.Attr, error) { return c.f.Mkdir(d.ino, name, 0755, me) })
}

func (c *campaign) symlink(d *cnode, name, target string) *cnode {
	c.t.Helper()
	return c.newEntry(d, name, 'l', target, func() (fs.Attr, error) { return c.f.Symlink(d.ino, name, target, me) })
}

// newEntry makes a new inode of kind (with a symlink's target) named name
// in d with mk.
func (c *campaign) newEntry(d *cnode, name string, kind byte, target string, mk func() (fs.Attr, error)) *cnode {
	c.t.Helper()
	var n *cnode
	c.do(fmt.Sprintf("new %c %s", kind, name), func() error {
		a, err := mk()
		n = c.node(kind, a.Ino)
		return err
	}, func(k int) {
		n.parent, n.target = d, target // the parent matters for directories only
		d.kids[name] = n
		n.lastMeta, n.lastData, d.lastMeta = k, k, k
	})
	return n
}

// write writes n bytes of a new pattern at off.
func (c *campaign) write(x *cnode, off, n int64) {
	c.t.Helper()
	seed := c.newSeed()
	p := seeded(seed, int(off), int(n))
	c.do(fmt.Sprintf("write ino %d %d+%d", x.ino, off, n), func() error {
		k, err := c.f.Write(x.ino, p, off)
		if err == nil && k != len(p) {
			err = fmt.Errorf("short write: %d bytes", k)
		}
		return err
	}, func(k int) {
		if end := off + n; end > int64(len(x.data)) {
			x.data = append(x.data, make([]byte, end-int64(len(x.data)))...)
		}
		copy(x.data[off:], p)
		x.hist = append(x.hist, dataOp{op: k, kind: 'w', off: off, n: n, seed: seed})
		x.lastMeta, x.lastData = k, k
	})
	c.checkContent(x)
}

func (c *campaign) truncate(x *cnode, size int64) {
	c.t.Helper()
	c.do(fmt.Sprintf("truncate ino %d to %d", x.ino, size), func() error {
		_, err := c.f.SetAttr(x.ino, fs.SetAttr{Valid: fs.SetSize, Size: uint64(size)})
		return err
	}, func(k int) {
		if size < int64(len(x.data)) {
			x.data = x.data[:size]
			x.hist = append(x.hist, dataOp{op: k, kind: 'z', off: size, n: math.MaxInt64 - size})
		} else {
			x.data = append(x.data, make([]byte, size-int64(len(x.data)))...)
		}
		x.lastMeta, x.lastData = k, k
	})
	c.checkContent(x)
}

// fallocate runs fallocate(2) with mode (0, keep size, punch hole, zero
// range).
func (c *campaign) fallocate(x *cnode, mode uint32, off, n int64) {
	c.t.Helper()
	c.do(fmt.Sprintf("fallocate ino %d mode %#x %d+%d", x.ino, mode, off, n), func() error {
		return c.f.Fallocate(x.ino, mode, off, n)
	}, func(k int) {
		end := off + n
		if mode&fs.FallocKeepSize == 0 && end > int64(len(x.data)) {
			x.data = append(x.data, make([]byte, end-int64(len(x.data)))...)
		}
		if mode&(fs.FallocPunchHole|fs.FallocZeroRange) != 0 {
			clear(x.data[min(off, int64(len(x.data))):min(end, int64(len(x.data)))])
			x.hist = append(x.hist, dataOp{op: k, kind: 'z', off: off, n: n})
		}
		x.lastMeta, x.lastData = k, k
	})
	c.checkContent(x)
}

// setxattr sets name to n bytes of a new pattern.
func (c *campaign) setxattr(x *cnode, name string, n int) {
	c.t.Helper()
	v := seeded(c.newSeed(), 0, n)
	c.do(fmt.Sprintf("setxattr ino %d %s (%d bytes)", x.ino, name, n), func() error {
		return c.f.SetXattr(x.ino, name, v, 0)
	}, func(k int) {
		x.xattr[name] = string(v)
		x.lastMeta = k
	})
}

func (c *campaign) removexattr(x *cnode, name string) {
	c.t.Helper()
	c.do(fmt.Sprintf("removexattr ino %d %s", x.ino, name), func() error {
		return c.f.RemoveXattr(x.ino, name)
	}, func(k int) {
		delete(x.xattr, name)
		x.lastMeta = k
	})
}

func (c *campaign) link(x, d *cnode, name string) {
	c.t.Helper()
	c.do(fmt.Sprintf("link ino %d as %s", x.ino, name), func() error {
		_, err := c.f.Link(x.ino, d.ino, name)
		return err
	}, func(k int) {
		d.kids[name] = x
		x.nlink++
		x.lastMeta, d.lastMeta = k, k
	})
}

func (c *campaign) unlink(d *cnode, name string) {
	c.t.Helper()
	x := d.kids[name]
	c.do("unlink "+name, func() error { return c.f.Unlink(d.ino, name) }, func(k int) {
		delete(d.kids, name)
		x.nlink--
		x.lastMeta, d.lastMeta = k, k
	})
}

func (c *campaign) rmdir(d *cnode, name string) {
	c.t.Helper()
	c.do("rmdir "+name, func() error { return c.f.Rmdir(d.ino, name) }, func(k int) {
		delete(d.kids, name)
		d.lastMeta = k
	})
}

// rename renames; the caller makes sure it is valid.
func (c *campaign) rename(sd *cnode, sn string, dd *cnode, dn string, flags uint32) {
	c.t.Helper()
	c.do(fmt.Sprintf("rename %s to %s flags %d", sn, dn, flags), func() error {
		return c.f.Rename(sd.ino, sn, dd.ino, dn, flags)
	}, func(k int) {
		s, victim := sd.kids[sn], dd.kids[dn]
		sd.lastMeta, dd.lastMeta, s.lastMeta = k, k, k
		if s.kind == 'd' {
			s.parent = dd
		}
		if flags == fs.RenameExchange {
			sd.kids[sn], dd.kids[dn] = victim, s
			victim.lastMeta = k
			if victim.kind == 'd' {
				victim.parent = sd
			}
			return
		}
		delete(sd.kids, sn)
		dd.kids[dn] = s
		if victim != nil {
			victim.nlink--
			victim.lastMeta = k
		}
	})
}

// base records x's content as durable at operation k.
func (x *cnode) base(k int) {
	x.hist = append(x.hist, dataOp{op: k, kind: 'b', base: slices.Clone(x.data)})
}

func (c *campaign) fsync(x *cnode) {
	c.t.Helper()
	c.do(fmt.Sprintf("fsync ino %d", x.ino), func() error { return c.f.Fsync(x.ino, false) }, func(k int) {
		c.ops[k].guarantee = x.lastMeta
		if x.kind == 'f' {
			x.base(k)
		}
	})
}

// fdatasync promises less than fsync: the data and what reaches it (the
// size), not the other attributes or other names.
func (c *campaign) fdatasync(x *cnode) {
	c.t.Helper()
	c.do(fmt.Sprintf("fdatasync ino %d", x.ino), func() error { return c.f.Fsync(x.ino, true) }, func(k int) {
		c.ops[k].guarantee = x.lastData
		x.base(k)
	})
}

func (c *campaign) fsyncDir(d *cnode) {
	c.t.Helper()
	c.do(fmt.Sprintf("fsync dir ino %d", d.ino), func() error { return c.f.FsyncDir(d.ino) }, func(k int) {
		c.ops[k].guarantee = d.lastMeta
	})
}

// sync makes everything durable (syncfs).
func (c *campaign) sync() {
	c.t.Helper()
	c.do("sync", c.f.Sync, func(k int) {
		c.ops[k].guarantee = k
		for _, x := range c.states[k-1].files {
			x.base(k)
		}
	})
}

// checkpoint writes the log's home blocks and moves its tail, so crash
// points fall inside a checkpoint as well.
func (c *campaign) checkpoint() {
	c.t.Helper()
	c.do("checkpoint", func() error { return c.f.Log().Checkpoint() }, func(int) {})
}

// checkContent reads x back whole and compares it with the model.
func (c *campaign) checkContent(x *cnode) {
	c.t.Helper()
	buf := make([]byte, len(x.data)+1)
	k, err := c.f.Read(x.ino, buf, 0)
	if err != nil || !bytes.Equal(buf[:k], x.data) {
		c.t.Fatalf("ino %d: content differs from the model (%d bytes read, %d expected, %v)", x.ino, k, len(x.data), err)
	}
}

// finish closes the filesystem (its crash points belong to a last
// operation that changes nothing) and finds the operations' marks.
func (c *campaign) finish() {
	c.t.Helper()
	k := len(c.ops)
	c.rec.Mark(fmt.Sprintf("begin %d", k))
	if err := c.f.Close(); err != nil {
		c.t.Fatalf("close: %v", err)
	}
	c.rec.Mark(fmt.Sprintf("end %d", k))
	c.ops = append(c.ops, cop{what: "close", guarantee: k})
	c.states = append(c.states, c.states[k-1])
	for i, e := range c.rec.Log() {
		if e.Kind != disk.EventMark {
			continue
		}
		var which string
		var op int
		if _, err := fmt.Sscanf(e.Name, "%s %d", &which, &op); err != nil {
			c.t.Fatalf("mark %q: %v", e.Name, err)
		}
		if which == "begin" {
			c.ops[op].begin = i
		} else {
			c.ops[op].end = i
		}
	}
}

// crashStats counts what a campaign checked.
type crashStats struct {
	images, flushImages, failures int
}

// checkCampaign builds the crash images of a finished workload, at every
// stride-th flush point and at random points with the unflushed writes
// kept or dropped at random (so reordered) and one of them maybe torn,
// checks them on a few goroutines, counts the failures and reports the
// first five in full.
func (c *campaign) checkCampaign(stride, random int, seed uint64) crashStats {
	t := c.t
	points := c.rec.FlushPoints()
	log := c.rec.Log()
	type job struct {
		img  []byte
		p    int
		desc string
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var st crashStats
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), 4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				err := c.checkImage(j.img, j.p)
				mu.Lock()
				st.images++
				if err != nil {
					st.failures++
					if st.failures <= 5 {
						t.Errorf("%s: %v", j.desc, err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < len(points); i += stride {
		p := points[i]
		jobs <- job{c.rec.CrashImage(p, nil, nil), p, fmt.Sprintf("flush point %d (event %d, %s)", i, p, c.opAt(p))}
		st.flushImages++
	}
	// Half the random crashes fall on the last event before a flush,
	// where the most writes are in flight.
	rng := rand.New(rand.NewPCG(seed, 5))
	for range random {
		p := rng.IntN(len(log))
		if k := rng.IntN(2 * len(points)); k < len(points) && points[k] > 0 {
			p = points[k] - 1
		}
		img, d := c.rec.RandomCrashImage(p, rng, 0.5)
		jobs <- job{img, p, d.String() + " (" + c.opAt(p) + ")"}
	}
	close(jobs)
	wg.Wait()
	return st
}

// opAt names the operation running at event p.
func (c *campaign) opAt(p int) string {
	for k := len(c.ops) - 1; k > 0; k-- {
		if c.ops[k].begin <= p {
			state := "running"
			if c.ops[k].end <= p {
				state = "done"
			}
			return fmt.Sprintf("op %d %s %s", k, c.ops[k].what, state)
		}
	}
	return "before op 1"
}

// checkImage checks the image of a crash just after event p.
func (c *campaign) checkImage(img []byte, p int) error {
	rep, err := fsck.Check(disk.NewMemFrom(slices.Clone(img)))
	if err != nil || !rep.Clean() {
		return fmt.Errorf("fsck before recovery: %v %v", err, rep.Problems)
	}
	lo, hi := 0, 0
	for k, o := range c.ops {
		if o.begin <= p {
			hi = k
		}
		if o.end <= p && o.guarantee > lo {
			lo = o.guarantee
		}
	}
	dev := disk.NewMemFrom(img)
	g, err := fs.Open(dev, fs.Options{})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	err = c.checkRecovered(g, p, lo, hi)
	if derr := g.Deep(); derr != nil {
		err = errors.Join(err, fmt.Errorf("deep check: %w", derr))
	}
	if cerr := g.Close(); cerr != nil {
		return errors.Join(err, fmt.Errorf("close: %w", cerr))
	}
	if err != nil {
		return err
	}
	rep, err = fsck.Check(dev)
	if err != nil || !rep.Clean() {
		return fmt.Errorf("fsck after recovery: %v %v", err, rep.Problems)
	}
	return nil
}

// checkRecovered finds the states between operations lo and hi that the
// recovered namespace matches, and accepts the image if the files' data
// fits one of them.
func (c *campaign) checkRecovered(g *fs.FS, p, lo, hi int) error {
	text := fsText(g)
	var dataErr error
	for j := hi; j >= lo; j-- {
		if c.states[j].text != text {
			continue
		}
		err := c.checkFiles(g, c.states[j], p, j)
		if err == nil {
			return nil
		}
		if dataErr == nil {
			dataErr = err
		}
	}
	if dataErr != nil {
		return dataErr
	}
	near := lo
	for j := lo; j <= hi; j++ {
		if len(textDiff(text, c.states[j].text)) < len(textDiff(text, c.states[near].text)) {
			near = j
		}
	}
	return fmt.Errorf("the namespace is the state after no operation in [%d (%s), %d (%s)]; nearest %d (%s):\n%s",
		lo, c.ops[lo].what, hi, c.ops[hi].what, near, c.ops[near].what, textDiff(text, c.states[near].text))
}

// checkFiles checks the data of every regular file of state j.
func (c *campaign) checkFiles(g *fs.FS, st cstate, p, j int) error {
	for _, ino := range slices.Sorted(maps.Keys(st.files)) {
		x := st.files[ino]
		a, err := g.GetAttr(ino)
		if err != nil {
			return fmt.Errorf("ino %d: %w", ino, err)
		}
		buf := make([]byte, a.Size)
		if k, err := g.Read(ino, buf, 0); err != nil || k != len(buf) {
			return fmt.Errorf("ino %d: read %d of %d bytes: %v", ino, k, len(buf), err)
		}
		if err := c.dataOK(x, buf, p, j); err != nil {
			return fmt.Errorf("ino %d (state after op %d %s): %w", ino, j, c.ops[j].what, err)
		}
	}
	return nil
}

// dataOK checks buf, x's content after a crash at event p whose durable
// metadata is the state after operation j. From the newest change begun
// before the crash back to the last sync completed before it (or the
// empty file): a byte is allowed if a write wrote it there or a zeroing
// zeroed it; a zeroing in the durable prefix hides everything older;
// what no change since reached must hold the synced content (zero past
// its end).
func (c *campaign) dataOK(x *cnode, buf []byte, p, j int) error {
	ok := make([]bool, len(buf))
	dead := make([]bool, len(buf))
	var base []byte
	for i := len(x.hist) - 1; i >= 0; i-- {
		h := x.hist[i]
		if c.ops[h.op].begin > p {
			continue
		}
		if h.kind == 'b' {
			if c.ops[h.op].end <= p {
				base = h.base
				break
			}
			continue
		}
		lo := min(h.off, int64(len(buf)))
		hi := lo + min(h.n, int64(len(buf))-lo)
		for q := lo; q < hi; q++ {
			if ok[q] || dead[q] {
				continue
			}
			if h.kind == 'w' {
				ok[q] = buf[q] == seedByte(h.seed, int(q))
			} else {
				ok[q] = buf[q] == 0
				dead[q] = h.op <= j
			}
		}
	}
	for q := range buf {
		if ok[q] {
			continue
		}
		want := byte(0)
		if q < len(base) {
			want = base[q]
		}
		if dead[q] || buf[q] != want {
			return fmt.Errorf("byte %d is %#x: no version of the file holds it there (synced: %#x, durably zeroed: %v)", q, buf[q], want, dead[q])
		}
	}
	return nil
}
