package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// StatsXattr is the read-only virtual attribute of a mount's root that
// holds the filesystem's counters as "NAME VALUE" lines (fs.Stats,
// orphan.Stats; mount.agfs --stats prints it). Like ceph's virtual
// attributes it is never listed and cannot be set or removed. FUSE passes
// names outside the user/trusted/security/system namespaces through, so
// the name stays clear of every attribute a file can store.
const StatsXattr = "agfs.stats"

// isStats reports whether a request names the stats attribute.
func isStats(ino uint64, name string) bool { return ino == fuse.FUSE_ROOT_ID && name == StatsXattr }

// GetXAttr: with an empty dest the kernel asks for the size only.
func (f *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, name string, dest []byte) (uint32, fuse.Status) {
	if !f.enter() {
		return 0, fuse.EIO
	}
	defer f.leave()
	if isStats(h.NodeId, name) {
		return sized(f.ring.Load().appendStats(f.core.Stats().AppendText(nil)), dest)
	}
	if f.noACL(name) {
		return 0, fuse.Status(syscall.EOPNOTSUPP)
	}
	n, err := f.core.GetXattr(h.NodeId, name, dest)
	if err != nil {
		return uint32(n), f.status("getxattr", h.NodeId, err)
	}
	return uint32(n), fuse.OK
}

// ListXAttr lists the names, hiding trusted.* from a caller without
// CAP_SYS_ADMIN as the kernel does for local filesystems (FUSE passes the
// list through unfiltered).
func (f *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if !f.enter() {
		return 0, fuse.EIO
	}
	defer f.leave()
	if privileged(h) {
		n, err := f.core.ListXattr(h.NodeId, dest)
		if err != nil {
			return uint32(n), f.status("listxattr", h.NodeId, err)
		}
		return uint32(n), fuse.OK
	}
	list, err := f.fullList(h.NodeId)
	if err != nil {
		return 0, f.status("listxattr", h.NodeId, err)
	}
	return sized(dropTrusted(list), dest)
}

// sized replies to a get or list request with v: its size when dest is
// empty (the kernel asks for the size only), ERANGE when dest is too
// small.
func sized(v, dest []byte) (uint32, fuse.Status) {
	switch {
	case len(dest) == 0:
		return uint32(len(v)), fuse.OK
	case len(v) > len(dest):
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

// fullList reads the whole name list of ino, whatever its size.
func (f *FS) fullList(ino uint64) ([]byte, error) {
	for range 8 {
		n, err := f.core.ListXattr(ino, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		if n == 0 {
			return buf, nil
		}
		m, err := f.core.ListXattr(ino, buf)
		if errors.Is(err, syscall.ERANGE) {
			continue // the list grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:m], nil
	}
	return nil, syscall.EAGAIN
}

// dropTrusted removes the trusted.* names from a NUL-separated list.
func dropTrusted(list []byte) []byte {
	out := list[:0:0]
	for len(list) > 0 {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			i = len(list) - 1
		}
		name := list[:i+1]
		list = list[i+1:]
		if !bytes.HasPrefix(name, []byte("trusted.")) {
			out = append(out, name...)
		}
	}
	return out
}

// capSysAdmin is CAP_SYS_ADMIN's bit in a capability set.
const capSysAdmin = 21

// privileged reports whether the process making a request has
// CAP_SYS_ADMIN (read from /proc; a request from the kernel itself has no
// pid). If /proc cannot tell, root is taken as privileged.
func privileged(h *fuse.InHeader) bool {
	if h.Pid == 0 {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.Pid))
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err == nil {
					return caps&(1<<capSysAdmin) != 0
				}
			}
		}
	}
	return h.Uid == 0
}

func (f *FS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, name string, data []byte) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	var err error
	switch {
	case isStats(in.NodeId, name):
		err = syscall.EPERM
	case f.noACL(name):
		err = syscall.EOPNOTSUPP
	case f.aclOn && name == aclAccess:
		err = f.setAccessACL(in.NodeId, data)
	case f.aclOn && name == aclDefault:
		if _, err = parseACL(data); err == nil {
			err = f.core.SetXattr(in.NodeId, name, data, in.Flags)
		}
	default:
		err = f.core.SetXattr(in.NodeId, name, data, in.Flags)
	}
	if err != nil {
		return f.status("setxattr", in.NodeId, err)
	}
	return fuse.OK
}

func (f *FS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if !f.enter() {
		return fuse.EIO
	}
	defer f.leave()
	if isStats(h.NodeId, name) {
		return fuse.EPERM
	}
	if f.noACL(name) {
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	if err := f.core.RemoveXattr(h.NodeId, name); err != nil {
		return f.status("removexattr", h.NodeId, err)
	}
	return fuse.OK
}

// noACL: with ACLs off (-o noacl) the ACL xattrs do not exist, as on ext4
// mounted noacl, so that tools such as cp -a fall back to chmod instead of
// storing an ACL nothing would apply.
func (f *FS) noACL(name string) bool {
	return !f.aclOn && (name == aclAccess || name == aclDefault)
}
