package mountinfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	line := `42 27 0:39 / /tmp/a\040b/mnt rw,relatime shared:1 master:2 - fuse.agfs /tmp/x\134y.img rw,user_id=0`
	m, ok := Parse(line)
	want := Mount{Dev: "0:39", MountPoint: "/tmp/a b/mnt", FSType: "fuse.agfs", Source: `/tmp/x\y.img`}
	if !ok || m != want {
		t.Errorf("Parse = %+v %v, want %+v", m, ok, want)
	}
	for _, bad := range []string{"", "garbage", "1 2 3 4 5 6 - fuse", "1 2 3 4 5 6 7 8"} {
		if m, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) = %+v", bad, m)
		}
	}
	// An escape cut short, or out of a byte's range, stays as it is.
	for in, want := range map[string]string{`a\04`: `a\04`, `a\400b`: `a\400b`, `\011x`: "\tx"} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSelf(t *testing.T) {
	ms, err := Read(Self)
	if err != nil {
		t.Fatal(err)
	}
	root := false
	for _, m := range ms {
		root = root || m.MountPoint == "/"
	}
	if !root {
		t.Errorf("%s: no mount on /: %+v", Self, ms)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "none")); !os.IsNotExist(err) {
		t.Errorf("missing table: %v", err)
	}
}

func TestOf(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a b.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	table := filepath.Join(dir, "mountinfo")
	if err := os.WriteFile(table, []byte(
		"22 1 0:21 / /proc rw,nosuid - proc proc rw\n"+
			"90 1 0:50 / /mnt/x\\040y rw,nosuid - fuse.agfs "+strings.ReplaceAll(img, " ", `\040`)+" rw,user_id=0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ms, err := Read(table)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Read: %+v, %v", ms, err)
	}
	for _, path := range []string{img, link} {
		if at := Of(ms, path); len(at) != 1 || at[0].MountPoint != "/mnt/x y" {
			t.Errorf("%s: mounted at %+v", path, at)
		}
	}
	if at := Of(ms, filepath.Join(dir, "other.img")); len(at) != 0 {
		t.Errorf("unmounted image: %+v", at)
	}
	// "proc" is a source, not a path: not the file proc in the working
	// directory.
	t.Chdir(dir)
	if err := os.WriteFile("proc", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if at := Of(ms, "proc"); len(at) != 0 {
		t.Errorf("proc matched %+v", at)
	}
	// A relative path names the file it resolves to.
	if at := Of(ms, "a b.img"); len(at) != 1 {
		t.Errorf("relative path: %+v", at)
	}
}
