package dir

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"agfs/wal"

	"github.com/cespare/xxhash/v2"
)

func TestHash(t *testing.T) {
	for _, c := range []struct{ in, want uint64 }{
		{0, 3}, {1, 4}, {2, 5}, {3, 3}, {1 << 63, 3}, {1<<63 | 2, 5}, {^uint64(0), MaxPos}, {MaxPos, MaxPos},
	} {
		if got := fold(c.in); got != c.want {
			t.Errorf("fold(%#x) = %#x, want %#x", c.in, got, c.want)
		}
	}
	d := xxhash.NewWithSeed(99)
	d.WriteString("hello")
	if got, want := Hash(99, "hello"), fold(d.Sum64()); got != want {
		t.Errorf("Hash = %#x, want %#x", got, want)
	}
	if Hash(1, "hello") == Hash(2, "hello") {
		t.Error("the seed does not change the hash")
	}
	if next(MaxPos) != MinPos || prev(MinPos) != MaxPos || next(7) != 8 || prev(8) != 7 {
		t.Error("next/prev")
	}
}

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		want error
	}{
		{"a", nil}, {"...", nil}, {".a", nil}, {"\xff\x01 ", nil}, {strings.Repeat("x", 255), nil},
		{"", syscall.EINVAL}, {".", syscall.EINVAL}, {"..", syscall.EINVAL},
		{"a/b", syscall.EINVAL}, {"/", syscall.EINVAL}, {"a\x00", syscall.EINVAL},
		{strings.Repeat("x", 256), syscall.ENAMETOOLONG}, {strings.Repeat("/", 300), syscall.ENAMETOOLONG},
	} {
		if err := CheckName(c.name); err != c.want {
			t.Errorf("CheckName(%.20q…) = %v, want %v", c.name, err, c.want)
		}
	}
	if MaxName(1024) != 209 || MaxName(2048) != 255 || MaxName(4096) != 255 || MaxName(65536) != 255 {
		t.Errorf("MaxName: %d %d %d %d", MaxName(1024), MaxName(2048), MaxName(4096), MaxName(65536))
	}
}

func TestBasic(t *testing.T) {
	e := newEnv(t, 4096, 1024, 512, wal.Options{}, nil)
	d := e.d
	if empty, err := d.Empty(); err != nil || !empty {
		t.Fatalf("new dir: Empty = %v, %v", empty, err)
	}
	c, err := d.Insert("a", 10, syscall.DT_REG)
	if err != nil || c != Hash(e.cfg.HashSeed, "a") {
		t.Fatalf("Insert a: cookie %#x, %v (hash %#x)", c, err, Hash(e.cfg.HashSeed, "a"))
	}
	if _, err := d.Insert("a", 11, syscall.DT_REG); err != syscall.EEXIST {
		t.Fatalf("Insert a again: %v", err)
	}
	if _, err := d.Insert("b", 11, syscall.DT_DIR); err != nil {
		t.Fatal(err)
	}
	if ino, typ, err := d.Lookup("b"); err != nil || ino != 11 || typ != syscall.DT_DIR {
		t.Fatalf("Lookup b = %d %d %v", ino, typ, err)
	}
	if _, _, err := d.Lookup("c"); err != syscall.ENOENT {
		t.Fatalf("Lookup c: %v", err)
	}
	if _, _, err := d.Replace("c", 5, syscall.DT_REG); err != syscall.ENOENT {
		t.Fatalf("Replace c: %v", err)
	}
	if old, ot, err := d.Replace("a", 12, syscall.DT_LNK); err != nil || old != 10 || ot != syscall.DT_REG {
		t.Fatalf("Replace a = %d %d %v", old, ot, err)
	}
	if ino, typ, _ := d.Lookup("a"); ino != 12 || typ != syscall.DT_LNK {
		t.Fatalf("after Replace: %d %d", ino, typ)
	}
	if n, err := d.Count(); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	// Bad arguments.
	for _, c := range []struct {
		name string
		ino  uint64
		typ  uint8
		want error
	}{
		{"x", 0, syscall.DT_REG, syscall.EINVAL},
		{"x", 1, 0, syscall.EINVAL},
		{"x", 1, 14, syscall.EINVAL},
		{"x/y", 1, syscall.DT_REG, syscall.EINVAL},
		{".", 1, syscall.DT_DIR, syscall.EINVAL},
		{"", 1, syscall.DT_DIR, syscall.EINVAL},
	} {
		if _, err := d.Insert(c.name, c.ino, c.typ); err != c.want {
			t.Errorf("Insert(%q, %d, %d) = %v, want %v", c.name, c.ino, c.typ, err, c.want)
		}
	}
	e.commit()
	e.reopen()
	d = e.d
	if ino, _, err := d.Remove("a"); err != nil || ino != 12 {
		t.Fatalf("Remove a = %d, %v", ino, err)
	}
	if _, _, err := d.Remove("a"); err != syscall.ENOENT {
		t.Fatalf("Remove a again: %v", err)
	}
	if empty, err := d.Empty(); err != nil || empty {
		t.Fatalf("Empty = %v, %v", empty, err)
	}
	d.Remove("b")
	if empty, err := d.Empty(); err != nil || !empty {
		t.Fatalf("Empty = %v, %v", empty, err)
	}
	e.check()
	if err := d.Destroy(); err != nil {
		t.Fatal(err)
	}
	e.commit()
	if e.Alloc.InUse() != 0 {
		t.Fatalf("%d blocks still allocated after Destroy", e.Alloc.InUse())
	}
}

func TestLongNames(t *testing.T) {
	for _, bs := range []int{1024, 4096} {
		e := newEnv(t, bs, 2048, 512, wal.Options{}, nil)
		max := MaxName(bs)
		model := map[string]ent{}
		// Many maximal names with a shared prefix: full nodes, splits.
		for i := range 300 {
			name := strings.Repeat("n", max-4) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + "xy"
			name = name[len(name)-max:]
			if _, err := e.d.Insert(name, uint64(i+1), syscall.DT_REG); err != nil {
				if errors.Is(err, syscall.EEXIST) {
					continue
				}
				t.Fatalf("bs %d: insert %d-byte name: %v", bs, len(name), err)
			}
			model[name] = ent{uint64(i + 1), syscall.DT_REG}
		}
		long := strings.Repeat("z", max+1)
		if _, err := e.d.Insert(long, 1, syscall.DT_REG); err != syscall.ENAMETOOLONG {
			t.Fatalf("bs %d: insert %d-byte name: %v, want ENAMETOOLONG", bs, len(long), err)
		}
		if _, _, err := e.d.Lookup(long); err != syscall.ENAMETOOLONG {
			t.Fatalf("bs %d: lookup %d-byte name: %v", bs, len(long), err)
		}
		if _, _, err := e.d.Lookup(strings.Repeat("z", 256)); err != syscall.ENAMETOOLONG {
			t.Fatalf("bs %d: lookup 256-byte name: %v", bs, err)
		}
		e.reopen()
		e.sameAs(model)
		if info := e.check(); info.Depth < 2 {
			t.Fatalf("bs %d: depth %d, want a split tree", bs, info.Depth)
		}
	}
}
