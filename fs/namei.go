package fs

import (
	"errors"
	"syscall"

	"agfs/dir"
	"agfs/layout"
	"agfs/wal"
)

// Caller is the owner of new inodes (permissions are checked by the
// kernel: default_permissions).
type Caller struct{ UID, GID uint32 }

// Rename flags (renameat2).
const (
	RenameNoReplace = 1
	RenameExchange  = 2
)

// DirEntry is one entry of ReadDir.
type DirEntry struct {
	Name string
	Ino  uint64
	Mode uint32 // file type bits
	Next uint64 // cookie to resume after this entry
	Attr *Attr  // with plus
}

func (f *FS) dirCfg(ino uint64, alloc *treeAlloc) dir.Config {
	c := DirConfig(&f.sb, ino)
	if alloc != nil {
		c.Alloc = alloc
		c.Goal = f.goal(ino)
	}
	return c
}

// openDir opens n's directory index in the op (one Dir per inode per op,
// so that every change sees the others); its root is saved in the working
// copy at commit.
func (o *op) openDir(n *inode) (*dir.Dir, error) {
	if d := o.dirs[n]; d != nil {
		return d, nil
	}
	w := o.w(n)
	d, err := dir.Open(o.tx, o.f.dirCfg(n.ino, &treeAlloc{o, w}), w.TreeRoot())
	if err != nil {
		return nil, err
	}
	if o.dirs == nil {
		o.dirs = map[*inode]*dir.Dir{}
	}
	o.dirs[n] = d
	return d, nil
}

// mustBeEmpty is ENOTEMPTY unless directory n holds no entries, as rmdir
// and a rename over a directory require.
func (o *op) mustBeEmpty(n *inode) error {
	d, err := o.openDir(n)
	if err != nil {
		return err
	}
	empty, err := d.Empty()
	if err == nil && !empty {
		err = syscall.ENOTEMPTY
	}
	return err
}

// readDir opens n's directory index for reading in tx.
func (f *FS) readDir(tx *wal.Tx, n *inode) (*dir.Dir, error) {
	return dir.Open(tx, f.dirCfg(n.ino, nil), n.d.TreeRoot())
}

// checkName vets a name to be created or looked up.
func (f *FS) checkName(name string) error {
	if len(name) > dir.NameMax || len(name) > f.maxName {
		return syscall.ENAMETOOLONG
	}
	if name == "" {
		return syscall.ENOENT
	}
	return nil
}

// lookupLocked returns the inode number and type of name in directory n
// (locked).
func (f *FS) lookupLocked(n *inode, name string) (uint64, uint8, error) {
	if !isDir(n.d.Mode) {
		return 0, 0, syscall.ENOTDIR
	}
	switch name {
	case ".":
		return n.ino, syscall.DT_DIR, nil
	case "..":
		return n.d.Parent(), syscall.DT_DIR, nil
	}
	if err := f.checkName(name); err != nil {
		return 0, 0, err
	}
	tx := f.log.Begin()
	defer tx.Abort()
	d, err := f.readDir(tx, n)
	if err != nil {
		return 0, 0, err
	}
	return d.Lookup(name)
}

// Lookup returns the attributes of name in directory dirIno. It does not
// add a kernel reference (Ref does).
func (f *FS) Lookup(dirIno uint64, name string) (Attr, error) {
	p, err := f.get(dirIno)
	if err != nil {
		return Attr{}, errno(err)
	}
	p.mu.RLock()
	ino, _, err := f.lookupLocked(p, name)
	p.mu.RUnlock()
	f.put(p)
	if err != nil {
		return Attr{}, errno(err)
	}
	a, err := f.GetAttr(ino)
	if errors.Is(err, syscall.ESTALE) {
		return Attr{}, syscall.ENOENT // unlinked meanwhile
	}
	return a, err
}

// createIn makes a new inode named name in directory p (locked, working
// copy in o) with mode, and lets setup fill in its data.
func (o *op) createIn(p *inode, name string, mode, rdev uint32, c Caller, setup func(n *inode, w *layout.Inode) error) (*inode, error) {
	f := o.f
	pw := o.w(p)
	if !isDir(pw.Mode) {
		return nil, syscall.ENOTDIR
	}
	if pw.Nlink == 0 {
		return nil, syscall.ENOENT
	}
	if name == "." || name == ".." {
		return nil, syscall.EEXIST
	}
	if err := f.checkName(name); err != nil {
		return nil, err
	}
	d, err := o.openDir(p)
	if err != nil {
		return nil, err
	}
	if _, _, err := d.Lookup(name); err == nil {
		return nil, syscall.EEXIST
	} else if !errors.Is(err, syscall.ENOENT) {
		return nil, err
	}
	dirNode := isDir(mode)
	if dirNode && pw.Nlink >= maxLink {
		return nil, syscall.EMLINK
	}
	n, w, err := o.newInode(p.ino, dirNode)
	if err != nil {
		return nil, err
	}
	w.Mode = mode
	w.UID, w.GID = c.UID, c.GID
	if pw.Mode&syscall.S_ISGID != 0 {
		w.GID = pw.GID
		if dirNode {
			w.Mode |= syscall.S_ISGID
		}
	}
	w.Nlink = 1
	if mode&syscall.S_IFMT == syscall.S_IFCHR || mode&syscall.S_IFMT == syscall.S_IFBLK {
		w.Rdev = rdev
	}
	if dirNode {
		w.Nlink = 2
		nd, err := dir.Create(o.tx, f.dirCfg(n.ino, &treeAlloc{o, w}))
		if err != nil {
			return nil, err
		}
		w.DataFormat = layout.DataBTree
		w.ForkCount = 1
		w.SetTreeRoot(nd.Root())
		w.SetParent(p.ino)
		pw.Nlink++
	}
	if setup != nil {
		if err := setup(n, w); err != nil {
			return nil, err
		}
	}
	if _, err := d.Insert(name, n.ino, dtype(w.Mode)); err != nil {
		return nil, err
	}
	pw.Mtime, pw.Ctime = o.now, o.now
	return n, nil
}

// committed returns the inode of n as the op committed it.
func (o *op) committed(n *inode) *layout.Inode {
	for _, w := range o.ws {
		if w.n == n {
			return &w.in
		}
	}
	return &n.d
}

// create runs createIn in its own operation and returns the new inode's
// attributes.
func (f *FS) create(dirIno uint64, name string, mode, rdev uint32, c Caller, setup func(o *op, n *inode, w *layout.Inode) error) (Attr, error) {
	p, err := f.get(dirIno)
	if err != nil {
		return Attr{}, errno(err)
	}
	defer f.put(p)
	p.mu.Lock()
	defer p.mu.Unlock()
	var child *inode
	o, err := f.run(func(o *op) error {
		var s func(n *inode, w *layout.Inode) error
		if setup != nil {
			s = func(n *inode, w *layout.Inode) error { return setup(o, n, w) }
		}
		var err error
		child, err = o.createIn(p, name, mode, rdev, c, s)
		return err
	})
	if err != nil {
		return Attr{}, errno(err)
	}
	a := f.attr(child.ino, o.committed(child))
	f.put(child)
	return a, nil
}

// Mknod creates a regular file, FIFO, socket or device node.
func (f *FS) Mknod(dirIno uint64, name string, mode, rdev uint32, c Caller) (Attr, error) {
	switch mode & syscall.S_IFMT {
	case 0:
		mode |= syscall.S_IFREG
	case syscall.S_IFREG, syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
	case syscall.S_IFDIR:
		return Attr{}, syscall.EPERM
	default:
		return Attr{}, syscall.EINVAL
	}
	return f.create(dirIno, name, mode&(syscall.S_IFMT|07777), rdev, c, nil)
}

// Mkdir creates a directory.
func (f *FS) Mkdir(dirIno uint64, name string, mode uint32, c Caller) (Attr, error) {
	return f.create(dirIno, name, syscall.S_IFDIR|mode&07777, 0, c, nil)
}

// MaxSymlink is the longest symlink target.
const MaxSymlink = 4095

// Symlink creates a symbolic link to target: inline in the inode when it
// fits the fork, else in data blocks.
func (f *FS) Symlink(dirIno uint64, name, target string, c Caller) (Attr, error) {
	switch {
	case len(target) == 0:
		return Attr{}, syscall.ENOENT
	case len(target) > MaxSymlink:
		return Attr{}, syscall.ENAMETOOLONG
	}
	return f.create(dirIno, name, syscall.S_IFLNK|0777, 0, c, func(o *op, n *inode, w *layout.Inode) error {
		if len(target) <= layout.ForkSize {
			w.DataFormat = layout.DataInline
			copy(w.Fork[:], target)
			w.Size = uint64(len(target))
			return nil
		}
		return o.writeData(n, w, []byte(target), 0)
	})
}

// Readlink returns a symlink's target.
func (f *FS) Readlink(ino uint64) (string, error) {
	return reading(f, ino, func(n *inode) (string, error) {
		switch {
		case !isLnk(n.d.Mode):
			return "", syscall.EINVAL
		case n.d.DataFormat == layout.DataInline && n.d.Size > layout.ForkSize:
			return "", corruptf("inode %d: inline symlink of %d bytes", ino, n.d.Size)
		case n.d.DataFormat == layout.DataInline:
			return string(n.d.Fork[:n.d.Size]), nil
		case n.d.Size > MaxSymlink:
			return "", corruptf("inode %d: symlink of %d bytes", ino, n.d.Size)
		}
		buf := make([]byte, n.d.Size)
		k, err := f.readData(ino, &n.d, buf, 0)
		if err != nil {
			return "", err
		}
		return string(buf[:k]), nil
	})
}

// Link makes name in directory dirIno another link to ino.
func (f *FS) Link(ino, dirIno uint64, name string) (Attr, error) {
	n, err := f.get(ino)
	if err != nil {
		return Attr{}, errno(err)
	}
	defer f.put(n)
	p, err := f.get(dirIno)
	if err != nil {
		return Attr{}, errno(err)
	}
	defer f.put(p)
	unlock := lockAll(n, p)
	defer unlock()
	switch {
	case isDir(n.d.Mode):
		return Attr{}, syscall.EPERM
	case n.d.Nlink == 0:
		return Attr{}, syscall.ENOENT
	case n.d.Nlink >= maxLink:
		return Attr{}, syscall.EMLINK
	case !isDir(p.d.Mode):
		return Attr{}, syscall.ENOTDIR
	case p.d.Nlink == 0:
		return Attr{}, syscall.ENOENT
	case name == "." || name == "..":
		return Attr{}, syscall.EEXIST
	}
	if err := f.checkName(name); err != nil {
		return Attr{}, err
	}
	o, err := f.run(func(o *op) error {
		d, err := o.openDir(p)
		if err != nil {
			return err
		}
		w := o.w(n)
		if _, err := d.Insert(name, n.ino, dtype(w.Mode)); err != nil {
			return err
		}
		w.Nlink++
		w.Ctime = o.now
		pw := o.w(p)
		pw.Mtime, pw.Ctime = o.now, o.now
		return nil
	})
	if err != nil {
		return Attr{}, errno(err)
	}
	return f.attr(n.ino, o.committed(n)), nil
}

// lockEntry finds name in directory p and locks p and the inode it names
// (in inode order), making sure the entry still names it once both are
// locked. The caller unlocks and puts the child.
func (f *FS) lockEntry(p *inode, name string) (c *inode, typ uint8, unlock func(), err error) {
	for tries := 0; ; tries++ {
		p.mu.RLock()
		ino, _, err := f.lookupLocked(p, name)
		p.mu.RUnlock()
		if err != nil {
			return nil, 0, nil, err
		}
		c, err := f.get(ino)
		if err != nil {
			if errors.Is(err, syscall.ESTALE) && tries < 100 {
				continue
			}
			return nil, 0, nil, err
		}
		unlock := lockAll(p, c)
		ino2, typ, err := f.lookupLocked(p, name)
		if err == nil && ino2 == ino {
			return c, typ, unlock, nil
		}
		unlock()
		f.put(c)
		if err != nil {
			return nil, 0, nil, err
		}
	}
}

// Unlink removes name (not a directory) from directory dirIno. When that
// was the last link and the inode is still referenced, it goes on its
// AG's orphan list in the same transaction; it is freed when the last
// reference goes.
func (f *FS) Unlink(dirIno uint64, name string) error {
	if name == "." || name == ".." {
		return syscall.EISDIR
	}
	return f.removeEntry(dirIno, name, false)
}

// dropLink takes one link from c (all of a directory's); the last one puts
// it on the orphan list.
func (o *op) dropLink(c *inode) {
	w := o.w(c)
	if isDir(w.Mode) || w.Nlink == 0 {
		w.Nlink = 0
	} else {
		w.Nlink--
	}
	w.Ctime = o.now
	if w.Nlink == 0 {
		o.orphan(c)
	}
}

// Rmdir removes the empty directory name from directory dirIno.
func (f *FS) Rmdir(dirIno uint64, name string) error {
	switch name {
	case ".":
		return syscall.EINVAL
	case "..":
		return syscall.ENOTEMPTY
	}
	return f.removeEntry(dirIno, name, true)
}

// removeEntry removes name from directory dirIno and takes the link it
// held: of a non-directory for Unlink, of an empty directory for Rmdir
// (whose ".." link to the parent goes with it).
func (f *FS) removeEntry(dirIno uint64, name string, rmdir bool) error {
	p, err := f.get(dirIno)
	if err != nil {
		return errno(err)
	}
	defer f.put(p)
	c, _, unlock, err := f.lockEntry(p, name)
	if err != nil {
		return errno(err)
	}
	defer f.put(c)
	defer unlock()
	switch {
	case !rmdir && isDir(c.d.Mode):
		return syscall.EISDIR
	case rmdir && !isDir(c.d.Mode):
		return syscall.ENOTDIR
	case rmdir && c.ino == layout.RootIno:
		return syscall.EBUSY
	}
	_, err = f.run(func(o *op) error {
		if rmdir {
			if err := o.mustBeEmpty(c); err != nil {
				return err
			}
		}
		d, err := o.openDir(p)
		if err != nil {
			return err
		}
		if _, _, err := d.Remove(name); err != nil {
			return err
		}
		pw := o.w(p)
		pw.Mtime, pw.Ctime = o.now, o.now
		if rmdir {
			pw.Nlink--
		}
		o.dropLink(c)
		return nil
	})
	return errno(err)
}

// Rename moves oldName in oldDir to newName in newDir, atomically:
// replacing newName (RENAME_NOREPLACE: EEXIST instead) or exchanging the
// two (RENAME_EXCHANGE). Moving a directory into its own subtree is
// EINVAL.
func (f *FS) Rename(oldDir uint64, oldName string, newDir uint64, newName string, flags uint32) error {
	if flags&^(RenameNoReplace|RenameExchange) != 0 || flags == RenameNoReplace|RenameExchange {
		return syscall.EINVAL
	}
	for _, nm := range []string{oldName, newName} {
		if nm == "." || nm == ".." {
			return syscall.EBUSY
		}
		if err := f.checkName(nm); err != nil {
			return err
		}
	}
	if oldDir != newDir {
		// Directory moves between parents are serialised, as in Linux, so
		// that the ancestry check sees a stable tree.
		f.renameMu.Lock()
		defer f.renameMu.Unlock()
	}
	sp, err := f.get(oldDir)
	if err != nil {
		return errno(err)
	}
	defer f.put(sp)
	np, err := f.get(newDir)
	if err != nil {
		return errno(err)
	}
	defer f.put(np)

	var src, dst *inode
	var styp, dtyp uint8
	var unlock func()
	for tries := 0; ; tries++ {
		sp.mu.RLock()
		sIno, _, err := f.lookupLocked(sp, oldName)
		sp.mu.RUnlock()
		if err != nil {
			return errno(err)
		}
		np.mu.RLock()
		dIno, _, derr := f.lookupLocked(np, newName)
		np.mu.RUnlock()
		if derr != nil && !errors.Is(derr, syscall.ENOENT) {
			return errno(derr)
		}
		src, err = f.get(sIno)
		if err != nil {
			if errors.Is(err, syscall.ESTALE) && tries < 100 {
				continue
			}
			return errno(err)
		}
		dst = nil
		if derr == nil {
			if dst, err = f.get(dIno); err != nil {
				f.put(src)
				if errors.Is(err, syscall.ESTALE) && tries < 100 {
					continue
				}
				return errno(err)
			}
		}
		unlock = lockAll(sp, np, src, dst)
		s2, st, err1 := f.lookupLocked(sp, oldName)
		d2, dt, err2 := f.lookupLocked(np, newName)
		same := err1 == nil && s2 == sIno &&
			(dst == nil && errors.Is(err2, syscall.ENOENT) || dst != nil && err2 == nil && d2 == dIno)
		if same {
			styp, dtyp = st, dt
			break
		}
		unlock()
		f.put(src)
		if dst != nil {
			f.put(dst)
		}
		if err1 != nil {
			return errno(err1)
		}
	}
	defer func() {
		unlock()
		f.put(src)
		if dst != nil {
			f.put(dst)
		}
	}()
	if !isDir(np.d.Mode) {
		return syscall.ENOTDIR
	}
	if np.d.Nlink == 0 {
		return syscall.ENOENT
	}
	if dst == src {
		return nil // two names of one inode: nothing to do
	}
	exchange := flags&RenameExchange != 0
	switch {
	case flags&RenameNoReplace != 0 && dst != nil:
		return syscall.EEXIST
	case exchange && dst == nil:
		return syscall.ENOENT
	}
	srcDir := isDir(src.d.Mode)
	dstDir := dst != nil && isDir(dst.d.Mode)
	if oldDir != newDir {
		// As Linux: a directory moved under itself is EINVAL before any
		// check of the target's type.
		if srcDir {
			if err := f.notAncestor(src.ino, newDir); err != nil {
				return err
			}
		}
		if exchange && dstDir {
			if err := f.notAncestor(dst.ino, oldDir); err != nil {
				return err
			}
		}
	}
	if !exchange && dst != nil {
		switch {
		case srcDir && !dstDir:
			return syscall.ENOTDIR
		case !srcDir && dstDir:
			return syscall.EISDIR
		}
	}
	if oldDir != newDir {
		if srcDir && !dstDir && np.d.Nlink >= maxLink {
			return syscall.EMLINK
		}
		if exchange && dstDir && !srcDir && sp.d.Nlink >= maxLink {
			return syscall.EMLINK
		}
	}
	_, err = f.run(func(o *op) error {
		od, err := o.openDir(sp)
		if err != nil {
			return err
		}
		nd, err := o.openDir(np)
		if err != nil {
			return err
		}
		ow, nw := o.w(sp), o.w(np)
		sw := o.w(src)
		if exchange {
			dw := o.w(dst)
			if _, _, err := nd.Replace(newName, src.ino, styp); err != nil {
				return err
			}
			if _, _, err := od.Replace(oldName, dst.ino, dtyp); err != nil {
				return err
			}
			if oldDir != newDir {
				if srcDir {
					sw.SetParent(newDir)
					ow.Nlink--
					nw.Nlink++
				}
				if dstDir {
					dw.SetParent(oldDir)
					nw.Nlink--
					ow.Nlink++
				}
			}
			dw.Ctime = o.now
		} else {
			if dst != nil {
				if dstDir {
					if err := o.mustBeEmpty(dst); err != nil {
						return err
					}
					nw.Nlink--
				}
				if _, _, err := nd.Replace(newName, src.ino, styp); err != nil {
					return err
				}
				o.dropLink(dst)
			} else if _, err := nd.Insert(newName, src.ino, styp); err != nil {
				return err
			}
			if _, _, err := od.Remove(oldName); err != nil {
				return err
			}
			if srcDir && oldDir != newDir {
				sw.SetParent(newDir)
				ow.Nlink--
				nw.Nlink++
			}
		}
		sw.Ctime = o.now
		ow.Mtime, ow.Ctime = o.now, o.now
		nw.Mtime, nw.Ctime = o.now, o.now
		return nil
	})
	return errno(err)
}

// notAncestor fails with EINVAL when directory anc is d or one of d's
// ancestors (renameMu held, so parents do not move).
func (f *FS) notAncestor(anc, d uint64) error {
	for steps := 0; ; steps++ {
		if d == anc {
			return syscall.EINVAL
		}
		if d == layout.RootIno || steps > 1<<20 {
			return nil
		}
		n, err := f.get(d)
		if err != nil {
			return errno(err)
		}
		p := n.parent.Load()
		f.put(n)
		if p == d {
			return nil
		}
		d = p
	}
}

// ReadDir lists directory dirIno from cookie (0 = the start): ".",
// "..", then the entries in cookie order, until fn returns false. With
// plus every entry carries its attributes.
func (f *FS) ReadDir(dirIno uint64, cookie uint64, plus bool, fn func(e DirEntry) bool) error {
	n, err := f.get(dirIno)
	if err != nil {
		return errno(err)
	}
	defer f.put(n)
	n.mu.RLock()
	if !isDir(n.d.Mode) {
		n.mu.RUnlock()
		return syscall.ENOTDIR
	}
	self := f.attr(n.ino, &n.d)
	parent := n.d.Parent()
	n.mu.RUnlock()
	if cookie == 0 {
		e := DirEntry{Name: ".", Ino: dirIno, Mode: syscall.S_IFDIR, Next: 1}
		if plus {
			e.Attr = &self
		}
		if !fn(e) {
			return nil
		}
		cookie = 1
	}
	if cookie == 1 {
		e := DirEntry{Name: "..", Ino: parent, Mode: syscall.S_IFDIR, Next: 2}
		if plus {
			a, err := f.GetAttr(parent)
			if err != nil {
				a, e.Ino = self, dirIno // a removed directory's parent may be gone
			}
			e.Attr = &a
		}
		if !fn(e) {
			return nil
		}
		cookie = 2
	}
	const batch = 128
	for {
		var ents []DirEntry
		n.mu.RLock()
		if n.d.Nlink == 0 {
			n.mu.RUnlock()
			return nil
		}
		tx := f.log.Begin()
		d, err := f.readDir(tx, n)
		if err == nil {
			err = d.Iterate(cookie, func(name string, ino uint64, typ uint8, c uint64) bool {
				ents = append(ents, DirEntry{Name: name, Ino: ino, Mode: uint32(typ) << 12, Next: c})
				return len(ents) < batch
			})
		}
		tx.Abort()
		n.mu.RUnlock()
		if err != nil {
			return errno(err)
		}
		for _, e := range ents {
			if plus {
				a, err := f.GetAttr(e.Ino)
				if err != nil {
					if errors.Is(err, syscall.ESTALE) {
						continue
					}
					return errno(err)
				}
				e.Attr = &a
			}
			if !fn(e) {
				return nil
			}
		}
		if len(ents) < batch {
			return nil
		}
		cookie = ents[len(ents)-1].Next
	}
}
