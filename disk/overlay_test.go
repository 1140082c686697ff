package disk

import (
	"bytes"
	"errors"
	"testing"
)

func TestOverlayNeverWritesBase(t *testing.T) {
	base := NewMem(8 * SectorSize)
	orig := bytes.Repeat([]byte{7}, 8*SectorSize)
	if _, err := base.WriteAt(orig, 0); err != nil {
		t.Fatal(err)
	}
	o := NewOverlay(base)
	w := bytes.Repeat([]byte{9}, 2*SectorSize)
	if _, err := o.WriteAt(w, 3*SectorSize); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8*SectorSize)
	if _, err := o.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, orig[:3*SectorSize]...), w...), orig[5*SectorSize:]...)
	if !bytes.Equal(got, want) {
		t.Fatal("overlay read does not show the overlaid sectors over the base")
	}
	if !bytes.Equal(base.Bytes(), orig) {
		t.Fatal("overlay wrote to the base device")
	}
	if o.Dirty() != 2 {
		t.Fatalf("Dirty() = %d, want 2", o.Dirty())
	}
	if _, err := o.WriteAt(w, 7*SectorSize); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("write past the end: %v", err)
	}
	if _, err := o.WriteAt(w[:100], 0); !errors.Is(err, ErrUnaligned) {
		t.Fatalf("unaligned write: %v", err)
	}
}
