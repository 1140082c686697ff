package disk

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slowDevice delays every write, so writes are still in flight when the
// test looks.
type slowDevice struct {
	Device
	delay time.Duration
}

func (s slowDevice) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(s.delay)
	return s.Device.WriteAt(p, off)
}

// TestWriteBehindModel: random asynchronous and synchronous writes and
// reads of overlapping ranges through a slow device, checked against a
// model after every read; then Flush leaves the device equal to the model.
func TestWriteBehindModel(t *testing.T) {
	const size = 64 << 10
	mem := NewMem(size)
	w := NewWriteBehind(slowDevice{mem, 50 * time.Microsecond}, 16<<10)
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		off := int64(rng.IntN(size/SectorSize)) * SectorSize
		n := (1 + rng.IntN(16)) * SectorSize
		n = min(n, size-int(off))
		switch rng.IntN(4) {
		case 0, 1:
			p := bytes.Repeat([]byte{byte(i)}, n)
			if err := w.WriteAsync(p, off); err != nil {
				t.Fatal(err)
			}
			clear(p) // the caller may reuse its buffer at once
			copy(model[off:], bytes.Repeat([]byte{byte(i)}, n))
		case 2:
			p := bytes.Repeat([]byte{byte(i)}, n)
			if _, err := w.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], p)
		case 3:
			got := make([]byte, n)
			if _, err := w.ReadAt(got, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model[off:off+int64(n)]) {
				t.Fatalf("op %d: read %d bytes at %d: not the last bytes written", i, n, off)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mem.Bytes(), model) {
		t.Fatal("after Flush the device differs from the model")
	}
}

// TestWriteBehindConcurrent: writers on disjoint ranges, concurrently;
// every range reads back its own bytes (run with -race).
func TestWriteBehindConcurrent(t *testing.T) {
	mem := NewMem(1 << 20)
	w := NewWriteBehind(mem, 64<<10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				off := int64(g*128<<10 + i%16*8<<10)
				p := bytes.Repeat([]byte{byte(g*16 + i%16)}, 8<<10)
				if err := w.WriteAsync(p, off); err != nil {
					t.Error(err)
					return
				}
				got := make([]byte, len(p))
				if _, err := w.ReadAt(got, off); err != nil || !bytes.Equal(got, p) {
					t.Errorf("writer %d: read back %d at %d: %v", g, got[0], off, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteBehindStickyError: a failed asynchronous write fails the next
// Flush and every later write, so nothing ordered after it goes out.
func TestWriteBehindStickyError(t *testing.T) {
	f := NewFault(NewMem(1 << 20))
	w := NewWriteBehind(f, 1<<20)
	f.FailWriteN(1, syscall.EIO)
	if err := w.WriteAsync(make([]byte, 4096), 0); err != nil {
		t.Fatalf("WriteAsync returned %v before the write ran", err)
	}
	if err := w.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush after a failed write: %v, want EIO", err)
	}
	if _, err := w.WriteAt(make([]byte, 512), 8192); !errors.Is(err, syscall.EIO) {
		t.Fatalf("WriteAt after a failed write: %v, want EIO", err)
	}
	if err := w.WriteAsync(make([]byte, 512), 8192); !errors.Is(err, syscall.EIO) {
		t.Fatalf("WriteAsync after a failed write: %v, want EIO", err)
	}
}
