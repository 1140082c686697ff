package fusefs

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"agfs/fs"
)

// Lookup answers a name with its inode and gives the kernel a reference; a
// missing name is answered as a negative entry the kernel may cache.
func (f *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	a, err := f.core.Lookup(h.NodeId, name)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) && f.negTTL > 0 {
			*out = fuse.EntryOut{}
			out.SetEntryTimeout(f.negTTL)
			return fuse.OK
		}
		return f.status("lookup", h.NodeId, err)
	}
	f.core.Ref(a.Ino)
	f.fillEntry(&a, out)
	return fuse.OK
}

// Forget drops references the kernel held (FORGET and each item of
// BATCH_FORGET).
func (f *FS) Forget(nodeid, nlookup uint64) {
	if !f.enter() {
		return
	}
	defer f.leave()
	f.core.Forget(nodeid, nlookup)
}

func (f *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if e := f.takeWritebackError(in); e != 0 {
		return fuse.Status(e)
	}
	a, err := f.core.GetAttr(in.NodeId)
	if err != nil {
		return f.status("getattr", in.NodeId, err)
	}
	out.SetTimeout(f.attrTTL)
	f.fillAttr(&a, &out.Attr)
	return fuse.OK
}

// SetAttr does chmod, chown, truncate and utimens. The kernel sends a size
// of 0 here for open(O_TRUNC), since ATOMIC_O_TRUNC is not negotiated, and
// the mode change that drops setuid/setgid after a write by another user.
func (f *FS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	s := setAttrIn(in)
	var a fs.Attr
	var err error
	switch {
	case s.Valid == 0:
		a, err = f.core.GetAttr(in.NodeId)
	case s.Valid&fs.SetMode != 0 && f.aclOn:
		unlock := f.acls.lock(in.NodeId)
		a, err = f.core.SetAttr(in.NodeId, s)
		if err == nil {
			err = f.chmodACL(in.NodeId, a.Mode)
		}
		unlock()
	default:
		a, err = f.core.SetAttr(in.NodeId, s)
	}
	if err != nil {
		return f.status("setattr", in.NodeId, err)
	}
	out.SetTimeout(f.attrTTL)
	f.fillAttr(&a, &out.Attr)
	return fuse.OK
}

// setAttrIn translates the kernel's SETATTR into fs.SetAttr. The file
// handle and lock owner carry nothing agfs needs.
func setAttrIn(in *fuse.SetAttrIn) fs.SetAttr {
	var s fs.SetAttr
	v := in.Valid
	if v&fuse.FATTR_MODE != 0 {
		s.Valid |= fs.SetMode
		s.Mode = in.Mode & 07777
	}
	if v&fuse.FATTR_UID != 0 {
		s.Valid |= fs.SetUID
		s.UID = in.Uid
	}
	if v&fuse.FATTR_GID != 0 {
		s.Valid |= fs.SetGID
		s.GID = in.Gid
	}
	if v&fuse.FATTR_SIZE != 0 {
		s.Valid |= fs.SetSize
		s.Size = in.Size
		if v&fuse.FATTR_KILL_SUIDGID != 0 {
			s.Valid |= fs.SetKillPriv
		}
	}
	switch {
	case v&fuse.FATTR_ATIME_NOW != 0:
		s.Valid |= fs.SetAtimeNow
	case v&fuse.FATTR_ATIME != 0:
		s.Valid |= fs.SetAtime
		s.Atime = joinNs(in.Atime, in.Atimensec)
	}
	switch {
	case v&fuse.FATTR_MTIME_NOW != 0:
		s.Valid |= fs.SetMtimeNow
	case v&fuse.FATTR_MTIME != 0:
		s.Valid |= fs.SetMtime
		s.Mtime = joinNs(in.Mtime, in.Mtimensec)
	}
	if v&fuse.FATTR_CTIME != 0 {
		s.Valid |= fs.SetCtime
		s.Ctime = joinNs(in.Ctime, in.Ctimensec)
	}
	return s
}

// created finishes a request that made (or linked) an inode: the kernel
// gets a reference to it.
func (f *FS) created(op string, dir uint64, a fs.Attr, err error, out *fuse.EntryOut) fuse.Status {
	if err != nil {
		return f.status(op, dir, err)
	}
	f.core.Ref(a.Ino)
	f.fillEntry(&a, out)
	return fuse.OK
}

// makeNode creates name in dir with mknod (or mkdir for a directory
// mode), applying the directory's default ACL or the umask. If the
// inherited ACLs cannot be stored, the new name is removed again.
func (f *FS) makeNode(dir uint64, name string, mode, rdev, umask uint32, c fs.Caller) (fs.Attr, error) {
	mode, access, def, err := f.inherit(dir, mode, umask)
	if err != nil {
		return fs.Attr{}, err
	}
	var a fs.Attr
	if isDir(mode) {
		a, err = f.core.Mkdir(dir, name, mode, c)
	} else {
		a, err = f.core.Mknod(dir, name, mode, rdev, c)
	}
	if err != nil || (access == nil && def == nil) {
		return a, err
	}
	if err := f.setInherited(a.Ino, access, def); err != nil {
		if isDir(mode) {
			f.core.Rmdir(dir, name)
		} else {
			f.core.Unlink(dir, name)
		}
		return fs.Attr{}, err
	}
	return f.core.GetAttr(a.Ino)
}

func (f *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if isDir(in.Mode) {
		return fuse.EPERM
	}
	a, err := f.makeNode(in.NodeId, name, in.Mode, in.Rdev, in.Umask, caller(&in.InHeader))
	return f.created("mknod", in.NodeId, a, err, out)
}

func (f *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	a, err := f.makeNode(in.NodeId, name, in.Mode&^syscall.S_IFMT|syscall.S_IFDIR, 0, in.Umask, caller(&in.InHeader))
	return f.created("mkdir", in.NodeId, a, err, out)
}

func (f *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	a, err := f.core.Symlink(h.NodeId, name, target, caller(h))
	return f.created("symlink", h.NodeId, a, err, out)
}

func (f *FS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	a, err := f.core.Link(in.Oldnodeid, in.NodeId, name)
	return f.created("link", in.NodeId, a, err, out)
}

func (f *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	if !f.enter() {
		return nil, fuse.EIO
	}
	defer f.leave()
	target, err := f.core.Readlink(h.NodeId)
	if err != nil {
		return nil, f.status("readlink", h.NodeId, err)
	}
	return []byte(target), fuse.OK
}

func (f *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if err := f.core.Unlink(h.NodeId, name); err != nil {
		return f.status("unlink", h.NodeId, err)
	}
	return fuse.OK
}

func (f *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if err := f.core.Rmdir(h.NodeId, name); err != nil {
		return f.status("rmdir", h.NodeId, err)
	}
	return fuse.OK
}

// renameFlags are the renameat2 flags agfs implements; RENAME_WHITEOUT
// (overlayfs) is not one of them.
const renameFlags = fs.RenameNoReplace | fs.RenameExchange

func (f *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if in.Flags&^renameFlags != 0 {
		return fuse.EINVAL
	}
	if err := f.core.Rename(in.NodeId, oldName, in.Newdir, newName, in.Flags); err != nil {
		return f.status("rename", in.NodeId, err)
	}
	return fuse.OK
}

// Create makes and opens a regular file. The kernel sends CREATE only for
// a name it believes absent; when another request made the name in the
// meantime, open(O_CREAT) without O_EXCL opens that file instead of failing.
func (f *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	dir := in.NodeId
	mode := in.Mode&^syscall.S_IFMT | syscall.S_IFREG
	a, err := f.makeNode(dir, name, mode, 0, in.Umask, caller(&in.InHeader))
	if errors.Is(err, syscall.EEXIST) && in.Flags&syscall.O_EXCL == 0 {
		a, err = f.openExisting(dir, name, in.Flags)
	}
	if err != nil {
		return f.status("create", dir, err)
	}
	f.core.Ref(a.Ino)
	if err := f.core.OpenFile(a.Ino); err != nil {
		f.core.Forget(a.Ino, 1)
		return f.status("create", a.Ino, err)
	}
	f.fillEntry(&a, &out.EntryOut)
	out.OpenOut = fuse.OpenOut{OpenFlags: f.openFlags(in.Flags)}
	return fuse.OK
}

// openExisting is Create's fallback for a name that appeared since the
// kernel looked it up.
func (f *FS) openExisting(dir uint64, name string, flags uint32) (fs.Attr, error) {
	a, err := f.core.Lookup(dir, name)
	if err != nil {
		return a, err
	}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
	case syscall.S_IFDIR:
		return a, syscall.EISDIR
	default:
		return a, syscall.EEXIST
	}
	if flags&syscall.O_TRUNC != 0 && a.Size != 0 {
		return f.core.SetAttr(a.Ino, fs.SetAttr{Valid: fs.SetSize})
	}
	return a, nil
}

// Tmpfile makes an unnamed regular file (open with O_TMPFILE). The fs core
// has no call for an inode without a name, so the file is made under a
// unique hidden name and unlinked at once; it then lives, with a link
// count of 0, while the kernel holds it, and linkat(2) may give it a name.
func (f *FS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	dir := in.NodeId
	mode := in.Mode&^syscall.S_IFMT | syscall.S_IFREG
	name := fmt.Sprintf(".agfs-tmpfile.%d.%d", os.Getpid(), f.tmpSeq.Add(1))
	a, err := f.makeNode(dir, name, mode, 0, in.Umask, caller(&in.InHeader))
	if err != nil {
		return f.status("tmpfile", dir, err)
	}
	f.core.Ref(a.Ino)
	if err := f.core.OpenFile(a.Ino); err != nil {
		f.core.Unlink(dir, name)
		f.core.Forget(a.Ino, 1)
		return f.status("tmpfile", a.Ino, err)
	}
	if err := f.core.Unlink(dir, name); err != nil {
		f.core.Release(a.Ino)
		f.core.Forget(a.Ino, 1)
		return f.status("tmpfile", dir, err)
	}
	if b, err := f.core.GetAttr(a.Ino); err == nil {
		a = b
	} else {
		a.Nlink = 0
	}
	f.fillEntry(&a, &out.EntryOut)
	out.OpenOut = fuse.OpenOut{OpenFlags: f.openFlags(in.Flags)}
	return fuse.OK
}

func (f *FS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	s := f.core.StatFS()
	*out = fuse.StatfsOut{
		Blocks:  s.Blocks,
		Bfree:   s.Bfree,
		Bavail:  s.Bavail,
		Files:   s.Files,
		Ffree:   s.Ffree,
		Bsize:   s.Bsize,
		NameLen: s.NameLen,
		Frsize:  s.Bsize,
	}
	return fuse.OK
}

// Init learns what the kernel agreed to, and keeps the server for the
// notifications of writeback.go.
func (f *FS) Init(s *fuse.Server) {
	f.srv = s
	offered := s.KernelSettings().Flags64()
	f.aclOn = f.aclOn && offered&fuse.CAP_POSIX_ACL != 0
	f.dontMask = f.aclOn && offered&fuse.CAP_DONT_MASK != 0
	f.writeback = f.writeback && offered&fuse.CAP_WRITEBACK_CACHE != 0
}
