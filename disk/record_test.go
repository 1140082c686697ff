package disk

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// sectors returns n sectors of byte b.
func sectors(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n*SectorSize) }

// recordScenario builds this log on a 16-sector device of zeros:
//
//	0 write a: sectors 0-1     4 write c: sectors 4-7      7 write e: sectors 8-10
//	1 write b: sector 2        5 write d: sectors 1-2      8 write g: sector 4
//	2 flush                    6 flush
//	3 mark "m"
func recordScenario(t *testing.T) *Recorder {
	t.Helper()
	r := NewRecorder(make([]byte, 16*SectorSize))
	steps := []func() error{
		func() error { _, err := r.WriteAt(sectors('a', 2), 0); return err },
		func() error { _, err := r.WriteAt(sectors('b', 1), 2*SectorSize); return err },
		r.Flush,
		func() error { r.Mark("m"); return nil },
		func() error { _, err := r.WriteAt(sectors('c', 4), 4*SectorSize); return err },
		func() error { _, err := r.WriteAt(sectors('d', 2), 1*SectorSize); return err },
		r.Flush,
		func() error { _, err := r.WriteAt(sectors('e', 3), 8*SectorSize); return err },
		func() error { _, err := r.WriteAt(sectors('g', 1), 4*SectorSize); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return r
}

// image spells a 16-sector image one character per sector, '.' for zeros.
func image(s string) []byte {
	var img []byte
	for _, c := range []byte(s) {
		if c == '.' {
			c = 0
		}
		img = append(img, sectors(c, 1)...)
	}
	return img
}

func keepSet(idx ...int) func(int) bool {
	return func(i int) bool { return slices.Contains(idx, i) }
}

func all(int) bool { return true }

func TestRecorderCrashImage(t *testing.T) {
	r := recordScenario(t)
	for _, c := range []struct {
		point int
		keep  func(int) bool
		tear  *Tear
		want  string
	}{
		{-1, all, nil, "................"},
		{0, nil, nil, "................"},
		{1, all, nil, "aab............."},
		{1, keepSet(1), nil, "..b............."},
		{2, nil, nil, "aab............."}, // flushed writes are always there
		{3, nil, nil, "aab............."},
		{5, keepSet(5), nil, "add............."},
		{5, keepSet(4), nil, "aab.cccc........"},
		{5, all, nil, "add.cccc........"},
		{6, nil, nil, "add.cccc........"},
		{8, nil, nil, "add.cccc........"},
		{8, keepSet(8), nil, "add.gccc........"},
		{8, all, nil, "add.gccceee....."},
		{8, all, &Tear{Write: 7, Sectors: 2}, "add.gcccee......"},
		{8, keepSet(7), &Tear{Write: 7, Sectors: 0}, "add.cccc........"},
		{8, keepSet(7), &Tear{Write: 7, Sectors: 9}, "add.cccceee....."},
	} {
		got := r.CrashImage(c.point, c.keep, c.tear)
		if !bytes.Equal(got, image(c.want)) {
			t.Errorf("CrashImage(%d, tear %+v) differs from %q", c.point, c.tear, c.want)
		}
	}

	// The current contents are the crash with everything kept.
	cur := make([]byte, r.Size())
	if _, err := r.ReadAt(cur, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cur, r.CrashImage(8, all, nil)) {
		t.Error("current contents differ from the keep-everything crash image")
	}
	// Images are fresh slices.
	a := r.CrashImage(8, all, nil)
	a[0] = 'x'
	if r.CrashImage(8, all, nil)[0] == 'x' {
		t.Error("crash images share memory")
	}
}

func TestRecorderTearKeepsExactlyKSectors(t *testing.T) {
	r := NewRecorder(make([]byte, 64*SectorSize))
	if _, err := r.WriteAt(sectors(1, 8), 0); err != nil {
		t.Fatal(err)
	}
	r.Flush()
	w := 2
	if _, err := r.WriteAt(sectors(2, 20), 10*SectorSize); err != nil {
		t.Fatal(err)
	}
	for k := range 21 {
		img := r.CrashImage(w, all, &Tear{Write: w, Sectors: k})
		if n := bytes.Count(img, []byte{2}); n != k*SectorSize {
			t.Fatalf("tear after %d sectors kept %d bytes", k, n)
		}
		if !bytes.Equal(img[10*SectorSize:(10+k)*SectorSize], sectors(2, k)) {
			t.Fatalf("tear after %d sectors did not keep the first ones", k)
		}
		if bytes.Count(img, []byte{1}) != 8*SectorSize {
			t.Fatal("the flushed write is missing")
		}
	}
}

func TestRecorderBadArgumentsPanic(t *testing.T) {
	r := recordScenario(t)
	for name, call := range map[string]func(){
		"point too large":    func() { r.CrashImage(9, nil, nil) },
		"point too small":    func() { r.CrashImage(-2, nil, nil) },
		"tear flushed":       func() { r.CrashImage(8, all, &Tear{Write: 0, Sectors: 1}) },
		"tear dropped":       func() { r.CrashImage(8, keepSet(8), &Tear{Write: 7, Sectors: 1}) },
		"tear not a write":   func() { r.CrashImage(8, all, &Tear{Write: 6, Sectors: 1}) },
		"tear after point":   func() { r.CrashImage(7, all, &Tear{Write: 8, Sectors: 1}) },
		"tear negative":      func() { r.CrashImage(8, all, &Tear{Write: 7, Sectors: -1}) },
		"random point wrong": func() { r.RandomCrashImage(9, rand.New(rand.NewPCG(1, 1)), 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			call()
		}()
	}
}

func TestRecorderLog(t *testing.T) {
	r := recordScenario(t)
	log := r.Log()
	kinds := ""
	for i, e := range log {
		if e.Seq != i {
			t.Errorf("event %d has Seq %d", i, e.Seq)
		}
		kinds += e.Kind.String()[:1]
	}
	if kinds != "wwfmwwfww" {
		t.Errorf("kinds %q", kinds)
	}
	if log[3].Name != "m" || log[5].Off != SectorSize || !bytes.Equal(log[5].Data, sectors('d', 2)) {
		t.Errorf("event details wrong: %+v %+v", log[3], log[5])
	}
	if got, want := r.FlushPoints(), []int{2, 6}; !slices.Equal(got, want) {
		t.Errorf("FlushPoints = %v, want %v", got, want)
	}
	if got, want := r.WritePoints(), []int{0, 1, 4, 5, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("WritePoints = %v, want %v", got, want)
	}
	want := []Epoch{{Writes: []int{0, 1}, Flush: 2}, {Writes: []int{4, 5}, Flush: 6}, {Writes: []int{7, 8}, Flush: -1}}
	got := r.Epochs()
	if len(got) != len(want) {
		t.Fatalf("Epochs = %+v", got)
	}
	for i := range want {
		if !slices.Equal(got[i].Writes, want[i].Writes) || got[i].Flush != want[i].Flush {
			t.Errorf("epoch %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// Failed operations are not logged.
	if _, err := r.WriteAt(sectors(1, 1), r.Size()); err == nil {
		t.Error("write past the end succeeded")
	}
	r.Close()
	if _, err := r.WriteAt(sectors(1, 1), 0); err == nil {
		t.Error("write after Close succeeded")
	}
	if err := r.Flush(); err == nil {
		t.Error("flush after Close succeeded")
	}
	if n := len(r.Log()); n != len(log) {
		t.Errorf("failed operations were logged: %d events, want %d", n, len(log))
	}
}

// naiveCrash is the crash-image definition, replayed from the start.
func naiveCrash(base []byte, log []Event, point int, keep func(int) bool, tear *Tear) []byte {
	img := slices.Clone(base)
	flush := -1
	for i := 0; i <= point; i++ {
		if log[i].Kind == EventFlush {
			flush = i
		}
	}
	for i := 0; i <= point; i++ {
		e := log[i]
		if e.Kind != EventWrite || (i > flush && (keep == nil || !keep(i))) {
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

// randomWorkload writes a mix of small and large writes with flushes and
// marks, many times the device size in total so checkpoints are made.
func randomWorkload(t testing.TB, r *Recorder, rng *rand.Rand, events int) {
	size := int(r.Size())
	for i := range events {
		switch x := rng.IntN(10); {
		case x < 7:
			n := (1 + rng.IntN(16)) * SectorSize
			if rng.IntN(8) == 0 {
				n = (1 + rng.IntN(size/SectorSize/4)) * SectorSize
			}
			off := int64(rng.IntN((size-n)/SectorSize+1)) * SectorSize
			if _, err := r.WriteAt(pattern(n, uint64(i)), off); err != nil {
				t.Fatal(err)
			}
		case x < 9:
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
		default:
			r.Mark(fmt.Sprint("m", i))
		}
	}
}

func TestRecorderMatchesDefinition(t *testing.T) {
	seed := uint64(20240611)
	rng := rand.New(rand.NewPCG(seed, seed))
	base := pattern(64<<10, 77)
	r := NewRecorder(base)
	randomWorkload(t, r, rng, 600)
	log := r.Log()

	// Visit points in random order, so builds start from checkpoints both
	// before and after the ones made earlier.
	for _, point := range rng.Perm(len(log) + 1) {
		point--
		img, d := r.RandomCrashImage(point, rng, 0.5)
		want := naiveCrash(base, log, point, d.Keep, d.Tear)
		if !bytes.Equal(img, want) {
			t.Fatalf("seed %d: %v: image differs from the definition", seed, d)
		}
		if again := r.CrashImage(d.Point, d.Keep, d.Tear); !bytes.Equal(again, img) {
			t.Fatalf("seed %d: %v: not reproducible from its Description", seed, d)
		}
		var unflushed []int
		for i := d.Flush + 1; i <= point; i++ {
			if log[i].Kind == EventWrite {
				unflushed = append(unflushed, i)
			}
		}
		if got := slices.Sorted(slices.Values(append(slices.Clone(d.Kept), d.Dropped...))); !slices.Equal(got, unflushed) {
			t.Fatalf("%v: kept+dropped %v, want the unflushed writes %v", d, got, unflushed)
		}
		if d.Tear != nil {
			n := len(log[d.Tear.Write].Data) / SectorSize
			if !d.Keep(d.Tear.Write) || d.Tear.Sectors < 1 || d.Tear.Sectors >= n {
				t.Fatalf("%v: tear does not cut a kept write of %d sectors inside it", d, n)
			}
			if !strings.Contains(d.String(), "torn") {
				t.Fatalf("description %q does not mention the tear", d)
			}
		}
		// Keep-all and keep-none bracket it, and must match too.
		if point >= 0 {
			if !bytes.Equal(r.CrashImage(point, nil, nil), naiveCrash(base, log, point, nil, nil)) ||
				!bytes.Equal(r.CrashImage(point, all, nil), naiveCrash(base, log, point, all, nil)) {
				t.Fatalf("point %d: keep-none or keep-all image differs", point)
			}
		}
	}
	r.cpMu.Lock()
	n := len(r.checkpoints)
	r.cpMu.Unlock()
	if n == 0 {
		t.Error("no checkpoints were made; the test does not exercise them")
	}
}

func TestRecorderConcurrentWriters(t *testing.T) {
	const writers, perWriter = 8, 200
	r := NewRecorder(make([]byte, 64*SectorSize))
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for k := range perWriter {
				p := sectors(byte(g), 1)
				p[1] = byte(k)
				if _, err := r.WriteAt(p, int64(g*8+k%8)*SectorSize); err != nil {
					t.Error(err)
				}
				switch k % 10 {
				case 0:
					r.Flush()
				case 5:
					r.Mark(fmt.Sprint(g, k))
				}
			}
		})
	}
	// Crash images built while writers run see a consistent prefix.
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(3, 3))
		for range 50 {
			if n := len(r.Log()); n > 0 {
				r.RandomCrashImage(rng.IntN(n), rng, 0.5)
			}
		}
	})
	wg.Wait()

	log := r.Log()
	next := make([]int, writers)
	for _, e := range log {
		if e.Kind != EventWrite {
			continue
		}
		g, k := int(e.Data[0]), int(e.Data[1])
		if k != next[g] {
			t.Fatalf("writer %d: write %d logged where %d was due", g, k, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != perWriter {
			t.Fatalf("writer %d: %d writes logged, want %d", g, n, perWriter)
		}
	}
	cur := make([]byte, r.Size())
	r.ReadAt(cur, 0)
	if !bytes.Equal(cur, r.CrashImage(len(log)-1, all, nil)) {
		t.Fatal("keep-everything image differs from the device contents")
	}
}

// BenchmarkRecorderCrashImage builds random crash images of a 4 MiB device
// after 2000 flush epochs of 4 writes each: the load of a crash test.
func BenchmarkRecorderCrashImage(b *testing.B) {
	const size = 4 << 20
	rng := rand.New(rand.NewPCG(5, 5))
	r := NewRecorder(make([]byte, size))
	data := pattern(64<<10, 1)
	for range 2000 {
		for range 4 {
			n := (8 + rng.IntN(121)) * SectorSize
			off := int64(rng.IntN((size-n)/SectorSize)) * SectorSize
			if _, err := r.WriteAt(data[:n], off); err != nil {
				b.Fatal(err)
			}
		}
		r.Flush()
	}
	n := len(r.Log())
	b.SetBytes(size)
	for b.Loop() {
		r.RandomCrashImage(rng.IntN(n), rng, 0.3)
	}
}
