package dir

import (
	"errors"
	"fmt"
	"testing"

	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

// blockAlloc is a simple transactional allocator over [start, start+n):
// an allocation is undone if its transaction aborts, a free takes effect
// when its transaction commits, and double or stray frees fail.
type blockAlloc struct {
	start uint64
	used  []bool
	busy  map[uint64]bool // freed by an open transaction
	n     int
}

func newBlockAlloc(start, n uint64) *blockAlloc {
	return &blockAlloc{start: start, used: make([]bool, n), busy: make(map[uint64]bool)}
}

var errNoSpace = errors.New("blockAlloc: no free block")

func (a *blockAlloc) AllocBlock(tx *wal.Tx, goal uint64) (uint64, error) {
	sz := uint64(len(a.used))
	g := uint64(0)
	if goal >= a.start && goal-a.start < sz {
		g = goal - a.start
	}
	for i := range sz {
		j := (g + i) % sz
		if !a.used[j] && !a.busy[a.start+j] {
			a.used[j] = true
			a.n++
			tx.Defer(func(committed bool) {
				if !committed {
					a.used[j] = false
					a.n--
				}
			})
			return a.start + j, nil
		}
	}
	return 0, errNoSpace
}

func (a *blockAlloc) FreeBlock(tx *wal.Tx, blk uint64) error {
	if blk < a.start || blk-a.start >= uint64(len(a.used)) {
		return fmt.Errorf("blockAlloc: free of block %d outside the region", blk)
	}
	j := blk - a.start
	if !a.used[j] || a.busy[blk] {
		return fmt.Errorf("blockAlloc: double free of block %d", blk)
	}
	a.busy[blk] = true
	tx.Defer(func(committed bool) {
		delete(a.busy, blk)
		if committed {
			a.used[j] = false
			a.n--
		}
	})
	return nil
}

// env is a Mem device with a log at its end and an allocator over the
// blocks before it, and one directory index in it.
type env struct {
	t     testing.TB
	bs    int
	dev   *disk.Mem
	r     wal.Region
	seed  uint64
	log   *wal.Log
	alloc *blockAlloc
	opt   wal.Options
	cfg   Config

	tx   *wal.Tx
	d    *Dir
	root uint64 // root as of the last commit
}

const testOwner = 4242

func newEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64, opt wal.Options, hash func(string) uint64) *env {
	t.Helper()
	e := &env{t: t, bs: bs, seed: layout.SeedFromUUID([16]byte{7, 7, 7}), opt: opt,
		dev: disk.NewMem(int64(dataBlocks+logBlocks) * int64(bs)),
		r:   wal.Region{BlockSize: bs, Start: dataBlocks, Blocks: logBlocks}}
	if err := wal.Format(e.dev, e.r, e.seed); err != nil {
		t.Fatal(err)
	}
	e.alloc = newBlockAlloc(1, dataBlocks-1)
	e.cfg = Config{Owner: testOwner, Seed: e.seed, HashSeed: 0x5eed, BlockSize: bs, Alloc: e.alloc, hash: hash}
	e.openLog()
	t.Cleanup(func() {
		if e.log != nil {
			if e.tx != nil {
				e.tx.Abort()
			}
			e.log.Close()
		}
	})
	e.tx = e.log.Begin()
	d, err := Create(e.tx, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	e.commit()
	return e
}

func (e *env) openLog() {
	e.t.Helper()
	l, _, err := wal.Open(e.dev, e.r, e.seed, e.opt)
	if err != nil {
		e.t.Fatal(err)
	}
	e.log = l
}

// commit commits the open transaction and begins the next.
func (e *env) commit() {
	e.t.Helper()
	if _, err := e.tx.Commit(); err != nil {
		e.t.Fatal(err)
	}
	e.root = e.d.Root()
	e.tx = e.log.Begin()
	e.d.SetTx(e.tx)
}

// abort aborts the open transaction and reopens the directory as of the
// last commit.
func (e *env) abort() {
	e.t.Helper()
	e.tx.Abort()
	e.tx = e.log.Begin()
	d, err := Open(e.tx, e.cfg, e.root)
	if err != nil {
		e.t.Fatal(err)
	}
	e.d = d
}

// reopen commits, closes the log and opens it again (an empty cache: every
// node is read from the device and verified), and reopens the directory.
func (e *env) reopen() {
	e.t.Helper()
	if _, err := e.tx.Commit(); err != nil {
		e.t.Fatal(err)
	}
	e.root = e.d.Root()
	e.tx = nil
	if err := e.log.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.log = nil
	e.openLog()
	e.tx = e.log.Begin()
	d, err := Open(e.tx, e.cfg, e.root)
	if err != nil {
		e.t.Fatal(err)
	}
	e.d = d
}

// check runs Check and fails the test on an error.
func (e *env) check() Info {
	e.t.Helper()
	info, err := e.d.Check()
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

type ent struct {
	ino uint64
	typ uint8
}

// list returns the whole directory through Iterate, failing on
// non-increasing cookies or a repeated name.
func (e *env) list() map[string]ent {
	e.t.Helper()
	m := map[string]ent{}
	last := uint64(0)
	err := e.d.Iterate(0, func(name string, ino uint64, typ uint8, c uint64) bool {
		if c <= last {
			e.t.Fatalf("cookie %#x after %#x", c, last)
		}
		last = c
		if _, dup := m[name]; dup {
			e.t.Fatalf("%q listed twice", name)
		}
		m[name] = ent{ino, typ}
		return true
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// sameAs fails unless the directory holds exactly model.
func (e *env) sameAs(model map[string]ent) {
	e.t.Helper()
	got := e.list()
	if len(got) != len(model) {
		e.t.Fatalf("directory has %d entries, model %d", len(got), len(model))
	}
	for k, v := range model {
		if g, ok := got[k]; !ok || g != v {
			e.t.Fatalf("entry %q: got %v (present %v), want %v", k, g, ok, v)
		}
	}
	info := e.check()
	if info.Entries != uint64(len(model)) {
		e.t.Fatalf("Check counts %d entries, model %d", info.Entries, len(model))
	}
}

var types = []uint8{1, 2, 4, 6, 8, 10, 12}
