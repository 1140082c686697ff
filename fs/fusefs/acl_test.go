package fusefs_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"agfs/fs/fusefs/fusetest"
)

// xacl encodes an ACL in the kernel's xattr form from (tag, perm, id)
// triples; like the kernel, it gives entries without a qualifier the id
// ACL_UNDEFINED_ID.
func xacl(es ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range es {
		id := e[2]
		if e[0] != user {
			id = 1<<32 - 1
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return b
}

const (
	userObj, user, groupObj, mask, other = 1, 2, 4, 0x10, 0x20
	access, dflt                         = "system.posix_acl_access", "system.posix_acl_default"
)

func mode(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

func getACL(t *testing.T, p, name string) []byte {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Getxattr(p, name, buf)
	if errors.Is(err, unix.ENODATA) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestACL: the mode and the access ACL follow each other, and new inodes
// take their directory's default ACL (ignoring the umask) or the umask.
func TestACL(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "64M")
	mnt := fusetest.Mount(t, img)
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)

	f := filepath.Join(mnt, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	named := xacl([3]uint32{userObj, 6, 0}, [3]uint32{user, 4, 65534}, [3]uint32{groupObj, 0, 0}, [3]uint32{mask, 4, 0}, [3]uint32{other, 0, 0})
	if err := unix.Setxattr(f, access, named, 0); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, f); m != 0o640 {
		t.Errorf("after setfacl m::r: mode %o, want 640 (the mask is the group bits)", m)
	}
	if got := getACL(t, f, access); !bytes.Equal(got, named) {
		t.Errorf("access ACL %x, want %x", got, named)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	want := xacl([3]uint32{userObj, 6, 0}, [3]uint32{user, 4, 65534}, [3]uint32{groupObj, 0, 0}, [3]uint32{mask, 0, 0}, [3]uint32{other, 0, 0})
	if got := getACL(t, f, access); !bytes.Equal(got, want) {
		t.Errorf("after chmod 600 the ACL is %x, want the mask cleared: %x", got, want)
	}
	base := xacl([3]uint32{userObj, 7, 0}, [3]uint32{groupObj, 5, 0}, [3]uint32{other, 4, 0})
	if err := unix.Setxattr(f, access, base, 0); err != nil {
		t.Fatal(err)
	}
	if m, a := mode(t, f), getACL(t, f, access); m != 0o754 || a != nil {
		t.Errorf("an ACL equivalent to a mode: mode %o and ACL %x, want 754 and none stored", m, a)
	}

	plain := filepath.Join(mnt, "plain")
	if err := os.WriteFile(plain, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, plain); m != 0o640 {
		t.Errorf("no default ACL: mode %o, want 640 (umask 027)", m)
	}

	d := filepath.Join(mnt, "d")
	if err := os.Mkdir(d, 0o777); err != nil {
		t.Fatal(err)
	}
	def := xacl([3]uint32{userObj, 7, 0}, [3]uint32{user, 7, 65534}, [3]uint32{groupObj, 5, 0}, [3]uint32{mask, 7, 0}, [3]uint32{other, 5, 0})
	if err := unix.Setxattr(d, dflt, def, 0); err != nil {
		t.Fatal(err)
	}
	nf := filepath.Join(d, "new")
	if err := os.WriteFile(nf, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, nf); m != 0o664 {
		t.Errorf("file under a default ACL: mode %o, want 664 (the umask is ignored)", m)
	}
	wantF := xacl([3]uint32{userObj, 6, 0}, [3]uint32{user, 7, 65534}, [3]uint32{groupObj, 5, 0}, [3]uint32{mask, 6, 0}, [3]uint32{other, 4, 0})
	if got := getACL(t, nf, access); !bytes.Equal(got, wantF) {
		t.Errorf("inherited access ACL %x, want %x", got, wantF)
	}
	sub := filepath.Join(d, "sub")
	if err := os.Mkdir(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	if got := getACL(t, sub, dflt); !bytes.Equal(got, def) {
		t.Errorf("subdirectory's default ACL %x, want the parent's %x", got, def)
	}
	if m := mode(t, sub); m != 0o775 {
		t.Errorf("subdirectory mode %o, want 775", m)
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	fusetest.CheckClosed(t, img)

	// noacl: there are no ACLs at all.
	mnt = fusetest.Mount(t, img, "noacl")
	if err := unix.Setxattr(filepath.Join(mnt, "plain"), access, base, 0); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("setting an ACL with noacl: %v, want EOPNOTSUPP", err)
	}
}
