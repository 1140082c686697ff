package fusefs

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/self/mountinfo.
type MountInfo struct {
	Dev        string // "major:minor" of the filesystem
	MountPoint string
	FSType     string // "fuse", "fuse.agfs", "ext4", ...
	Source     string
}

// Mounts lists the mounts of this process's mount namespace, in mount
// order (a later mount on the same point hides an earlier one).
func Mounts() ([]MountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []MountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := parseMountInfo(sc.Text()); ok {
			ms = append(ms, m)
		}
	}
	return ms, sc.Err()
}

// parseMountInfo reads "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...]
// - FSTYPE SOURCE SUPEROPTS".
func parseMountInfo(line string) (MountInfo, bool) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
		return MountInfo{}, false
	}
	return MountInfo{
		Dev:        f[2],
		MountPoint: unescapeOctal(f[4]),
		FSType:     f[sep+1],
		Source:     unescapeOctal(f[sep+2]),
	}, true
}

// unescapeOctal undoes the kernel's \ooo escapes (space, tab, newline,
// backslash) in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// IsAgfsType reports whether a mount's type is one agfs mounts with.
func IsAgfsType(fstype string) bool { return fstype == "fuse" || fstype == "fuse.agfs" }

// MountedAt returns the mount points where device (an absolute path) is
// mounted by agfs. Paths are compared with symbolic links resolved.
func MountedAt(device string) []string {
	ms, _ := Mounts()
	want := resolve(device)
	var r []string
	for _, m := range ms {
		if IsAgfsType(m.FSType) && (m.Source == device || resolve(m.Source) == want) {
			r = append(r, m.MountPoint)
		}
	}
	return r
}

func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// topMount is the mount visible at mnt: the last one mounted there.
func topMount(mnt string) (MountInfo, bool) {
	ms, _ := Mounts()
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == mnt {
			return ms[i], true
		}
	}
	return MountInfo{}, false
}

// findMount is the last mount of device at mnt.
func findMount(mnt, device string) (MountInfo, bool) {
	ms, _ := Mounts()
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == mnt && ms[i].Source == device {
			return ms[i], true
		}
	}
	return MountInfo{}, false
}
