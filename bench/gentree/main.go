// Command gentree builds the tree bench/fsck.sh checks: DIRS directories
// under the root, each holding FILES regular files, every EVERY-th file
// holding one block of data (4 KiB). With the defaults that is 1,000
// directories and 999,000 files: 1,000,000 inodes besides the root.
//
// It writes the same tree two ways, so agfs and ext4 are checked on equal
// contents:
//
//	gentree -image IMG   through the agfs fs library on an agfs image
//	                     (made by mkfs.agfs); generating a million inodes
//	                     through FUSE would measure FUSE, not the checker
//	gentree -dir DIR     with ordinary system calls under DIR (e.g. a
//	                     loop-mounted ext4)
//
// Directories are shared out among one worker per CPU; a directory's files
// are made by the worker that made it.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// builder is where the tree is made: an agfs image or a host directory.
// Directory handles are opaque to the generator (an inode number, a path).
type builder interface {
	Mkdir(name string) (dir any, err error)         // a directory under the root
	Create(dir any, name string, data []byte) error // a regular file in dir
	Close() error
}

type config struct {
	dirs, files, every int
	workers            int
}

func main() {
	image := flag.String("image", "", "agfs image to fill (formatted, empty)")
	dir := flag.String("dir", "", "host directory to fill (e.g. a mounted ext4)")
	var c config
	flag.IntVar(&c.dirs, "dirs", 1000, "directories under the root")
	flag.IntVar(&c.files, "files", 999, "regular files in each directory")
	flag.IntVar(&c.every, "data-every", 10, "every N-th file holds 4 KiB of data (0: none)")
	flag.IntVar(&c.workers, "workers", runtime.NumCPU(), "directories made at once")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: gentree (-image IMG | -dir DIR) [options]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 || (*image == "") == (*dir == "") || c.dirs < 0 || c.files < 0 || c.every < 0 || c.workers < 1 {
		flag.Usage()
		os.Exit(2)
	}

	var b builder
	var err error
	if *image != "" {
		b, err = openAgfs(*image)
	} else {
		b, err = openHost(*dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gentree: %v\n", err)
		os.Exit(1)
	}
	start := time.Now()
	n, err := generate(b, c)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gentree: %v\n", err)
		os.Exit(1)
	}
	el := time.Since(start)
	fmt.Printf("gentree: %d inodes in %.1f s (%.0f/s)\n", n, el.Seconds(), float64(n)/el.Seconds())
}

// generate makes the tree and returns how many inodes it made.
func generate(b builder, c config) (int64, error) {
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i*7 + 1) // not zeros: no filesystem may skip them
	}
	var (
		next  atomic.Int64 // next directory index to make
		made  atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		next.Store(int64(c.dirs)) // the other workers stop at their next directory
	}
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := int(next.Add(1) - 1); d < c.dirs; d = int(next.Add(1) - 1) {
				dname := fmt.Sprintf("d%04d", d)
				h, err := b.Mkdir(dname)
				if err != nil {
					fail(fmt.Errorf("mkdir /%s: %w", dname, err))
					return
				}
				made.Add(1)
				for i := range c.files {
					var p []byte
					if c.every > 0 && i%c.every == 0 {
						p = data
					}
					name := fmt.Sprintf("f%04d", i)
					if err := b.Create(h, name, p); err != nil {
						fail(fmt.Errorf("create /%s/%s: %w", dname, name, err))
						return
					}
					made.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return made.Load(), first
}
