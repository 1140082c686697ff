package layout

import (
	"errors"
	"strings"
	"testing"
)

func testSuper(t testing.TB, dev int64) *Superblock {
	t.Helper()
	g, err := NewGeometry(Params{DeviceBytes: dev})
	if err != nil {
		t.Fatal(err)
	}
	return &Superblock{Geometry: g, UUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		DirHashSeed: 42, RootIno: RootIno, State: StateClean, Label: "test"}
}

func TestGeometryDefaults(t *testing.T) {
	for _, tc := range []struct {
		dev     int64
		agCount uint32
		agBytes int64
	}{
		{64 << 20, 4, 16 << 20},
		{1 << 30, 4, 256 << 20},
		{16 << 30, 16, 1 << 30},
		{1 << 40, 64, 16 << 30},
	} {
		s := testSuper(t, tc.dev)
		if s.AGCount != tc.agCount || int64(s.AGBlocks)*int64(s.BlockSize) != tc.agBytes {
			t.Errorf("device %s: %d AGs of %s, want %d of %s", Bytes(tc.dev), s.AGCount,
				Bytes(int64(s.AGBlocks)*int64(s.BlockSize)), tc.agCount, Bytes(tc.agBytes))
		}
		if err := s.Validate(); err != nil {
			t.Errorf("device %s: %v", Bytes(tc.dev), err)
		}
		if s.LogStart+s.LogBlocks > s.AGLen(0) {
			t.Errorf("device %s: log does not fit AG 0", Bytes(tc.dev))
		}
	}
}

func TestGeometryErrors(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		want string
	}{
		{Params{DeviceBytes: 1 << 30, BlockSize: 3000}, "power of two"},
		{Params{DeviceBytes: 1 << 30, BlockSize: 512}, "power of two"},
		{Params{DeviceBytes: 256 << 10}, "too small"},
		{Params{DeviceBytes: 8 << 20, LogBytes: 16 << 20}, "too small"},
		{Params{DeviceBytes: 1 << 30, AGCount: 1 << 30}, "too large"},
		{Params{DeviceBytes: 1 << 30, AGCount: 4, AGBytes: 1 << 20}, "not both"},
		{Params{DeviceBytes: 1 << 30, AGBytes: 4 << 10}, "too small"},
		{Params{DeviceBytes: 1 << 30, LogBytes: 4096}, "too small"},
		{Params{DeviceBytes: 64 << 20, LogBytes: 60 << 20}, "does not fit"},
		{Params{DeviceBytes: 1 << 30, BytesPerInode: 100}, "bytes per inode"},
	} {
		_, err := NewGeometry(tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error containing %q", tc.p, err, tc.want)
		}
	}
}

func TestInodeNumbers(t *testing.T) {
	s := testSuper(t, 1<<30)
	for _, ag := range []uint32{0, 1, s.AGCount - 1} {
		for _, idx := range []uint32{0, 1, s.InodesPerAG - 1} {
			a, i, ok := s.SplitIno(s.Ino(ag, idx))
			if !ok || a != ag || i != idx {
				t.Fatalf("ino(%d,%d) splits to %d,%d,%v", ag, idx, a, i, ok)
			}
		}
	}
	if _, _, ok := s.SplitIno(s.Ino(s.AGCount, 0)); ok {
		t.Fatal("inode in a non-existent AG accepted")
	}
	blk, off := s.InodeLocation(1, s.InodesPerBlock()+1)
	if blk != s.InodeTableStart(1)+1 || off != HeaderSize+InodeSize {
		t.Fatalf("inode location %d+%d", blk, off)
	}
}

func TestSuperblockRoundTrip(t *testing.T) {
	s := testSuper(t, 1<<30)
	b := make([]byte, s.BlockSize)
	for ag := uint32(0); ag < s.AGCount; ag++ {
		s.Encode(b, ag)
		got, err := DecodeSuperblock(b, ag)
		if err != nil {
			t.Fatal(err)
		}
		if !got.SameGeometry(s) || got.Label != s.Label || got.State != s.State {
			t.Fatalf("round trip: got %+v, want %+v", got, s)
		}
		if _, err := DecodeSuperblock(b, ag+1); err == nil {
			t.Fatalf("copy of AG %d accepted as AG %d's", ag, ag+1)
		}
	}
	s.Encode(b, 0)
	b[300] ^= 1
	if _, err := DecodeSuperblock(b, 0); !errors.Is(err, ErrChecksum) {
		t.Fatalf("flipped bit: got %v, want checksum error", err)
	}
}

func TestSuperblockVersion(t *testing.T) {
	s := testSuper(t, 1<<30)
	b := make([]byte, s.BlockSize)
	s.Incompat = 1 << 7
	s.Encode(b, 0)
	if _, err := DecodeSuperblock(b, 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown incompat feature: got %v", err)
	}
}

func TestAGHeaderRoundTrip(t *testing.T) {
	s := testSuper(t, 1<<30)
	b := make([]byte, s.BlockSize)
	h := AGHeader{AG: 2, Length: s.AGLen(2), FreeBlocks: 100, FreeInodes: 7, BlockBitmapInit: 1}
	h.Encode(b, &s.Geometry)
	Seal(b, s.Seed(), 9)
	got, err := DecodeAGHeader(b, &s.Geometry, s.Seed(), 2)
	if err != nil || *got != h {
		t.Fatalf("got %+v, %v; want %+v", got, err, h)
	}
	if _, err := DecodeAGHeader(b, &s.Geometry, s.Seed(), 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("header of AG 2 accepted as AG 1's: %v", err)
	}
}

func TestCheckNamesTheProblem(t *testing.T) {
	b := make([]byte, 4096)
	if err := Check(b, 1, MagicAGHeader, 5, 0); err == nil || !strings.Contains(err.Error(), "never written") {
		t.Fatalf("zero block: %v", err)
	}
	PutHeader(b, MagicAGHeader, 6, 0)
	Seal(b, 1, 0)
	if err := Check(b, 1, MagicAGHeader, 5, 0); err == nil || !strings.Contains(err.Error(), "misdirected") {
		t.Fatalf("misdirected block: %v", err)
	}
	if err := Check(b, 2, MagicAGHeader, 6, 0); !errors.Is(err, ErrChecksum) {
		t.Fatalf("block of another filesystem: %v", err)
	}
}

func TestInodeRoundTrip(t *testing.T) {
	in := Inode{Mode: 0o100644, UID: 1, GID: 2, Nlink: 1, Size: 1 << 33, Atime: -5, Generation: 3, ForkCount: 2}
	Extent{Logical: 0, Physical: 100, Len: 8}.Encode(in.Fork[:])
	var b [InodeSize]byte
	in.Encode(b[:])
	var got Inode
	if err := got.Decode(b[:]); err != nil || got != in {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func FuzzDecodeSuperblock(f *testing.F) {
	s := testSuper(f, 1<<30)
	b := make([]byte, s.BlockSize)
	s.Encode(b, 0)
	f.Add(b, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, ag uint32) {
		sb, err := DecodeSuperblock(b, ag%8)
		if err != nil {
			return
		}
		// Whatever was accepted must be safe to compute with.
		for a := uint32(0); a < min(sb.AGCount, 4); a++ {
			_ = sb.AGLen(a)
			_, _ = sb.InodeLocation(a, sb.InodesPerAG-1)
		}
		if sb.Validate() != nil {
			t.Fatal("accepted a superblock whose geometry does not validate")
		}
	})
}

func FuzzDecodeAGHeader(f *testing.F) {
	s := testSuper(f, 1<<30)
	b := make([]byte, s.BlockSize)
	h := AGHeader{AG: 1, Length: s.AGLen(1), FreeBlocks: 10}
	h.Encode(b, &s.Geometry)
	Seal(b, s.Seed(), 0)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < HeaderSize+64 {
			return
		}
		if h, err := DecodeAGHeader(b, &s.Geometry, s.Seed(), 1); err == nil && h.FreeBlocks > h.Length {
			t.Fatal("accepted more free blocks than the AG has")
		}
	})
}

func FuzzDecodeInode(f *testing.F) {
	var b [InodeSize]byte
	(&Inode{Mode: 0o40755, Nlink: 2}).Encode(b[:])
	f.Add(b[:])
	s := testSuper(f, 1<<30)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < InodeSize {
			return
		}
		var in Inode
		if in.Decode(b) != nil || in.DataFormat == DataInline {
			return
		}
		for i := 0; i < int(in.ForkCount); i++ {
			_, _ = DecodeExtent(in.Fork[i*ExtentSize:], &s.Geometry)
		}
	})
}
