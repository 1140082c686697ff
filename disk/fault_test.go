package disk

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
)

func newFault() (*Fault, *Mem) {
	m := NewMem(64 * SectorSize)
	return NewFault(m), m
}

func TestFaultFailWriteN(t *testing.T) {
	f, m := newFault()
	errA, errB := errors.New("fault A"), syscall.EIO
	f.FailWriteN(2, errA)
	f.FailWriteN(4, errB)
	p := bytes.Repeat([]byte{1}, SectorSize)
	for i, want := range []error{nil, errA, nil, errB, nil} {
		before := m.Bytes()
		n, err := f.WriteAt(p, int64(i)*SectorSize)
		if want == nil {
			if err != nil || n != SectorSize {
				t.Fatalf("write %d = %d, %v; want success", i+1, n, err)
			}
			continue
		}
		if !errors.Is(err, want) || n != 0 {
			t.Fatalf("write %d = %d, %v; want 0, %v", i+1, n, err, want)
		}
		if !bytes.Equal(m.Bytes(), before) {
			t.Fatalf("failed write %d changed the inner device", i+1)
		}
	}
	if f.Writes() != 5 {
		t.Fatalf("Writes = %d, want 5", f.Writes())
	}
	// Counted from the call, not from the start.
	f.FailWriteN(1, errA)
	if _, err := f.WriteAt(p, 0); !errors.Is(err, errA) {
		t.Fatalf("FailWriteN(1) after 5 writes: next write %v", err)
	}
}

func TestFaultFailFlushN(t *testing.T) {
	f, _ := newFault()
	f.FailFlushN(2, syscall.EIO)
	for i, want := range []error{nil, syscall.EIO, nil} {
		if err := f.Flush(); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Fatalf("flush %d: %v, want %v", i+1, err, want)
		}
	}
	if f.Flushes() != 3 {
		t.Fatalf("Flushes = %d, want 3", f.Flushes())
	}
}

func TestFaultFailRange(t *testing.T) {
	const bad = 8 * SectorSize
	sector := make([]byte, SectorSize)
	twoSectors := make([]byte, 2*SectorSize)
	for _, op := range []Op{OpRead, OpWrite, OpRead | OpWrite} {
		f, m := newFault()
		f.FailRange(bad, SectorSize, op, syscall.EIO)
		before := m.Bytes()

		// Overlapping requests fail for the chosen ops; others pass.
		_, rerr := f.ReadAt(twoSectors, bad-SectorSize)
		_, werr := f.WriteAt(bytes.Repeat([]byte{9}, 2*SectorSize), bad-SectorSize)
		if errors.Is(rerr, syscall.EIO) != (op&OpRead != 0) || (rerr != nil) != (op&OpRead != 0) {
			t.Errorf("op %b: read touching the range: %v", op, rerr)
		}
		if errors.Is(werr, syscall.EIO) != (op&OpWrite != 0) || (werr != nil) != (op&OpWrite != 0) {
			t.Errorf("op %b: write touching the range: %v", op, werr)
		}
		if op&OpWrite != 0 && !bytes.Equal(m.Bytes(), before) {
			t.Errorf("op %b: failed write changed the inner device", op)
		}
		// Neighbours that do not touch it are fine.
		for _, off := range []int64{bad - SectorSize, bad + SectorSize} {
			if _, err := f.ReadAt(sector, off); err != nil {
				t.Errorf("op %b: read of neighbour %d: %v", op, off, err)
			}
			if _, err := f.WriteAt(sector, off); err != nil {
				t.Errorf("op %b: write of neighbour %d: %v", op, off, err)
			}
		}
		f.Clear()
		if _, err := f.ReadAt(sector, bad); err != nil {
			t.Errorf("op %b: read after Clear: %v", op, err)
		}
		if _, err := f.WriteAt(sector, bad); err != nil {
			t.Errorf("op %b: write after Clear: %v", op, err)
		}
	}
}

func TestFaultShortWrites(t *testing.T) {
	f, m := newFault()
	f.ShortWrites(true)
	p := bytes.Repeat([]byte{7}, 5*SectorSize)
	n, err := f.WriteAt(p, SectorSize)
	if n != 2*SectorSize || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write of 5 sectors = %d, %v; want %d, io.ErrShortWrite", n, err, 2*SectorSize)
	}
	want := make([]byte, 64*SectorSize)
	copy(want[SectorSize:], p[:2*SectorSize])
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatal("short write did not store exactly its first 2 sectors")
	}
	if n, err := f.WriteAt(p[:SectorSize], 0); n != 0 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write of 1 sector = %d, %v; want 0, io.ErrShortWrite", n, err)
	}
	if !bytes.Equal(m.Bytes(), want) {
		t.Fatal("short write of one sector stored something")
	}
	f.ShortWrites(false)
	if n, err := f.WriteAt(p, 0); n != len(p) || err != nil {
		t.Fatalf("write after ShortWrites(false) = %d, %v", n, err)
	}
}

func TestFaultClear(t *testing.T) {
	f, _ := newFault()
	f.FailWriteN(1, syscall.EIO)
	f.FailFlushN(1, syscall.EIO)
	f.FailRange(0, 1<<20, OpRead|OpWrite, syscall.EIO)
	f.ShortWrites(true)
	f.Clear()
	p := make([]byte, 2*SectorSize)
	if n, err := f.WriteAt(p, 0); n != len(p) || err != nil {
		t.Errorf("write after Clear = %d, %v", n, err)
	}
	if _, err := f.ReadAt(p, 0); err != nil {
		t.Errorf("read after Clear: %v", err)
	}
	if err := f.Flush(); err != nil {
		t.Errorf("flush after Clear: %v", err)
	}
	if f.Writes() != 1 || f.Flushes() != 1 {
		t.Errorf("counters after Clear: %d writes, %d flushes", f.Writes(), f.Flushes())
	}
	if f.Size() != 64*SectorSize {
		t.Errorf("Size = %d", f.Size())
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

func TestFaultRejectsBadSpecs(t *testing.T) {
	f, _ := newFault()
	for name, arm := range map[string]func(){
		"FailWriteN(0)":      func() { f.FailWriteN(0, syscall.EIO) },
		"FailFlushN(1, nil)": func() { f.FailFlushN(1, nil) },
		"FailRange nil":      func() { f.FailRange(0, 1, OpRead, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			arm()
		}()
	}
}

func TestFaultConcurrent(t *testing.T) {
	f, _ := newFault()
	f.FailWriteN(50, syscall.EIO)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fails := 0
	for g := range 8 {
		wg.Go(func() {
			p := make([]byte, SectorSize)
			for i := range 25 {
				if _, err := f.WriteAt(p, int64((g*25+i)%64)*SectorSize); err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
				}
				f.Flush()
			}
		})
	}
	wg.Wait()
	if fails != 1 || f.Writes() != 200 || f.Flushes() != 200 {
		t.Fatalf("%d failures, %d writes, %d flushes; want 1, 200, 200", fails, f.Writes(), f.Flushes())
	}
}
