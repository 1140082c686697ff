package xattr

import (
	"bytes"
	"fmt"

	"agfs/layout"
)

// Inline entry layout (see the package doc).
const (
	inlineHdr      = 3   // namespace, name length, value length
	MaxInlineValue = 255 // longest value stored inline
)

// Empty reports whether an inode with this inline area and xattr root has
// no extended attributes, without decoding anything: the fast path for
// the kernel's security.capability query before every write.
func Empty(inline []byte, root uint64) bool {
	return root == 0 && (len(inline) == 0 || inline[0] == 0)
}

// inlineEntry is one decoded entry: b[off:end] in its area.
type inlineEntry struct {
	ns        Namespace
	name, val []byte
	off, end  int
}

// nextInline decodes the entry at off of a validated area. ok is false
// at the end of the entries.
func nextInline(b []byte, off int) (e inlineEntry, ok bool) {
	if off >= len(b) || b[off] == 0 {
		return e, false
	}
	nl, vl := int(b[off+1]), int(b[off+2])
	p := off + inlineHdr
	return inlineEntry{ns: Namespace(b[off]), name: b[p : p+nl], val: b[p+nl : p+nl+vl], off: off, end: p + nl + vl}, true
}

// scanInline validates the entries of an inline area and returns the
// bytes they use. It never panics, whatever b holds.
func scanInline(b []byte) (int, error) {
	off := 0
	for off < len(b) && b[off] != 0 {
		if len(b)-off < inlineHdr {
			return 0, inlineCorrupt(off, "truncated entry header")
		}
		ns, nl, vl := Namespace(b[off]), int(b[off+1]), int(b[off+2])
		end := off + inlineHdr + nl + vl
		switch {
		case !ns.valid():
			return 0, inlineCorrupt(off, "namespace %d", uint8(ns))
		case end > len(b):
			return 0, inlineCorrupt(off, "entry of %d bytes runs past the end of the %d-byte area", end-off, len(b))
		}
		name := b[off+inlineHdr : off+inlineHdr+nl]
		if !validSuffix(ns, name) {
			return 0, inlineCorrupt(off, "bad name %q (namespace %s)", name, ns)
		}
		for p := 0; p < off; {
			e, _ := nextInline(b, p)
			if e.ns == ns && bytes.Equal(e.name, name) {
				return 0, inlineCorrupt(off, "name %s%s appears twice", ns.Prefix(), name)
			}
			p = e.end
		}
		off = end
	}
	return off, nil
}

func inlineCorrupt(off int, format string, args ...any) error {
	return fmt.Errorf("xattr: inline area, offset %d: %w: %s", off, layout.ErrCorrupt, fmt.Sprintf(format, args...))
}

// inlineSize is the bytes an inline entry takes.
func inlineSize(suf string, vlen int) int { return inlineHdr + len(suf) + vlen }

// fitsInline reports whether an attribute may be stored inline at all.
func fitsInline(suf string, vlen int) bool { return vlen <= MaxInlineValue && len(suf) <= 255 }

// putInline writes an entry at b[off:] (which has room).
func putInline(b []byte, ns Namespace, suf string, val []byte) int {
	b[0], b[1], b[2] = byte(ns), byte(len(suf)), byte(len(val))
	n := inlineHdr
	n += copy(b[n:], suf)
	n += copy(b[n:], val)
	return n
}
