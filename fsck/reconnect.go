package fsck

import (
	"fmt"
	"slices"
	"syscall"

	"agfs/fs"
	"agfs/layout"
)

// The namespace plan (repair's phases 4 and 6): the directory entries
// against the inodes kept, orphans reclaimed, one name per directory,
// everything reachable from the root (the rest linked into /lost+found as
// "#ino", as e2fsck does), and then each inode's link count and each
// directory's parent computed from the entries that remain.
//
// fsck makes these changes itself rather than through package fs: fs
// refuses to act on the states fsck exists to fix (an entry naming a free
// inode, a directory with two names, a wrong link count), and a repair
// that went through it would be only as honest as the invariants it
// assumes.

func (p *plan) namespace() {
	p.dropBadEntries()
	p.reclaimOrphans()
	root := p.root()
	p.oneNamePerDir()

	reach := map[uint64]bool{}
	p.walk(root, reach)
	p.reconnectDirs(reach)
	p.reconnectFiles(reach)
	p.countLinks()
}

// dirs returns the kept directories in inode order.
func (p *plan) dirs() []*node {
	var out []*node
	for _, n := range p.sorted() {
		if isDir(n.d.Mode) {
			out = append(out, n)
		}
	}
	return out
}

// filter keeps the entries of d for which keep returns true, noting the
// directory as changed when it drops one.
func (d *node) filter(keep func(e *dirEntry) bool) {
	out := d.entries[:0]
	for i := range d.entries {
		if keep(&d.entries[i]) {
			out = append(out, d.entries[i])
		} else {
			d.changed = true
		}
	}
	d.entries = out
}

// dropBadEntries removes entries naming no kept inode, the root or their
// own directory, and corrects entry types.
func (p *plan) dropBadEntries() {
	for _, d := range p.dirs() {
		d.filter(func(e *dirEntry) bool {
			t := p.nodes[e.ino]
			switch {
			case t == nil:
				p.fix(d.ino, false, "entry %q names inode %d, which is free or cleared: removed", e.name, e.ino)
				return false
			case e.ino == layout.RootIno || e.ino == d.ino:
				p.fix(d.ino, false, "entry %q names %s: removed", e.name, map[bool]string{true: "the root", false: "the directory itself"}[e.ino == layout.RootIno])
				return false
			case dtype(t.d.Mode) != e.typ:
				p.fix(d.ino, true, "entry %q has type %d, but inode %d is a %s: type corrected", e.name, e.typ, e.ino, kind(t.d.Mode))
				e.typ = dtype(t.d.Mode)
				d.changed = true
			}
			return true
		})
	}
}

// names counts the entries naming each inode.
func (p *plan) names() map[uint64]uint32 {
	refs := map[uint64]uint32{}
	for _, d := range p.dirs() {
		for _, e := range d.entries {
			refs[e.ino]++
		}
	}
	return refs
}

// reclaimOrphans frees the inodes with no link and no name: those an
// unlink left on the orphan lists (or that fell off them), as a
// read-write mount would.
func (p *plan) reclaimOrphans() {
	refs := p.names()
	for _, n := range p.sorted() {
		if n.d.Nlink != 0 || refs[n.ino] != 0 || n.ino == layout.RootIno {
			continue
		}
		where := "not on the orphan list"
		if n.info.orphan {
			where = "on the orphan list"
		}
		p.fix(n.ino, true, "unlinked %s (nlink 0, %s): reclaimed", kind(n.d.Mode), where)
		p.release(n)
	}
}

// release frees a kept inode: its slot and every block it holds.
func (p *plan) release(n *node) {
	for _, e := range n.ext {
		p.space.release(e.Physical, uint64(e.Len))
	}
	for t := range treeKinds {
		for _, blk := range n.taken[t] {
			p.space.release(blk, 1)
		}
	}
	delete(p.nodes, n.ino)
	p.cleared[n.ino] = true
}

// root makes sure inode 1 is a directory, making a new empty one when it
// is not.
func (p *plan) root() *node {
	if n := p.nodes[layout.RootIno]; n != nil && isDir(n.d.Mode) {
		n.parent = layout.RootIno
		return n
	} else if n != nil {
		p.fix(n.ino, false, "the root is a %s: cleared", kind(n.d.Mode))
		p.release(n)
	}
	p.fix(layout.RootIno, false, "no root directory: a new empty one is made, everything goes to /%s", fs.LostFound)
	return p.newDir(layout.RootIno, layout.RootIno, 0755)
}

// oneNamePerDir keeps a single entry for each directory: the one in the
// directory its ".." names when there is one.
func (p *plan) oneNamePerDir() {
	namers := map[uint64][]uint64{}
	for _, d := range p.dirs() {
		for _, e := range d.entries {
			if isDir(p.nodes[e.ino].d.Mode) {
				namers[e.ino] = append(namers[e.ino], d.ino)
			}
		}
	}
	keepIn := map[uint64]uint64{}
	for c, ns := range namers {
		keepIn[c] = ns[0]
		if par := p.nodes[c].d.Parent(); slices.Contains(ns, par) {
			keepIn[c] = par
		}
	}
	for _, d := range p.dirs() {
		d.filter(func(e *dirEntry) bool {
			k, ok := keepIn[e.ino]
			if !ok {
				return true
			}
			if k != d.ino {
				p.fix(d.ino, false, "entry %q is another name of directory %d (a directory has one name): removed", e.name, e.ino)
				return false
			}
			keepIn[e.ino] = 0 // the first such entry in d only
			return true
		})
	}
}

// walk marks what is reachable from d, setting the parent of every
// directory reached; an entry reaching a directory a second time (a loop
// back to the root) is removed.
func (p *plan) walk(d *node, reach map[uint64]bool) {
	reach[d.ino] = true
	queue := []*node{d}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		d.filter(func(e *dirEntry) bool {
			c := p.nodes[e.ino]
			if !isDir(c.d.Mode) {
				reach[e.ino] = true
				return true
			}
			if reach[e.ino] {
				p.fix(d.ino, false, "entry %q names directory %d, which is reached from the root another way: removed", e.name, e.ino)
				return false
			}
			reach[e.ino] = true
			c.parent = d.ino
			queue = append(queue, c)
			return true
		})
	}
}

// lostFound returns /lost+found, making it when it is missing.
func (p *plan) lostFound() (*node, error) {
	if p.lfIno != 0 {
		return p.nodes[p.lfIno], nil
	}
	root := p.nodes[layout.RootIno]
	for _, e := range root.entries {
		if e.name == fs.LostFound && isDir(p.nodes[e.ino].d.Mode) {
			p.lfIno = e.ino
			return p.nodes[e.ino], nil
		}
	}
	root.filter(func(e *dirEntry) bool {
		if e.name != fs.LostFound {
			return true
		}
		p.fix(root.ino, false, "entry %q names a %s, not a directory: removed to make /%s", e.name, kind(p.nodes[e.ino].d.Mode), fs.LostFound)
		return false
	})
	ino, err := p.freeSlot()
	if err != nil {
		return nil, err
	}
	lf := p.newDir(ino, layout.RootIno, 0700)
	root.entries = append(root.entries, dirEntry{name: fs.LostFound, ino: ino, typ: syscall.DT_DIR})
	root.changed = true
	p.lfIno = ino
	p.fix(ino, false, "/%s is missing: made", fs.LostFound)
	return lf, nil
}

// link puts n into /lost+found under "#ino".
func (p *plan) link(n *node, reach map[uint64]bool) error {
	lf, err := p.lostFound()
	if err != nil {
		return err
	}
	reach[lf.ino] = true
	name := fmt.Sprintf("#%d", n.ino)
	for i := 1; slices.ContainsFunc(lf.entries, func(e dirEntry) bool { return e.name == name }); i++ {
		name = fmt.Sprintf("#%d.%d", n.ino, i)
	}
	lf.entries = append(lf.entries, dirEntry{name: name, ino: n.ino, typ: dtype(n.d.Mode)})
	lf.changed = true
	p.fix(n.ino, false, "unreachable %s: linked into /%s as %q", kind(n.d.Mode), fs.LostFound, name)
	if isDir(n.d.Mode) {
		n.parent = lf.ino
		p.walk(n, reach)
	} else {
		reach[n.ino] = true
	}
	return nil
}

// reconnectDirs links every directory the root does not reach into
// /lost+found: for a chain of unreachable directories, its top; for a
// loop, its lowest member, whose entry in the loop is removed.
func (p *plan) reconnectDirs(reach map[uint64]bool) {
	namer := map[uint64]*node{}
	for _, d := range p.dirs() {
		for _, e := range d.entries {
			if isDir(p.nodes[e.ino].d.Mode) {
				namer[e.ino] = d
			}
		}
	}
	for _, u := range p.dirs() {
		if reach[u.ino] {
			continue
		}
		top, seen := u, map[uint64]bool{u.ino: true}
		for up := namer[top.ino]; up != nil && !reach[up.ino] && !seen[up.ino]; up = namer[top.ino] {
			seen[up.ino] = true
			top = up
		}
		if up := namer[top.ino]; up != nil && !reach[up.ino] {
			up.filter(func(e *dirEntry) bool { return e.ino != top.ino }) // reported by link
		}
		if err := p.link(top, reach); err != nil {
			p.fix(top.ino, false, "unreachable directory left where it is: %v", err)
			return
		}
	}
}

// reconnectFiles links every other inode no entry names into
// /lost+found, or reclaims it when it has no link either.
func (p *plan) reconnectFiles(reach map[uint64]bool) {
	for _, n := range p.sorted() {
		if reach[n.ino] {
			continue
		}
		if n.d.Nlink == 0 {
			p.fix(n.ino, true, "unlinked %s (nlink 0) named only by removed entries: reclaimed", kind(n.d.Mode))
			p.release(n)
			continue
		}
		if err := p.link(n, reach); err != nil {
			p.fix(n.ino, false, "unreachable %s left where it is: %v", kind(n.d.Mode), err)
			return
		}
	}
}

// countLinks sets every link count from the entries that remain.
func (p *plan) countLinks() {
	refs, subdirs := map[uint64]uint32{}, map[uint64]uint32{}
	for _, d := range p.dirs() {
		for _, e := range d.entries {
			refs[e.ino]++
			if e.typ == syscall.DT_DIR {
				subdirs[d.ino]++
			}
		}
	}
	for _, n := range p.sorted() {
		want := refs[n.ino]
		if isDir(n.d.Mode) {
			want = 2 + subdirs[n.ino]
			if !n.created && n.d.Parent() != n.parent {
				p.fix(n.ino, true, "parent pointer (\"..\") %d, but directory %d names it: corrected", n.d.Parent(), n.parent)
			}
		}
		n.nlink = want
		if !n.created && n.d.Nlink != want {
			p.fix(n.ino, true, "nlink %d, but %d: corrected", n.d.Nlink, want)
		}
	}
}
