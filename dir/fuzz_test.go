package dir

import (
	"bytes"
	"strings"
	"syscall"
	"testing"
)

// FuzzName: CheckName accepts exactly the storable names, and every
// accepted name survives the key encoding.
func FuzzName(f *testing.F) {
	for _, s := range []string{"a", ".", "..", "...", "a/b", "a\x00", "", strings.Repeat("x", 255), strings.Repeat("x", 256), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := CheckName(name)
		bad := name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00")
		switch {
		case len(name) > NameMax:
			if err != syscall.ENAMETOOLONG {
				t.Fatalf("%d bytes: %v", len(name), err)
			}
			return
		case bad:
			if err != syscall.EINVAL {
				t.Fatalf("%q: %v", name, err)
			}
			return
		case err != nil:
			t.Fatalf("%q: %v", name, err)
		}
		h := Hash(1, name)
		if h < MinPos || h > MaxPos {
			t.Fatalf("hash %#x out of range", h)
		}
		e, err := decode(encodeKey(h, name), encodeVal(42, syscall.DT_LNK))
		if err != nil || string(e.name) != name || e.pos != h || e.ino != 42 || e.typ != syscall.DT_LNK {
			t.Fatalf("round trip of %q: %+v %v", name, e, err)
		}
	})
}

// FuzzDecode: the entry decoder never panics, and what it accepts
// encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(encodeKey(1000, "name"), encodeVal(7, syscall.DT_REG))
	f.Add(posKey(1000), []byte{})
	f.Add(posKey(2), []byte{})
	f.Add([]byte{1, 2, 3}, []byte{1})
	f.Add(encodeKey(MaxPos, "a/b"), encodeVal(0, 0))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		e, err := decode(k, v)
		if err != nil {
			return
		}
		if e.tomb() {
			if !bytes.Equal(posKey(e.pos), k) || len(v) != 0 {
				t.Fatalf("tombstone %x %x re-encodes differently", k, v)
			}
			return
		}
		if CheckName(string(e.name)) != nil || !ValidType(e.typ) || e.ino == 0 {
			t.Fatalf("accepted a bad entry %+v", e)
		}
		if !bytes.Equal(encodeKey(e.pos, string(e.name)), k) || !bytes.Equal(encodeVal(e.ino, e.typ), v) {
			t.Fatalf("entry %x %x re-encodes differently", k, v)
		}
	})
}
