package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fuse"

	"agfs/fs"
)

// OpenDir keeps no state: a directory stream is its cookie (the offset the
// kernel passes back), which the fs core keeps valid while entries come and
// go.
func (f *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	*out = fuse.OpenOut{}
	return fuse.OK
}

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
