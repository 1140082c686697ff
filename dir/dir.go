package dir

import (
	"fmt"
	"syscall"

	"agfs/btree"
	"agfs/layout"
	"agfs/wal"
)

// Config describes a directory's index.
type Config struct {
	Owner     uint64 // the directory's inode number: owner of every node
	Seed      uint64 // checksum seed (layout.SeedFromUUID)
	HashSeed  uint64 // the superblock's directory hash seed
	BlockSize int    // the log's block size
	Alloc     btree.Allocator
	Goal      uint64 // allocation goal of the first node (Create); optional

	// hash replaces the seeded xxhash (tests only: weak hashes force
	// collisions). Its result is folded into [MinPos, MaxPos] like
	// xxhash's.
	hash func(name string) uint64
}

func (c *Config) tree() btree.Config {
	return btree.Config{Magic: layout.MagicDirNode, Owner: c.Owner, Seed: c.Seed,
		BlockSize: c.BlockSize, Alloc: c.Alloc, Goal: c.Goal}
}

// MaxName returns the longest name a directory can hold at block size bs:
// 255, or less at block sizes too small for a 255-byte name's entry.
func MaxName(bs int) int {
	lim := btree.LimitsFor(bs)
	return min(NameMax, lim.MaxKey-posSize, lim.MaxEntry-posSize-valSize)
}

// Dir is an open directory index.
type Dir struct {
	cfg     Config
	t       *btree.Tree
	maxName int
}

func newDir(cfg Config, t *btree.Tree) *Dir {
	return &Dir{cfg: cfg, t: t, maxName: MaxName(cfg.BlockSize)}
}

// Create makes an empty directory index (one empty node) within tx.
func Create(tx *wal.Tx, cfg Config) (*Dir, error) {
	t, err := btree.Create(tx, cfg.tree())
	if err != nil {
		return nil, fmt.Errorf("dir %d: %w", cfg.Owner, err)
	}
	return newDir(cfg, t), nil
}

// Open opens the directory index rooted at root within tx.
func Open(tx *wal.Tx, cfg Config, root uint64) (*Dir, error) {
	t, err := btree.Open(tx, cfg.tree(), root)
	if err != nil {
		return nil, fmt.Errorf("dir %d: %w", cfg.Owner, err)
	}
	return newDir(cfg, t), nil
}

// SetTx binds the Dir to another transaction (after the previous one
// committed).
func (d *Dir) SetTx(tx *wal.Tx) { d.t.SetTx(tx) }

// Root returns the root block, which the inode records.
func (d *Dir) Root() uint64 { return d.t.Root }

// RootChanged reports whether Root moved since Create, Open or SetTx: the
// caller then persists it in this transaction.
func (d *Dir) RootChanged() bool { return d.t.RootChanged() }

// MaxName returns the longest name this directory can hold.
func (d *Dir) MaxName() int { return d.maxName }

// Tree returns the underlying B+tree (fsck: Walk for block accounting;
// Depth, Stats).
func (d *Dir) Tree() *btree.Tree { return d.t }

// Destroy frees every node of the index; the Dir cannot be used
// afterwards (Root is 0).
func (d *Dir) Destroy() error { return d.wrap(d.t.Destroy()) }

func (d *Dir) home(name string) uint64 {
	if d.cfg.hash != nil {
		return fold(d.cfg.hash(name))
	}
	return Hash(d.cfg.HashSeed, name)
}

func (d *Dir) corrupt(format string, args ...any) error {
	return fmt.Errorf("dir %d: %w: %s", d.cfg.Owner, layout.ErrCorrupt, fmt.Sprintf(format, args...))
}

func (d *Dir) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("dir %d: %w", d.cfg.Owner, err)
}

func (d *Dir) decode(k, v []byte) (rawEntry, error) {
	e, err := decode(k, v)
	if err != nil {
		return e, d.corrupt("%v", err)
	}
	return e, nil
}

func (d *Dir) checkName(name string) error {
	if len(name) > d.maxName {
		return syscall.ENAMETOOLONG
	}
	return CheckName(name)
}

// probeResult is the outcome of walking name's run.
type probeResult struct {
	found bool
	pos   uint64 // found: the entry's position
	ino   uint64
	typ   uint8
	tomb  uint64 // first tombstone passed, 0 if none
	free  uint64 // not found: the free position that ended the walk
}

// existing probes for name, which must be in the directory (ENOENT).
func (d *Dir) existing(name string) (probeResult, error) {
	r, err := d.probe(name)
	if err == nil && !r.found {
		err = syscall.ENOENT
	}
	return r, err
}

// probe walks the run from name's home until it finds the name or a free
// position.
func (d *Dir) probe(name string) (probeResult, error) {
	var r probeResult
	start := d.home(name)
	p := start
	var it *btree.Iter
	for {
		if it == nil {
			it = d.t.Seek(posKey(p))
		}
		if !it.Next() {
			if err := it.Err(); err != nil {
				return r, d.wrap(err)
			}
			r.free = p // nothing at or after p
			return r, nil
		}
		e, err := d.decode(it.Key(), it.Value())
		if err != nil {
			return r, err
		}
		if e.pos != p {
			r.free = p
			return r, nil
		}
		if e.tomb() {
			if r.tomb == 0 {
				r.tomb = p
			}
		} else if string(e.name) == name {
			r.found, r.pos, r.ino, r.typ = true, p, e.ino, e.typ
			return r, nil
		}
		p = next(p)
		if p == MinPos {
			it = nil // wrapped around: seek again
		}
		if p == start {
			return r, d.corrupt("every position is occupied")
		}
	}
}

// at returns the key at position p, if any.
func (d *Dir) at(p uint64) (rawEntry, bool, error) {
	it := d.t.Seek(posKey(p))
	if !it.Next() {
		return rawEntry{}, false, d.wrap(it.Err())
	}
	e, err := d.decode(it.Key(), it.Value())
	if err != nil || e.pos != p {
		return rawEntry{}, false, err
	}
	return e, true, nil
}

// Lookup returns the inode number and file type of name (ENOENT if
// absent).
func (d *Dir) Lookup(name string) (ino uint64, typ uint8, err error) {
	if err := d.checkName(name); err != nil {
		return 0, 0, err
	}
	r, err := d.existing(name)
	if err != nil {
		return 0, 0, err
	}
	return r.ino, r.typ, nil
}

// Insert adds name → (ino, typ); EEXIST if name is there. It returns the
// new entry's cookie (its position).
func (d *Dir) Insert(name string, ino uint64, typ uint8) (cookie uint64, err error) {
	if err := d.checkEntry(name, ino, typ); err != nil {
		return 0, err
	}
	r, err := d.probe(name)
	if err != nil {
		return 0, err
	}
	if r.found {
		return 0, syscall.EEXIST
	}
	p := r.free
	if r.tomb != 0 {
		p = r.tomb
		if _, err := d.t.Delete(posKey(p)); err != nil {
			return 0, d.wrap(err)
		}
	}
	if err := d.t.Put(encodeKey(p, name), encodeVal(ino, typ)); err != nil {
		return 0, d.wrap(err)
	}
	return p, nil
}

func (d *Dir) checkEntry(name string, ino uint64, typ uint8) error {
	if err := d.checkName(name); err != nil {
		return err
	}
	if ino == 0 || !ValidType(typ) {
		return syscall.EINVAL
	}
	return nil
}

// Replace points the existing entry name at (ino, typ), keeping its
// cookie, and returns what it pointed at (rename over an existing name);
// ENOENT if name is absent.
func (d *Dir) Replace(name string, ino uint64, typ uint8) (oldIno uint64, oldTyp uint8, err error) {
	if err := d.checkEntry(name, ino, typ); err != nil {
		return 0, 0, err
	}
	r, err := d.existing(name)
	if err != nil {
		return 0, 0, err
	}
	if err := d.t.Put(encodeKey(r.pos, name), encodeVal(ino, typ)); err != nil {
		return 0, 0, d.wrap(err)
	}
	return r.ino, r.typ, nil
}

// Remove deletes name and returns its inode number and type (ENOENT if
// absent).
func (d *Dir) Remove(name string) (ino uint64, typ uint8, err error) {
	if err := d.checkName(name); err != nil {
		return 0, 0, err
	}
	r, err := d.existing(name)
	if err != nil {
		return 0, 0, err
	}
	prevTomb, nextUsed, err := d.neighbours(r.pos)
	if err != nil {
		return 0, 0, err
	}
	if ok, err := d.t.Delete(encodeKey(r.pos, name)); err != nil {
		return 0, 0, d.wrap(err)
	} else if !ok {
		return 0, 0, d.corrupt("entry %q at %#x vanished", name, r.pos)
	}
	if nextUsed {
		// A walk may pass through this position: keep it occupied.
		if err := d.t.Put(posKey(r.pos), nil); err != nil {
			return 0, 0, d.wrap(err)
		}
		return r.ino, r.typ, nil
	}
	// The run now ends before r.pos: tombstones ending it are useless.
	for q := prev(r.pos); prevTomb; q = prev(q) {
		if _, err := d.t.Delete(posKey(q)); err != nil {
			return 0, 0, d.wrap(err)
		}
		e, ok, err := d.at(prev(q))
		if err != nil {
			return 0, 0, err
		}
		prevTomb = ok && e.tomb()
	}
	return r.ino, r.typ, nil
}

// neighbours reports whether the position before p holds a tombstone and
// whether the one after p is occupied, with one descent in the common
// case.
func (d *Dir) neighbours(p uint64) (prevTomb, nextUsed bool, err error) {
	if p == MinPos || p == MaxPos {
		pe, pok, err := d.at(prev(p))
		if err != nil {
			return false, false, err
		}
		_, nok, err := d.at(next(p))
		return pok && pe.tomb(), nok, err
	}
	it := d.t.Seek(posKey(p))
	if it.Prev() {
		e, err := d.decode(it.Key(), it.Value())
		if err != nil {
			return false, false, err
		}
		prevTomb = e.tomb() && e.pos == p-1
		it.Next() // back over it
	}
	if !it.Next() { // the key at p
		if err := it.Err(); err != nil {
			return false, false, d.wrap(err)
		}
		return false, false, d.corrupt("no key at %#x", p)
	}
	if it.Next() {
		e, err := d.decode(it.Key(), it.Value())
		if err != nil {
			return false, false, err
		}
		nextUsed = e.pos == p+1
	}
	return prevTomb, nextUsed, d.wrap(it.Err())
}

// Iterate calls fn for the entries with cookie (position) greater than
// cookie, in cookie order, until fn returns false. Start with cookie 0 (1
// and 2, the cookies of "." and "..", start at the beginning too); resume
// with the cookie of the last entry fn accepted. fn must not change the
// directory.
func (d *Dir) Iterate(cookie uint64, fn func(name string, ino uint64, typ uint8, cookie uint64) bool) error {
	if cookie >= MaxPos {
		return nil
	}
	it := d.t.Seek(posKey(cookie + 1))
	for it.Next() {
		e, err := d.decode(it.Key(), it.Value())
		if err != nil {
			return err
		}
		if e.tomb() {
			continue
		}
		if !fn(string(e.name), e.ino, e.typ, e.pos) {
			return nil
		}
	}
	return d.wrap(it.Err())
}

// Empty reports whether the directory has no entry. O(log n).
func (d *Dir) Empty() (bool, error) {
	empty := true
	err := d.Iterate(0, func(string, uint64, uint8, uint64) bool {
		empty = false
		return false
	})
	return empty, err
}

// Count returns the number of entries. It reads every leaf: O(n).
func (d *Dir) Count() (uint64, error) {
	var n uint64
	err := d.Iterate(0, func(string, uint64, uint8, uint64) bool {
		n++
		return true
	})
	return n, err
}
