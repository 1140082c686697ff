package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"agfs/fs/fusefs/fusetest"
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
	code := fusetest.Main(m)
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
	if out, code := runBin(t, fsckBin, "--bogus", img); code != 16 {
		t.Fatalf("unknown flag: exit %d, %q", code, out)
	}
	if out, code := runBin(t, fsckBin); code != 16 {
		t.Fatalf("no device: exit %d, %q", code, out)
	}
}

// TestRepairModes damages an image's AG header counter (a safe fix) and
// then an inode-table block (an unsafe one) and runs -p, -y and -n.
func TestRepairModes(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.img")
	if out, code := runBin(t, mkfsBin, "-q", "-s", "64M", img); code != 0 {
		t.Fatalf("mkfs: %s", out)
	}
	poke := func(off int64, b []byte) {
		t.Helper()
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	const agBlocks, bs = 4096, 4096 // a 64 MiB image has 4 AGs of 16 MiB

	// The header of AG 2 fails its checksum: rebuilt from the bitmaps,
	// which -p may do.
	poke((2*agBlocks+1)*bs+100, []byte{0xff})
	if out, code := runBin(t, fsckBin, "-p", "-C", "0", img); code != 1 ||
		!strings.Contains(out, "fixed: ag 2: header") || !strings.Contains(out, "phase 5/6") {
		t.Fatalf("-p on a bad header: exit %d, %q", code, out)
	}
	if out, code := runBin(t, fsckBin, "-n", img); code != 0 {
		t.Fatalf("-n after -p: exit %d, %q", code, out)
	}

	// Random bytes over AG 1's first inode-table block, which holds
	// lost+found: -p refuses and writes nothing, -y repairs.
	itable := int64(agBlocks + 2 + 1 + 1) // super, header, one bitmap block each
	junk := make([]byte, bs)
	for i := range junk {
		junk[i] = byte(i*31 + 7)
	}
	poke(itable*bs, junk)
	before, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if out, code := runBin(t, fsckBin, "-p", img); code != 4 || !strings.Contains(out, "run fsck.agfs -y") {
		t.Fatalf("-p on a bad inode table: exit %d, %q", code, out)
	}
	if after, _ := os.ReadFile(img); string(after) != string(before) {
		t.Fatal("-p refused but wrote")
	}
	out, code := runBin(t, fsckBin, "-y", "--json", img)
	var rep struct {
		ExitCode int `json:"exit_code"`
		Fixes    []struct {
			AG      int    `json:"ag"`
			Message string `json:"message"`
			Safe    bool   `json:"safe"`
		} `json:"fixes"`
		Remaining []any `json:"remaining"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.ExitCode != 1 || len(rep.Fixes) == 0 || len(rep.Remaining) != 0 {
		t.Fatalf("-y --json: exit %d, %v, %q", code, err, out)
	}
	if out, code := runBin(t, fsckBin, "-n", img); code != 0 {
		t.Fatalf("-n after -y: exit %d, %q", code, out)
	}
	if out, code := runBin(t, fsckBin, "-n", "-y", img); code != 16 {
		t.Fatalf("-n -y: exit %d, %q", code, out)
	}
}

// A mounted image is refused at once, however its path is spelt, and
// checked once it is unmounted.
func TestRefusesMounted(t *testing.T) {
	fusetest.Require(t)
	img := fusetest.Format(t, "64M")
	mnt := fusetest.Mount(t, img)
	link := filepath.Join(t.TempDir(), "link.img")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{img, link} {
		want := path + " is mounted on " + mnt + ": unmount it first"
		if out, code := runBin(t, fsckBin, "-n", path); code != 8 || !strings.Contains(out, want) {
			t.Errorf("fsck -n %s while mounted: exit %d, %q; want 8, %q", path, code, out, want)
		}
	}
	if err := fusetest.Unmount(mnt, img); err != nil {
		t.Fatal(err)
	}
	if out, code := runBin(t, fsckBin, "-n", img); code != 0 {
		t.Errorf("fsck -n after umount: exit %d, %q", code, out)
	}
}
