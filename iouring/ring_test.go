package iouring

import (
	"bytes"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestRead reads from a pipe through the ring: the entry reaches the
// kernel, its completion carries the UserData and the byte count, and the
// bytes land in the buffer.
func TestRead(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(4)
	if err != nil {
		t.Fatalf("io_uring: %v", err)
	}
	defer r.Close()
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])

	buf := make([]byte, 16)
	for round := 0; round < 10; round++ { // more rounds than slots: slots are reused
		want := []byte{byte('a' + round), 'x', 'y'}
		if _, err := unix.Write(p[1], want); err != nil {
			t.Fatal(err)
		}
		sqe := r.SQE()
		if sqe == nil {
			t.Fatal("no free entry in an idle ring")
		}
		sqe.Opcode = OpRead
		sqe.Fd = int32(p[0])
		sqe.Addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
		sqe.Len = uint32(len(buf))
		sqe.Off = ^uint64(0) // the file position: a pipe has none
		sqe.UserData = uint64(1000 + round)
		if err := r.Enter(1); err != nil {
			t.Fatal(err)
		}
		var got []CQE
		for len(got) == 0 {
			r.Completions(func(c CQE) { got = append(got, c) })
			if len(got) == 0 {
				if err := r.Enter(1); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(got) != 1 || got[0].UserData != uint64(1000+round) || got[0].Res != int32(len(want)) {
			t.Fatalf("round %d: completions %+v, want one for %d with res %d", round, got, 1000+round, len(want))
		}
		if !bytes.Equal(buf[:len(want)], want) {
			t.Fatalf("round %d: read %q, want %q", round, buf[:len(want)], want)
		}
	}
}

// TestFull: a ring hands out no more entries than it has slots until they
// are submitted.
func TestFull(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(2)
	if err != nil {
		t.Fatalf("io_uring: %v", err)
	}
	defer r.Close()
	n := 0
	for r.SQE() != nil {
		n++ // zeroed entries are IORING_OP_NOP
		if n > 64 {
			t.Fatal("SQE never reports a full queue")
		}
	}
	if err := r.Enter(uint32(n)); err != nil {
		t.Fatal(err)
	}
	if r.SQE() == nil {
		t.Fatal("no free entry after submitting")
	}
}
