package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// mountedAt returns where the device at path is mounted, according to
// mountinfo (/proc/self/mountinfo), or "" when it is not. The mount
// source of an agfs mount is the device's path as given to mount.agfs,
// made absolute (its FsName), so both sides are compared absolute and
// with symbolic links resolved. The exclusive open of the device catches
// what this misses (a source spelt through another path to the same file).
func mountedAt(mountinfo, path string) (string, error) {
	want, err := canonical(path)
	if err != nil {
		return "", err
	}
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("is %s mounted? %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(after) < 2 {
			continue
		}
		src := unescape(after[1])
		if !filepath.IsAbs(src) {
			continue
		}
		if c, err := canonical(src); err == nil && c == want {
			return unescape(fields[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("is %s mounted? %s: %w", path, mountinfo, err)
	}
	return "", nil
}

func canonical(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash ("\040").
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range 3 {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return s[0] <= '3'
}
