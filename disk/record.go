package disk

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
)

// EventKind says what a recorded Event is.
type EventKind uint8

const (
	EventWrite EventKind = iota + 1 // a WriteAt that succeeded
	EventFlush                      // a Flush that succeeded
	EventMark                       // a call to Mark
)

func (k EventKind) String() string {
	switch k {
	case EventWrite:
		return "write"
	case EventFlush:
		return "flush"
	case EventMark:
		return "mark"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one entry of a Recorder's log.
type Event struct {
	Seq  int // position in the log; crash points and Tear.Write use it
	Kind EventKind
	Off  int64  // EventWrite: where
	Data []byte // EventWrite: a copy of what was written; do not modify
	Name string // EventMark: the name given to Mark
}

// Epoch is the writes between two flushes.
type Epoch struct {
	Writes []int // event indexes of the writes, in log order
	Flush  int   // event index of the flush that ends the epoch; -1 if none yet
}

// Tear says that write Write (an event index) reached the disk only in its
// first Sectors 512-byte sectors.
type Tear struct {
	Write   int
	Sectors int
}

// Recorder is an in-memory Device that logs every write, flush and mark in
// order, so a test can later build the image a crash at any point would
// have left: the idea of CrashMonkey and dm-log-writes, inside the process.
//
// A crash keeps every write that precedes the last completed flush; of the
// writes after it, the disk may have kept any subset (volatile caches
// reorder), and one of the kept ones may be torn at a sector boundary.
//
// It is safe for concurrent use. The log order is the order in which
// WriteAt and Flush took effect; a write that races with a Flush may be
// logged on either side of it, which treats it as at most more durable
// than a real disk would.
type Recorder struct {
	mem  *Mem
	base []byte // initial image, never modified

	mu  sync.Mutex // orders log entries; held across the write they record
	log []Event

	// checkpoints are images at some flush points, made while building
	// crash images so the next build starts near its target instead of
	// replaying the whole log. One is kept whenever the writes since the
	// previous one add up to the device size, so a build replays at most
	// about one device's worth of writes, and the checkpoints together take
	// about as much memory as the log.
	cpMu        sync.Mutex
	checkpoints []checkpoint // sorted by at
}

type checkpoint struct {
	at  int // event index of a flush
	img []byte
}

var _ Device = (*Recorder)(nil)

// NewRecorder returns a recording device whose initial contents are a copy
// of base and whose size is len(base). For a zeroed device, pass
// make([]byte, size).
func NewRecorder(base []byte) *Recorder {
	return &Recorder{mem: NewMemFrom(slices.Clone(base)), base: slices.Clone(base)}
}

// ReadAt reads the current contents (every write so far, crash or not).
func (r *Recorder) ReadAt(p []byte, off int64) (int, error) {
	return r.mem.ReadAt(p, off)
}

// WriteAt writes p at off and logs it. Failed writes are not logged.
func (r *Recorder) WriteAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.mem.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	r.log = append(r.log, Event{Seq: len(r.log), Kind: EventWrite, Off: off, Data: slices.Clone(p)})
	return n, nil
}

// Flush logs a flush: every write logged before it survives any later crash.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.mem.Flush(); err != nil {
		return err
	}
	r.log = append(r.log, Event{Seq: len(r.log), Kind: EventFlush})
	return nil
}

// Mark logs a named point, e.g. "after commit 3", so a test can find the
// crash points around an operation of interest in Log.
func (r *Recorder) Mark(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, Event{Seq: len(r.log), Kind: EventMark, Name: name})
}

// Size is the device length in bytes.
func (r *Recorder) Size() int64 { return r.mem.Size() }

// Close makes further I/O fail; the log stays usable.
func (r *Recorder) Close() error { return r.mem.Close() }

// snapshot returns the log as it is now. Entries are never modified once
// appended, so the returned slice can be read without the lock.
func (r *Recorder) snapshot() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log[:len(r.log):len(r.log)]
}

// Log returns the events so far, in order. The Data slices are shared with
// the recorder and must not be modified.
func (r *Recorder) Log() []Event {
	return slices.Clone(r.snapshot())
}

// Epochs groups the writes so far by the flushes that separate them. The
// last epoch, with Flush -1, holds the writes after the last flush, if any.
func (r *Recorder) Epochs() []Epoch {
	var epochs []Epoch
	var cur []int
	for i, e := range r.snapshot() {
		switch e.Kind {
		case EventWrite:
			cur = append(cur, i)
		case EventFlush:
			epochs = append(epochs, Epoch{Writes: cur, Flush: i})
			cur = nil
		}
	}
	if len(cur) > 0 {
		epochs = append(epochs, Epoch{Writes: cur, Flush: -1})
	}
	return epochs
}

// FlushPoints returns the event indexes of the flushes so far.
func (r *Recorder) FlushPoints() []int { return r.points(EventFlush) }

// WritePoints returns the event indexes of the writes so far.
func (r *Recorder) WritePoints() []int { return r.points(EventWrite) }

func (r *Recorder) points(kind EventKind) []int {
	var pts []int
	for i, e := range r.snapshot() {
		if e.Kind == kind {
			pts = append(pts, i)
		}
	}
	return pts
}

// CrashImage returns, as a new slice, the image a crash just after event
// point would leave (point -1: before any event). It holds the initial
// image, every write before the last flush at or before point, and those
// writes after that flush, up to point, for which keep returns true (keep
// gets event indexes; nil keeps none). Kept writes are applied in log
// order. If tear is not nil, its write, which must be one of the kept ones,
// contributes only its first tear.Sectors sectors.
//
// It panics if point or tear do not fit the log: those are test bugs.
func (r *Recorder) CrashImage(point int, keep func(i int) bool, tear *Tear) []byte {
	log := r.snapshot()
	if point < -1 || point >= len(log) {
		panic(fmt.Sprintf("disk: CrashImage: point %d outside the log [-1, %d)", point, len(log)))
	}
	flush := lastFlush(log, point)
	if tear != nil {
		w := tear.Write
		if w <= flush || w > point || log[w].Kind != EventWrite || keep == nil || !keep(w) || tear.Sectors < 0 {
			panic(fmt.Sprintf("disk: CrashImage: tear %+v is not a kept unflushed write in (%d, %d]", *tear, flush, point))
		}
	}
	img := r.durableImage(log, flush)
	if keep == nil {
		return img
	}
	for i := flush + 1; i <= point; i++ {
		e := log[i]
		if e.Kind != EventWrite || !keep(i) {
			continue
		}
		data := e.Data
		if tear != nil && tear.Write == i {
			data = data[:min(len(data), tear.Sectors*SectorSize)]
		}
		copy(img[e.Off:], data)
	}
	return img
}

// lastFlush returns the index of the last flush at or before point, or -1.
func lastFlush(log []Event, point int) int {
	for i := point; i >= 0; i-- {
		if log[i].Kind == EventFlush {
			return i
		}
	}
	return -1
}

// durableImage returns a fresh copy of the image as of flush event flush
// (-1: the initial image), starting from the nearest checkpoint.
func (r *Recorder) durableImage(log []Event, flush int) []byte {
	r.cpMu.Lock()
	from, img := -1, r.base
	if k := sort.Search(len(r.checkpoints), func(k int) bool { return r.checkpoints[k].at > flush }); k > 0 {
		from, img = r.checkpoints[k-1].at, r.checkpoints[k-1].img
	}
	r.cpMu.Unlock()

	img = slices.Clone(img)
	replayed := 0
	for i := from + 1; i <= flush; i++ {
		switch e := log[i]; e.Kind {
		case EventWrite:
			copy(img[e.Off:], e.Data)
			replayed += len(e.Data)
		case EventFlush:
			if replayed > 0 && replayed >= len(img) {
				r.addCheckpoint(i, slices.Clone(img))
				replayed = 0
			}
		}
	}
	return img
}

// addCheckpoint records img as the image at flush event at, unless a
// concurrent build got there first.
func (r *Recorder) addCheckpoint(at int, img []byte) {
	r.cpMu.Lock()
	defer r.cpMu.Unlock()
	k := sort.Search(len(r.checkpoints), func(k int) bool { return r.checkpoints[k].at >= at })
	if k < len(r.checkpoints) && r.checkpoints[k].at == at {
		return
	}
	r.checkpoints = slices.Insert(r.checkpoints, k, checkpoint{at: at, img: img})
}

// Description says which crash RandomCrashImage simulated, so a failing
// test can print it and rebuild the same image with
// r.CrashImage(d.Point, d.Keep, d.Tear).
type Description struct {
	Point   int   // the crash happened just after this event
	Flush   int   // the last flush at or before Point; -1 if none
	Kept    []int // unflushed writes that reached the disk, ascending
	Dropped []int // unflushed writes that did not, ascending
	Tear    *Tear // the kept write that was torn, if any
}

// Keep reports whether write i is in d.Kept; pass it to CrashImage.
func (d Description) Keep(i int) bool {
	_, found := slices.BinarySearch(d.Kept, i)
	return found
}

func (d Description) String() string {
	s := fmt.Sprintf("crash after event %d, durable through flush %d; unflushed writes kept %v, dropped %v",
		d.Point, d.Flush, d.Kept, d.Dropped)
	if d.Tear != nil {
		s += fmt.Sprintf("; write %d torn after %d sectors", d.Tear.Write, d.Tear.Sectors)
	}
	return s
}

// RandomCrashImage builds the image of a crash just after event point in
// which each unflushed write survived with probability 1/2 and, with
// probability tearProb, one surviving write of two or more sectors was torn
// at a random sector boundary inside it. The Description records the
// choices.
func (r *Recorder) RandomCrashImage(point int, rng *rand.Rand, tearProb float64) ([]byte, Description) {
	log := r.snapshot()
	if point < -1 || point >= len(log) {
		panic(fmt.Sprintf("disk: RandomCrashImage: point %d outside the log [-1, %d)", point, len(log)))
	}
	d := Description{Point: point, Flush: lastFlush(log, point)}
	var tearable []int
	for i := d.Flush + 1; i <= point; i++ {
		if log[i].Kind != EventWrite {
			continue
		}
		if rng.IntN(2) == 0 {
			d.Dropped = append(d.Dropped, i)
			continue
		}
		d.Kept = append(d.Kept, i)
		if len(log[i].Data) > SectorSize {
			tearable = append(tearable, i)
		}
	}
	if len(tearable) > 0 && rng.Float64() < tearProb {
		w := tearable[rng.IntN(len(tearable))]
		sectors := (len(log[w].Data) + SectorSize - 1) / SectorSize
		d.Tear = &Tear{Write: w, Sectors: 1 + rng.IntN(sectors-1)}
	}
	return r.CrashImage(point, d.Keep, d.Tear), d
}
