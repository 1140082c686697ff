package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func runStress(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String() + errOut.String()
}

// On a healthy filesystem every error is an expected one, and -c leaves
// DIR empty.
func TestClean(t *testing.T) {
	dir := t.TempDir()
	code, out := runStress(t, "-p", "4", "-n", "3000", "-s", "7", "-c", dir)
	if code != exitOK || !regexp.MustCompile(`^fsstress: 4 workers, 12000 operations, \d+ with an expected error`).MatchString(out) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Errorf("left after -c: %v %v", left, err)
	}
}

// An error outside the expected ones fails the run and is named: a
// read-only filesystem answers EROFS.
func TestUnexpectedError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a read-only tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("none", dir, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	// The trees exist before the filesystem turns read-only, so that
	// the workers' first changes meet EROFS rather than the setup.
	for _, d := range []string{"shared", "p0"} {
		if err := os.Mkdir(dir+"/"+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("none", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	code, out := runStress(t, "-p", "1", "-n", "1000", dir)
	if code != exitFailure || !strings.Contains(out, "FAILURE: worker 0, operation ") || !strings.Contains(out, "(EROFS)") {
		t.Fatalf("exit %d, want %d and an EROFS report:\n%s", code, exitFailure, out)
	}
}

// An operation that does not return is reported once it has taken
// --stall seconds.
func TestStall(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	hang := []operation{{"hang", 1, func(w *worker) error {
		w.begin("waiting forever")
		<-block
		return nil
	}}}
	var out bytes.Buffer
	r := newRun(config{dir: t.TempDir(), procs: 2, ops: 1, stall: time.Second}, &out, hang)
	if r.stress() || !strings.Contains(out.String(), ": waiting forever has not returned for ") {
		t.Fatalf("stall not reported:\n%s", out.String())
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"a", "b"}, {"-p", "0", "d"}, {"-n", "-1", "d"}, {"--stall", "0", "d"}, {"--bogus", "d"}} {
		if code, out := runStress(t, args...); code != exitUsage || !strings.Contains(out, "Try 'fsstress --help'") {
			t.Errorf("%q: exit %d, %q", args, code, out)
		}
	}
	if code, out := runStress(t, "--help"); code != exitOK || !strings.Contains(out, "SYNOPSIS") || !strings.Contains(out, "--procs") {
		t.Errorf("--help: exit %d, %q", code, out)
	}
}
