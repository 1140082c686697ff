package fsck

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"agfs/layout"
)

// The namespace walk, after the inode phase: directory entries against the
// inodes they name, parent pointers, link counts, and reachability from
// the root (FORMAT.md §10, §12.3, §12.6). It reports; it repairs nothing.
//
// When part of the metadata could not be read (a damaged inode-table
// block or directory index, reported already), names and links may be
// missing from what was found: the walk then reports only what missing
// information cannot explain (more names than links, entries naming free
// inodes, wrong types), never "too few names" or "unreachable".

type namespace struct {
	g          *layout.Geometry
	ags        []*agInodes
	all        map[uint64]*inodeInfo
	incomplete bool
	add        func(ag int, err error)
}

func (ns *namespace) agOf(ino uint64) int {
	a, _, ok := ns.g.SplitIno(ino)
	if !ok {
		return -1
	}
	return int(a)
}

func (ns *namespace) fail(ino uint64, format string, args ...any) {
	ns.add(ns.agOf(ino), fmt.Errorf(format, args...))
}

// known reports whether the slot of ino could be read (or needs no
// reading: numbers naming no slot, slots never written).
func (ns *namespace) known(ino uint64) bool {
	a, idx, ok := ns.g.SplitIno(ino)
	if !ok {
		return true
	}
	r := ns.ags[a]
	if r == nil || !r.headerOK {
		return false
	}
	j := idx / ns.g.InodesPerBlock()
	return j >= r.tableInit || !r.badTable[j]
}

func (ns *namespace) run() {
	g := ns.g
	dirs := make([]uint64, 0)
	for ino, in := range ns.all {
		if isDir(in.mode) && validType(in.mode) {
			dirs = append(dirs, ino)
		}
	}
	slices.Sort(dirs)

	// Every entry against the inode it names.
	refs := map[uint64]uint32{}       // non-directories: entries naming them
	namers := map[uint64][]uint64{}   // directories: the directories naming them
	subdirs := map[uint64]uint32{}    // directories: entries naming directories
	children := map[uint64][]uint64{} // directories: subdirectories named
	for _, d := range dirs {
		in := ns.all[d]
		at := fmt.Sprintf("inode %d: directory index (root block %d)", d, in.root)
		for _, e := range in.entries {
			if _, idx, ok := g.SplitIno(e.ino); !ok || idx == 0 {
				ns.fail(d, "%s: entry %q names %d, which is no inode number", at, e.name, e.ino)
				continue
			}
			t := ns.all[e.ino]
			if t == nil {
				if ns.known(e.ino) {
					ns.fail(d, "%s: entry %q names inode %d, which is free", at, e.name, e.ino)
				}
				if e.typ == syscall.DT_DIR {
					subdirs[d]++ // count it as the entry says, for the link count
				}
				continue
			}
			if !validType(t.mode) {
				continue // reported with the inode
			}
			if t.orphan {
				ns.fail(d, "%s: entry %q names inode %d, which is on the orphan list", at, e.name, e.ino)
			}
			if dtype(t.mode) != e.typ {
				ns.fail(d, "%s: entry %q has type %d, but inode %d is a %s", at, e.name, e.typ, e.ino, kind(t.mode))
			}
			if isDir(t.mode) {
				subdirs[d]++
				namers[e.ino] = append(namers[e.ino], d)
				children[d] = append(children[d], e.ino)
			} else {
				refs[e.ino]++
			}
		}
	}

	// Reachability from the root, through directories.
	rootIno := uint64(layout.RootIno)
	reach := map[uint64]bool{}
	root := ns.all[rootIno]
	switch {
	case root == nil && ns.known(rootIno):
		ns.fail(rootIno, "inode %d: the root directory is a free inode", rootIno)
	case root != nil && !isDir(root.mode):
		ns.fail(rootIno, "inode %d (table block %d): the root directory is a %s", rootIno, root.table, kind(root.mode))
	case root != nil:
		queue := []uint64{rootIno}
		reach[rootIno] = true
		for len(queue) > 0 {
			d := queue[0]
			queue = queue[1:]
			for _, c := range children[d] {
				if !reach[c] {
					reach[c] = true
					queue = append(queue, c)
				}
			}
		}
	}
	complete := !ns.incomplete && root != nil

	// Directories: parent pointers and link counts.
	for _, d := range dirs {
		in := ns.all[d]
		at := fmt.Sprintf("inode %d (table block %d)", d, in.table)
		if in.orphan {
			if n := namers[d]; len(n) > 0 {
				ns.fail(d, "%s: directory on the orphan list, but named by directory %d", at, n[0])
			}
			continue
		}
		if in.indexOK {
			if want := 2 + subdirs[d]; in.nlink != want {
				ns.fail(d, "%s: directory nlink %d, but 2 + %d subdirectories = %d", at, in.nlink, subdirs[d], want)
			}
		}
		n := namers[d]
		if d == rootIno {
			if in.parent != rootIno {
				ns.fail(d, "%s: the root directory's parent pointer is %d, want %d", at, in.parent, rootIno)
			}
			if len(n) > 0 {
				ns.fail(d, "%s: the root directory is named by directory %d", at, n[0])
			}
			continue
		}
		switch {
		case len(n) > 1:
			ns.fail(d, "%s: directory named by %d directories (%s): a directory has one name", at, len(n), inoList(n))
		case len(n) == 1 && n[0] != in.parent:
			ns.fail(d, "%s: parent pointer (\"..\") is %d, but directory %d names it", at, in.parent, n[0])
		case len(n) == 0 && complete:
			ns.fail(d, "%s: directory not named by any directory (unreachable; parent pointer %d)", at, in.parent)
		case len(n) == 1 && complete && !reach[d]:
			ns.fail(d, "%s: directory not reachable from the root (named by directory %d, itself unreachable)", at, n[0])
		}
	}

	// Other inodes: link counts against the names found.
	inos := make([]uint64, 0, len(ns.all))
	for ino, in := range ns.all {
		if !isDir(in.mode) && validType(in.mode) {
			inos = append(inos, ino)
		}
	}
	slices.Sort(inos)
	for _, ino := range inos {
		in := ns.all[ino]
		r := refs[ino]
		at := fmt.Sprintf("inode %d (table block %d)", ino, in.table)
		switch {
		case in.orphan || in.nlink == 0 && r == 0:
			// Orphans: names are reported with the entries; nlink 0
			// off the list is reported with the inode.
		case r == 0 && complete:
			ns.fail(ino, "%s: %s with nlink %d, not named by any directory (unreachable)", at, kind(in.mode), in.nlink)
		case r > 0 && in.nlink != r && (r > in.nlink || complete):
			ns.fail(ino, "%s: nlink %d, but %d directory entries name it", at, in.nlink, r)
		}
	}
}

func kind(mode uint32) string {
	switch fileType(mode) {
	case syscall.S_IFREG:
		return "regular file"
	case syscall.S_IFDIR:
		return "directory"
	case syscall.S_IFLNK:
		return "symlink"
	}
	return typeName(mode)
}

func inoList(inos []uint64) string {
	s := make([]string, 0, min(len(inos), 5))
	for i, ino := range inos {
		if i == 5 {
			s = append(s, "…")
			break
		}
		s = append(s, fmt.Sprint(ino))
	}
	return strings.Join(s, ", ")
}
