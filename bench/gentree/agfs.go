package main

import (
	"fmt"
	"syscall"

	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
)

// agfsBuilder makes the tree through the fs library, as mount.agfs would
// (the device opened with O_DIRECT), minus FUSE.
type agfsBuilder struct {
	path string
	dev  *disk.File
	fs   *fs.FS
}

// cacheBlocks is the metadata cache: large enough that a million inodes'
// table and directory blocks are not re-read while the tree grows.
const cacheBlocks = 1 << 16

func openAgfs(path string) (*agfsBuilder, error) {
	dev, err := disk.Open(path, disk.Options{Direct: true})
	if err != nil {
		return nil, err
	}
	f, err := fs.Open(dev, fs.Options{CacheBlocks: cacheBlocks})
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &agfsBuilder{path: path, dev: dev, fs: f}, nil
}

var root = fs.Caller{} // uid 0, gid 0, as the tree made on ext4 by root

func (b *agfsBuilder) Mkdir(name string) (any, error) {
	a, err := b.fs.Mkdir(layout.RootIno, name, 0o755, root)
	return a.Ino, err
}

func (b *agfsBuilder) Create(dir any, name string, data []byte) error {
	a, err := b.fs.Mknod(dir.(uint64), name, syscall.S_IFREG|0o644, 0, root)
	if err != nil || len(data) == 0 {
		return err
	}
	n, err := b.fs.Write(a.Ino, data, 0)
	if err == nil && n < len(data) {
		err = syscall.ENOSPC // Write is short only when space ran out
	}
	return err
}

// Close checkpoints the log and marks the filesystem clean, so the check
// that follows sees what a clean unmount leaves.
func (b *agfsBuilder) Close() error {
	err := b.fs.Close()
	if cerr := b.dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", b.path, err)
	}
	return nil
}
