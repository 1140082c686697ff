package device

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Holder names the process holding a lock on path ("pid N (name)"), from
// /proc/locks, and reports whether it is an agfs mount daemon, which
// releases the device by itself after an unmount.
func Holder(path string) (holder string, agfsDaemon bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", false
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return "", false
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->"
	// before the type. The device number there is the superblock's, which
	// is not always stat's (overlayfs), so the inode number is matched and
	// the holder confirmed by its open descriptors.
	ino := ":" + strconv.FormatUint(st.Ino, 10)
	if r, err := filepath.EvalSymlinks(path); err == nil {
		path = r
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" || !strings.HasSuffix(fields[5], ino) {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || !hasOpen(pid, path) {
			continue
		}
		name := procName(pid)
		return fmt.Sprintf("pid %d (%s)", pid, name), strings.HasPrefix(name, "mount.") && strings.HasSuffix(name, "agfs")
	}
	return "", false
}

// hasOpen reports whether process pid has path open.
func hasOpen(pid int, path string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

func procName(pid int) string {
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}
