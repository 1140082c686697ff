package disk

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
)

func TestMem(t *testing.T) {
	m := NewMem(8192)
	if m.Size() != 8192 {
		t.Fatalf("Size = %d", m.Size())
	}
	p := pattern(1024, 1)
	if n, err := m.WriteAt(p, 512); n != 1024 || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	// Any offset works: tests corrupt single bytes through Mem.
	if _, err := m.WriteAt([]byte{0xff}, 7); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1024)
	if _, err := m.ReadAt(got, 512); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("ReadAt: %v, or data differs", err)
	}

	if n, err := m.ReadAt(make([]byte, 1024), 8192-512); n != 512 || err != io.EOF {
		t.Fatalf("ReadAt across the end = %d, %v; want 512, io.EOF", n, err)
	}
	if n, err := m.ReadAt(make([]byte, 1), 8192); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
	before := m.Bytes()
	if n, err := m.WriteAt(make([]byte, 1024), 8192-512); n != 0 || !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("WriteAt across the end = %d, %v; want 0, ErrOutOfRange", n, err)
	}
	if _, err := m.WriteAt(make([]byte, 1), -1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("WriteAt at a negative offset: %v", err)
	}
	if _, err := m.ReadAt(make([]byte, 1), -1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("ReadAt at a negative offset: %v", err)
	}
	snap := m.Bytes()
	if !bytes.Equal(snap, before) {
		t.Fatal("a refused write changed the device")
	}
	snap[0] = 0x42 // Bytes is a copy
	if m.Bytes()[0] == 0x42 {
		t.Fatal("Bytes shares memory with the device")
	}

	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadAt(got, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v", err)
	}
	if _, err := m.WriteAt(got, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close: %v", err)
	}
	if err := m.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if err := m.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if !bytes.Equal(m.Bytes(), before) {
		t.Error("Bytes after Close differs")
	}
}

func TestNewMemFrom(t *testing.T) {
	img := pattern(4096, 2)
	m := NewMemFrom(img)
	if m.Size() != 4096 {
		t.Fatalf("Size = %d", m.Size())
	}
	got := make([]byte, 4096)
	if _, err := m.ReadAt(got, 0); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("ReadAt: %v, or data differs", err)
	}
}

func TestMemConcurrent(t *testing.T) {
	m := NewMem(64 * SectorSize)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(g)}, SectorSize)
			buf := make([]byte, SectorSize)
			for i := range 200 {
				off := int64((i*8+g)%64) * SectorSize
				if _, err := m.WriteAt(p, off); err != nil {
					t.Error(err)
				}
				if _, err := m.ReadAt(buf, off); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
