// Package mkfs lays a new agfs filesystem onto a device. cmd/mkfs is its
// command line; tests use it to make images.
package mkfs

import (
	"crypto/rand"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"agfs/ag"
	"agfs/disk"
	"agfs/fs"
	"agfs/layout"
	"agfs/wal"
)

// Options are the choices a user can make; zero values pick defaults.
type Options struct {
	layout.Params
	Label string
	UUID  [16]byte // zero: a random one
}

// Plan validates o for a device of devBytes bytes and returns the
// superblock Format would write. It touches no device.
func Plan(devBytes int64, o Options) (*layout.Superblock, error) {
	if len(o.Label) > layout.MaxLabel {
		return nil, fmt.Errorf("label %q is %d bytes long; at most %d are allowed", o.Label, len(o.Label), layout.MaxLabel)
	}
	if !utf8.ValidString(o.Label) {
		return nil, fmt.Errorf("label %q is not valid UTF-8", o.Label)
	}
	p := o.Params
	p.DeviceBytes = devBytes
	g, err := layout.NewGeometry(p)
	if err != nil {
		return nil, err
	}
	if g.BlockSize < layout.MinFSBlockSize {
		return nil, fmt.Errorf("block size %d is too small: agfs needs at least %d (directory entries hold 255-byte names)", g.BlockSize, layout.MinFSBlockSize)
	}
	sb := &layout.Superblock{
		Geometry: g,
		UUID:     o.UUID,
		RootIno:  layout.RootIno,
		State:    layout.StateClean,
		Label:    o.Label,
		Created:  time.Now().UnixNano(),
		Version:  layout.FormatVersion,
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("random directory hash seed: %w", err)
	}
	for i, c := range seed {
		sb.DirHashSeed |= uint64(c) << (8 * i)
	}
	if sb.UUID == ([16]byte{}) {
		if _, err := rand.Read(sb.UUID[:]); err != nil {
			return nil, fmt.Errorf("random UUID: %w", err)
		}
		sb.UUID[6] = sb.UUID[6]&0x0f | 0x40 // version 4
		sb.UUID[8] = sb.UUID[8]&0x3f | 0x80 // RFC 4122 variant
	}
	return sb, nil
}

// Format writes the filesystem sb describes onto dev. It writes only a few
// blocks per AG: bitmaps and inode tables beyond what the metadata itself
// occupies are initialised lazily, and the log needs only its superblocks.
//
// The order makes an interrupted mkfs harmless: old signatures are wiped
// and flushed first, and the primary superblock, which makes the device an
// agfs filesystem, is written after the AGs and the log are durable. Only
// the root directory comes after it; a filesystem interrupted there is
// refused by mount and fsck ("no root directory") and simply reformatted.
func Format(dev disk.Device, sb *layout.Superblock) error {
	wipe := make([]byte, min(layout.IdentifyBytes, int64(sb.BlockCount)*int64(sb.BlockSize)))
	if _, err := dev.WriteAt(wipe, 0); err != nil {
		return fmt.Errorf("wipe old signatures: %w", err)
	}
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	r := wal.Region{BlockSize: int(sb.BlockSize), Start: sb.LogStart, Blocks: sb.LogBlocks}
	if err := wal.Format(dev, r, sb.Seed()); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	if err := formatAGs(dev, sb, 1, sb.AGCount); err != nil {
		return err
	}
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if err := ag.Format(dev, sb, 0); err != nil {
		return fmt.Errorf("ag 0: %w", err)
	}
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	// The root directory and lost+found, made by the filesystem code over
	// an in-memory overlay and written home with LSN 0 (fs.Init).
	if err := fs.Init(dev, sb); err != nil {
		return err
	}
	return nil
}

// formatAGs formats AGs [from, to) in parallel: on a large device the
// per-AG writes are independent and the device is faster with several in
// flight.
func formatAGs(dev disk.Device, sb *layout.Superblock, from, to uint32) error {
	const workers = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = from
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				g := next
				next++
				stop := g >= to || first != nil
				mu.Unlock()
				if stop {
					return
				}
				if err := ag.Format(dev, sb, g); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("ag %d: %w", g, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}
