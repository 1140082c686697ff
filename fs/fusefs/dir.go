package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fuse"

	"agfs/fs"
)

// OpenDir answers ENOSYS, which the kernel takes as "this server keeps no
// directory state" (FUSE_NO_OPENDIR_SUPPORT, Linux 5.1): it stops sending
// OPENDIR and RELEASEDIR for the rest of the mount, two round trips per
// opendir(3) saved (rm -rf opens every directory twice). agfs needs no
// handle: a directory stream is its cookie (the offset the kernel passes
// back), which the fs core keeps valid while entries come and go.
//
// Such opens get FOPEN_KEEP_CACHE|FOPEN_CACHE_DIR from the kernel, so a
// directory listed to its end is listed again from the kernel's cache. That
// is safe because every change to a directory comes through this kernel
// (agfs is its device's only user, and nothing in the daemon adds or
// removes names on its own), and the kernel drops the cached listing when
// it changes the directory or sees a new mtime.
func (f *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

// ReleaseDir is never called: see OpenDir.
func (f *FS) ReleaseDir(in *fuse.ReleaseIn) {}

func (f *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	err := f.core.ReadDir(in.NodeId, in.Offset, false, func(e fs.DirEntry) bool {
		return out.AddDirEntry(fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode, Off: e.Next})
	})
	if err != nil && len(out.Bytes()) == 0 {
		return f.status("readdir", in.NodeId, err)
	}
	return fuse.OK
}

// ReadDirPlus answers entries with their attributes. Each entry that fits
// in the reply gives the kernel a reference to its inode, except "." and
// "..", which the kernel does not look up (their NodeId is left 0).
func (f *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	var lateErr error
	err := f.core.ReadDir(in.NodeId, in.Offset, true, func(e fs.DirEntry) bool {
		a := e.Attr
		dot := e.Name == "." || e.Name == ".."
		if a == nil && !dot {
			got, err := f.core.GetAttr(e.Ino)
			if err != nil {
				lateErr = err
				return false
			}
			a = &got
		}
		eo := out.AddDirLookupEntry(fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode, Off: e.Next})
		if eo == nil {
			return false
		}
		if !dot {
			f.core.Ref(a.Ino)
			f.fillEntry(a, eo)
		}
		return true
	})
	if err == nil {
		err = lateErr
	}
	if err != nil && len(out.Bytes()) == 0 {
		return f.status("readdirplus", in.NodeId, err)
	}
	return fuse.OK
}

func (f *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if err := f.core.FsyncDir(in.NodeId); err != nil {
		return f.status("fsyncdir", in.NodeId, err)
	}
	return fuse.OK
}
