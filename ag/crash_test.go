package ag

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"agfs/disk"
	"agfs/layout"
	"agfs/wal"
)

var (
	crashFull = flag.Bool("crash.full", false, "run the long AG crash simulation (more transactions and random crash images)")
	crashSeed = flag.Uint64("crash.seed", 1, "seed of the AG crash workload and of its random crash images")
)

// crashParams: 4 AGs of 7744 1-KiB blocks (two block-bitmap blocks each, so
// transactions create bitmap blocks as well as inode-table blocks), 121
// inodes per AG in 41 table blocks, and a 192-block log, so checkpoints and
// log wrap-around happen often.
var crashParams = layout.Params{
	DeviceBytes:   4 * 7744 * 1024,
	BlockSize:     1024,
	AGBytes:       7744 * 1024,
	BytesPerInode: 64 << 10,
	LogBytes:      192 << 10,
}

// agState is the hash of everything an AG's metadata says: the header
// fields and the payload of every bitmap block (blocks beyond the init
// marks are all zero).
func agState(h layout.AGHeader, bpay, ipay [][]byte) uint64 {
	d := xxhash.New()
	var b [8]byte
	for _, v := range []uint64{uint64(h.AG), h.Length, h.FreeBlocks, h.FreeInodes, h.Dirs,
		uint64(h.BlockBitmapInit), uint64(h.InodeBitmapInit), uint64(h.InodeTableInit), h.OrphanHead} {
		binary.LittleEndian.PutUint64(b[:], v)
		d.Write(b[:])
	}
	for _, p := range bpay {
		d.Write(p)
	}
	for _, p := range ipay {
		d.Write(p)
	}
	return d.Sum64()
}

// liveState is the state of an open AG (mu held).
func (a *AG) liveState() uint64 {
	return agState(a.hdr, payloads(a.bm), payloads(a.im))
}

// imageState reads AG ag's state from a (recovered) device.
func imageState(dev disk.Device, sb *layout.Superblock, ag uint32) (uint64, error) {
	x, err := newAGGeom(sb, ag)
	if err != nil {
		return 0, err
	}
	b := make([]byte, x.bs)
	read := func(blk uint64) error {
		_, err := dev.ReadAt(b, int64(blk)*int64(x.bs))
		return err
	}
	if err := read(sb.AGHeaderBlock(ag)); err != nil {
		return 0, err
	}
	h, err := layout.DecodeAGHeader(b, &sb.Geometry, x.seed, ag)
	if err != nil {
		return 0, err
	}
	load := func(first uint64, nb int, init uint32) ([][]byte, error) {
		out := make([][]byte, nb)
		for i := range out {
			out[i] = make([]byte, x.bs-layout.HeaderSize)
			if i < int(init) {
				if err := read(first + uint64(i)); err != nil {
					return nil, err
				}
				copy(out[i], b[layout.HeaderSize:])
			}
		}
		return out, nil
	}
	bp, err := load(x.bcodec.FirstBlock, x.newBlockBitmap().Blocks(), h.BlockBitmapInit)
	if err != nil {
		return 0, err
	}
	ip, err := load(x.icodec.FirstBlock, x.newInodeBitmap().Blocks(), h.InodeBitmapInit)
	if err != nil {
		return 0, err
	}
	return agState(*h, bp, ip), nil
}

// crashTx is one committed transaction of the workload.
type crashTx struct {
	lsn    wal.LSN
	states map[uint32]int // AG → index of its state after this tx in hist[AG]
}

// crashModel is what the checker knows of the recorded workload.
type crashModel struct {
	sb      *layout.Superblock
	hist    [][]uint64 // per AG: state hashes, [0] the initial one, in commit order
	txs     []*crashTx // committed transactions that changed something, in LSN order
	marks   []int      // recorder event indexes of "durable" marks, ascending
	markLSN []wal.LSN  // the highest LSN known durable at each mark
}

// runAGCrashWorkload runs the workload over a recorder and returns it and
// the model.
func runAGCrashWorkload(t *testing.T, seed uint64, txPerWorker int) (*disk.Recorder, *crashModel) {
	sb := newSB(t, crashParams)
	if sb.AGCount != 4 || sb.BlockBitmapBlocks != 2 {
		t.Fatalf("crash geometry: %+v", sb.Geometry)
	}
	mem := disk.NewMem(int64(sb.BlockCount) * int64(sb.BlockSize))
	mkfs(t, mem, sb)
	rec := disk.NewRecorder(mem.Bytes())
	log, _, err := wal.Open(rec, logRegion(sb), sb.Seed(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := OpenGroups(log, sb)
	if err != nil {
		t.Fatal(err)
	}
	m := &crashModel{sb: sb, hist: make([][]uint64, sb.AGCount)}
	for i, a := range gs.ags {
		a.mu.Lock()
		m.hist[i] = []uint64{a.liveState()}
		a.mu.Unlock()
	}
	var (
		mu      sync.Mutex // guards m.hist appends, all, marks
		all     []*crashTx
		durable atomic.Uint64
	)
	// owned extents and inodes per worker, per AG
	type owned struct {
		ext  [][]Extent
		inos [][]uint64
		dirs map[uint64]bool
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := range uint32(4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			own := owned{ext: make([][]Extent, 4), inos: make([][]uint64, 4), dirs: map[uint64]bool{}}
			for k := range txPerWorker {
				tx := log.Begin()
				// AGs this transaction uses, in increasing order: its home
				// AG, sometimes one above.
				ags := []uint32{w}
				if w < 3 && rng.IntN(6) == 0 {
					ags = append(ags, w+1+uint32(rng.IntN(int(3-w))))
				}
				ok := true
				var newExt [4][]Extent
				var newIno [4][]uint64
				newDir := map[uint64]bool{}
				save := owned{ext: make([][]Extent, 4), inos: make([][]uint64, 4)}
				for i := range 4 {
					save.ext[i], save.inos[i] = slices.Clone(own.ext[i]), slices.Clone(own.inos[i])
				}
				for _, ag := range ags {
					a := gs.ags[ag]
					for range 1 + rng.IntN(3) {
						var err error
						switch r := rng.IntN(10); {
						case r < 4:
							n := 1 + rng.Uint64N(16)
							if rng.IntN(8) == 0 {
								n = 100 + rng.Uint64N(900) // several bitmap bytes, maybe blocks
							}
							goal := a.start + rng.Uint64N(a.length)
							var x []Extent
							x, err = a.AllocBlocks(tx, n, goal, Policy(rng.IntN(4)))
							if isENOSPC(err) {
								err = nil
							}
							newExt[ag] = append(newExt[ag], x...)
						case r < 7:
							if l := own.ext[ag]; len(l) > 0 {
								j := rng.IntN(len(l))
								x := l[j]
								cut := x.Len
								if x.Len > 1 && rng.IntN(3) == 0 {
									cut = 1 + rng.Uint64N(x.Len-1)
								}
								err = a.FreeBlocks(tx, x.Start, cut)
								if cut == x.Len {
									own.ext[ag] = slices.Delete(l, j, j+1)
								} else {
									l[j] = Extent{x.Start + cut, x.Len - cut}
								}
							}
						case r < 9:
							dir := rng.IntN(3) == 0
							var ino uint64
							ino, err = a.AllocInode(tx, uint32(rng.IntN(int(sb.InodesPerAG))), dir)
							if isENOSPC(err) {
								err = nil
							} else if err == nil {
								newIno[ag] = append(newIno[ag], ino)
								newDir[ino] = dir
							}
						default:
							if l := own.inos[ag]; len(l) > 0 {
								j := rng.IntN(len(l))
								err = a.FreeInode(tx, l[j], own.dirs[l[j]])
								own.inos[ag] = slices.Delete(l, j, j+1)
							}
						}
						if err != nil {
							errc <- fmt.Errorf("worker %d tx %d: %w", w, k, err)
							ok = false
							break
						}
					}
				}
				ct := &crashTx{states: map[uint32]int{}}
				// Runs before the AG locks are released (Defer is LIFO):
				// the state after this transaction, in each AG's commit
				// order.
				tx.Defer(func(committed bool) {
					if !committed {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					for _, ag := range ags {
						a := gs.ags[ag]
						if a.owner.Load() != tx || !a.dirty {
							continue
						}
						m.hist[ag] = append(m.hist[ag], a.liveState())
						ct.states[ag] = len(m.hist[ag]) - 1
					}
				})
				abort := !ok || rng.IntN(12) == 0
				if abort {
					tx.Abort()
					own.ext, own.inos = save.ext, save.inos
					if !ok {
						return
					}
					continue
				}
				lsn, err := tx.Commit()
				if err != nil {
					errc <- err
					return
				}
				for ag := range 4 {
					own.ext[ag] = append(own.ext[ag], newExt[ag]...)
					own.inos[ag] = append(own.inos[ag], newIno[ag]...)
				}
				for ino, d := range newDir {
					own.dirs[ino] = d
				}
				if len(ct.states) > 0 {
					ct.lsn = lsn
					mu.Lock()
					all = append(all, ct)
					mu.Unlock()
				}
				if rng.IntN(4) == 0 {
					if err := log.Wait(lsn); err != nil {
						errc <- err
						return
					}
					for {
						d := durable.Load()
						if uint64(lsn) <= d || durable.CompareAndSwap(d, uint64(lsn)) {
							break
						}
					}
					// The mark's place in the event log is after the flush
					// that made lsn durable. Marks are logged under mu, in
					// the order of markLSN.
					mu.Lock()
					rec.Mark("durable")
					m.markLSN = append(m.markLSN, wal.LSN(durable.Load()))
					mu.Unlock()
				}
				if rng.IntN(25) == 0 {
					if err := log.Checkpoint(); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	crossed := 0
	for _, a := range gs.ags {
		if a.hdr.BlockBitmapInit > 1 {
			crossed++
		}
		t.Logf("ag %d at the end: %d free blocks, %d free inodes, %d dirs; marks: block bitmap %d, inode bitmap %d, inode table %d",
			a.no, a.hdr.FreeBlocks, a.hdr.FreeInodes, a.hdr.Dirs, a.hdr.BlockBitmapInit, a.hdr.InodeBitmapInit, a.hdr.InodeTableInit)
	}
	if crossed == 0 {
		t.Fatal("no transaction crossed a block-bitmap init mark")
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(all, func(a, b *crashTx) int {
		switch {
		case a.lsn < b.lsn:
			return -1
		case a.lsn > b.lsn:
			return 1
		}
		return 0
	})
	// Within an AG, commit order must be LSN order.
	last := make([]int, sb.AGCount)
	for _, tx := range all {
		for ag, k := range tx.states {
			if k <= last[ag] {
				t.Fatalf("ag %d: state %d committed after state %d but has a lower LSN", ag, k, last[ag])
			}
			last[ag] = k
		}
	}
	m.txs = all
	for _, ev := range rec.Log() {
		if ev.Kind == disk.EventMark {
			m.marks = append(m.marks, ev.Seq)
		}
	}
	if len(m.marks) != len(m.markLSN) {
		t.Fatalf("%d marks logged, %d recorded", len(m.marks), len(m.markLSN))
	}
	// Marks were appended under mu in event order, but markLSN must be
	// made monotonic (a mark's durable LSN covers all earlier ones).
	for i := 1; i < len(m.markLSN); i++ {
		m.markLSN[i] = max(m.markLSN[i], m.markLSN[i-1])
	}
	return rec, m
}

// check recovers dev (holding a crash image) and checks it against the
// model; point is the crash's event index.
func (m *crashModel) check(dev disk.Device, point int, openToo bool) error {
	sb := m.sb
	if _, err := wal.Recover(dev, logRegion(sb), sb.Seed()); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for ag := range sb.AGCount {
		if errs := Verify(dev, sb, ag); len(errs) > 0 {
			return fmt.Errorf("verify: %v", errs)
		}
	}
	// Candidate positions in each AG's history.
	cand := make([]map[int]bool, sb.AGCount)
	for ag := range sb.AGCount {
		h, err := imageState(dev, sb, ag)
		if err != nil {
			return err
		}
		cand[ag] = map[int]bool{}
		for k, s := range m.hist[ag] {
			if s == h {
				cand[ag][k] = true
			}
		}
		if len(cand[ag]) == 0 {
			return fmt.Errorf("ag %d: recovered state matches no state of its transaction history (%d states)", ag, len(m.hist[ag]))
		}
	}
	// The durable LSN at the crash point.
	var need wal.LSN
	if i := sort.SearchInts(m.marks, point+1) - 1; i >= 0 {
		need = m.markLSN[i]
	}
	// Find an LSN cut: the transactions up to it are exactly what each AG
	// shows, and it includes every durable one.
	pos := make([]int, sb.AGCount)
	fits := func() bool {
		for ag := range pos {
			if !cand[ag][pos[ag]] {
				return false
			}
		}
		return true
	}
	for i := 0; i <= len(m.txs); i++ {
		if i > 0 {
			for ag, k := range m.txs[i-1].states {
				pos[ag] = k
			}
		}
		if i < len(m.txs) && m.txs[i].lsn <= need {
			continue // a durable transaction must be included
		}
		if fits() {
			if openToo {
				l, _, err := wal.Open(dev, logRegion(sb), sb.Seed(), wal.Options{})
				if err != nil {
					return err
				}
				_, err = OpenGroups(l, sb)
				l.Close()
				if err != nil {
					return fmt.Errorf("open after recovery: %w", err)
				}
			}
			return nil
		}
	}
	return fmt.Errorf("no prefix of the transactions (in LSN order) that includes every durable one (LSN ≤ %d) explains the AG states (candidates %v)", need, cand)
}

func TestCrash(t *testing.T) {
	txPerWorker, random := 90, 2000
	if *crashFull {
		txPerWorker, random = 300, 20000
	}
	start := time.Now()
	rec, m := runAGCrashWorkload(t, *crashSeed, txPerWorker)
	events := rec.Log()
	writes := rec.WritePoints()
	t.Logf("workload: %d committed transactions changing AGs, %d events (%d writes, %d flushes), %d durable marks; AG histories %d/%d/%d/%d states; %v",
		len(m.txs), len(events), len(writes), len(rec.FlushPoints()), len(m.marks),
		len(m.hist[0]), len(m.hist[1]), len(m.hist[2]), len(m.hist[3]), time.Since(start))
	if len(m.txs) < 300 {
		t.Fatalf("only %d transactions", len(m.txs))
	}

	type job struct {
		point, flush int
		desc         string
		keep         func(int) bool
		tear         *disk.Tear
	}
	keepAll := func(int) bool { return true }
	lastFlush := func(point int) int {
		for i := point; i >= 0; i-- {
			if events[i].Kind == disk.EventFlush {
				return i
			}
		}
		return -1
	}
	var jobs []job
	jobs = append(jobs, job{point: -1, flush: -1, desc: "crash before any write"})
	for _, w := range writes {
		jobs = append(jobs, job{point: w, flush: lastFlush(w), keep: keepAll, desc: fmt.Sprintf("crash after write %d, all kept", w)})
	}
	rng := rand.New(rand.NewPCG(*crashSeed, 7))
	for range random {
		d := describe(events, rng.IntN(len(events)), rng, 0.5)
		jobs = append(jobs, job{point: d.Point, flush: d.Flush, keep: d.Keep, tear: d.Tear, desc: d.String()})
	}
	// Images are built as overlays on the durable image of their last
	// flush, so jobs go in flush order: the shared base image moves
	// forward between groups, and the jobs of one group run in parallel.
	slices.SortStableFunc(jobs, func(a, b job) int { return a.flush - b.flush })

	base := rec.CrashImage(-1, nil, nil)
	baseAt := -1
	checked, compared := 0, 0
	for g := 0; g < len(jobs); {
		f := jobs[g].flush
		end := g
		for end < len(jobs) && jobs[end].flush == f {
			end++
		}
		for i := baseAt + 1; i <= f; i++ {
			if ev := events[i]; ev.Kind == disk.EventWrite {
				copy(base[ev.Off:], ev.Data)
			}
		}
		baseAt = max(baseAt, f)

		var wg sync.WaitGroup
		var next atomic.Int64
		errs := make([]error, end-g)
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := g + int(next.Add(1)) - 1
					if k >= end {
						return
					}
					j := jobs[k]
					dev := newOverlay(base)
					for i := f + 1; i <= j.point; i++ {
						ev := events[i]
						if ev.Kind != disk.EventWrite || !j.keep(i) {
							continue
						}
						data := ev.Data
						if j.tear != nil && j.tear.Write == i {
							data = data[:min(len(data), j.tear.Sectors*disk.SectorSize)]
						}
						dev.WriteAt(data, ev.Off)
					}
					if k%101 == 0 {
						// The overlay must be exactly the recorder's image.
						want := rec.CrashImage(j.point, j.keep, j.tear)
						if !dev.equal(want) {
							errs[k-g] = fmt.Errorf("%s: overlay image differs from the recorder's", j.desc)
							continue
						}
					}
					if err := m.check(dev, j.point, k%53 == 0); err != nil {
						errs[k-g] = fmt.Errorf("%s: %w", j.desc, err)
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		checked += end - g
		for k := g; k < end; k++ {
			if k%101 == 0 {
				compared++
			}
		}
		g = end
	}
	t.Logf("crash images checked: %d (%d write positions, %d random reorder/torn variants; %d also rebuilt by Recorder.CrashImage and compared), zero failures, in %v",
		checked, len(writes)+1, random, compared, time.Since(start))
}

// overlay is a device over a shared base image that it never writes: the
// sectors written to it are kept aside. It makes a crash image cost what
// its own writes cost, not a copy of the device.
type overlay struct {
	base []byte
	mu   sync.Mutex
	sec  map[int64][]byte // sector number → its 512 bytes
}

func newOverlay(base []byte) *overlay { return &overlay{base: base, sec: map[int64][]byte{}} }

func (o *overlay) io(p []byte, off int64, write bool) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(o.base)) {
		return 0, fmt.Errorf("overlay: %d bytes at %d: %w", len(p), off, disk.ErrOutOfRange)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		sn, so := pos/disk.SectorSize, int(pos%disk.SectorSize)
		n := min(len(p)-done, disk.SectorSize-so)
		s := o.sec[sn]
		if write {
			if s == nil {
				s = slices.Clone(o.base[sn*disk.SectorSize : (sn+1)*disk.SectorSize])
				o.sec[sn] = s
			}
			copy(s[so:], p[done:done+n])
		} else if s != nil {
			copy(p[done:done+n], s[so:])
		} else {
			copy(p[done:done+n], o.base[pos:])
		}
		done += n
	}
	return len(p), nil
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error)  { return o.io(p, off, false) }
func (o *overlay) WriteAt(p []byte, off int64) (int, error) { return o.io(p, off, true) }
func (o *overlay) Flush() error                             { return nil }
func (o *overlay) Size() int64                              { return int64(len(o.base)) }
func (o *overlay) Close() error                             { return nil }

// equal reports whether the overlay's contents are img.
func (o *overlay) equal(img []byte) bool {
	if len(img) != len(o.base) {
		return false
	}
	b := make([]byte, disk.SectorSize)
	for off := int64(0); off < int64(len(img)); off += disk.SectorSize {
		o.ReadAt(b, off)
		if string(b) != string(img[off:off+disk.SectorSize]) {
			return false
		}
	}
	return true
}

// describe draws a random crash just after event point, as
// Recorder.RandomCrashImage does, without building the image.
func describe(log []disk.Event, point int, rng *rand.Rand, tearProb float64) disk.Description {
	d := disk.Description{Point: point, Flush: -1}
	for i := point; i >= 0; i-- {
		if log[i].Kind == disk.EventFlush {
			d.Flush = i
			break
		}
	}
	var tearable []int
	for i := d.Flush + 1; i <= point; i++ {
		if log[i].Kind != disk.EventWrite {
			continue
		}
		if rng.IntN(2) == 0 {
			d.Dropped = append(d.Dropped, i)
			continue
		}
		d.Kept = append(d.Kept, i)
		if len(log[i].Data) > disk.SectorSize {
			tearable = append(tearable, i)
		}
	}
	if len(tearable) > 0 && rng.Float64() < tearProb {
		w := tearable[rng.IntN(len(tearable))]
		sectors := (len(log[w].Data) + disk.SectorSize - 1) / disk.SectorSize
		d.Tear = &disk.Tear{Write: w, Sectors: 1 + rng.IntN(sectors-1)}
	}
	return d
}
