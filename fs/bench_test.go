package fs_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
)

// benchFS opens a fresh filesystem on an image file (O_DIRECT) or, with
// mem, on memory.
func benchFS(b *testing.B, size int64, mem bool) (*fs.FS, func()) {
	b.Helper()
	return benchFSOpts(b, size, mem, fs.Options{CacheBlocks: 16384})
}

// benchFSOpts is benchFS with options o.
func benchFSOpts(b *testing.B, size int64, mem bool, o fs.Options) (*fs.FS, func()) {
	b.Helper()
	var dev disk.Device
	if mem {
		dev = disk.NewMem(size)
	} else {
		path := filepath.Join(b.TempDir(), "agfs.img")
		if err := disk.CreateImage(path, size); err != nil {
			b.Fatal(err)
		}
		d, err := disk.Open(path, disk.Options{Direct: true})
		if err != nil {
			b.Fatal(err)
		}
		dev = d
	}
	format(b, dev, layout.Params{})
	f, err := fs.Open(dev, o)
	if err != nil {
		b.Fatal(err)
	}
	return f, func() {
		if err := f.Close(); err != nil {
			b.Error(err)
		}
		dev.Close()
	}
}

// BenchmarkCreate20k creates 20,000 empty files in one directory.
func BenchmarkCreate20k(b *testing.B) {
	for _, mem := range []bool{false, true} {
		b.Run(map[bool]string{false: "file", true: "mem"}[mem], func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				f, done := benchFS(b, 1<<30, mem)
				d, err := f.Mkdir(root, "d", 0755, me)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				for i := range 20000 {
					if _, err := f.Mknod(d.Ino, fmt.Sprintf("file-%06d", i), syscall.S_IFREG|0644, 0, me); err != nil {
						b.Fatal(err)
					}
				}
				total += time.Since(start)
				b.StopTimer()
				done()
			}
			b.ReportMetric(float64(20000*b.N)/total.Seconds(), "files/s")
		})
	}
}

// BenchmarkRandomWrite4KFsync: 4 KiB writes at random aligned offsets of a
// 64 MiB file, each followed by fsync; "overwrite" into written blocks,
// "allocate" into a sparse file (new blocks: ordered-data flush).
func BenchmarkRandomWrite4KFsync(b *testing.B) {
	for _, mode := range []string{"overwrite", "allocate"} {
		b.Run(mode, func(b *testing.B) {
			f, done := benchFS(b, 1<<30, false)
			defer done()
			a, err := f.Mknod(root, "f", syscall.S_IFREG|0644, 0, me)
			if err != nil {
				b.Fatal(err)
			}
			const fileSize = 64 << 20
			if mode == "overwrite" {
				buf := pattern(1<<20, 1)
				for off := 0; off < fileSize; off += len(buf) {
					f.Write(a.Ino, buf, int64(off))
				}
				f.Fsync(a.Ino, false)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			p := pattern(4096, 2)
			lat := make([]time.Duration, 0, b.N)
			fl0 := f.DataFlushesForBench()
			b.ResetTimer()
			for range b.N {
				off := int64(rng.IntN(fileSize/4096)) * 4096
				start := time.Now()
				if _, err := f.Write(a.Ino, p, off); err != nil {
					b.Fatal(err)
				}
				if err := f.Fsync(a.Ino, false); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(f.DataFlushesForBench()-fl0)/float64(b.N), "dataflush/op")
		})
	}
}

// BenchmarkSequential1GiB writes 1 GiB in 1 MiB writes, fsyncs, and reads
// it back.
func BenchmarkSequential1GiB(b *testing.B) {
	const total = 1 << 30
	for range b.N {
		f, done := benchFS(b, 2<<30, false)
		a, err := f.Mknod(root, "f", syscall.S_IFREG|0644, 0, me)
		if err != nil {
			b.Fatal(err)
		}
		buf := pattern(1<<20, 3)
		start := time.Now()
		for off := 0; off < total; off += len(buf) {
			if _, err := f.Write(a.Ino, buf, int64(off)); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Fsync(a.Ino, false); err != nil {
			b.Fatal(err)
		}
		w := time.Since(start)
		start = time.Now()
		for off := 0; off < total; off += len(buf) {
			if _, err := f.Read(a.Ino, buf, int64(off)); err != nil {
				b.Fatal(err)
			}
		}
		r := time.Since(start)
		b.ReportMetric(total/w.Seconds()/1e6, "write-MB/s")
		b.ReportMetric(total/r.Seconds()/1e6, "read-MB/s")
		done()
	}
}

// BenchmarkDeviceFlush measures one device flush after a 4 KiB write (the
// unit cost ordered data and fsync pay).
func BenchmarkDeviceFlush(b *testing.B) {
	path := filepath.Join(b.TempDir(), "dev.img")
	if err := disk.CreateImage(path, 64<<20); err != nil {
		b.Fatal(err)
	}
	d, err := disk.Open(path, disk.Options{Direct: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	p := pattern(4096, 1)
	for i := range b.N {
		d.WriteAt(p, int64(i%1000)*4096)
		if err := d.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnlink20k removes 20,000 files as FUSE does: each referenced by
// the kernel (so it goes on the orphan list), then forgotten (freed).
func BenchmarkUnlink20k(b *testing.B) {
	var total time.Duration
	for range b.N {
		b.StopTimer()
		f, done := benchFS(b, 1<<30, false)
		d, _ := f.Mkdir(root, "d", 0755, me)
		inos := make([]uint64, 20000)
		for i := range inos {
			a, err := f.Mknod(d.Ino, fmt.Sprintf("file-%06d", i), syscall.S_IFREG|0644, 0, me)
			if err != nil {
				b.Fatal(err)
			}
			f.Write(a.Ino, []byte("x"), 0)
			f.Ref(a.Ino)
			inos[i] = a.Ino
		}
		fl0 := f.Log().Stats().Flushes
		b.StartTimer()
		start := time.Now()
		for i, ino := range inos {
			if err := f.Unlink(d.Ino, fmt.Sprintf("file-%06d", i)); err != nil {
				b.Fatal(err)
			}
			f.Forget(ino, 1)
		}
		total += time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(f.Log().Stats().Flushes-fl0)/20000, "logflush/file")
		done()
	}
	b.ReportMetric(float64(20000*b.N)/total.Seconds(), "files/s")
}

// BenchmarkSmallFiles creates 5,000 files of 4 KiB (untar-like, no fsync):
// each first write maps a new block, so ordered data costs a device flush
// per file.
func BenchmarkSmallFiles(b *testing.B) {
	var total time.Duration
	p := pattern(4096, 1)
	for range b.N {
		b.StopTimer()
		f, done := benchFS(b, 1<<30, false)
		d, _ := f.Mkdir(root, "d", 0755, me)
		fl0 := f.DataFlushesForBench()
		b.StartTimer()
		start := time.Now()
		for i := range 5000 {
			a, err := f.Mknod(d.Ino, fmt.Sprintf("file-%06d", i), syscall.S_IFREG|0644, 0, me)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(a.Ino, p, 0); err != nil {
				b.Fatal(err)
			}
		}
		total += time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(f.DataFlushesForBench()-fl0)/5000, "dataflush/file")
		ls := f.Log().Stats()
		b.Logf("log: %d flushes, %d writes, %d checkpoints; fs %+v", ls.Flushes, ls.LogWrites, ls.Checkpoints, f.Stats())
		done()
	}
	b.ReportMetric(float64(5000*b.N)/total.Seconds(), "files/s")
}
