package fs_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"syscall"
	"testing"

	"agfs/fs"
	"agfs/layout"
)

// The model: an in-memory filesystem the real one is compared with.
type mnode struct {
	ino    uint64
	dir    bool
	target string // symlink
	data   []byte
	hist   []string
	xattr  map[string]string
	kids   map[string]*mnode
	parent *mnode
	links  int
}

type model struct {
	root *mnode
	dirs []*mnode
}

func (m *model) nlink(n *mnode) uint32 {
	if !n.dir {
		return uint32(n.links)
	}
	k := uint32(2)
	for _, c := range n.kids {
		if c.dir {
			k++
		}
	}
	return k
}

func (m *model) removeDir(d *mnode) {
	i := slices.Index(m.dirs, d)
	m.dirs = slices.Delete(m.dirs, i, i+1)
}

func isAncestor(a, d *mnode) bool {
	for ; d != nil; d = d.parent {
		if d == a {
			return true
		}
		if d.parent == d {
			break
		}
	}
	return false
}

type modelRun struct {
	t   *testing.T
	e   *env
	m   *model
	rng *rand.Rand
	ops map[string]int
}

func (r *modelRun) pickDir() *mnode { return r.m.dirs[r.rng.IntN(len(r.m.dirs))] }

func (r *modelRun) pickChild(d *mnode, want func(*mnode) bool) (string, *mnode) {
	names := slices.Sorted(maps.Keys(d.kids))
	r.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names {
		if want == nil || want(d.kids[n]) {
			return n, d.kids[n]
		}
	}
	return "", nil
}

func (r *modelRun) name() string {
	if r.rng.IntN(20) == 0 {
		return fmt.Sprintf("long-%s-%d", bytes.Repeat([]byte("x"), 200), r.rng.IntN(1000))
	}
	return fmt.Sprintf("n%d", r.rng.IntN(40))
}

func (r *modelRun) ok(what string, err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	r.ops[what]++
}

func isFile(n *mnode) bool { return !n.dir && n.target == "" }

func (r *modelRun) step() {
	e, m, rng, t := r.e, r.m, r.rng, r.t
	f := e.f
	switch op := rng.IntN(100); {
	case op < 15: // create
		d := r.pickDir()
		nm := r.name()
		a, err := f.Mknod(d.ino, nm, syscall.S_IFREG|0644, 0, me)
		if d.kids[nm] != nil {
			wantErr(t, "create existing", err, syscall.EEXIST)
			return
		}
		r.ok("create", err)
		d.kids[nm] = &mnode{ino: a.Ino, xattr: map[string]string{}, links: 1}
	case op < 22: // mkdir
		d := r.pickDir()
		nm := r.name()
		a, err := f.Mkdir(d.ino, nm, 0755, me)
		if d.kids[nm] != nil {
			wantErr(t, "mkdir existing", err, syscall.EEXIST)
			return
		}
		r.ok("mkdir", err)
		n := &mnode{ino: a.Ino, dir: true, xattr: map[string]string{}, kids: map[string]*mnode{}, parent: d}
		d.kids[nm] = n
		m.dirs = append(m.dirs, n)
	case op < 25: // symlink
		d := r.pickDir()
		nm := r.name()
		target := string(bytes.Repeat([]byte("t"), 1+rng.IntN(300)))
		a, err := f.Symlink(d.ino, nm, target, me)
		if d.kids[nm] != nil {
			wantErr(t, "symlink existing", err, syscall.EEXIST)
			return
		}
		r.ok("symlink", err)
		d.kids[nm] = &mnode{ino: a.Ino, target: target, xattr: map[string]string{}, links: 1}
	case op < 45: // write
		d := r.pickDir()
		_, n := r.pickChild(d, isFile)
		if n == nil {
			return
		}
		off := rng.IntN(200000)
		if rng.IntN(10) == 0 {
			off = rng.IntN(5 << 20)
		}
		p := make([]byte, 1+rng.IntN(30000))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		_, err := f.Write(n.ino, p, int64(off))
		r.ok("write", err)
		n.hist = append(n.hist, fmt.Sprintf("write %d+%d", off, len(p)))
		if off+len(p) > len(n.data) {
			n.data = append(n.data, make([]byte, off+len(p)-len(n.data))...)
		}
		copy(n.data[off:], p)
	case op < 50: // truncate
		d := r.pickDir()
		_, n := r.pickChild(d, isFile)
		if n == nil {
			return
		}
		size := rng.IntN(len(n.data) + 10000)
		_, err := f.SetAttr(n.ino, fs.SetAttr{Valid: fs.SetSize, Size: uint64(size)})
		r.ok("truncate", err)
		n.hist = append(n.hist, fmt.Sprintf("truncate %d (from %d)", size, len(n.data)))
		if size < len(n.data) {
			n.data = n.data[:size]
		} else {
			n.data = append(n.data, make([]byte, size-len(n.data))...)
		}
	case op < 53: // punch
		d := r.pickDir()
		_, n := r.pickChild(d, isFile)
		if n == nil || len(n.data) == 0 {
			return
		}
		off := rng.IntN(len(n.data))
		l := 1 + rng.IntN(len(n.data)-off)
		r.ok("punch", f.Fallocate(n.ino, fs.FallocPunchHole|fs.FallocKeepSize, int64(off), int64(l)))
		n.hist = append(n.hist, fmt.Sprintf("punch %d+%d", off, l))
		clear(n.data[off : off+l])
	case op < 63: // unlink
		d := r.pickDir()
		nm, n := r.pickChild(d, func(n *mnode) bool { return !n.dir })
		if n == nil {
			return
		}
		r.ok("unlink", f.Unlink(d.ino, nm))
		delete(d.kids, nm)
		n.links--
	case op < 67: // rmdir
		d := r.pickDir()
		nm, n := r.pickChild(d, func(n *mnode) bool { return n.dir })
		if n == nil {
			return
		}
		err := f.Rmdir(d.ino, nm)
		if len(n.kids) > 0 {
			wantErr(t, "rmdir non-empty", err, syscall.ENOTEMPTY)
			return
		}
		r.ok("rmdir", err)
		delete(d.kids, nm)
		m.removeDir(n)
	case op < 72: // link
		d := r.pickDir()
		_, n := r.pickChild(d, func(n *mnode) bool { return !n.dir })
		if n == nil {
			return
		}
		to := r.pickDir()
		nm := r.name()
		_, err := f.Link(n.ino, to.ino, nm)
		if to.kids[nm] != nil {
			wantErr(t, "link existing", err, syscall.EEXIST)
			return
		}
		r.ok("link", err)
		to.kids[nm] = n
		n.links++
	case op < 85: // rename
		sd := r.pickDir()
		snm, s := r.pickChild(sd, nil)
		if s == nil {
			return
		}
		dd := r.pickDir()
		dnm := r.name()
		if rng.IntN(3) == 0 {
			if x, _ := r.pickChild(dd, nil); x != "" {
				dnm = x
			}
		}
		flags := uint32(0)
		switch rng.IntN(6) {
		case 0:
			flags = fs.RenameNoReplace
		case 1:
			flags = fs.RenameExchange
		}
		err := f.Rename(sd.ino, snm, dd.ino, dnm, flags)
		dst := dd.kids[dnm]
		var want syscall.Errno
		switch {
		case dst == s:
			want = 0
		case flags == fs.RenameNoReplace && dst != nil:
			want = syscall.EEXIST
		case flags == fs.RenameExchange && dst == nil:
			want = syscall.ENOENT
		case s.dir && isAncestor(s, dd):
			want = syscall.EINVAL
		case flags == fs.RenameExchange && dst.dir && isAncestor(dst, sd):
			want = syscall.EINVAL
		case flags != fs.RenameExchange && dst != nil && s.dir && !dst.dir:
			want = syscall.ENOTDIR
		case flags != fs.RenameExchange && dst != nil && !s.dir && dst.dir:
			want = syscall.EISDIR
		case flags != fs.RenameExchange && dst != nil && dst.dir && len(dst.kids) > 0:
			want = syscall.ENOTEMPTY
		}
		if want != 0 {
			wantErr(t, fmt.Sprintf("rename %s→%s flags %d", snm, dnm, flags), err, want)
			r.ops["rename-fail"]++
			return
		}
		r.ok("rename", err)
		if dst == s {
			return
		}
		if flags == fs.RenameExchange {
			sd.kids[snm], dd.kids[dnm] = dst, s
			if s.dir {
				s.parent = dd
			}
			if dst.dir {
				dst.parent = sd
			}
			return
		}
		delete(sd.kids, snm)
		if dst != nil {
			if dst.dir {
				m.removeDir(dst)
			} else {
				dst.links--
			}
		}
		dd.kids[dnm] = s
		if s.dir {
			s.parent = dd
		}
	case op < 95: // xattr
		d := r.pickDir()
		_, n := r.pickChild(d, nil)
		if n == nil {
			n = d
		}
		nm := fmt.Sprintf("user.x%d", rng.IntN(8))
		if rng.IntN(4) == 0 {
			err := f.RemoveXattr(n.ino, nm)
			if _, ok := n.xattr[nm]; !ok {
				wantErr(t, "removexattr missing", err, syscall.ENODATA)
				return
			}
			r.ok("removexattr", err)
			delete(n.xattr, nm)
			return
		}
		v := bytes.Repeat([]byte{byte(rng.IntN(256))}, rng.IntN(3000))
		if rng.IntN(2) == 0 {
			v = v[:min(len(v), 20)]
		}
		r.ok("setxattr", f.SetXattr(n.ino, nm, v, 0))
		n.xattr[nm] = string(v)
	default: // fallocate / zero range
		d := r.pickDir()
		_, n := r.pickChild(d, isFile)
		if n == nil {
			return
		}
		off := rng.IntN(len(n.data) + 20000)
		l := 1 + rng.IntN(50000)
		mode := uint32(0)
		switch rng.IntN(3) {
		case 1:
			mode = fs.FallocKeepSize
		case 2:
			mode = fs.FallocZeroRange
		}
		r.ok("fallocate", f.Fallocate(n.ino, mode, int64(off), int64(l)))
		n.hist = append(n.hist, fmt.Sprintf("fallocate mode %#x %d+%d (size %d)", mode, off, l, len(n.data)))
		end := off + l
		if mode&fs.FallocKeepSize == 0 && end > len(n.data) {
			n.data = append(n.data, make([]byte, end-len(n.data))...)
		}
		if mode == fs.FallocZeroRange {
			clear(n.data[off:min(end, len(n.data))])
		}
	}
}

// compare walks the real tree and compares it with the model.
func (r *modelRun) compare() {
	t, e := r.t, r.e
	t.Helper()
	var walk func(d *mnode, path string)
	walk = func(d *mnode, path string) {
		got := map[string]fs.DirEntry{}
		err := e.f.ReadDir(d.ino, 0, true, func(x fs.DirEntry) bool {
			got[x.Name] = x
			return true
		})
		if err != nil {
			t.Fatalf("%s: readdir: %v", path, err)
		}
		if len(got) != len(d.kids)+2 {
			t.Fatalf("%s: %d entries, model has %d: %v", path, len(got)-2, len(d.kids), slices.Sorted(maps.Keys(got)))
		}
		if got[".."].Ino != d.parent.ino {
			t.Fatalf("%s: .. is %d, want %d", path, got[".."].Ino, d.parent.ino)
		}
		names := slices.Sorted(maps.Keys(d.kids))
		for _, nm := range names {
			n := d.kids[nm]
			p := path + "/" + nm
			x, ok := got[nm]
			if !ok || x.Ino != n.ino {
				t.Fatalf("%s: entry %+v, want inode %d", p, x, n.ino)
			}
			a := x.Attr
			if a.Nlink != r.m.nlink(n) {
				t.Fatalf("%s: nlink %d, want %d", p, a.Nlink, r.m.nlink(n))
			}
			r.compareXattrs(p, n)
			switch {
			case n.dir:
				if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
					t.Fatalf("%s: mode %o", p, a.Mode)
				}
				walk(n, p)
			case n.target != "":
				s, err := e.f.Readlink(n.ino)
				if err != nil || s != n.target {
					t.Fatalf("%s: readlink %d bytes, %v", p, len(s), err)
				}
			default:
				if a.Size != uint64(len(n.data)) {
					t.Fatalf("%s: size %d, want %d", p, a.Size, len(n.data))
				}
				buf := make([]byte, len(n.data)+1)
				k, err := e.f.Read(n.ino, buf, 0)
				if err != nil || !bytes.Equal(buf[:k], n.data) {
					i := 0
					for i < k && buf[i] == n.data[i] {
						i++
					}
					t.Fatalf("%s: content differs at %d (%d bytes, %v); history %q", p, i, k, err, n.hist)
				}
			}
		}
	}
	walk(r.m.root, "")
}

func (r *modelRun) compareXattrs(path string, n *mnode) {
	t, f := r.t, r.e.f
	sz, err := f.ListXattr(n.ino, nil)
	if err != nil {
		t.Fatalf("%s: listxattr: %v", path, err)
	}
	buf := make([]byte, sz)
	f.ListXattr(n.ino, buf)
	var names []string
	for _, b := range bytes.Split(buf, []byte{0}) {
		if len(b) > 0 {
			names = append(names, string(b))
		}
	}
	sort.Strings(names)
	if want := slices.Sorted(maps.Keys(n.xattr)); !slices.Equal(names, want) {
		t.Fatalf("%s: xattrs %q, want %q", path, names, want)
	}
	for nm, v := range n.xattr {
		b := make([]byte, 4000)
		k, err := f.GetXattr(n.ino, nm, b)
		if err != nil || string(b[:k]) != v {
			t.Fatalf("%s: xattr %s: %v", path, nm, err)
		}
	}
}

var (
	modelOps  = flag.Int("model-ops", 0, "TestModel: operations per case (0: the default)")
	modelSeed = flag.Uint64("model-seed", 7, "TestModel: random seed")
)

func TestModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    layout.Params
		ops  int
	}{
		{"4k", layout.Params{}, 3000},
		{"8k-2ag", layout.Params{BlockSize: 8192, AGCount: 2}, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 128<<20, tc.p)
			m := &model{}
			m.root = &mnode{ino: root, dir: true, kids: map[string]*mnode{}, xattr: map[string]string{}}
			m.root.parent = m.root
			lf := e.lookup(root, fs.LostFound)
			lfn := &mnode{ino: lf, dir: true, kids: map[string]*mnode{}, xattr: map[string]string{}, parent: m.root}
			m.root.kids[fs.LostFound] = lfn
			m.dirs = []*mnode{m.root, lfn}
			r := &modelRun{t: t, e: e, m: m, rng: rand.New(rand.NewPCG(*modelSeed, uint64(len(tc.name)))), ops: map[string]int{}}
			n := tc.ops
			if *modelOps > 0 {
				n = *modelOps
			}
			for i := 1; i <= n; i++ {
				r.step()
				if i%250 == 0 {
					e.deep()
					r.compare()
				}
				if i%1000 == 0 {
					e.reopen()
					r.compare()
				}
			}
			e.reopen()
			r.compare()
			t.Logf("ops: %v", r.ops)
		})
	}
}

var _ = errors.Is
