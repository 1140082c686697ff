package xattr

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"agfs/btree"
	"agfs/layout"

	"github.com/cespare/xxhash/v2"
)

// Key and stream layout (see the package doc).
const (
	plainMax   = 120  // longest suffix under a plain key
	hashedFlag = 0x80 // namespace bit of a hashed key
	hashedKey  = 11   // namespace, hash, chunk index
	streamHdr  = 4    // value length
	maxChunks  = 1 << 16
)

// attrKey names an attribute's chunks: the key prefix all its chunks
// share.
type attrKey struct {
	ns     Namespace
	suf    string
	hashed bool
	prefix []byte
}

func (s *Set) key(ns Namespace, suf string) attrKey {
	k := attrKey{ns: ns, suf: suf, hashed: len(suf) > plainMax}
	if k.hashed {
		k.prefix = make([]byte, 9, hashedKey)
		k.prefix[0] = byte(ns) | hashedFlag
		binary.BigEndian.PutUint64(k.prefix[1:], s.hash(suf))
	} else {
		k.prefix = make([]byte, 0, len(suf)+4)
		k.prefix = append(k.prefix, byte(ns))
		k.prefix = append(k.prefix, suf...)
		k.prefix = append(k.prefix, 0)
	}
	return k
}

func (s *Set) hash(suf string) uint64 { return hashName(s.cfg.Seed, suf) }

// hashName is the name hash of hashed keys (a variable so that a test can
// make names collide).
var hashName = func(seed uint64, suf string) uint64 {
	d := xxhash.NewWithSeed(seed)
	d.WriteString(suf)
	return d.Sum64()
}

// chunkKey returns the key of chunk i of the attribute with prefix p.
func chunkKey(p []byte, i int) []byte {
	return binary.BigEndian.AppendUint16(slices.Clip(p), uint16(i))
}

// chunkIndex returns the chunk index of key if it belongs to prefix p.
func chunkIndex(key, p []byte) (int, bool) {
	if len(key) != len(p)+2 || !bytes.HasPrefix(key, p) {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(key[len(p):])), true
}

// parseKey decodes a tree key: the attribute's key prefix, its namespace,
// its suffix (plain form only) and the chunk index.
func parseKey(k []byte) (prefix []byte, ns Namespace, suf []byte, idx int, ok bool) {
	if len(k) < 2 {
		return nil, 0, nil, 0, false
	}
	if k[0]&hashedFlag != 0 {
		ns = Namespace(k[0] &^ hashedFlag)
		if !ns.valid() || len(k) != hashedKey {
			return nil, 0, nil, 0, false
		}
		return k[:9], ns, nil, int(binary.BigEndian.Uint16(k[9:])), true
	}
	ns = Namespace(k[0])
	n := bytes.IndexByte(k[1:], 0)
	if n < 0 || len(k) != n+4 || n > plainMax || !validSuffix(ns, k[1:1+n]) {
		return nil, 0, nil, 0, false
	}
	return k[:n+2], ns, k[1 : 1+n], int(binary.BigEndian.Uint16(k[n+2:])), true
}

// chunkSize is how many stream bytes a writer puts in each chunk.
func (s *Set) chunkSize(k attrKey) int {
	return min(s.lim.MaxValue, s.lim.MaxEntry-len(k.prefix)-2)
}

func (s *Set) corrupt(format string, args ...any) error {
	return fmt.Errorf("xattr: inode %d: %w: %s", s.cfg.Owner, layout.ErrCorrupt, fmt.Sprintf(format, args...))
}

// stream reads an attribute's stream from an iterator that has just
// returned the attribute's chunk 0.
type stream struct {
	s      *Set
	it     *btree.Iter
	prefix []byte
	next   int    // index of the next chunk
	cur    []byte // unread bytes of the current chunk
	seen   int    // bytes of the chunks fetched so far
	total  int    // stream length, once the header is read
}

func (s *Set) newStream(it *btree.Iter, prefix []byte) *stream {
	v := it.Value()
	return &stream{s: s, it: it, prefix: prefix, next: 1, cur: v, seen: len(v)}
}

// fetch takes the next chunk, which the iterator has just returned.
func (r *stream) fetch(key, val []byte) error {
	i, ok := chunkIndex(key, r.prefix)
	if !ok || i != r.next {
		return r.s.corrupt("attribute %x: chunk %d missing (next key %x)", r.prefix, r.next, key)
	}
	if len(val) == 0 || r.next >= maxChunks {
		return r.s.corrupt("attribute %x: empty or excess chunk %d", r.prefix, r.next)
	}
	r.next++
	r.cur = val
	r.seen += len(val)
	return nil
}

// read fills p from the stream; a stream that ends first is corrupt.
func (r *stream) read(p []byte) error {
	for len(p) > 0 {
		if len(r.cur) == 0 {
			if !r.it.Next() {
				if err := r.it.Err(); err != nil {
					return err
				}
				return r.s.corrupt("attribute %x: stream ends in chunk %d", r.prefix, r.next-1)
			}
			if err := r.fetch(r.it.Key(), r.it.Value()); err != nil {
				return err
			}
		}
		n := copy(p, r.cur)
		p, r.cur = p[n:], r.cur[n:]
	}
	return nil
}

// end checks that the chunks fetched hold exactly the stream; when last,
// also that no further chunk follows.
func (r *stream) end(last bool) error {
	if r.seen != r.total {
		return r.s.corrupt("attribute %x: chunks hold %d bytes, the stream %d", r.prefix, r.seen, r.total)
	}
	if last && r.it.Next() {
		if _, ok := chunkIndex(r.it.Key(), r.prefix); ok {
			return r.s.corrupt("attribute %x: chunk %d past the end of the stream", r.prefix, r.next)
		}
	}
	return r.it.Err()
}

// header reads the stream header: the value length and, in hashed form,
// the suffix.
func (r *stream) header(hashed bool) (vlen int, suf []byte, err error) {
	var h [streamHdr + 1]byte
	n := streamHdr
	if hashed {
		n++
	}
	if err := r.read(h[:n]); err != nil {
		return 0, nil, err
	}
	vlen = int(binary.LittleEndian.Uint32(h[:]))
	if vlen > SizeMax {
		return 0, nil, r.s.corrupt("attribute %x: value length %d", r.prefix, vlen)
	}
	if hashed {
		suf = make([]byte, h[streamHdr])
		if err := r.read(suf); err != nil {
			return 0, nil, err
		}
		n += len(suf)
	}
	r.total = n + vlen
	return vlen, suf, nil
}

// Lookup results.
const (
	absent    = iota
	present   // the attribute is in the tree
	collision // a hashed key holds another name
)

// lookup finds an attribute in the tree and reads its stream header. On
// present the stream is positioned at the value.
func (s *Set) lookup(k attrKey) (r *stream, vlen int, status int, err error) {
	t, err := s.openTree()
	if err != nil {
		return nil, 0, absent, err
	}
	it := t.Seek(chunkKey(k.prefix, 0))
	if !it.Next() {
		return nil, 0, absent, it.Err()
	}
	i, ok := chunkIndex(it.Key(), k.prefix)
	if !ok {
		if bytes.HasPrefix(it.Key(), k.prefix) {
			return nil, 0, absent, s.corrupt("key %x", it.Key())
		}
		return nil, 0, absent, nil
	}
	if i != 0 {
		return nil, 0, absent, s.corrupt("attribute %x: chunk 0 missing", k.prefix)
	}
	r = s.newStream(it, k.prefix)
	vlen, suf, err := r.header(k.hashed)
	if err != nil {
		return nil, 0, absent, err
	}
	if k.hashed {
		if err := s.checkHashed(k.prefix, k.ns, suf); err != nil {
			return nil, 0, absent, err
		}
		if string(suf) != k.suf {
			return nil, 0, collision, nil
		}
	}
	return r, vlen, present, nil
}

// chunkKeys returns the keys of the attribute's chunks from index from on.
func (s *Set) chunkKeys(k attrKey, from int) ([][]byte, error) {
	it := s.tree.Seek(chunkKey(k.prefix, from))
	var keys [][]byte
	for it.Next() {
		if _, ok := chunkIndex(it.Key(), k.prefix); !ok {
			break
		}
		keys = append(keys, slices.Clone(it.Key()))
	}
	return keys, it.Err()
}

// putTree stores the attribute in the tree, replacing any old version.
func (s *Set) putTree(k attrKey, val []byte, existed bool) error {
	t, err := s.ensureTree()
	if err != nil {
		return err
	}
	st := make([]byte, 0, streamHdr+1+len(k.suf)+len(val))
	st = binary.LittleEndian.AppendUint32(st, uint32(len(val)))
	if k.hashed {
		st = append(st, byte(len(k.suf)))
		st = append(st, k.suf...)
	}
	st = append(st, val...)
	c := s.chunkSize(k)
	n := 0
	for off := 0; off < len(st) || n == 0; off += c {
		if err := t.Put(chunkKey(k.prefix, n), st[off:min(off+c, len(st))]); err != nil {
			return s.treeErr(err)
		}
		n++
	}
	s.root = t.Root
	if existed {
		if err := s.deleteChunks(k, n); err != nil {
			return err
		}
	}
	return nil
}

// deleteChunks removes the attribute's chunks from index from on.
func (s *Set) deleteChunks(k attrKey, from int) error {
	keys, err := s.chunkKeys(k, from)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if _, err := s.tree.Delete(key); err != nil {
			return s.treeErr(err)
		}
	}
	s.root = s.tree.Root
	return nil
}

// treeErr maps a btree Put error: a key or value the tree rejects is our
// bug, reported as such.
func (s *Set) treeErr(err error) error {
	return fmt.Errorf("xattr: inode %d: %w", s.cfg.Owner, err)
}

// scan calls fn for every attribute in the tree, in key order, with its
// stream positioned after the header. fn may read the value or not; scan
// checks the chunks it leaves. With skipBig, scan seeks past the chunks of
// a long value instead of reading them (List).
func (s *Set) scan(skipBig bool, fn func(ns Namespace, suf []byte, vlen int, r *stream) error) error {
	t, err := s.openTree()
	if err != nil {
		return err
	}
	it := t.Seek(nil)
	var r *stream // the current attribute
	for it.Next() {
		key := it.Key()
		if r != nil {
			if _, ok := chunkIndex(key, r.prefix); ok {
				if err := r.fetch(key, it.Value()); err != nil {
					return err
				}
				continue // a chunk fn did not read
			}
			if err := r.end(false); err != nil {
				return err
			}
			r = nil
		}
		prefix, ns, suf, idx, ok := parseKey(key)
		if !ok {
			return s.corrupt("bad key %x", key)
		}
		if idx != 0 {
			return s.corrupt("attribute %x: chunk %d without chunk 0", prefix, idx)
		}
		r = s.newStream(it, slices.Clone(prefix))
		vlen, hsuf, err := r.header(suf == nil)
		if err != nil {
			return err
		}
		if suf == nil {
			if err := s.checkHashed(r.prefix, ns, hsuf); err != nil {
				return err
			}
			suf = hsuf
		}
		if err := fn(ns, suf, vlen, r); err != nil {
			return err
		}
		if skipBig && r.total-r.seen > 8*s.lim.MaxValue {
			it = t.Seek(append(chunkKey(r.prefix, maxChunks-1), 0))
			r = nil
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	if r != nil {
		return r.end(false)
	}
	return nil
}

// checkHashed checks the name stored in a hashed attribute's stream
// against its key.
func (s *Set) checkHashed(prefix []byte, ns Namespace, suf []byte) error {
	if !validSuffix(ns, suf) || len(suf) <= plainMax || s.hash(string(suf)) != binary.BigEndian.Uint64(prefix[1:]) {
		return s.corrupt("attribute %x: stored name %q does not match its key", prefix, suf)
	}
	return nil
}
