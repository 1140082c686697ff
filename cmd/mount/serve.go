package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"agfs/cmd/internal/device"
	"agfs/disk"
	"agfs/fs"
	"agfs/fs/fusefs"
	"agfs/layout"
)

// serve runs the filesystem in this process (-f): ready is called once the
// mount is live or has failed.
func serve(c *config, ready func(error)) error {
	return serveLog(c, ready, plainLogger(c))
}

// serveLog opens the device and the filesystem, mounts it, reports
// readiness, and serves until it is unmounted; then it closes the
// filesystem (checkpoint, mark clean) and the device.
func serveLog(c *config, ready func(error), logger *log.Logger) error {
	// Signals that arrive before the mount is live stop the mount there.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	defer signal.Stop(sigs)
	var mu sync.Mutex
	var srv *fusefs.Server
	stopped := false
	go func() {
		for range sigs {
			mu.Lock()
			stopped = true
			s := srv
			mu.Unlock()
			if s != nil {
				if err := s.Unmount(); err != nil {
					logger.Printf("%v", err)
				}
			}
		}
	}()
	isStopped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return stopped
	}

	if err := checkMountPoint(c.mountPoint); err != nil {
		return err
	}
	dev, err := openDevice(c)
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := identify(c.device, dev); err != nil {
		return err
	}
	core, err := fs.Open(dev, c.fs)
	if err != nil {
		return fmt.Errorf("%s: %w", c.device, err)
	}
	closeCore := func() error {
		if err := core.Close(); err != nil {
			return fmt.Errorf("%s: closing the filesystem: %w", c.device, err)
		}
		return dev.Close()
	}
	if isStopped() {
		return errors.Join(errors.New("interrupted"), closeCore())
	}

	if c.uringAsked {
		if err := fusefs.EnableURing(); err != nil {
			logger.Printf("mount.agfs: uring: %v; requests go through /dev/fuse", err)
		}
	}
	mu.Lock()
	srv, err = fusefs.Mount(fusefs.New(core, fusefs.Options{Logger: logger}), c.mountPoint, c.mount)
	s, stop := srv, stopped
	mu.Unlock()
	if err != nil {
		return errors.Join(err, closeCore())
	}
	ready(nil)
	if stop {
		s.Unmount()
	}
	if !s.Serve() {
		// A handler panicked: leave the device as a crash would, for the
		// log to replay at the next mount.
		dev.Close()
		return fmt.Errorf("%s: the filesystem was shut down after an internal error; run fsck.agfs", c.device)
	}
	return closeCore()
}

func checkMountPoint(mnt string) error {
	st, err := os.Stat(mnt)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", mnt, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", mnt)
	}
	return nil
}

// openDevice opens and locks the device, refusing one that is mounted or
// held by another program.
func openDevice(c *config) (*disk.File, error) {
	mounted := func() error {
		if at := fusefs.MountedAt(c.device); len(at) > 0 {
			return fmt.Errorf("%s is already mounted on %s", c.device, at[0])
		}
		return nil
	}
	verbose := func(format string, a ...any) { verbosef(c, format, a...) }
	return device.Open(c.device, disk.Options{ReadOnly: c.fs.ReadOnly, Direct: true}, mounted, verbose)
}

// identify refuses a device that does not hold agfs, saying what it holds.
func identify(path string, dev disk.Device) error {
	head := make([]byte, min(layout.IdentifyBytes, dev.Size()))
	if _, err := dev.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: read: %w", path, err)
	}
	switch what := layout.Identify(head); what {
	case "an agfs filesystem":
		return nil
	case "":
		return fmt.Errorf("%s does not contain an agfs filesystem (no known signature; format it with mkfs.agfs)", path)
	default:
		return fmt.Errorf("%s contains %s, not agfs", path, what)
	}
}
