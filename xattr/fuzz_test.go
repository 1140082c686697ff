package xattr

import (
	"bytes"
	"errors"
	"testing"

	"agfs/btree"
	"agfs/layout"
)

// FuzzInline feeds arbitrary inline areas to the decoder: it never
// panics, rejects bad areas with ErrCorrupt, and a good one behaves: every
// listed name reads back its value, removing and re-adding every entry
// re-encodes to an area that decodes to the same attributes.
func FuzzInline(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{1, 1, 3, 'a', 'x', 'y', 'z'})
	f.Add([]byte{1, 1, 0, 'a', 3, 7, 2, 's', 'e', 'l', 'i', 'n', 'u', 'x', 1, 2, 0, 9})
	f.Add([]byte{1, 1, 0, 'a', 1, 1, 0, 'a'})
	f.Add([]byte{4, 250, 0, 'x'})
	f.Add([]byte{2, 2, 255, 'o', 'k'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1024 {
			b = b[:1024]
		}
		orig := bytes.Clone(b)
		s, err := Open(nil, b, 0, btree.Config{BlockSize: 4096})
		if !bytes.Equal(b, orig) {
			t.Fatal("Open changed its input")
		}
		if err != nil {
			if !errors.Is(err, layout.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if Empty(b, 0) != s.Empty() {
			t.Fatal("Empty disagrees with Open")
		}
		n, err := s.List(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		list := make([]byte, n)
		if _, err := s.List(list, nil); err != nil {
			t.Fatal(err)
		}
		type attr struct {
			name string
			val  []byte
		}
		var attrs []attr
		for _, name := range bytes.Split(list, []byte{0}) {
			if len(name) == 0 {
				continue
			}
			v := make([]byte, 256)
			n, err := s.Get(string(name), v)
			if err != nil {
				t.Fatalf("Get(%q): %v", name, err)
			}
			attrs = append(attrs, attr{string(name), v[:n]})
		}
		inl := s.Inline()
		if !bytes.Equal(inl, b[:len(inl)]) || len(inl) < len(b) && b[len(inl)] != 0 {
			t.Fatalf("Inline %x is not the prefix of the area %x", inl, b)
		}
		for _, a := range attrs {
			if err := s.Remove(a.name); err != nil {
				t.Fatal(err)
			}
		}
		if !s.Empty() || len(s.Inline()) != 0 {
			t.Fatal("not empty")
		}
		for _, a := range attrs {
			if err := s.Set(a.name, a.val, Create); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(s.Inline(), inl) {
			t.Fatalf("re-encoded %x, was %x", s.Inline(), inl)
		}
	})
}
