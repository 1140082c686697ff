package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mkfs-test")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "mkfs.agfs")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runMkfs(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestExitCodesAndMessages(t *testing.T) {
	img := "IMG" // replaced by a fresh path for each case
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 16, "expected one DEVICE"},
		{[]string{"--no-such-flag", img}, 16, "unknown flag"},
		{[]string{"-s", "64M", "-b", "3000", img}, 1, "power of two"},
		{[]string{"-s", "64M", "-b", "1K", img}, 1, "from 4096"},
		{[]string{"-s", "64M", "-L", strings.Repeat("x", 64), img}, 1, "at most 63"},
		{[]string{"-s", "64M", "-a", "100000", img}, 1, "more than the device"},
		{[]string{"-s", "64M", "-a", "1000", img}, 1, "too small"},
		{[]string{"-s", "256K", img}, 1, "too small"},
		{[]string{"-s", "12Q", img}, 1, "not a size"},
		{[]string{"-s", "64M", "-U", "nope", img}, 1, "not a UUID"},
		{[]string{"-s", "64M", "-l", "8M", "--ag-size", "8M", img}, 1, "does not fit"},
		{[]string{filepath.Join(t.TempDir(), "missing.img")}, 1, "no such file"},
	} {
		args := append([]string(nil), tc.args...)
		for i, a := range args {
			if a == img {
				args[i] = filepath.Join(t.TempDir(), "x.img")
			}
		}
		out, code := runMkfs(t, args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("mkfs.agfs %q: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); code == 1 && n != 0 {
			t.Errorf("mkfs.agfs %q: error message is %d lines, want one: %q", tc.args, n+1, out)
		}
	}
}

func TestHelp(t *testing.T) {
	out, code := runMkfs(t, "--help")
	for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "--block-size", "--dry-run"} {
		if !strings.Contains(out, s) {
			t.Errorf("--help lacks %q", s)
		}
	}
	if code != 0 {
		t.Errorf("--help exit %d", code)
	}
}

func TestRefusesExistingFilesystem(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.img")
	if out, code := runMkfs(t, "-q", "-s", "64M", img); code != 0 {
		t.Fatalf("first mkfs: %d %s", code, out)
	}
	out, code := runMkfs(t, "-s", "64M", img)
	if code != 1 || !strings.Contains(out, "contains an agfs filesystem; use -f") {
		t.Fatalf("second mkfs: exit %d, %q", code, out)
	}
	if out, code := runMkfs(t, "-q", "-f", img); code != 0 || out != "" {
		t.Fatalf("mkfs -f -q: exit %d, %q", code, out)
	}
	// An ext4 signature is named too.
	ext := filepath.Join(t.TempDir(), "ext.img")
	b := make([]byte, 64<<20)
	b[1024+56], b[1024+57] = 0x53, 0xEF
	b[1024+0x60] = 0x40 // extents: ext4
	if err := os.WriteFile(ext, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runMkfs(t, ext); code != 1 || !strings.Contains(out, "contains an ext4 filesystem") {
		t.Fatalf("mkfs over ext4: exit %d, %q", code, out)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.img")
	if err := os.WriteFile(img, make([]byte, 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runMkfs(t, "-n", img)
	if code != 0 || !strings.Contains(out, "agsize=") {
		t.Fatalf("dry run: exit %d, %q", code, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b {
		if c != 0 {
			t.Fatal("dry run wrote to the device")
		}
	}
}

// TestTerabyteIsLazy checks the promise that formatting writes a few
// blocks per AG: a 1 TiB image must occupy little space on the host. (How
// long it takes is measured by bench/mkfs.sh, not asserted here.)
func TestTerabyteIsLazy(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.img")
	start := time.Now()
	if out, code := runMkfs(t, "-q", "-s", "1T", img); code != 0 {
		t.Fatalf("mkfs: %d %s", code, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 64<<20 {
		t.Fatalf("1 TiB image occupies %d bytes on the host, want < 64 MiB", used)
	}
	t.Logf("1 TiB image: %d KiB on the host, formatted in %v", st.Blocks/2, time.Since(start))
}
