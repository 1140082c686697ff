package main

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// hostBuilder makes the tree with system calls under a directory of any
// filesystem.
type hostBuilder struct{ root string }

func openHost(dir string) (*hostBuilder, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	return &hostBuilder{root: dir}, nil
}

func (b *hostBuilder) Mkdir(name string) (any, error) {
	p := filepath.Join(b.root, name)
	return p, os.Mkdir(p, 0o755)
}

func (b *hostBuilder) Create(dir any, name string, data []byte) error {
	p := filepath.Join(dir.(string), name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close makes the tree durable (syncfs), as the agfs builder's Close does.
func (b *hostBuilder) Close() error {
	f, err := os.Open(b.root)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
