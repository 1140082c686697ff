// Package mountinfo reads the kernel's table of mounts
// (/proc/self/mountinfo, proc(5)): which filesystem is mounted where, from
// which source. mount.agfs refuses a device that is already mounted,
// fsck.agfs one that is mounted at all, and both unmount only the mount
// they made; all of them ask here.
package mountinfo

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Self is this process's table of mounts.
const Self = "/proc/self/mountinfo"

// Mount is one line of a mountinfo table.
type Mount struct {
	Dev        string // "major:minor" of the filesystem
	MountPoint string
	FSType     string // "fuse", "fuse.agfs", "ext4", ...
	Source     string // for agfs, the device's absolute path
}

// Read lists the mounts of a mountinfo table (Self, or a copy of one), in
// mount order: a later mount on the same point hides an earlier one.
func Read(table string) ([]Mount, error) {
	f, err := os.Open(table)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := Parse(sc.Text()); ok {
			ms = append(ms, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", table, err)
	}
	return ms, nil
}

// Parse reads one line, "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS"; ok is false for anything else.
func Parse(line string) (m Mount, ok bool) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
		return Mount{}, false
	}
	return Mount{
		Dev:        f[2],
		MountPoint: unescape(f[4]),
		FSType:     f[sep+1],
		Source:     unescape(f[sep+2]),
	}, true
}

// Of returns the mounts in ms whose source is the file at path, however
// either is spelt: both are made absolute with symbolic links resolved.
// Sources that are not paths ("proc", "tmpfs") never match.
func Of(ms []Mount, path string) []Mount {
	want := canonical(path)
	var r []Mount
	for _, m := range ms {
		if filepath.IsAbs(m.Source) && (m.Source == path || canonical(m.Source) == want) {
			r = append(r, m)
		}
	}
	return r
}

// canonical is path made absolute, with symbolic links resolved where it
// exists.
func canonical(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	return path
}

// unescape undoes the kernel's \ooo escapes of space, tab, newline and
// backslash in mountinfo's paths.
func unescape(s string) string {
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
