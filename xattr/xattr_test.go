package xattr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"agfs/btree"
	"agfs/layout"
)

func val(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

func mustGet(t *testing.T, s *Set, name string) []byte {
	t.Helper()
	n, err := s.Get(name, nil)
	if err != nil {
		t.Fatalf("Get(%q) size: %v", name, err)
	}
	b := make([]byte, n+1)
	m, err := s.Get(name, b)
	if err != nil || m != n {
		t.Fatalf("Get(%q) = %d, %v; size said %d", name, m, err, n)
	}
	return b[:n]
}

func names(t *testing.T, s *Set, filter func(Namespace) bool) []string {
	t.Helper()
	n, err := s.List(nil, filter)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if m, err := s.List(b, filter); err != nil || m != n {
		t.Fatalf("List = %d, %v; size said %d", m, err, n)
	}
	var out []string
	for _, x := range bytes.Split(b, []byte{0}) {
		if len(x) > 0 {
			out = append(out, string(x))
		}
	}
	if n > 0 && b[n-1] != 0 {
		t.Fatalf("list %q does not end in NUL", b)
	}
	slices.Sort(out)
	return out
}

func isErrno(err error, want syscall.Errno) bool {
	var e syscall.Errno
	return errors.As(err, &e) && e == want
}

func TestParseName(t *testing.T) {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n) }
	for _, tc := range []struct {
		name string
		ns   Namespace
		suf  string
		err  error
	}{
		{"user.a", User, "a", nil},
		{"trusted.overlay.opaque", Trusted, "overlay.opaque", nil},
		{"security.selinux", Security, "selinux", nil},
		{"system.posix_acl_access", System, "posix_acl_access", nil},
		{long("user.", 250), User, strings.Repeat("x", 250), nil},
		{long("security.", 246), Security, strings.Repeat("x", 246), nil},
		{long("user.", 251), 0, "", syscall.ERANGE}, // full name 256 > XATTR_NAME_MAX
		{long("trusted.", 248), 0, "", syscall.ERANGE},
		{"", 0, "", syscall.ERANGE},
		{"user.", 0, "", syscall.EINVAL},
		{"system.", 0, "", syscall.EINVAL},
		{"user.a\x00b", 0, "", syscall.EINVAL},
		{"user", 0, "", syscall.EOPNOTSUPP},
		{"foo.bar", 0, "", syscall.EOPNOTSUPP},
		{"User.a", 0, "", syscall.EOPNOTSUPP},
		{"osx.x", 0, "", syscall.EOPNOTSUPP},
		{long("foo.", 300), 0, "", syscall.ERANGE}, // length is checked first, as the syscall does
	} {
		ns, suf, err := ParseName(tc.name)
		if err != tc.err || ns != tc.ns || suf != tc.suf {
			t.Errorf("ParseName(%.20q…) = %v, %.10q…, %v; want %v, %.10q…, %v", tc.name, ns, suf, err, tc.ns, tc.suf, tc.err)
		}
	}
}

// TestErrnos checks every errno of every operation, inline and in the
// tree.
func TestErrnos(t *testing.T) {
	e := newEnv(t, 4096, 256, 256)
	in := e.newInode(5, 64)
	big := val(1000, 1)
	in.do(func(s *Set) {
		for _, c := range []struct {
			name string
			v    []byte
		}{{"user.small", []byte("abc")}, {"user.big", big}, {"user.empty", nil}} {
			if err := s.Set(c.name, c.v, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
	if in.root == 0 {
		t.Fatal("user.big did not go to the tree")
	}
	tx := e.Log.Begin()
	defer tx.Abort()
	s := in.open(tx)
	check := func(what string, err, want error) {
		t.Helper()
		if err != want {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}
	bad := []struct {
		name string
		err  error
	}{
		{"", syscall.ERANGE}, {"user." + strings.Repeat("n", 251), syscall.ERANGE},
		{"user.", syscall.EINVAL}, {"nope.x", syscall.EOPNOTSUPP},
	}
	for _, b := range bad {
		_, err := s.Get(b.name, nil)
		check("Get "+b.name, err, b.err)
		check("Set "+b.name, s.Set(b.name, []byte("v"), 0), b.err)
		check("Remove "+b.name, s.Remove(b.name), b.err)
	}
	// ENODATA.
	for _, name := range []string{"user.none", "trusted.small", "user.smal", "user.small2", "user." + strings.Repeat("h", 200)} {
		_, err := s.Get(name, nil)
		check("Get "+name, err, syscall.ENODATA)
		_, err = s.Get(name, make([]byte, 10))
		check("Get "+name, err, syscall.ENODATA)
		check("Remove "+name, s.Remove(name), syscall.ENODATA)
		check("Set Replace "+name, s.Set(name, []byte("x"), Replace), syscall.ENODATA)
	}
	// EEXIST, inline and tree.
	for _, name := range []string{"user.small", "user.big", "user.empty"} {
		check("Set Create "+name, s.Set(name, []byte("x"), Create), syscall.EEXIST)
		check("Set Create|Replace "+name, s.Set(name, []byte("x"), Create|Replace), syscall.EEXIST)
	}
	check("Set Create|Replace new", s.Set("user.new", []byte("x"), Create|Replace), syscall.ENODATA)
	// EINVAL for unknown flags, before anything else.
	check("Set flags 4", s.Set("user.small", []byte("x"), 4), syscall.EINVAL)
	check("Set flags 4 bad name", s.Set("", []byte("x"), 4), syscall.EINVAL)
	// E2BIG, after the name length check, before the namespace.
	check("Set 65537", s.Set("user.x", make([]byte, SizeMax+1), 0), syscall.E2BIG)
	check("Set 65537 bad ns", s.Set("foo.x", make([]byte, SizeMax+1), 0), syscall.E2BIG)
	check("Set 65537 long name", s.Set("user."+strings.Repeat("n", 251), make([]byte, SizeMax+1), 0), syscall.ERANGE)
	// ERANGE for a small buffer; a size query; an exact buffer.
	for _, c := range []struct {
		name string
		v    []byte
	}{{"user.small", []byte("abc")}, {"user.big", big}} {
		n, err := s.Get(c.name, nil)
		if err != nil || n != len(c.v) {
			t.Errorf("size of %s = %d, %v", c.name, n, err)
		}
		_, err = s.Get(c.name, make([]byte, len(c.v)-1))
		check("Get small buffer "+c.name, err, syscall.ERANGE)
		b := make([]byte, len(c.v))
		if n, err := s.Get(c.name, b); err != nil || n != len(c.v) || !bytes.Equal(b, c.v) {
			t.Errorf("Get %s exact = %d, %v", c.name, n, err)
		}
	}
	if n, err := s.Get("user.empty", make([]byte, 4)); n != 0 || err != nil {
		t.Errorf("Get empty value = %d, %v", n, err)
	}
	// List: size, ERANGE, filter.
	n, err := s.List(nil, nil)
	want := len("user.small\x00user.big\x00user.empty\x00")
	if err != nil || n != want {
		t.Errorf("List size = %d, %v; want %d", n, err, want)
	}
	_, err = s.List(make([]byte, want-1), nil)
	check("List small buffer", err, syscall.ERANGE)
	_, err = s.List(make([]byte, 1), nil)
	check("List 1-byte buffer", err, syscall.ERANGE)
	if got := names(t, s, func(ns Namespace) bool { return ns != User }); len(got) != 0 {
		t.Errorf("filtered list = %q", got)
	}
	// Nothing above changed anything.
	if s.Changed() || s.BlockDelta() != 0 {
		t.Errorf("failed calls changed the set")
	}
	// Remove is ENODATA the second time; an emptied set is Empty.
	for _, name := range []string{"user.small", "user.big", "user.empty"} {
		if err := s.Remove(name); err != nil {
			t.Fatal(err)
		}
		check("Remove again "+name, s.Remove(name), syscall.ENODATA)
	}
	if !s.Empty() || s.Root() != 0 || len(s.Inline()) != 0 || s.BlockDelta() != -1 {
		t.Errorf("after removing all: empty %v root %d inline %d delta %d", s.Empty(), s.Root(), len(s.Inline()), s.BlockDelta())
	}
	if n, err := s.List(nil, nil); n != 0 || err != nil {
		t.Errorf("empty List = %d, %v", n, err)
	}
}

// TestEmptyFree: asking an inode without attributes for one costs no
// allocation and no I/O (the kernel does it before every write).
func TestEmptyFree(t *testing.T) {
	area := make([]byte, 100)
	if !Empty(area, 0) || !Empty(nil, 0) || Empty(area, 9) {
		t.Fatal("Empty wrong")
	}
	s, err := Open(nil, area, 0, btree.Config{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if !s.Empty() {
			t.Fatal("not empty")
		}
		if _, err := s.Get("security.capability", nil); err != syscall.ENODATA {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Empty+Get allocate %v times", allocs)
	}
	if err := s.Set("security.capability", []byte{1, 2, 3}, 0); err != nil {
		t.Fatal(err)
	}
	if s.Empty() || Empty(s.Inline(), 0) {
		t.Fatal("empty after Set")
	}
}

// TestMigration moves attributes between the inline area and the tree in
// both directions, and checks the tree is freed when it empties.
func TestMigration(t *testing.T) {
	for _, bs := range []int{1024, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			e := newEnv(t, bs, 512, 1024)
			in := e.newInode(9, 120)
			check := func(want map[string][]byte, wantRoot bool) {
				t.Helper()
				tx := e.Log.Begin()
				defer tx.Abort()
				s := in.open(tx)
				for k, v := range want {
					if got := mustGet(t, s, k); !bytes.Equal(got, v) {
						t.Fatalf("%s = %d bytes, want %d", k, len(got), len(v))
					}
				}
				if got := names(t, s, nil); !slices.Equal(got, slices.Sorted(mapsKeys(want))) {
					t.Fatalf("names %q", got)
				}
				if (in.root != 0) != wantRoot {
					t.Fatalf("root %d, want tree %v", in.root, wantRoot)
				}
				if err := s.Check(); err != nil {
					t.Fatal(err)
				}
				if n := treeBlocks(t, s, e.Alloc); int64(n) != in.blocks || n != e.Alloc.InUse() {
					t.Fatalf("tree has %d blocks, inode counts %d, allocator %d", n, in.blocks, e.Alloc.InUse())
				}
			}
			m := map[string][]byte{"user.a": val(10, 1), "security.selinux": []byte("system_u:object_r:etc_t:s0\x00")}
			in.do(func(s *Set) {
				for k, v := range m {
					if err := s.Set(k, v, 0); err != nil {
						t.Fatal(err)
					}
				}
			})
			check(m, false)
			if len(in.area) != 120 || in.area[0] == 0 {
				t.Fatal("not inline")
			}

			// Inline → tree: a value grows past the room.
			m["user.a"] = val(200, 2)
			in.do(func(s *Set) { s.Set("user.a", m["user.a"], Replace) })
			check(m, true)
			// Tree → inline: it shrinks again; the emptied tree is freed.
			m["user.a"] = val(5, 3)
			in.do(func(s *Set) { s.Set("user.a", m["user.a"], Replace) })
			check(m, false)

			// A value over 255 bytes never goes inline, whatever the room.
			m["user.b"] = val(256, 4)
			in.do(func(s *Set) {
				if err := s.SetRoom(1000); err != nil {
					t.Fatal(err)
				}
				s.Set("user.b", m["user.b"], Create)
			})
			check(m, true)
			// Removing it collapses the tree.
			delete(m, "user.b")
			in.do(func(s *Set) { s.Remove("user.b") })
			check(m, false)

			// SetRoom shrinking pushes the largest entries to the tree...
			in.do(func(s *Set) {
				if err := s.SetRoom(40); err != nil {
					t.Fatal(err)
				}
				if s.Room() != 40 || len(s.Inline()) > 40 {
					t.Fatalf("room %d inline %d", s.Room(), len(s.Inline()))
				}
			})
			check(m, true)
			in.do(func(s *Set) {
				if err := s.SetRoom(0); err != nil {
					t.Fatal(err)
				}
			})
			check(m, true)
			if len(in.area) != 0 {
				t.Fatal("room 0 but inline bytes")
			}
			// ... and growing it brings a one-leaf tree back inline.
			in.do(func(s *Set) {
				if err := s.SetRoom(160); err != nil {
					t.Fatal(err)
				}
			})
			check(m, false)

			// Many attributes: a deep tree; removing them one by one frees
			// every node, the last ones coming back inline.
			in.do(func(s *Set) {
				for i := range 300 {
					k := fmt.Sprintf("user.many.%04d", i)
					m[k] = val(i%40, byte(i))
					if err := s.Set(k, m[k], Create); err != nil {
						t.Fatal(err)
					}
				}
			})
			check(m, true)
			for i := range 300 {
				k := fmt.Sprintf("user.many.%04d", i)
				delete(m, k)
				in.do(func(s *Set) {
					if err := s.Remove(k); err != nil {
						t.Fatal(err)
					}
				})
			}
			check(m, false)
			if e.Alloc.InUse() != 0 || in.blocks != 0 {
				t.Fatalf("%d blocks still allocated (inode says %d)", e.Alloc.InUse(), in.blocks)
			}
		})
	}
}

func mapsKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestDestroy fills a multi-level tree with large chunked values and long
// (hashed) names, destroys it and checks every block is free again.
func TestDestroy(t *testing.T) {
	for _, bs := range []int{1024, 4096} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			e := newEnv(t, bs, 4096, 4096)
			in := e.newInode(3, 60)
			for i := range 12 {
				in.do(func(s *Set) {
					name := fmt.Sprintf("user.%d.", i) + strings.Repeat("L", 100*(i%3))
					if err := s.Set(name, val(SizeMax/(1+i%4), byte(i)), 0); err != nil {
						t.Fatal(err)
					}
					if err := s.Set(fmt.Sprintf("trusted.s%d", i), val(i, 0), 0); err != nil {
						t.Fatal(err)
					}
				})
			}
			e.Reopen()
			tx := e.Log.Begin()
			s := in.open(tx)
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
			n := treeBlocks(t, s, e.Alloc)
			if n < 20 || int64(n) != in.blocks || n != e.Alloc.InUse() {
				t.Fatalf("tree of %d blocks, inode %d, allocator %d", n, in.blocks, e.Alloc.InUse())
			}
			if err := s.Destroy(); err != nil {
				t.Fatal(err)
			}
			if !s.Empty() || s.Root() != 0 || len(s.Inline()) != 0 || s.BlockDelta() != -int64(n) {
				t.Fatalf("after Destroy: root %d inline %d delta %d", s.Root(), len(s.Inline()), s.BlockDelta())
			}
			in.persist(s)
			e.Commit(tx)
			if e.Alloc.InUse() != 0 || in.blocks != 0 {
				t.Fatalf("%d blocks still allocated", e.Alloc.InUse())
			}
		})
	}
}

// TestLongNames stores names of every length around the plain/hashed
// boundary and up to the limit, at the smallest block size.
func TestLongNames(t *testing.T) {
	e := newEnv(t, 1024, 2048, 2048)
	in := e.newInode(4, 0)
	m := map[string][]byte{}
	in.do(func(s *Set) {
		for _, n := range []int{1, 100, 119, 120, 121, 122, 200, 245, 246, 250} {
			for _, p := range []string{"user.", "security."} {
				if len(p)+n > NameMax {
					continue
				}
				k := p + strings.Repeat(string(rune('a'+n%26)), n)
				m[k] = val(n*7, byte(n))
				if err := s.Set(k, m[k], Create); err != nil {
					t.Fatal(k, err)
				}
			}
		}
	})
	e.Reopen()
	tx := e.Log.Begin()
	defer tx.Abort()
	s := in.open(tx)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if got := mustGet(t, s, k); !bytes.Equal(got, v) {
			t.Fatalf("%.20s…: wrong value", k)
		}
	}
	if got := names(t, s, nil); !slices.Equal(got, slices.Sorted(mapsKeys(m))) {
		t.Fatalf("names differ")
	}
}

// TestHashCollision makes every long name hash alike: a second long name
// is refused with ENOSPC and is not confused with the first.
func TestHashCollision(t *testing.T) {
	defer func(h func(uint64, string) uint64) { hashName = h }(hashName)
	hashName = func(uint64, string) uint64 { return 42 }
	e := newEnv(t, 4096, 256, 256)
	in := e.newInode(6, 160)
	a := "user." + strings.Repeat("a", 130)
	b := "user." + strings.Repeat("b", 130)
	in.do(func(s *Set) {
		if err := s.Set(b, val(300, 2), 0); err != nil {
			t.Fatal(err)
		}
	})
	tx := e.Log.Begin()
	defer tx.Abort()
	s := in.open(tx)
	if _, err := s.Get(a, nil); err != syscall.ENODATA {
		t.Errorf("Get a: %v", err)
	}
	if err := s.Remove(a); err != syscall.ENODATA {
		t.Errorf("Remove a: %v", err)
	}
	if err := s.Set(a, []byte("x"), Replace); err != syscall.ENODATA {
		t.Errorf("Set a Replace: %v", err)
	}
	if err := s.Set(a, val(300, 1), 0); !isErrno(err, syscall.ENOSPC) {
		t.Errorf("Set a: %v", err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	// Inline, a is fine; pushed out to the tree by SetRoom, it collides.
	if err := s.Set(a, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRoom(0); !isErrno(err, syscall.ENOSPC) {
		t.Errorf("SetRoom: %v", err)
	}
	if got := mustGet(t, s, b); !bytes.Equal(got, val(300, 2)) {
		t.Errorf("b = %q", got)
	}
	if got := names(t, s, nil); !slices.Equal(got, []string{a, b}) {
		t.Errorf("names %q", got)
	}
}

// TestForgedName stores a hashed attribute under another name's key: the
// stored name does not match the key's hash, which is corruption.
func TestForgedName(t *testing.T) {
	e := newEnv(t, 4096, 256, 256)
	in := e.newInode(6, 0)
	a := "user." + strings.Repeat("a", 130)
	b := "user." + strings.Repeat("b", 130)
	in.do(func(s *Set) {
		if err := s.Set(b, []byte("bee"), 0); err != nil {
			t.Fatal(err)
		}
		ka, kb := s.key(User, a[5:]), s.key(User, b[5:])
		v, ok, err := s.tree.Get(chunkKey(kb.prefix, 0))
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		s.tree.Delete(chunkKey(kb.prefix, 0))
		s.tree.Put(chunkKey(ka.prefix, 0), v)
	})
	tx := e.Log.Begin()
	defer tx.Abort()
	s := in.open(tx)
	_, err1 := s.Get(a, nil)
	_, err2 := s.List(nil, nil)
	for _, err := range []error{err1, err2, s.Set(a, nil, 0), s.Remove(a), s.Check()} {
		if !errors.Is(err, layout.ErrCorrupt) {
			t.Errorf("%v does not wrap ErrCorrupt", err)
		}
	}
}

// TestCorruptNode damages a tree node on the device: every operation that
// reads it fails with an error wrapping layout.ErrCorrupt.
func TestCorruptNode(t *testing.T) {
	e := newEnv(t, 1024, 2048, 1024)
	in := e.newInode(8, 0)
	in.do(func(s *Set) {
		for i := range 40 {
			if err := s.Set(fmt.Sprintf("user.k%02d", i), val(300, byte(i)), 0); err != nil {
				t.Fatal(err)
			}
		}
	})
	var blks []uint64
	in.do(func(s *Set) {
		s.Walk(func(blk uint64) error { blks = append(blks, blk); return nil })
	})
	if len(blks) < 3 {
		t.Fatalf("tree of %d blocks", len(blks))
	}
	for _, victim := range []uint64{blks[len(blks)-1], blks[0]} { // a leaf, then the root
		e.Reopen() // checkpoint home, empty cache
		b := make([]byte, 1)
		off := int64(victim)*int64(e.BS) + 500
		e.Dev.ReadAt(b, off)
		b[0] ^= 0x40
		e.Dev.WriteAt(b, off)
		e.Reopen()

		tx := e.Log.Begin()
		s := in.open(tx)
		var errs []error
		_, err := s.List(nil, nil)
		errs = append(errs, err, s.Check())
		bad := 0
		for i := range 40 {
			_, err := s.Get(fmt.Sprintf("user.k%02d", i), make([]byte, 400))
			if err != nil {
				bad++
				errs = append(errs, err)
			}
		}
		if bad == 0 {
			t.Fatal("no Get failed")
		}
		errs = append(errs, s.Set("user.new", val(500, 1), 0))
		for _, err := range errs {
			var errno syscall.Errno
			if !errors.Is(err, layout.ErrCorrupt) || errors.As(err, &errno) {
				t.Errorf("block %d: error %v does not wrap ErrCorrupt", victim, err)
			}
		}
		tx.Abort()
		// Repair for the next round.
		e.Dev.ReadAt(b, off)
		b[0] ^= 0x40
		e.Dev.WriteAt(b, off)
	}
}

// TestCorruptStream damages attributes logically (through the btree) and
// checks the reader notices.
func TestCorruptStream(t *testing.T) {
	v := val(2000, 9)
	for _, tc := range []struct {
		name string
		harm func(s *Set, k attrKey)
	}{
		{"missing chunk", func(s *Set, k attrKey) { s.tree.Delete(chunkKey(k.prefix, 1)) }},
		{"missing chunk 0", func(s *Set, k attrKey) { s.tree.Delete(chunkKey(k.prefix, 0)) }},
		{"missing last chunk", func(s *Set, k attrKey) { s.tree.Delete(chunkKey(k.prefix, 3)) }},
		{"extra chunk", func(s *Set, k attrKey) { s.tree.Put(chunkKey(k.prefix, 4), []byte("x")) }},
		{"short chunk", func(s *Set, k attrKey) { s.tree.Put(chunkKey(k.prefix, 1), []byte("x")) }},
		{"long value length", func(s *Set, k attrKey) {
			c, _, _ := s.tree.Get(chunkKey(k.prefix, 0))
			binary.LittleEndian.PutUint32(c, SizeMax+1)
			s.tree.Put(chunkKey(k.prefix, 0), c)
		}},
		{"bad key", func(s *Set, k attrKey) { s.tree.Put([]byte{9, 'x', 0, 0, 0}, []byte("abcd")) }},
		{"key without NUL", func(s *Set, k attrKey) { s.tree.Put([]byte{1, 'x', 'y', 'z'}, []byte("abcd")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 4096, 256, 256)
			in := e.newInode(8, 0)
			in.do(func(s *Set) {
				if err := s.Set("user.v", v, 0); err != nil {
					t.Fatal(err)
				}
				s.Set("user.w", []byte("w"), 0)
				tc.harm(s, s.key(User, "v"))
			})
			tx := e.Log.Begin()
			defer tx.Abort()
			s := in.open(tx)
			_, err1 := s.Get("user.v", make([]byte, len(v)))
			_, err2 := s.List(nil, nil)
			err3 := s.Check()
			if !errors.Is(err3, layout.ErrCorrupt) {
				t.Errorf("Check: %v", err3)
			}
			if !errors.Is(err1, layout.ErrCorrupt) && !errors.Is(err2, layout.ErrCorrupt) {
				t.Errorf("Get: %v, List: %v", err1, err2)
			}
		})
	}
}

func TestCorruptInline(t *testing.T) {
	for _, b := range [][]byte{
		{5, 1, 0, 'a'},               // namespace
		{1, 0, 0},                    // empty name
		{1, 1, 5, 'a', 1},            // value past the end
		{1, 2},                       // truncated header
		{1, 2, 0, 'a', 0},            // NUL in name
		{1, 1, 0, 'a', 1, 1, 0, 'a'}, // duplicate
		{4, 250, 0, 'x'},             // past the end, and too long for system.
		append([]byte{1, 251, 0}, bytes.Repeat([]byte("n"), 251)...), // user. + 251
	} {
		_, err := Open(nil, b, 0, btree.Config{BlockSize: 4096})
		if !errors.Is(err, layout.ErrCorrupt) {
			t.Errorf("%x: %v", b, err)
		}
	}
	// A full area needs no terminator; a zero byte ends the entries.
	for _, b := range [][]byte{{1, 1, 1, 'a', 'b'}, {1, 1, 1, 'a', 'b', 0, 77, 77}} {
		s, err := Open(nil, b, 0, btree.Config{BlockSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, s, "user.a"); string(got) != "b" || len(s.Inline()) != 5 {
			t.Errorf("%x: %q", b, got)
		}
	}
}

// TestNoSpace: an allocator out of blocks fails Set with ENOSPC (wrapped),
// and aborting leaves the committed attributes as they were.
func TestNoSpace(t *testing.T) {
	e := newEnv(t, 1024, 12, 1024) // 11 blocks for the tree
	in := e.newInode(2, 20)
	in.do(func(s *Set) {
		if err := s.Set("user.a", val(1000, 1), 0); err != nil {
			t.Fatal(err)
		}
	})
	tx := e.Log.Begin()
	s := in.open(tx)
	if err := s.Set("user.b", val(SizeMax, 2), 0); !isErrno(err, syscall.ENOSPC) {
		t.Fatalf("Set: %v", err)
	}
	tx.Abort()
	if int64(e.Alloc.InUse()) != in.blocks {
		t.Fatalf("allocator %d, inode %d", e.Alloc.InUse(), in.blocks)
	}
	tx = e.Log.Begin()
	defer tx.Abort()
	s = in.open(tx)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "user.a"); !bytes.Equal(got, val(1000, 1)) {
		t.Fatal("user.a changed")
	}
	if _, err := s.Get("user.b", nil); err != syscall.ENODATA {
		t.Fatal(err)
	}
}
