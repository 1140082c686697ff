package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
)

func TestErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{syscall.ENOENT, syscall.ENOENT},
		{fmt.Errorf("lookup: %w", syscall.ENAMETOOLONG), syscall.ENAMETOOLONG},
		{fmt.Errorf("inode 7: %w", layout.ErrCorrupt), syscall.EIO},
		{fmt.Errorf("%w: %w", layout.ErrCorrupt, syscall.ENOSPC), syscall.EIO},
		{layout.ErrChecksum, syscall.EIO},
		{disk.ErrReadOnly, syscall.EROFS},
		{io.ErrUnexpectedEOF, syscall.EIO},
		{errors.New("something else"), syscall.EIO},
	} {
		if got := Errno(tc.err); got != tc.want {
			t.Errorf("Errno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestSetAttrIn(t *testing.T) {
	in := &fuse.SetAttrIn{}
	in.Valid = fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_SIZE | fuse.FATTR_ATIME | fuse.FATTR_ATIME_NOW |
		fuse.FATTR_MTIME | fuse.FATTR_FH | fuse.FATTR_LOCKOWNER | fuse.FATTR_CTIME
	in.Mode = 0o104755
	in.Uid = 7
	in.Size = 12345
	in.Mtime, in.Mtimensec = 42, 5
	in.Ctime, in.Ctimensec = 43, 6
	s := setAttrIn(in)
	want := fs.SetAttr{
		Valid: fs.SetMode | fs.SetUID | fs.SetSize | fs.SetAtimeNow | fs.SetMtime | fs.SetCtime,
		Mode:  0o4755, UID: 7, Size: 12345, Mtime: 42e9 + 5, Ctime: 43e9 + 6,
	}
	if s != want {
		t.Errorf("setAttrIn = %+v\nwant        %+v", s, want)
	}
	if s := setAttrIn(&fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_FH}}); s.Valid != 0 {
		t.Errorf("a handle-only SETATTR changes %#x", s.Valid)
	}
}

func TestTimes(t *testing.T) {
	for _, ns := range []int64{0, 1, 1e9 - 1, 1e9, 1795511286_649876000, -1, -1e9, -1e9 - 1} {
		sec, nsec := splitNs(ns)
		if nsec >= 1e9 || joinNs(sec, nsec) != ns {
			t.Errorf("%d -> %d.%09d -> %d", ns, int64(sec), nsec, joinNs(sec, nsec))
		}
		want := time.Unix(0, ns)
		if int64(sec) != want.Unix() || int(nsec) != want.Nanosecond() {
			t.Errorf("splitNs(%d) = %d.%09d, want %d.%09d", ns, int64(sec), nsec, want.Unix(), want.Nanosecond())
		}
	}
	if got := joinNs(1<<62, 0); got != 1<<63-1 {
		t.Errorf("far future: %d, want the clamp", got)
	}
	if got := joinNs(uint64(1<<64-(1<<62)), 0); got != -1<<63 {
		t.Errorf("far past: %d, want the clamp", got)
	}
}

func TestDropTrusted(t *testing.T) {
	in := []byte("user.a\x00trusted.b\x00security.c\x00trusted.\x00system.posix_acl_access\x00")
	want := []byte("user.a\x00security.c\x00system.posix_acl_access\x00")
	if got := dropTrusted(in); !bytes.Equal(got, want) {
		t.Errorf("dropTrusted = %q, want %q", got, want)
	}
	if got := dropTrusted(nil); len(got) != 0 {
		t.Errorf("dropTrusted(nil) = %q", got)
	}
}

// mkACL builds an ACL from "tag:id:perm" triples.
func mkACL(es ...aclEntry) acl { return acl(es) }

func TestACLParse(t *testing.T) {
	a := mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUser, 4, 65534}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclMask, 4, 0}, aclEntry{aclOther, 0, 0})
	b := a.bytes()
	got, err := parseACL(b)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(a) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{1, 0, 0, 0}, b[4:]...),
		"ragged":         b[:len(b)-1],
		"no mask":        mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUser, 4, 1}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclOther, 0, 0}).bytes(),
		"no other":       mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclGroupObj, 0, 0}).bytes(),
		"two owners":     mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUserObj, 6, 0}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclOther, 0, 0}).bytes(),
		"bad permission": mkACL(aclEntry{aclUserObj, 8, 0}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclOther, 0, 0}).bytes(),
		"bad tag":        mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{0x40, 0, 0}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclOther, 0, 0}).bytes(),
		"mask first":     mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclMask, 4, 0}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclOther, 0, 0}).bytes(),
		"users unsorted": mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUser, 4, 9}, aclEntry{aclUser, 4, 8}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclMask, 4, 0}, aclEntry{aclOther, 0, 0}).bytes(),
		"user twice":     mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUser, 4, 9}, aclEntry{aclUser, 4, 9}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclMask, 4, 0}, aclEntry{aclOther, 0, 0}).bytes(),
	} {
		if _, err := parseACL(bad); err != syscall.EINVAL {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
	}
}

func TestACLMode(t *testing.T) {
	minimal := mkACL(aclEntry{aclUserObj, 7, 0}, aclEntry{aclGroupObj, 5, 0}, aclEntry{aclOther, 4, 0})
	if perm, equiv := minimal.equivMode(); perm != 0o754 || !equiv {
		t.Errorf("minimal: %o %v", perm, equiv)
	}
	full := mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUser, 7, 9}, aclEntry{aclGroupObj, 5, 0}, aclEntry{aclMask, 4, 0}, aclEntry{aclOther, 0, 0})
	if perm, equiv := full.equivMode(); perm != 0o640 || equiv {
		t.Errorf("with mask: %o %v, want 640 and not equivalent", perm, equiv)
	}
	full.chmod(0o751)
	want := mkACL(aclEntry{aclUserObj, 7, 0}, aclEntry{aclUser, 7, 9}, aclEntry{aclGroupObj, 5, 0}, aclEntry{aclMask, 5, 0}, aclEntry{aclOther, 1, 0})
	if fmt.Sprint(full) != fmt.Sprint(want) {
		t.Errorf("chmod 751: %v, want %v (the mask takes the group bits)", full, want)
	}
	minimal.chmod(0o600)
	if perm, _ := minimal.equivMode(); perm != 0o600 {
		t.Errorf("chmod 600 without a mask: %o", perm)
	}
}

func TestACLCreateMasq(t *testing.T) {
	// Default u::rwx,u:9:rwx,g::r-x,m::rwx,o::r-x; creat(0666).
	def := mkACL(aclEntry{aclUserObj, 7, 0}, aclEntry{aclUser, 7, 9}, aclEntry{aclGroupObj, 5, 0}, aclEntry{aclMask, 7, 0}, aclEntry{aclOther, 5, 0})
	perm, equiv := def.createMasq(0o100666)
	if perm != 0o664 || equiv {
		t.Errorf("file: mode %o equiv %v, want 664 with an ACL", perm, equiv)
	}
	if def[3].perm != 6 || def[0].perm != 6 || def[4].perm != 4 || def[1].perm != 7 {
		t.Errorf("file ACL %v: the mask, owner and other are cut by the mode, named entries kept", def)
	}
	// Only the three base entries: the ACL is the mode.
	base := mkACL(aclEntry{aclUserObj, 7, 0}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclOther, 0, 0})
	if perm, equiv := base.createMasq(0o40777); perm != 0o700 || !equiv {
		t.Errorf("dir: %o %v, want 700 and equivalent", perm, equiv)
	}
}

// FuzzACL: any input either fails to parse with EINVAL or round-trips, and
// the mode operations never panic.
func FuzzACL(f *testing.F) {
	f.Add(mkACL(aclEntry{aclUserObj, 6, 0}, aclEntry{aclUser, 4, 65534}, aclEntry{aclGroupObj, 0, 0}, aclEntry{aclMask, 4, 0}, aclEntry{aclOther, 0, 0}).bytes(), uint32(0o640))
	f.Add(mkACL(aclEntry{aclUserObj, 7, 0}, aclEntry{aclGroupObj, 5, 0}, aclEntry{aclOther, 5, 0}).bytes(), uint32(0o777))
	f.Add([]byte{2, 0, 0, 0}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, mode uint32) {
		a, err := parseACL(b)
		if err != nil {
			if err != syscall.EINVAL {
				t.Fatalf("error %v, want EINVAL", err)
			}
			return
		}
		if !bytes.Equal(a.bytes(), b) {
			t.Fatalf("round trip changed %x into %x", b, a.bytes())
		}
		perm, _ := a.equivMode()
		if perm&^0o777 != 0 {
			t.Fatalf("equivMode gave %o", perm)
		}
		a.chmod(mode)
		if p, _ := a.equivMode(); p != mode&0o777 {
			t.Fatalf("after chmod %o the ACL says %o", mode&0o777, p)
		}
		if _, err := parseACL(a.bytes()); err != nil {
			t.Fatalf("chmod made an invalid ACL: %v", err)
		}
		m, _ := a.createMasq(mode)
		if m&^(mode&0o777) != 0 {
			t.Fatalf("createMasq(%o) granted %o", mode&0o777, m)
		}
	})
}
