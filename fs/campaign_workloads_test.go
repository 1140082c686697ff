package fs_test

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"agfs/fs"
	"agfs/layout"
)

// The workloads of the crash campaign: scripted ones, each aimed at one
// promise, and random ones generated from a seed.

type workload struct {
	name string
	p    layout.Params
	run  func(c *campaign)
}

// Formats: two AGs with a 1 MiB log; the smallest log (64 blocks), so
// checkpoints and the ring's wrap fall inside the workload; four AGs, so
// operations cross AG boundaries; 8 KiB blocks.
var (
	layoutSmall   = layout.Params{AGCount: 2, LogBytes: 1 << 20}
	layoutTinyLog = layout.Params{AGCount: 2, LogBytes: 64 * 4096}
	layoutFourAG  = layout.Params{AGCount: 4, LogBytes: 1 << 20}
	layout8K      = layout.Params{AGCount: 2, BlockSize: 8192, LogBytes: 1 << 20}
)

func campaignWorkloads() []workload {
	ws := []workload{
		{"fsync-new-files", layoutSmall, wlFsyncNewFiles},
		{"append-fdatasync", layoutSmall, wlAppendFdatasync},
		{"atomic-replace", layoutSmall, wlAtomicReplace},
		{"rename-chain", layoutSmall, wlRenameChain},
		{"hard-links", layoutFourAG, wlHardLinks},
		{"truncate-down-up", layoutSmall, wlTruncate},
		{"punch-zero-range", layoutSmall, wlPunchZero},
		{"fallocate-write", layoutSmall, wlFallocate},
		{"dir-tree", layoutFourAG, wlDirTree},
		{"xattrs", layoutSmall, wlXattrs},
		{"overwrite-in-place", layout8K, wlOverwrite},
		{"delete-reuse", layoutSmall, wlDeleteReuse},
		{"exchange", layoutSmall, wlExchange},
		{"extent-tree", layoutSmall, wlExtentTree},
		{"big-directory", layoutSmall, wlBigDirectory},
		{"log-wrap", layoutTinyLog, wlLogWrap},
		{"symlinks", layoutSmall, wlSymlinks},
		{"checkpoints", layoutSmall, wlCheckpoints},
	}
	for i, p := range []layout.Params{layoutSmall, layoutTinyLog, layoutFourAG, layout8K, layoutSmall, layoutTinyLog, layoutFourAG, layoutSmall} {
		seed := uint64(i + 1)
		ws = append(ws, workload{fmt.Sprintf("random-%d", seed), p, func(c *campaign) { wlRandom(c, 120) }})
	}
	return ws
}

// Every file gets data and an fsync; some files between never do.
func wlFsyncNewFiles(c *campaign) {
	d := c.mkdir(c.root, "d")
	for i := range 8 {
		dir := c.root
		if i%2 == 1 {
			dir = d
		}
		x := c.create(dir, fmt.Sprintf("f%d", i))
		c.write(x, 0, int64(1+c.rng.IntN(90000)))
		if i%3 != 2 {
			c.fsync(x)
		}
	}
}

// A database log: appends of record size, each fdatasync'd, and a header
// rewritten in place.
func wlAppendFdatasync(c *campaign) {
	x := c.create(c.root, "journal")
	c.write(x, 0, 512)
	c.fsync(x)
	c.fsyncDir(c.root)
	size := int64(512)
	for i := range 24 {
		n := int64(1 + c.rng.IntN(9000))
		c.write(x, size, n)
		size += n
		if i%4 == 3 {
			c.write(x, 0, 64) // the header
		}
		c.fdatasync(x)
	}
}

// The safe way to replace a file: write a temporary, fsync it, rename it
// over the target, fsync the directory.
func wlAtomicReplace(c *campaign) {
	d := c.mkdir(c.root, "conf")
	x := c.create(d, "target")
	c.write(x, 0, 20000)
	c.fsync(x)
	c.fsyncDir(d)
	for i := range 6 {
		tmp := c.create(d, fmt.Sprintf("target.tmp%d", i))
		c.write(tmp, 0, int64(1+c.rng.IntN(60000)))
		c.fsync(tmp)
		c.rename(d, fmt.Sprintf("target.tmp%d", i), d, "target", 0)
		if i%2 == 0 {
			c.fsyncDir(d)
		}
	}
}

// Renames with no sync between them: the survivors must be a prefix.
func wlRenameChain(c *campaign) {
	d := c.mkdir(c.root, "a")
	e := c.mkdir(c.root, "b")
	for i := range 5 {
		x := c.create(d, fmt.Sprintf("n%d", i))
		c.write(x, 0, int64(100+i*3000))
	}
	c.sync()
	c.rename(d, "n0", d, "n1", 0)
	c.rename(d, "n1", e, "m1", 0)
	c.rename(d, "n2", e, "m1", 0)
	c.rename(e, "m1", d, "n3", fs.RenameExchange)
	c.rename(d, "n4", d, "n0", fs.RenameNoReplace)
	c.rename(c.root, "b", d, "sub", 0)
	c.rename(d, "n0", d, "sub2", 0)
	c.fsyncDir(d)
	c.rename(d, "sub", c.root, "b", 0)
}

// Hard links in several directories (and AGs); unlinks of some names.
func wlHardLinks(c *campaign) {
	d1 := c.mkdir(c.root, "d1")
	d2 := c.mkdir(c.root, "d2")
	x := c.create(d1, "x")
	c.write(x, 0, 30000)
	c.link(x, d2, "x2")
	c.fsync(x)
	c.link(x, c.root, "x3")
	c.unlink(d1, "x")
	c.fsync(x)
	y := c.create(d2, "y")
	c.link(y, d1, "y2")
	c.write(y, 0, 5000)
	c.unlink(d2, "y")
	c.fsyncDir(d2)
	c.unlink(d1, "y2") // the last link: freed
	c.unlink(d2, "x2")
	c.fsyncDir(d1)
	c.write(x, 30000, 10000)
}

// Truncates down into the middle of a block, then the file grows again:
// the cut-off bytes must never come back.
func wlTruncate(c *campaign) {
	x := c.create(c.root, "t")
	c.write(x, 0, 50000)
	c.fsync(x)
	c.truncate(x, 10001)
	c.truncate(x, 30000)
	c.write(x, 40000, 3000)
	c.fsync(x)
	c.truncate(x, 5)
	c.write(x, 20000, 100)
	y := c.create(c.root, "u")
	c.write(y, 0, 70000)
	c.truncate(y, 4097)
	c.truncate(y, 0)
	c.write(y, 9000, 9000)
	c.fdatasync(y)
	c.truncate(x, 0)
	c.truncate(x, 12345)
	// Down and up with nothing between that flushes: the log write of
	// the truncate may reach the disk without the zeroed tail.
	z := c.create(c.root, "z")
	c.write(z, 0, 20000)
	c.fsync(z)
	c.truncate(z, 5000)
	c.truncate(z, 16000)
	c.fsync(z)
}

// Holes punched and ranges zeroed, partial blocks at the edges.
func wlPunchZero(c *campaign) {
	x := c.create(c.root, "p")
	c.write(x, 0, 65536)
	c.fsync(x)
	c.fallocate(x, fs.FallocPunchHole|fs.FallocKeepSize, 1000, 10000)
	c.fallocate(x, fs.FallocZeroRange, 20000, 9000)
	c.fallocate(x, fs.FallocZeroRange|fs.FallocKeepSize, 60000, 20000)
	c.fsync(x)
	c.write(x, 4096, 2000)
	c.fallocate(x, fs.FallocPunchHole|fs.FallocKeepSize, 0, 65536)
	c.fallocate(x, fs.FallocZeroRange, 70000, 5000)
	c.write(x, 30000, 100)
}

// Preallocation (unwritten extents), written into later.
func wlFallocate(c *campaign) {
	x := c.create(c.root, "pre")
	c.fallocate(x, fs.FallocKeepSize, 0, 400000)
	c.write(x, 8192, 10000)
	c.fdatasync(x)
	c.fallocate(x, 0, 0, 200000)
	c.write(x, 100000, 50000)
	c.fsync(x)
	c.truncate(x, 150001)
	c.write(x, 300000, 4096)
	c.fallocate(x, 0, 500000, 10000)
}

// A tree of directories: files in them, directories moved and removed.
func wlDirTree(c *campaign) {
	a := c.mkdir(c.root, "a")
	b := c.mkdir(a, "b")
	cc := c.mkdir(b, "c")
	x := c.create(cc, "deep")
	c.write(x, 0, 9000)
	c.fsync(x)
	e := c.mkdir(c.root, "e")
	c.rename(a, "b", e, "b", 0)
	c.fsync(x)
	c.fsyncDir(e)
	c.mkdir(e, "empty")
	c.rmdir(e, "empty")
	c.unlink(cc, "deep")
	c.rmdir(b, "c")
	c.fsyncDir(b)
	c.rmdir(e, "b")
	c.rmdir(c.root, "a")
	c.fsyncDir(c.root)
}

// Extended attributes: inline, in an attribute tree, replaced, removed.
func wlXattrs(c *campaign) {
	x := c.create(c.root, "x")
	d := c.mkdir(c.root, "d")
	c.setxattr(x, "user.small", 20)
	c.setxattr(x, "user.big", 3000)
	c.fsync(x)
	c.setxattr(d, "user.dir", 100)
	c.setxattr(x, "user.big", 2500)
	c.setxattr(x, "user.other", 1500)
	c.fsync(x)
	c.removexattr(x, "user.big")
	c.setxattr(x, "user.small", 10)
	c.fsyncDir(d)
	c.removexattr(x, "user.other")
	c.removexattr(d, "user.dir")
}

// Overwrites inside a file, which go in place (no new blocks).
func wlOverwrite(c *campaign) {
	x := c.create(c.root, "db")
	c.write(x, 0, 200000)
	c.fsync(x)
	for i := range 20 {
		c.write(x, int64(c.rng.IntN(190000)), int64(1+c.rng.IntN(10000)))
		if i%5 == 4 {
			c.fsync(x)
		}
	}
}

// Files deleted and their blocks reused by new files: a freed block's
// old contents must never show through the new owner.
func wlDeleteReuse(c *campaign) {
	for round := range 3 {
		var names []string
		for i := range 5 {
			name := fmt.Sprintf("r%d-%d", round, i)
			x := c.create(c.root, name)
			c.write(x, 0, int64(20000+c.rng.IntN(200000)))
			names = append(names, name)
		}
		c.sync()
		for _, name := range names {
			c.unlink(c.root, name)
		}
		if round != 1 {
			c.sync()
		}
	}
	for i := range 4 {
		x := c.create(c.root, fmt.Sprintf("new%d", i))
		c.write(x, 0, 150000)
		if i%2 == 0 {
			c.fsync(x)
		}
	}
}

// RENAME_EXCHANGE of files, of directories, and of a file with a
// directory, across directories.
func wlExchange(c *campaign) {
	d1 := c.mkdir(c.root, "d1")
	d2 := c.mkdir(c.root, "d2")
	x := c.create(d1, "x")
	c.write(x, 0, 1000)
	y := c.create(d2, "y")
	c.write(y, 0, 2000)
	c.fsync(x)
	c.fsync(y)
	c.rename(d1, "x", d2, "y", fs.RenameExchange)
	c.fsyncDir(d1)
	s1 := c.mkdir(d1, "s1")
	c.create(s1, "in-s1")
	c.rename(d1, "s1", d2, "y", fs.RenameExchange)
	c.rename(c.root, "d1", c.root, "d2", fs.RenameExchange)
	c.fsyncDir(c.root)
}

// A file of many extents (an extent tree), then cut and punched.
func wlExtentTree(c *campaign) {
	x := c.create(c.root, "sparse")
	for i := range 150 {
		c.write(x, int64(i)*8192, 4096)
	}
	c.fsync(x)
	c.truncate(x, 300*4096+100)
	c.fallocate(x, fs.FallocPunchHole|fs.FallocKeepSize, 40*4096, 60*4096)
	c.fsync(x)
	c.truncate(x, 10*8192)
}

// A directory of a few hundred long names (a multi-level index), half
// removed, some renamed.
func wlBigDirectory(c *campaign) {
	d := c.mkdir(c.root, "big")
	name := func(i int) string { return fmt.Sprintf("%s-%04d", strings.Repeat("entry", 20), i) }
	for i := range 200 {
		c.create(d, name(i))
	}
	c.fsyncDir(d)
	for i := 0; i < 200; i += 2 {
		c.unlink(d, name(i))
	}
	for i := 1; i < 60; i += 4 {
		c.rename(d, name(i), d, name(i-1), 0)
	}
	c.fsyncDir(d)
}

// Many small fsync'd operations through the smallest log: checkpoints and
// the wrap of the ring happen inside the workload.
func wlLogWrap(c *campaign) {
	var xs []*cnode
	for i := range 12 {
		xs = append(xs, c.create(c.root, fmt.Sprintf("w%d", i)))
	}
	for i := range 80 {
		x := xs[i%len(xs)]
		c.write(x, int64(c.rng.IntN(20000)), int64(1+c.rng.IntN(3000)))
		c.setxattr(x, "user.v", 1+c.rng.IntN(200))
		if i%3 == 0 {
			c.fsync(x)
		}
	}
}

// Symlinks, inline and not, replaced by renames and removed.
func wlSymlinks(c *campaign) {
	c.symlink(c.root, "short", "target")
	c.symlink(c.root, "long", strings.Repeat("/long/path", 300))
	c.fsyncDir(c.root)
	x := c.create(c.root, "file")
	c.write(x, 0, 5000)
	c.rename(c.root, "file", c.root, "short", 0)
	c.fsyncDir(c.root)
	c.unlink(c.root, "long")
	c.symlink(c.root, "long", "again")
	c.setxattr(c.root.kids["long"], "user.l", 30)
}

// Checkpoints between unsynced changes: home blocks written while the
// log still holds later transactions.
func wlCheckpoints(c *campaign) {
	x := c.create(c.root, "a")
	d := c.mkdir(c.root, "d")
	for i := range 6 {
		c.write(x, int64(i)*10000, 10000)
		c.create(d, fmt.Sprintf("n%d", i))
		c.checkpoint()
		c.setxattr(x, "user.i", 10*i+1)
		if i%2 == 1 {
			c.unlink(d, fmt.Sprintf("n%d", i-1))
		}
	}
	c.fsync(x)
	c.checkpoint()
	c.truncate(x, 1234)
}

// centry is one name in the model.
type centry struct {
	dir  *cnode
	name string
	n    *cnode
}

// entries lists every name under d (lost+found and its contents aside),
// and the directories.
func (c *campaign) entries() (all []centry, dirs []*cnode) {
	var walk func(d *cnode)
	walk = func(d *cnode) {
		dirs = append(dirs, d)
		for _, name := range slices.Sorted(maps.Keys(d.kids)) {
			n := d.kids[name]
			if n == c.lf {
				continue
			}
			all = append(all, centry{d, name, n})
			if n.kind == 'd' {
				walk(n)
			}
		}
	}
	walk(c.root)
	return all, dirs
}

// under reports whether directory d is a or inside it.
func under(d, a *cnode) bool {
	for ; ; d = d.parent {
		if d == a {
			return true
		}
		if d.parent == d {
			return false
		}
	}
}

// wlRandom runs n random operations, every one valid for the model.
func wlRandom(c *campaign, n int) {
	rng := c.rng
	name := func() string {
		if rng.IntN(15) == 0 {
			return fmt.Sprintf("%s%d", strings.Repeat("long", 50), rng.IntN(4))
		}
		return fmt.Sprintf("n%d", rng.IntN(20))
	}
	pick := func(es []centry, want func(centry) bool) (centry, bool) {
		var ok []centry
		for _, e := range es {
			if want(e) {
				ok = append(ok, e)
			}
		}
		if len(ok) == 0 {
			return centry{}, false
		}
		return ok[rng.IntN(len(ok))], true
	}
	isFile := func(e centry) bool { return e.n.kind == 'f' }
	for done := 0; done < n; {
		es, dirs := c.entries()
		dir := dirs[rng.IntN(len(dirs))]
		done++
		switch op := rng.IntN(100); {
		case op < 10:
			if nm := name(); dir.kids[nm] == nil {
				c.create(dir, nm)
			}
		case op < 14:
			if nm := name(); dir.kids[nm] == nil {
				c.mkdir(dir, nm)
			}
		case op < 16:
			if nm := name(); dir.kids[nm] == nil {
				c.symlink(dir, nm, strings.Repeat("s", 1+rng.IntN(600)))
			}
		case op < 36:
			if e, ok := pick(es, isFile); ok {
				size := int64(len(e.n.data))
				off := int64(rng.IntN(int(min(size, 400000)) + 8192))
				if rng.IntN(8) == 0 {
					off = int64(rng.IntN(1 << 20))
				}
				c.write(e.n, off, int64(1+rng.IntN(32000)))
			}
		case op < 42:
			if e, ok := pick(es, isFile); ok {
				c.truncate(e.n, int64(rng.IntN(len(e.n.data)+20000)))
			}
		case op < 48:
			if e, ok := pick(es, isFile); ok {
				modes := []uint32{0, fs.FallocKeepSize, fs.FallocPunchHole | fs.FallocKeepSize, fs.FallocZeroRange, fs.FallocZeroRange | fs.FallocKeepSize}
				c.fallocate(e.n, modes[rng.IntN(len(modes))], int64(rng.IntN(len(e.n.data)+10000)), int64(1+rng.IntN(60000)))
			}
		case op < 56:
			x := dir
			if e, ok := pick(es, func(centry) bool { return true }); ok && rng.IntN(3) > 0 {
				x = e.n
			}
			nm := fmt.Sprintf("user.x%d", rng.IntN(4))
			if _, ok := x.xattr[nm]; ok && rng.IntN(3) == 0 {
				c.removexattr(x, nm)
			} else if rng.IntN(3) == 0 {
				c.setxattr(x, nm, 200+rng.IntN(2800))
			} else {
				c.setxattr(x, nm, 1+rng.IntN(40))
			}
		case op < 61:
			if e, ok := pick(es, func(e centry) bool { return e.n.kind != 'd' }); ok {
				if nm := name(); dir.kids[nm] == nil {
					c.link(e.n, dir, nm)
				}
			}
		case op < 69:
			if e, ok := pick(es, func(e centry) bool { return e.n.kind != 'd' }); ok {
				c.unlink(e.dir, e.name)
			}
		case op < 72:
			if e, ok := pick(es, func(e centry) bool { return e.n.kind == 'd' && len(e.n.kids) == 0 }); ok {
				c.rmdir(e.dir, e.name)
			}
		case op < 84:
			c.randomRename(es, dir, name())
		case op < 91:
			if e, ok := pick(es, func(centry) bool { return true }); ok {
				c.fsync(e.n)
			} else {
				c.fsyncDir(dir)
			}
		case op < 94:
			if e, ok := pick(es, isFile); ok {
				c.fdatasync(e.n)
			}
		case op < 97:
			c.fsyncDir(dir)
		case op < 99:
			c.sync()
		default:
			c.checkpoint()
		}
	}
}

// randomRename renames a random entry into dd, over an existing entry a
// third of the time, with random flags; it does nothing when the rename
// would fail (those errors are the model test's business).
func (c *campaign) randomRename(es []centry, dd *cnode, dn string) {
	rng := c.rng
	if len(es) == 0 {
		return
	}
	s := es[rng.IntN(len(es))]
	if names := slices.Sorted(maps.Keys(dd.kids)); len(names) > 0 && rng.IntN(3) == 0 {
		dn = names[rng.IntN(len(names))]
	}
	flags := uint32(0)
	switch rng.IntN(7) {
	case 0:
		flags = fs.RenameNoReplace
	case 1, 2:
		flags = fs.RenameExchange
	}
	v := dd.kids[dn]
	switch {
	case v == c.lf, v == s.n: // lost+found stays; two names of one inode: nothing happens
		return
	case s.n.kind == 'd' && under(dd, s.n):
		return
	case flags == fs.RenameNoReplace && v != nil, flags == fs.RenameExchange && v == nil:
		return
	case flags == fs.RenameExchange && v.kind == 'd' && under(s.dir, v):
		return
	case flags != fs.RenameExchange && v != nil && ((v.kind == 'd') != (s.n.kind == 'd') || v.kind == 'd' && len(v.kids) > 0):
		return
	}
	c.rename(s.dir, s.name, dd, dn, flags)
}

var campaignSeed = flag.Uint64("campaign-seed", 0, "TestCrashCampaign: added to every workload's seed (another run of the random workloads and crash points)")

// TestCrashCampaign runs every workload and checks its crash images.
func TestCrashCampaign(t *testing.T) {
	stride, random := 3, 12
	switch {
	case campaignFull:
		stride, random = 1, 200
	case raceEnabled || testing.Short():
		stride, random = 6, 4
	}
	var total crashStats
	ws := campaignWorkloads()
	ran := 0
	for i, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			ran++
			seed := uint64(i+1) + *campaignSeed
			c := newCampaign(t, w.p, seed)
			w.run(c)
			c.finish()
			st := c.checkCampaign(stride, random, seed)
			t.Logf("%d operations, %d events, %d flush points: %d crash images (%d at flush points), %d failed",
				len(c.ops), len(c.rec.Log()), len(c.rec.FlushPoints()), st.images, st.flushImages, st.failures)
			total.images += st.images
			total.flushImages += st.flushImages
			total.failures += st.failures
		})
	}
	t.Logf("%d workloads: %d crash images checked (%d at flush points, %d random), %d failed",
		ran, total.images, total.flushImages, total.images-total.flushImages, total.failures)
	if campaignFull && ran == len(ws) && total.images < 5000 {
		t.Errorf("only %d crash images: the full campaign checks at least 5000", total.images)
	}
}
