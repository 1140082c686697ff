package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var fsckBin, mkfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fsck-test")
	if err != nil {
		panic(err)
	}
	fsckBin, mkfsBin = filepath.Join(dir, "fsck.agfs"), filepath.Join(dir, "mkfs.agfs")
	for bin, pkg := range map[string]string{fsckBin: ".", mkfsBin: "../mkfs"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			panic(string(out))
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runBin(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestExitCodes(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.img")
	if out, code := runBin(t, mkfsBin, "-q", "-s", "64M", img); code != 0 {
		t.Fatalf("mkfs: %s", out)
	}
	if out, code := runBin(t, fsckBin, "-n", img); code != 0 || !strings.Contains(out, "clean, 0 problems") {
		t.Fatalf("fresh image: exit %d, %q", code, out)
	}

	out, code := runBin(t, fsckBin, "--json", img)
	var rep struct {
		Clean    bool `json:"clean"`
		Problems []struct {
			AG      int    `json:"ag"`
			Message string `json:"message"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.Clean {
		t.Fatalf("--json: exit %d, %v, %q", code, err, out)
	}

	// Damage AG 2's header: one problem, exit 4, the block named.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	const agBlocks, header = 4096, 1 // a 64 MiB image has 4 AGs of 16 MiB
	if _, err := f.WriteAt([]byte{0xff}, (2*agBlocks+header)*4096+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, code = runBin(t, fsckBin, "-n", img)
	if code != 4 || !strings.Contains(out, "ag 2") || !strings.Contains(out, "block 8193") {
		t.Fatalf("damaged image: exit %d, %q", code, out)
	}
	out, code = runBin(t, fsckBin, "--json", img)
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 4 || rep.Clean || len(rep.Problems) == 0 || rep.Problems[0].AG != 2 {
		t.Fatalf("--json on damage: exit %d, %v, %q", code, err, out)
	}

	other := filepath.Join(t.TempDir(), "zero.img")
	if err := os.WriteFile(other, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runBin(t, fsckBin, other); code != 8 || !strings.Contains(out, "superblock") {
		t.Fatalf("not agfs: exit %d, %q", code, out)
	}
	if out, code := runBin(t, fsckBin, "-y", img); code != 16 {
		t.Fatalf("unknown flag: exit %d, %q", code, out)
	}
	if out, code := runBin(t, fsckBin); code != 16 {
		t.Fatalf("no device: exit %d, %q", code, out)
	}
}
