package dir

import (
	"testing"

	"agfs/internal/treetest"
	"agfs/wal"
)

// env is a Mem device with a log at its end and an allocator over the
// blocks before it, and one directory index in it.
type env struct {
	*treetest.Env
	cfg Config

	tx   *wal.Tx
	d    *Dir
	root uint64 // root as of the last commit
}

const testOwner = 4242

func newEnv(t testing.TB, bs int, dataBlocks, logBlocks uint64, opt wal.Options, hash func(string) uint64) *env {
	t.Helper()
	e := &env{Env: treetest.New(t, bs, dataBlocks, logBlocks, [16]byte{7, 7, 7}, opt)}
	e.cfg = Config{Owner: testOwner, Seed: e.Seed, HashSeed: 0x5eed, BlockSize: bs, Alloc: e.Alloc, hash: hash}
	t.Cleanup(func() {
		if e.Log != nil {
			if e.tx != nil {
				e.tx.Abort()
			}
			e.Log.Close()
		}
	})
	e.tx = e.Log.Begin()
	d, err := Create(e.tx, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	e.commit()
	return e
}

// commit commits the open transaction and begins the next.
func (e *env) commit() {
	e.T.Helper()
	e.Commit(e.tx)
	e.root = e.d.Root()
	e.tx = e.Log.Begin()
	e.d.SetTx(e.tx)
}

// abort aborts the open transaction and reopens the directory as of the
// last commit.
func (e *env) abort() {
	e.T.Helper()
	e.tx.Abort()
	e.tx = e.Log.Begin()
	d, err := Open(e.tx, e.cfg, e.root)
	if err != nil {
		e.T.Fatal(err)
	}
	e.d = d
}

// reopen commits, closes the log and opens it again (an empty cache: every
// node is read from the device and verified), and reopens the directory.
func (e *env) reopen() {
	e.T.Helper()
	e.Commit(e.tx)
	e.root = e.d.Root()
	e.tx = nil
	e.Reopen()
	e.tx = e.Log.Begin()
	d, err := Open(e.tx, e.cfg, e.root)
	if err != nil {
		e.T.Fatal(err)
	}
	e.d = d
}

// check runs Check and fails the test on an error.
func (e *env) check() Info {
	e.T.Helper()
	info, err := e.d.Check()
	if err != nil {
		e.T.Fatal(err)
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
	e.T.Helper()
	m := map[string]ent{}
	last := uint64(0)
	err := e.d.Iterate(0, func(name string, ino uint64, typ uint8, c uint64) bool {
		if c <= last {
			e.T.Fatalf("cookie %#x after %#x", c, last)
		}
		last = c
		if _, dup := m[name]; dup {
			e.T.Fatalf("%q listed twice", name)
		}
		m[name] = ent{ino, typ}
		return true
	})
	if err != nil {
		e.T.Fatal(err)
	}
	return m
}

// sameAs fails unless the directory holds exactly model.
func (e *env) sameAs(model map[string]ent) {
	e.T.Helper()
	got := e.list()
	if len(got) != len(model) {
		e.T.Fatalf("directory has %d entries, model %d", len(got), len(model))
	}
	for k, v := range model {
		if g, ok := got[k]; !ok || g != v {
			e.T.Fatalf("entry %q: got %v (present %v), want %v", k, g, ok, v)
		}
	}
	info := e.check()
	if info.Entries != uint64(len(model)) {
		e.T.Fatalf("Check counts %d entries, model %d", info.Entries, len(model))
	}
}

var types = []uint8{1, 2, 4, 6, 8, 10, 12}
