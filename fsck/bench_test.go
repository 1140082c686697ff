package fsck

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/mkfs"
)

// BenchmarkCheck10kFiles checks a 256 MiB image holding 10,000 files of
// one block each, in 100 directories, every tenth with an attribute.
func BenchmarkCheck10kFiles(b *testing.B) {
	dev, _ := newImage(b, 256<<20, mkfs.Options{})
	f, err := fs.Open(dev, fs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte{1}, 4096)
	for d := range 100 {
		a, err := f.Mkdir(layout.RootIno, fmt.Sprint("d", d), 0755, me)
		if err != nil {
			b.Fatal(err)
		}
		for i := range 100 {
			c, err := f.Mknod(a.Ino, fmt.Sprintf("file-%03d", i), syscall.S_IFREG|0644, 0, me)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(c.Ino, data, 0); err != nil {
				b.Fatal(err)
			}
			if i%10 == 0 {
				if err := f.SetXattr(c.Ino, "user.tag", []byte("x"), 0); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	img := disk.NewMemFrom(dev.Bytes())
	b.ResetTimer()
	for b.Loop() {
		rep, err := Check(img)
		if err != nil || !rep.Clean() {
			b.Fatal(err, rep.Problems)
		}
		if rep.Inodes.Files != 10000 {
			b.Fatalf("%+v", rep.Inodes)
		}
	}
}
