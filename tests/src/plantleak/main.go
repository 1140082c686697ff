// Command plantleak plants a leaked block and a leaked inode on an
// unmounted agfs image (see package leak), for tests/generic/100:
//
//	go run ./tests/src/plantleak IMAGE
//
// It prints what it planted on one line.
package main

import (
	"fmt"
	"os"

	"agfs/disk"
	"agfs/tests/src/leak"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: plantleak IMAGE")
		os.Exit(2)
	}
	dev, err := disk.Open(os.Args[1], disk.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "plantleak:", err)
		os.Exit(1)
	}
	p, err := leak.Plant(dev)
	if cerr := dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "plantleak: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("leaked block %d, unnamed inode %d owning block %d, unlinked inode %d\n", p.Block, p.Inode, p.DataBlock, p.Unlinked)
}
