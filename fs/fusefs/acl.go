package fusefs

import (
	"encoding/binary"
	"errors"
	"sync"
	"syscall"

	"agfs/fs"
)

// POSIX ACLs. With CAP_POSIX_ACL the kernel enforces ACLs, reading them
// through GETXATTR system.posix_acl_access, and leaves the rest to the
// filesystem (libfuse, FUSE_CAP_POSIX_ACL): keeping the mode and the
// access ACL in sync both ways, and giving new inodes the default ACL of
// their directory. The fs core stores the two ACLs as ordinary system.*
// xattrs in the kernel's format; the semantics live here, as in the
// kernel's fs/posix_acl.c.
//
// With CAP_DONT_MASK the kernel leaves the umask to the filesystem too: it
// applies only where the directory has no default ACL.

const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
)

// The xattr form: a little-endian header (version 2), then entries of tag,
// permission bits and id.
const (
	aclVersion   = 2
	aclHeader    = 4
	aclEntrySize = 8

	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

type acl []aclEntry

// aclRank is the place of each tag in a valid ACL: owner, named users,
// owning group, named groups, mask, other.
var aclRank = map[uint16]int{aclUserObj: 1, aclUser: 2, aclGroupObj: 3, aclGroup: 4, aclMask: 5, aclOther: 6}

// parseACL reads the xattr form, checking what posix_acl_valid checks: the
// entries in canonical order (named entries by increasing id), one owner,
// owning group and other entry, at most one mask and one when there are
// named entries, and permissions within rwx.
func parseACL(b []byte) (acl, error) {
	if len(b) < aclHeader || (len(b)-aclHeader)%aclEntrySize != 0 ||
		binary.LittleEndian.Uint32(b) != aclVersion {
		return nil, syscall.EINVAL
	}
	b = b[aclHeader:]
	a := make(acl, len(b)/aclEntrySize)
	var count [7]int
	prev := aclEntry{}
	for i := range a {
		e := b[i*aclEntrySize:]
		a[i] = aclEntry{binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])}
		r, ok := aclRank[a[i].tag]
		if !ok || a[i].perm&^7 != 0 {
			return nil, syscall.EINVAL
		}
		if i > 0 {
			pr := aclRank[prev.tag]
			named := a[i].tag == aclUser || a[i].tag == aclGroup
			if r < pr || (r == pr && (!named || a[i].id <= prev.id)) {
				return nil, syscall.EINVAL
			}
		}
		count[r]++
		prev = a[i]
	}
	if count[1] != 1 || count[3] != 1 || count[6] != 1 || count[5] > 1 ||
		(count[2]+count[4] > 0 && count[5] == 0) {
		return nil, syscall.EINVAL
	}
	return a, nil
}

func (a acl) bytes() []byte {
	b := make([]byte, aclHeader+len(a)*aclEntrySize)
	binary.LittleEndian.PutUint32(b, aclVersion)
	for i, e := range a {
		p := b[aclHeader+i*aclEntrySize:]
		binary.LittleEndian.PutUint16(p, e.tag)
		binary.LittleEndian.PutUint16(p[2:], e.perm)
		binary.LittleEndian.PutUint32(p[4:], e.id)
	}
	return b
}

// equivMode returns the permission bits an access ACL gives the mode (the
// mask, when there is one, as the group bits), and whether the ACL says no
// more than those bits (posix_acl_equiv_mode).
func (a acl) equivMode() (perm uint32, equiv bool) {
	equiv = true
	for _, e := range a {
		p := uint32(e.perm)
		switch e.tag {
		case aclUserObj:
			perm |= p << 6
		case aclGroupObj:
			perm |= p << 3
		case aclOther:
			perm |= p
		case aclMask:
			perm = perm&^0o070 | p<<3
			equiv = false
		default:
			equiv = false
		}
	}
	return perm, equiv
}

// chmod makes the ACL agree with new permission bits (posix_acl_chmod):
// owner, other, and the mask (or the owning group without one).
func (a acl) chmod(mode uint32) {
	group := -1
	for i := range a {
		switch a[i].tag {
		case aclUserObj:
			a[i].perm = uint16(mode >> 6 & 7)
		case aclOther:
			a[i].perm = uint16(mode & 7)
		case aclGroupObj:
			if group < 0 || a[group].tag != aclMask {
				group = i
			}
		case aclMask:
			group = i
		}
	}
	if group >= 0 {
		a[group].perm = uint16(mode >> 3 & 7)
	}
}

// createMasq restricts an inherited default ACL by the mode the creator
// asked for, and the mode by the ACL (posix_acl_create_masq). It returns
// the new permission bits and whether the ACL says no more than them.
func (a acl) createMasq(mode uint32) (uint32, bool) {
	m := mode & 0o777
	equiv := true
	group := -1
	for i := range a {
		switch a[i].tag {
		case aclUserObj:
			a[i].perm &= uint16(m >> 6 & 7)
			m &= uint32(a[i].perm)<<6 | ^uint32(0o700)
		case aclUser, aclGroup:
			equiv = false
		case aclGroupObj:
			if group < 0 || a[group].tag != aclMask {
				group = i
			}
		case aclOther:
			a[i].perm &= uint16(m & 7)
			m &= uint32(a[i].perm) | ^uint32(0o007)
		case aclMask:
			group = i
			equiv = false
		}
	}
	if group >= 0 {
		a[group].perm &= uint16(m >> 3 & 7)
		m &= uint32(a[group].perm)<<3 | ^uint32(0o070)
	}
	return m, equiv
}

// aclLocks serialise the read-modify-write of an inode's mode and access
// ACL (chmod against setfacl), striped by inode number.
type aclLocks [64]sync.Mutex

func (l *aclLocks) lock(ino uint64) func() {
	m := &l[ino%uint64(len(l))]
	m.Lock()
	return m.Unlock
}

// getXattr reads a whole xattr value, or returns nil when it is absent.
func (f *FS) getXattr(ino uint64, name string) ([]byte, error) {
	var small [128]byte
	for range 8 {
		n, err := f.core.GetXattr(ino, name, small[:])
		switch {
		case err == nil:
			return append([]byte(nil), small[:n]...), nil
		case errors.Is(err, syscall.ENODATA):
			return nil, nil
		case !errors.Is(err, syscall.ERANGE):
			return nil, err
		}
		if n, err = f.core.GetXattr(ino, name, nil); err != nil {
			if errors.Is(err, syscall.ENODATA) {
				return nil, nil
			}
			return nil, err
		}
		buf := make([]byte, n)
		n, err = f.core.GetXattr(ino, name, buf)
		if err == nil {
			return buf[:n], nil
		}
		if !errors.Is(err, syscall.ERANGE) {
			return nil, err
		}
	}
	return nil, syscall.EAGAIN
}

// setAccessACL stores an access ACL the way setfacl means it: the mode
// takes the ACL's permission bits, and an ACL that says no more than the
// mode is not stored at all.
func (f *FS) setAccessACL(ino uint64, value []byte) error {
	a, err := parseACL(value)
	if err != nil {
		return err
	}
	defer f.acls.lock(ino)()
	attr, err := f.core.GetAttr(ino)
	if err != nil {
		return err
	}
	perm, equiv := a.equivMode()
	if equiv {
		if err := f.core.RemoveXattr(ino, aclAccess); err != nil && !errors.Is(err, syscall.ENODATA) {
			return err
		}
	} else if err := f.core.SetXattr(ino, aclAccess, value, 0); err != nil {
		return err
	}
	if attr.Mode&0o777 != perm {
		_, err = f.core.SetAttr(ino, fs.SetAttr{Valid: fs.SetMode, Mode: attr.Mode&0o7000 | perm})
	}
	return err
}

// chmodACL brings ino's access ACL, if it has one, in line with a new
// mode. The caller holds the inode's ACL lock.
func (f *FS) chmodACL(ino uint64, mode uint32) error {
	v, err := f.getXattr(ino, aclAccess)
	if err != nil || v == nil {
		return err
	}
	a, err := parseACL(v)
	if err != nil {
		f.log.Printf("agfs: inode %d: ignoring an invalid access ACL", ino)
		return nil
	}
	a.chmod(mode)
	return f.core.SetXattr(ino, aclAccess, a.bytes(), 0)
}

// inherit works out the mode of a new inode in directory dir and the ACLs
// it gets: with a default ACL there, the inode gets an access ACL from it
// (and a directory the default ACL too) and the umask is ignored;
// without one, the umask applies. The ACLs are nil when none is to be set.
func (f *FS) inherit(dir uint64, mode, umask uint32) (newMode uint32, access, def []byte, err error) {
	if !f.aclOn {
		return mode, nil, nil, nil
	}
	d, err := f.getXattr(dir, aclDefault)
	if err != nil {
		return 0, nil, nil, err
	}
	var a acl
	if d != nil {
		if a, err = parseACL(d); err != nil {
			f.log.Printf("agfs: directory %d: ignoring an invalid default ACL", dir)
			d = nil
		}
	}
	if d == nil {
		if f.dontMask {
			mode &^= umask & 0o777
		}
		return mode, nil, nil, nil
	}
	perm, equiv := a.createMasq(mode)
	newMode = mode&^0o777 | perm
	if !equiv {
		access = a.bytes()
	}
	if isDir(mode) {
		def = d
	}
	return newMode, access, def, nil
}

// setInherited stores the ACLs inherit chose on a new inode.
func (f *FS) setInherited(ino uint64, access, def []byte) error {
	if access != nil {
		if err := f.core.SetXattr(ino, aclAccess, access, 0); err != nil {
			return err
		}
	}
	if def != nil {
		if err := f.core.SetXattr(ino, aclDefault, def, 0); err != nil {
			return err
		}
	}
	return nil
}
