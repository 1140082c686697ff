// Command metaops times one metadata phase over N files in a directory and
// prints its rate in operations per second:
//
//	metaops create DIR N   create DIR/f000000 ... (open O_CREAT|O_EXCL, close)
//	metaops stat   DIR N   lstat each of them
//	metaops unlink DIR N   unlink each of them
//
// Each phase is its own run so that bench/compare.sh can drop the kernel's
// caches between them: stat and unlink then pay their lookups, as they do
// on a cold tree. One system call (or two, for create) per file: a shell
// loop would time process start-up, not the filesystem.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

var phases = map[string]func(path string) error{
	"create": func(path string) error {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	},
	"stat": func(path string) error {
		var st unix.Stat_t
		return unix.Lstat(path, &st)
	},
	"unlink": unix.Unlink,
}

func main() {
	if len(os.Args) != 4 || phases[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: metaops create|stat|unlink DIR N")
		os.Exit(2)
	}
	op, dir := phases[os.Args[1]], os.Args[2]
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "metaops: N=%q: want a positive number of files\n", os.Args[3])
		os.Exit(2)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = filepath.Join(dir, fmt.Sprintf("f%06d", i))
	}
	start := time.Now()
	for _, p := range names {
		if err := op(p); err != nil {
			fmt.Fprintf(os.Stderr, "metaops: %s %s: %v\n", os.Args[1], p, err)
			os.Exit(1)
		}
	}
	fmt.Printf("%.1f\n", float64(n)/time.Since(start).Seconds())
}
