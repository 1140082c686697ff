package wal

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"agfs/disk"
	"agfs/layout"
)

var crashFull = flag.Bool("crash.full", false, "run the long crash simulation (more workloads and random crash images)")

// Crash workload geometry: 1 KiB blocks, normal metadata blocks 1..16
// (sealed at mkfs), a pool of blocks 17..24 that transactions create with
// Init (zero on disk until then), and a 24-block log at 40.
const (
	cBS       = 1024
	cDev      = 64
	cLogStart = 40
	cLogLen   = 24
	cNormal   = 16
	cPool     = 8
	cLastOff  = 64 // u64: txid of the last transaction that touched the block
	cSlotOff  = 72 // u64 slots: slot k%cSlots holds txid k
	cSlots    = (cBS - cSlotOff) / 8
)

// op is one change a transaction made.
type op struct {
	blk  uint64
	init []byte // whole block, or nil for a write
	off  int
	data []byte
}

type ctx struct {
	k    uint64
	lsn  LSN
	ops  []op
	idx  int // position in LSN order, from 1
	mark int // recorder event index of "durable" mark, or -1
}

// crashModel is what the checker knows about a recorded workload.
type crashModel struct {
	seed    uint64
	r       Region
	initial map[uint64][]byte // block contents before the workload
	txs     []*ctx            // committed, in LSN order
	// touches[blk]: the transactions that changed blk, in LSN order, with
	// the block's content after each.
	touches   map[uint64][]touch
	byMark    map[int]int // event index of a durable mark -> tx idx
	markIdx   []int       // sorted event indexes of marks
	markMaxTx []int       // markMaxTx[i]: max tx idx among marks[:i+1]
}

type touch struct {
	idx     int
	k       uint64
	content []byte
}

func cVerify(seed uint64) func(blk uint64, b []byte) error {
	return func(blk uint64, b []byte) error { return layout.Check(b, seed, testMagic, blk, 0) }
}

// runCrashWorkload runs txCount transactions from workers goroutines over
// a recording device and returns the recorder and the model.
//
// With base nil it starts from a freshly formatted device; otherwise from
// the image base (a device recovered after a crash of an earlier session),
// numbering its transactions from kBase+1.
func runCrashWorkload(t testing.TB, wseed uint64, base []byte, kBase uint64, txCount, workers int) (*disk.Recorder, *crashModel) {
	e := newEnv(t, cBS, cDev, cLogStart, cLogLen)
	e.seed = 0xC0FFEE
	m := &crashModel{seed: e.seed, r: e.r, initial: map[uint64][]byte{}, touches: map[uint64][]touch{}, byMark: map[int]int{}}
	var poolInit [cNormal + cPool + 1]bool // guarded by the block's lock
	if base == nil {
		if err := Format(e.dev, e.r, e.seed); err != nil {
			t.Fatal(err)
		}
		for blk := uint64(1); blk <= cNormal; blk++ {
			e.mkfs(blk)
		}
		base = devBytes(t, e.dev)
	}
	for blk := uint64(1); blk <= cNormal+cPool; blk++ {
		m.initial[blk] = bytes.Clone(base[blk*cBS : (blk+1)*cBS])
		poolInit[blk] = layout.ReadHeader(m.initial[blk]).Magic != 0
	}
	rec := disk.NewRecorder(base)
	l, _, err := Open(rec, e.r, e.seed, Options{CacheBlocks: 12, CheckpointAt: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	verify := cVerify(e.seed)

	var locks [cNormal + cPool + 1]sync.Mutex
	var mu sync.Mutex
	var all []*ctx
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := kBase + uint64(w+1); k <= kBase+uint64(txCount); k += uint64(workers) {
				r := rand.New(rand.NewPCG(wseed, k))
				var blks []uint64
				for range 1 + r.IntN(3) {
					if b := uint64(1 + r.IntN(cNormal)); !slices.Contains(blks, b) {
						blks = append(blks, b)
					}
				}
				var pool uint64
				if r.IntN(4) == 0 {
					pool = uint64(cNormal + 1 + r.IntN(cPool))
					blks = append(blks, pool)
				}
				slices.Sort(blks)
				for _, b := range blks {
					locks[b].Lock()
				}
				c := &ctx{k: k, mark: -1}
				tx := l.Begin()
				tx.Defer(func(bool) {
					for _, b := range blks {
						locks[b].Unlock()
					}
				})
				abort := r.IntN(13) == 0
				fail := func(err error) {
					t.Error(err)
					tx.Abort()
				}
				ok := true
				for _, b := range blks {
					if b == pool && (!poolInit[b] || r.IntN(3) == 0) {
						img := e.fresh(b)
						copy(img[cLastOff:], le64(k))
						for s := range cSlots {
							copy(img[cSlotOff+8*s:], le64(k*1000+uint64(s)))
						}
						if err := tx.Init(b, img); err != nil {
							fail(err)
							ok = false
							break
						}
						c.ops = append(c.ops, op{blk: b, init: img})
						if !abort {
							poolInit[b] = true // under the block's lock until the commit
						}
						continue
					}
					if _, err := tx.Read(b, verify); err != nil {
						fail(fmt.Errorf("tx %d: read %d: %w", k, b, err))
						ok = false
						break
					}
					for _, w := range []op{{blk: b, off: cLastOff, data: le64(k)}, {blk: b, off: cSlotOff + 8*int(k%cSlots), data: le64(k)}} {
						if err := tx.Write(w.blk, w.off, w.data); err != nil {
							fail(err)
							ok = false
							break
						}
						c.ops = append(c.ops, w)
					}
				}
				if !ok {
					return
				}
				if abort {
					tx.Abort()
					continue
				}
				lsn, err := tx.Commit()
				if err != nil {
					t.Errorf("tx %d: commit: %v", k, err)
					return
				}
				c.lsn = lsn
				if r.IntN(2) == 0 {
					if err := l.Wait(lsn); err != nil {
						t.Errorf("tx %d: wait: %v", k, err)
						return
					}
					rec.Mark("durable " + strconv.FormatUint(k, 10))
				}
				mu.Lock()
				all = append(all, c)
				mu.Unlock()
				if k%37 == 0 {
					if err := l.Checkpoint(); err != nil {
						t.Errorf("checkpoint: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	st := l.Stats()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("run %d: %d committed txs, %d checkpoints, %d log flushes, head LSN %d (%.1f laps of the log), %d events",
		wseed, len(all), st.Checkpoints, st.Flushes, st.Head, float64(st.Head)/float64((cLogLen-2)*cBS), len(rec.Log()))

	// The model: transactions in LSN order, block contents after each.
	slices.SortFunc(all, func(a, b *ctx) int { return int(a.lsn) - int(b.lsn) })
	cur := map[uint64][]byte{}
	for blk, b := range m.initial {
		cur[blk] = bytes.Clone(b)
	}
	byK := map[uint64]int{}
	for i, c := range all {
		c.idx = i + 1
		byK[c.k] = c.idx
		seen := map[uint64]bool{}
		for _, o := range c.ops {
			if o.init != nil {
				cur[o.blk] = bytes.Clone(o.init)
			} else {
				copy(cur[o.blk][o.off:], o.data)
			}
			seen[o.blk] = true
		}
		for blk := range seen {
			m.touches[blk] = append(m.touches[blk], touch{idx: c.idx, k: c.k, content: bytes.Clone(cur[blk])})
		}
	}
	m.txs = all
	maxTx := 0
	for _, ev := range rec.Log() {
		if ev.Kind != disk.EventMark {
			continue
		}
		k, _ := strconv.ParseUint(strings.TrimPrefix(ev.Name, "durable "), 10, 64)
		maxTx = max(maxTx, byK[k])
		m.markIdx = append(m.markIdx, ev.Seq)
		m.markMaxTx = append(m.markMaxTx, maxTx)
	}
	return rec, m
}

// durableAt is the highest LSN-order index of a transaction whose Wait had
// returned by event point.
func (m *crashModel) durableAt(point int) int {
	i, _ := slices.BinarySearch(m.markIdx, point+1)
	if i == 0 {
		return 0
	}
	return m.markMaxTx[i-1]
}

// check verifies a recovered device: every block holds the state after
// the first j transactions for one j (so each transaction is all or
// nothing, and commit order is kept), j covers every transaction known
// durable at the crash point, and every written block's checksum holds.
func (m *crashModel) check(dev disk.Device, point int) error {
	lo, hi := 0, len(m.txs)
	verify := cVerify(m.seed)
	h := make([]byte, cBS)
	for blk := uint64(1); blk <= cNormal+cPool; blk++ {
		if _, err := dev.ReadAt(h, int64(blk)*cBS); err != nil {
			return err
		}
		ts := m.touches[blk]
		last := u64at(h, cLastOff)
		var content []byte
		var a, b int
		if sameContent(h, m.initial[blk]) {
			content, a, b = m.initial[blk], 0, len(m.txs)
			if len(ts) > 0 {
				b = ts[0].idx - 1
			}
		} else {
			i := slices.IndexFunc(ts, func(t touch) bool { return t.k == last })
			if i < 0 {
				return fmt.Errorf("block %d holds transaction %d, which never committed a change to it", blk, last)
			}
			content, a, b = ts[i].content, ts[i].idx, len(m.txs)
			if i+1 < len(ts) {
				b = ts[i+1].idx - 1
			}
		}
		if !sameContent(h, content) {
			return fmt.Errorf("block %d: content differs from the state after transaction %d", blk, last)
		}
		if layout.ReadHeader(content).Magic != 0 {
			if err := verify(blk, h); err != nil {
				return err
			}
		}
		lo, hi = max(lo, a), min(hi, b)
	}
	if lo > hi {
		return fmt.Errorf("blocks hold no common prefix of the transactions (lo %d > hi %d): a transaction is partly applied", lo, hi)
	}
	if d := m.durableAt(point); hi < d {
		return fmt.Errorf("transaction #%d (LSN %d) was durable but at most %d transactions survived", d, m.txs[d-1].lsn, hi)
	}
	return nil
}

// recoverAndCheck recovers img, checks it, recovers again (which must
// change nothing) and returns the recovered image.
func (m *crashModel) recoverAndCheck(img []byte, point int) ([]byte, *Report, error) {
	dev := disk.NewMemFrom(img)
	rep, err := Recover(dev, m.r, m.seed)
	if err != nil {
		return nil, rep, fmt.Errorf("recover: %w", err)
	}
	if rep.Mismatches != 0 || rep.Undone != 0 {
		return nil, rep, fmt.Errorf("recover: %d before-byte mismatches, %d undone", rep.Mismatches, rep.Undone)
	}
	if err := m.check(dev, point); err != nil {
		return nil, rep, err
	}
	once := dev.Bytes()
	rep2, err := Recover(dev, m.r, m.seed)
	if err != nil {
		return nil, rep, fmt.Errorf("second recover: %w", err)
	}
	if !rep2.Clean || !bytes.Equal(once, dev.Bytes()) {
		return nil, rep, fmt.Errorf("second recover changed the image (report %+v)", rep2)
	}
	return once, rep, nil
}

// outsideLog blanks the log region of a copy of img, to compare the home
// blocks of two images.
func outsideLog(img []byte) []byte {
	c := bytes.Clone(img)
	clear(c[cLogStart*cBS : (cLogStart+cLogLen)*cBS])
	return c
}

func TestCrashRecovery(t *testing.T) {
	// Per run (two runs per workload): random crash images, and crash
	// images whose recovery is itself recorded and crashed.
	workloads, random, recSample := 1, 1000, 30
	if *crashFull {
		workloads, random, recSample = 5, 10000, 200
	}
	total, replayed := 0, 0
	var base []byte
	for w := range 2 * workloads {
		// Even runs start from a fresh filesystem; odd ones from the
		// recovered image of a random crash (torn writes included) of the
		// run before, so the log holds an older epoch's sectors.
		rec, m := runCrashWorkload(t, uint64(w+1), base, uint64(w)*100000, 400, 4)
		log := rec.Log()
		base = nil
		before := total
		if w%2 == 0 {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			point := len(log)/4 + rng.IntN(len(log)/2)
			img, d := rec.RandomCrashImage(point, rng, 1)
			var err error
			if base, _, err = m.recoverAndCheck(img, point); err != nil {
				t.Fatalf("session crash %v: %v", d, err)
			}
		}
		keepAll := func(int) bool { return true }
		rng := rand.New(rand.NewPCG(uint64(w), 99))
		var sample [][]byte // crash images whose recovery is itself crashed
		var samplePts []int

		// Every write and flush position, with everything written kept.
		for _, ev := range log {
			if ev.Kind == disk.EventMark {
				continue
			}
			img := rec.CrashImage(ev.Seq, keepAll, nil)
			if rng.IntN(len(log)/recSample+1) == 0 {
				sample, samplePts = append(sample, bytes.Clone(img)), append(samplePts, ev.Seq)
			}
			_, rep, err := m.recoverAndCheck(img, ev.Seq)
			if err != nil {
				t.Fatalf("crash after event %d (%s): %v\nreport: %+v", ev.Seq, ev.Kind, err, rep)
			}
			total++
			replayed += rep.Replayed
		}
		// Random reorderings and torn writes.
		for range random {
			point := rng.IntN(len(log))
			img, d := rec.RandomCrashImage(point, rng, 0.5)
			if rng.IntN(random/recSample+1) == 0 {
				sample, samplePts = append(sample, bytes.Clone(img)), append(samplePts, point)
			}
			_, rep, err := m.recoverAndCheck(img, point)
			if err != nil {
				t.Fatalf("%v: %v\nreport: %+v", d, err, rep)
			}
			total++
			replayed += rep.Replayed
		}

		// Crashes during recovery: record a recovery, crash it everywhere,
		// recover again: the home blocks must come out the same.
		during := 0
		for si, img := range sample {
			want, _, err := m.recoverAndCheck(bytes.Clone(img), samplePts[si])
			if err != nil {
				t.Fatal(err)
			}
			rr := disk.NewRecorder(img)
			if _, err := Recover(rr, m.r, m.seed); err != nil {
				t.Fatal(err)
			}
			rlog := rr.Log()
			check := func(img2 []byte, what string) {
				got, _, err := m.recoverAndCheck(img2, samplePts[si])
				if err != nil {
					t.Fatalf("sample %d, recovery crashed %s: %v", si, what, err)
				}
				if !bytes.Equal(outsideLog(got), outsideLog(want)) {
					t.Fatalf("sample %d, recovery crashed %s: home blocks differ from a clean recovery", si, what)
				}
				during++
			}
			for _, ev := range rlog {
				check(rr.CrashImage(ev.Seq, keepAll, nil), fmt.Sprintf("after event %d", ev.Seq))
			}
			for range 5 {
				if len(rlog) == 0 {
					break
				}
				img2, d := rr.RandomCrashImage(rng.IntN(len(rlog)), rng, 0.7)
				check(img2, d.String())
			}
		}
		t.Logf("run %d: %d events; checked %d crash images of the workload and %d of its recoveries", w+1, len(log), total-before, during)
		total += during
	}
	t.Logf("crash images checked: %d (transactions replayed over all recoveries: %d)", total, replayed)
}
