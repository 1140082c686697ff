package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestMain lets the tests run the real command (main, os.Exit and all) by
// running the test binary itself with FSX_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("FSX_TEST_MAIN") == "1" {
		main()
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
)

// fsxBinary builds fsx with go build, once, so that the long runs go at
// full speed even when the tests run under the race detector. It returns ""
// where no go command is found; the caller then runs fsx in process.
func fsxBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Logf("no go command (%v): running fsx in process", err)
		return ""
	}
	var buildErr error
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "fsx-bin-"); buildErr != nil {
			return
		}
		p := filepath.Join(binDir, "fsx")
		out, err := exec.Command(goTool, "build", "-o", p, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = p
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if binPath == "" {
		t.Fatal("fsx was not built")
	}
	return binPath
}

// runBuilt runs the built fsx, or run() where it could not be built.
func runBuilt(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := fsxBinary(t)
	if bin == "" {
		return runFsx(t, args...)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	case err != nil:
		t.Fatal(err)
	}
	return 0, string(out)
}

func runFsx(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errs bytes.Buffer
	code := run(args, &out, &errs)
	return code, out.String() + errs.String()
}

func exercise(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	path := filepath.Join(dir, "fsx.file")
	args := append([]string{"-N", "20000", "-S", "42"}, extra...)
	code, out := runBuilt(t, append(args, path)...)
	if code != exitOK {
		t.Fatalf("fsx %v exited %d:\n%s", args, code, out)
	}
	if !strings.Contains(out, "20000 ops OK") {
		t.Fatalf("no summary in the output:\n%s", out)
	}
	for _, ext := range []string{".fsxgood", ".fsxlog", ".fsxcopy"} {
		if _, err := os.Stat(path + ext); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after a clean run (stat: %v)", path+ext, err)
		}
	}
	t.Logf("\n%s", out)
	return out
}

// done returns how many operations of a kind the summary says were done.
func done(t *testing.T, out, op string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(op) + ` +(\d+) +\d+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s line in the summary:\n%s", op, out)
	}
	return m[1] + m[2]
}

func TestHostFilesystem(t *testing.T) {
	out := exercise(t, t.TempDir())
	// Whatever the filesystem, these are always chosen and never unsupported.
	for _, op := range []string{"read", "write", "mapread", "mapwrite", "truncate", "fsync", "reopen", "stat"} {
		if n := done(t, out, op); n == "0" || strings.Contains(n, "unsupported") {
			t.Errorf("%s: %s", op, n)
		}
	}
}

func TestTmpfs(t *testing.T) {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		t.Skip("/dev/shm is missing: tmpfs not exercised")
	}
	dir, err := os.MkdirTemp("/dev/shm", "fsx-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	out := exercise(t, dir, "--fsync-check")
	if !strings.Contains(out, "fsync check:") {
		t.Errorf("no fsync check line in the summary")
	}
}

func TestFsyncCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	code, out := runBuilt(t, "-N", "3000", "-S", "3", "--fsync-check", path)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	m := regexp.MustCompile(`fsync check: (\d+) reads`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("no fsync checks done:\n%s", out)
	}
	t.Logf("%s", out)
}

func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	var outs [2]string
	for i := range outs {
		code, out := runBuilt(t, "-N", "3000", "-S", "99", "-d", filepath.Join(dir, "f"))
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		// Drop the summary's first line: it has the time.
		outs[i] = regexp.MustCompile(`(?m)^fsx: 3000 ops OK.*$`).ReplaceAllString(out, "")
	}
	if outs[0] != outs[1] {
		t.Fatal("two runs with the same seed differ")
	}
	code, other := runBuilt(t, "-N", "3000", "-S", "100", "-d", filepath.Join(dir, "f"))
	if code != exitOK || other == outs[0] {
		t.Fatalf("a different seed gave the same run (exit %d)", code)
	}
}

// TestInjectedCorruption changes the file behind the exerciser's back and
// checks that it is caught at once, with a useful report and the expected
// contents saved.
func TestInjectedCorruption(t *testing.T) {
	for _, extra := range [][]string{nil, {"--check-every", "500"}} {
		path := filepath.Join(t.TempDir(), "f")
		args := append([]string{"-N", "20000", "-S", "7", "--inject-corruption-at", "1234"}, extra...)
		code, out := runFsx(t, append(args, path)...)
		t.Logf("fsx %v:\n%s", args, out)
		if code != exitFailure {
			t.Fatalf("exit %d, want %d", code, exitFailure)
		}
		for _, want := range []string{
			"FAILURE at op 1234 ",
			"(seed 7)",
			"LOG DUMP",
			"INJECT   corruption at",
			"1 byte(s) differ",
			"EXPECTED (the model) vs ACTUAL around",
			"^^",
			"reproduce with: fsx -N 20000 -S 7 --inject-corruption-at 1234",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("report lacks %q", want)
			}
		}
		// The log dump has the last 30 ops and marks the injection.
		if n := len(regexp.MustCompile(`(?m)^\d+\(\s*\d+ mod 256\): `).FindAllString(out, -1)); n != logKeep {
			t.Errorf("log dump has %d entries, want %d", n, logKeep)
		}
		if !regexp.MustCompile(`INJECT.*\*\*\*\*\*\*`).MatchString(out) {
			t.Error("the injection is not marked as touching the bad offset")
		}
		m := regexp.MustCompile(`first bad byte at (0x[0-9a-f]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatal("no first bad byte")
		}

		// FILE.fsxgood is the file minus the corruption: one byte differs,
		// at the reported offset.
		good, err := os.ReadFile(path + ".fsxgood")
		if err != nil {
			t.Fatal(err)
		}
		actual, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(good) != len(actual) {
			t.Fatalf(".fsxgood has %d bytes, the file %d", len(good), len(actual))
		}
		first, count, _ := firstDiff(good, actual)
		if count != 1 || hex(int64(first)) != m[1] {
			t.Errorf(".fsxgood differs from the file in %d bytes, first at %#x; report says %s", count, first, m[1])
		}
		if log, err := os.ReadFile(path + ".fsxlog"); err != nil || !strings.Contains(string(log), "LOG DUMP") {
			t.Errorf(".fsxlog: %v", err)
		}
	}
}

// TestInjectedSizeChange corrupts an empty file, which changes its size.
func TestInjectedSizeChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	// With seed 2 op 1 is an fsync, so the file is still empty.
	code, out := runFsx(t, "-S", "2", "-N", "10", "-l", "1", "--no-mmap", "--no-punch", "--no-zero", "--no-falloc",
		"--no-copy-range", "--inject-corruption-at", "1", path)
	t.Logf("%s", out)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d", code, exitFailure)
	}
	for _, want := range []string{"FAILURE at op 1 ", "file size is 0x1, expected 0x0", "expected none (EOF)", "got 0x5a"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestExitStatus runs the command itself: help, usage errors, success and
// a detected corruption.
func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "SYNOPSIS"},
		{[]string{}, 2, "expected one FILE"},
		{[]string{"--bogus", "f"}, 2, "unknown flag"},
		{[]string{"-l", "12Q", "f"}, 2, "--maxlen"},
		{[]string{"-N", "500", filepath.Join(dir, "ok")}, 0, "500 ops OK"},
		{[]string{"-N", "500", "--inject-corruption-at", "100", filepath.Join(dir, "bad")}, 1, "FAILURE at op 100"},
		{[]string{"-N", "5", filepath.Join(dir, "missing", "f")}, 2, "no such file"},
	} {
		cmd := exec.Command(os.Args[0], c.args...)
		cmd.Env = append(os.Environ(), "FSX_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("fsx %v: exit %d, want %d with %q; output:\n%s", c.args, code, c.code, c.want, out)
		}
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "4096": 4096, "256K": 256 << 10, "1m": 1 << 20, "2G": 2 << 30, "0x100": 256, "64KB": 64 << 10} {
		if got, err := parseSize(s); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "K", "-1", "1T", "x"} {
		if _, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) succeeded", s)
		}
	}
}

func TestFirstDiff(t *testing.T) {
	for _, c := range []struct {
		a, b               string
		first, count, last int
	}{
		{"abc", "abc", -1, 0, -1},
		{"abc", "axc", 1, 1, 1},
		{"abc", "ab", 2, 1, 2},
		{"", "xy", 0, 2, 1},
		{"abcd", "xbcy", 0, 2, 3},
	} {
		f, n, l := firstDiff([]byte(c.a), []byte(c.b))
		if f != c.first || n != c.count || l != c.last {
			t.Errorf("firstDiff(%q, %q) = %d, %d, %d; want %d, %d, %d", c.a, c.b, f, n, l, c.first, c.count, c.last)
		}
	}
}

func TestHexdump(t *testing.T) {
	var b strings.Builder
	// 0x1e bytes from 0x10e1; the actual data lack the last byte and differ
	// at 0x10fa.
	exp := []byte("abcdefghijklmnopqrstuvwxyz0123")
	act := []byte("abcdefghijklmnopqrstuvwxyZ012")
	hexdump(&b, 0x10e1, exp, act, 25)
	want := `0x000010e0 expected    61 62 63 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f
           actual      61 62 63 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f
0x000010f0 expected 70 71 72 73 74 75 76 77 78 79 7a 30 31 32 33 --
           actual   70 71 72 73 74 75 76 77 78 79 5a 30 31 32 -- --
                                                  ^^          ^^
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
