package disk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// holderEnv makes the test binary act as another process holding a device
// open: its value is "rw:PATH" or "ro:PATH".
const holderEnv = "AGFS_DISK_TEST_HOLDER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(holderEnv); spec != "" {
		os.Exit(holder(spec))
	}
	os.Exit(m.Run())
}

// holder opens the device, says "ready" (or the error) on stdout, and keeps
// it open until stdin is closed.
func holder(spec string) int {
	mode, path, _ := strings.Cut(spec, ":")
	f, err := Open(path, Options{ReadOnly: mode == "ro"})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := f.Close(); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	return 0
}

// startHolder runs a holder process and returns its first line of output
// and the command, whose stdin closes (and which is waited for) at cleanup.
func startHolder(t *testing.T, path string, readOnly bool) (string, *exec.Cmd) {
	t.Helper()
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+mode+":"+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	return strings.TrimSpace(line), cmd
}

func newImage(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agfs.img")
	if err := CreateImage(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustOpen(t testing.TB, path string, opts Options) *File {
	t.Helper()
	f, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// openDirect opens a new image of size bytes with O_DIRECT, skipping the
// test where the test directory's filesystem does not do O_DIRECT.
func openDirect(t testing.TB, size int64) *File {
	t.Helper()
	f := mustOpen(t, newImage(t, size), Options{Direct: true})
	if !f.Direct() {
		t.Skip("the filesystem of the test directory does not do O_DIRECT")
	}
	return f
}

// pattern returns n bytes that differ with seed and position.
func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// unaligned returns a copy of b whose first byte is at an odd address, so
// O_DIRECT must go through a bounce buffer.
func unaligned(b []byte) []byte {
	u := make([]byte, len(b)+1)[1:]
	copy(u, b)
	return u
}

func TestFileRoundTrip(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			const size = 1 << 20
			path := newImage(t, size)
			f := mustOpen(t, path, Options{Direct: direct})
			if f.Size() != size {
				t.Fatalf("Size = %d, want %d", f.Size(), size)
			}
			want := make([]byte, size)
			for i, w := range []struct{ off, n int }{{0, 512}, {4096, 8192}, {512 * 3, 512 * 5}, {size - 1024, 1024}, {300 << 10, 600 << 10}} {
				p := pattern(w.n, uint64(i))
				if n, err := f.WriteAt(unaligned(p), int64(w.off)); err != nil || n != w.n {
					t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", w.n, w.off, n, err)
				}
				copy(want[w.off:], p)
			}
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			got := unaligned(make([]byte, size))
			if n, err := f.ReadAt(got, 0); err != nil || n != size {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("read back differs from what was written")
			}

			// Past the end, as os.File: the bytes before it, then io.EOF.
			tail := make([]byte, 2048)
			if n, err := f.ReadAt(tail, size-1024); n != 1024 || err != io.EOF {
				t.Fatalf("ReadAt across the end = %d, %v; want 1024, io.EOF", n, err)
			}
			if n, err := f.ReadAt(tail, size); n != 0 || err != io.EOF {
				t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
			}
			if _, err := f.WriteAt(tail, size-1024); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("WriteAt across the end: %v, want ErrOutOfRange", err)
			}
			if _, err := f.WriteAt(tail[:512], -512); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("WriteAt at a negative offset: %v, want ErrOutOfRange", err)
			}
			for _, bad := range []struct{ off, n int }{{100, 512}, {0, 100}, {512, 513}} {
				if _, err := f.WriteAt(make([]byte, bad.n), int64(bad.off)); !errors.Is(err, ErrUnaligned) || !strings.Contains(err.Error(), path) {
					t.Fatalf("WriteAt(%d bytes at %d): %v, want ErrUnaligned naming the path", bad.n, bad.off, err)
				}
				if _, err := f.ReadAt(make([]byte, bad.n), int64(bad.off)); !errors.Is(err, ErrUnaligned) {
					t.Fatalf("ReadAt(%d bytes at %d): %v, want ErrUnaligned", bad.n, bad.off, err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			onDisk, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onDisk, want) {
				t.Fatal("file contents differ from what was written")
			}
		})
	}
}

func TestFileDirectUnalignedMemory(t *testing.T) {
	f := openDirect(t, 4<<20)
	t.Logf("O_DIRECT alignment: memory %d, offset %d", f.memAlign, f.offAlign)
	for i, n := range []int{512, 4096, 4096 + 512, bounceSize, bounceSize + 4096, 3*bounceSize + 1024} {
		off := int64(i) * (1 << 20) / 2
		p := pattern(n, uint64(n))
		for _, shift := range []int{1, 7, 511} {
			buf := make([]byte, n+shift+1)[shift+1:][:n]
			copy(buf, p)
			if _, err := f.WriteAt(buf, off); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, n+shift+3)[shift+3:][:n]
			if _, err := f.ReadAt(got, off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, p) {
				t.Fatalf("%d bytes at %d through buffers off by %d: read back differs", n, off, shift)
			}
		}
	}
}

// TestFileDirectLargeReads reads aligned buffers of sizes around the
// piece size of preadSplit, which reads pieces in parallel, and at the end
// of the file, where the last piece is short.
func TestFileDirectLargeReads(t *testing.T) {
	const size = 8 << 20
	f := openDirect(t, size)
	want := pattern(size, 3)
	if _, err := f.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{readPiece, 2*readPiece + 4096, 3 * readPiece, 4*readPiece + 512, 1 << 20, 4 << 20} {
		for _, off := range []int64{0, 4096, size - int64(n)} {
			got := alignedBuffer(n, 4096)
			k, err := f.ReadAt(got, off)
			if err != nil || k != n {
				t.Fatalf("%d bytes at %d: read %d, %v", n, off, k, err)
			}
			if !bytes.Equal(got, want[off:off+int64(n)]) {
				t.Fatalf("%d bytes at %d: read back differs", n, off)
			}
		}
	}
	got := alignedBuffer(3*readPiece, 4096)
	k, err := f.ReadAt(got, size-readPiece)
	if k != readPiece || !errors.Is(err, io.EOF) || !bytes.Equal(got[:k], want[size-readPiece:]) {
		t.Fatalf("read across the end: %d, %v", k, err)
	}
}

// TestFileReadModifyWrite pretends the host needs 4096-byte alignment, as
// 4Kn disks and kernels without STATX_DIOALIGN do, so 512-aligned requests
// take the read-modify-write path, and checks it against a Mem.
func TestFileReadModifyWrite(t *testing.T) {
	const size = 2 << 20
	f := openDirect(t, size)
	f.offAlign = 4096
	model := NewMem(size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		n := (1 + rng.IntN(64)) * SectorSize
		if rng.IntN(20) == 0 {
			n = bounceSize + (1+rng.IntN(16))*SectorSize
		}
		off := int64(rng.IntN((size-n)/SectorSize+1)) * SectorSize
		if rng.IntN(2) == 0 {
			p := pattern(n, uint64(i))
			if rng.IntN(2) == 0 {
				p = unaligned(p)
			}
			if _, err := f.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			model.WriteAt(p, off)
			continue
		}
		got, want := unaligned(make([]byte, n)), make([]byte, n)
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		model.ReadAt(want, off)
		if !bytes.Equal(got, want) {
			t.Fatalf("op %d: %d bytes at %d differ from the model", i, n, off)
		}
	}

	// Concurrent writers to neighbouring sectors of the same 4096-byte
	// blocks: without exclusion a read-modify-write loses the others' data.
	const writers, region = 8, 64 << 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for round := range 20 {
				for s := w; s < region/SectorSize; s += writers {
					p := bytes.Repeat([]byte{byte(w*20 + round)}, SectorSize)
					if _, err := f.WriteAt(p, int64(s)*SectorSize); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	got := make([]byte, region)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for s := range region / SectorSize {
		want := bytes.Repeat([]byte{byte(s%writers*20 + 19)}, SectorSize)
		if !bytes.Equal(got[s*SectorSize:(s+1)*SectorSize], want) {
			t.Fatalf("sector %d lost its last write under concurrent read-modify-write", s)
		}
	}
}

func TestFileDirectFallsBackOnTmpfs(t *testing.T) {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "agfs-disk-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "img")
	if err := CreateImage(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	f := mustOpen(t, path, Options{Direct: true})
	if f.Direct() {
		t.Fatal("Direct() = true on tmpfs")
	}
	p := pattern(4096, 9)
	if _, err := f.WriteAt(unaligned(p), 512); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := f.ReadAt(got, 512); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("round trip on tmpfs: %v", err)
	}
}

func TestFileExclusive(t *testing.T) {
	path := newImage(t, 1<<20)
	busy := fmt.Sprintf("disk: %s: in use by another process (mounted or being formatted?)", path)

	f, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		_, err := Open(path, Options{ReadOnly: ro})
		if !errors.Is(err, ErrBusy) || err.Error() != busy {
			t.Fatalf("second Open (read-only %v) while open for writing: %v, want %q", ro, err, busy)
		}
	}
	if err := CreateImage(path, 2<<20); !errors.Is(err, ErrBusy) {
		t.Fatalf("CreateImage while open: %v, want ErrBusy", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = mustOpen(t, path, Options{})
	f.Close()

	// Readers share; a writer is kept out while any reader is in.
	r1 := mustOpen(t, path, Options{ReadOnly: true})
	r2 := mustOpen(t, path, Options{ReadOnly: true})
	if _, err := Open(path, Options{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("Open for writing while two readers hold it: %v, want ErrBusy", err)
	}
	r1.Close()
	r2.Close()
	mustOpen(t, path, Options{}).Close()
}

func TestFileExclusiveAcrossProcesses(t *testing.T) {
	path := newImage(t, 1<<20)

	// Another process holds it for writing: we are refused, in both modes.
	line, cmd := startHolder(t, path, false)
	if line != "ready" {
		t.Fatalf("holder: %s", line)
	}
	for _, ro := range []bool{false, true} {
		if _, err := Open(path, Options{ReadOnly: ro}); !errors.Is(err, ErrBusy) {
			t.Fatalf("Open (read-only %v) while another process writes: %v, want ErrBusy", ro, err)
		}
	}
	// The lock dies with the process, even one that never closes.
	cmd.Process.Kill()
	cmd.Wait()
	f := mustOpen(t, path, Options{})

	// We hold it: another process is refused, with the message users see.
	line, _ = startHolder(t, path, true)
	want := fmt.Sprintf("error: disk: %s: in use by another process (mounted or being formatted?)", path)
	if line != want {
		t.Fatalf("other process got %q, want %q", line, want)
	}
	f.Close()

	// Readers in different processes coexist.
	r := mustOpen(t, path, Options{ReadOnly: true})
	if line, _ := startHolder(t, path, true); line != "ready" {
		t.Fatalf("second reader in another process: %s", line)
	}
	r.Close()
}

func TestFileReadOnly(t *testing.T) {
	path := newImage(t, 1<<20)
	p := pattern(4096, 3)
	w := mustOpen(t, path, Options{})
	if _, err := w.WriteAt(p, 8192); err != nil {
		t.Fatal(err)
	}
	w.Close()

	for _, direct := range []bool{false, true} {
		f := mustOpen(t, path, Options{ReadOnly: true, Direct: direct})
		_, err := f.WriteAt(make([]byte, 4096), 8192)
		if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), path) {
			t.Fatalf("WriteAt on a read-only device: %v, want ErrReadOnly naming the path", err)
		}
		got := make([]byte, 4096)
		if _, err := f.ReadAt(got, 8192); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("read-only ReadAt: %v, or data changed", err)
		}
		f.Close()
	}
}

func TestFileClosed(t *testing.T) {
	f, err := Open(newImage(t, 1<<20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v", err)
	}
	if _, err := f.WriteAt(buf, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close: %v", err)
	}
	if err := f.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if err := f.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.img")
	if _, err := Open(missing, Options{}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Open of a missing file: %v", err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "not a regular file or block device") {
		t.Errorf("Open of a directory: %v", err)
	}
	if err := CreateImage(dir, 1<<20); err == nil {
		t.Error("CreateImage over a directory succeeded")
	}
	if err := CreateImage(missing, -1); err == nil {
		t.Error("CreateImage with a negative size succeeded")
	}
}

func TestCreateImageSparseAndGrowOnly(t *testing.T) {
	const tib = 1 << 40
	path := newImage(t, tib)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != tib || st.Blocks > 16 {
		t.Fatalf("1 TiB image: size %d, %d blocks allocated; want sparse", st.Size, st.Blocks)
	}

	f := mustOpen(t, path, Options{})
	if f.Size() != tib {
		t.Fatalf("Size = %d", f.Size())
	}
	p := pattern(4096, 4)
	if _, err := f.WriteAt(p, tib-4096); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Never shrinks, and growing keeps the data.
	if err := CreateImage(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := CreateImage(path, tib+1<<20); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != tib+1<<20 {
		t.Fatalf("size after CreateImage calls = %d, want %d", st.Size, int64(tib+1<<20))
	}
	f = mustOpen(t, path, Options{ReadOnly: true})
	got := make([]byte, 4096)
	if _, err := f.ReadAt(got, tib-4096); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("data after growing: %v", err)
	}
}

// TestFileBlockDevice runs the block-device paths on a loop device.
func TestFileBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup")
	}
	backing := newImage(t, 8<<20)
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})

	if ok, err := IsBlockDevice(dev); !ok || err != nil {
		t.Fatalf("IsBlockDevice(%s) = %v, %v", dev, ok, err)
	}
	if ok, err := IsBlockDevice(backing); ok || err != nil {
		t.Fatalf("IsBlockDevice(%s) = %v, %v", backing, ok, err)
	}
	if err := CreateImage(dev, 1<<30); err == nil || !strings.Contains(err.Error(), "block device") {
		t.Fatalf("CreateImage on a block device: %v", err)
	}

	f, err := Open(dev, Options{Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != 8<<20 {
		t.Fatalf("Size = %d, want %d", f.Size(), 8<<20)
	}
	p := pattern(8192, 5)
	if _, err := f.WriteAt(unaligned(p), 4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := Open(dev, Options{ReadOnly: ro}); !errors.Is(err, ErrBusy) {
			t.Fatalf("second Open (read-only %v): %v, want ErrBusy", ro, err)
		}
	}
	f.Close()

	// O_EXCL: a claim by someone who does not use flock (a mount, mkfs)
	// keeps writers out too.
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dev, Options{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("Open while the device is claimed with O_EXCL: %v, want ErrBusy", err)
	}
	unix.Close(fd)

	r := mustOpen(t, dev, Options{ReadOnly: true})
	got := make([]byte, 8192)
	if _, err := r.ReadAt(got, 4096); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("read back through the block device: %v", err)
	}
	r.Close()
}

// BenchmarkFileWriteFlush measures a 4 KiB write followed by a flush, the
// pattern of a WAL commit, with and without O_DIRECT.
func BenchmarkFileWriteFlush(b *testing.B) {
	for _, direct := range []bool{false, true} {
		b.Run(fmt.Sprintf("direct=%v", direct), func(b *testing.B) {
			const size = 64 << 20
			f := mustOpen(b, newImage(b, size), Options{Direct: direct})
			if f.Direct() != direct {
				b.Skip("O_DIRECT not available here")
			}
			buf := alignedBuffer(4096, 4096)
			copy(buf, pattern(4096, 6))
			b.SetBytes(4096)
			i := 0
			for b.Loop() {
				if _, err := f.WriteAt(buf, int64(i%(size/4096))*4096); err != nil {
					b.Fatal(err)
				}
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
