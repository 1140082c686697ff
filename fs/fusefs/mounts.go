package fusefs

import "agfs/internal/mountinfo"

// IsAgfsType reports whether a mount's type is one agfs mounts with.
func IsAgfsType(fstype string) bool { return fstype == "fuse" || fstype == "fuse.agfs" }

// MountedAt returns the mount points where device (an absolute path) is
// mounted by agfs. Paths are compared with symbolic links resolved.
func MountedAt(device string) []string {
	ms, _ := mountinfo.Read(mountinfo.Self)
	var r []string
	for _, m := range mountinfo.Of(ms, device) {
		if IsAgfsType(m.FSType) {
			r = append(r, m.MountPoint)
		}
	}
	return r
}

// topMount is the mount visible at mnt: the last one mounted there.
func topMount(mnt string) (mountinfo.Mount, bool) {
	ms, _ := mountinfo.Read(mountinfo.Self)
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == mnt {
			return ms[i], true
		}
	}
	return mountinfo.Mount{}, false
}

// findMount is the last mount of device at mnt.
func findMount(mnt, device string) (mountinfo.Mount, bool) {
	ms, _ := mountinfo.Read(mountinfo.Self)
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == mnt && ms[i].Source == device {
			return ms[i], true
		}
	}
	return mountinfo.Mount{}, false
}
