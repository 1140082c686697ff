// Command mount.agfs mounts an agfs filesystem: it is the FUSE daemon, and
// under the name mount.fuse.agfs the helper mount(8) runs for
// `mount -t fuse.agfs` and /etc/fstab.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"agfs/cmd/internal/cli"
)

const help = `NAME
    mount.agfs, mount.fuse.agfs - mount an agfs filesystem

SYNOPSIS
    mount.agfs [-f] [-d] [-o OPTIONS] DEVICE MOUNTPOINT
    mount -t fuse.agfs [-o OPTIONS] DEVICE MOUNTPOINT
    mount.agfs --stats MOUNTPOINT

DESCRIPTION
    mount.agfs attaches the agfs filesystem on DEVICE, a block device or an
    image file, at the directory MOUNTPOINT, and serves it over FUSE.

    Unless -f or -d is given it runs in the background, in its own session
    with its working directory at /, and returns only once the mount is
    live (exit 0), or with the reason it is not (non-zero exit). It stays
    until the filesystem is unmounted (umount MOUNTPOINT, fusermount3 -u) or
    it receives SIGTERM or SIGINT; it then writes everything out, marks the
    filesystem clean and releases the device before it exits, so the next
    mount can follow at once. On SIGTERM a busy mount is aborted (its users
    get ENOTCONN) and detached.

    It refuses a DEVICE that holds another filesystem (it says which), a
    newer agfs format than it knows, a device that is already mounted, and
    a device another program (fsck.agfs, mkfs.agfs) has open. A device held
    by an agfs daemon that is still closing it after an unmount is waited
    for.

    Messages of the background daemon go to syslog when there is one.

MOUNT(8) AND FSTAB
    mount -t fuse.agfs DEVICE DIR, and an /etc/fstab line such as

        /srv/disk.img  /mnt/agfs  fuse.agfs  allow_other,noatime  0  0

    make mount(8) run /sbin/mount.fuse.agfs DEVICE DIR -o OPTIONS; "make
    install" puts that name in place (a symlink to mount.agfs). Run under
    that name, the mount's kernel type is plain "fuse", as fstests expects
    with FSTYP=fuse (it looks mounts up by type); run as mount.agfs it is
    "fuse.agfs". The options subtype=agfs and nosubtype choose explicitly.
    Either way the mount's source is the absolute path of DEVICE.

MOUNT OPTIONS
    -o takes a comma-separated list; it may be repeated.

    ro, rw            read-only (the device is never written, even to
                      replay its log) or read-write (default)
    allow_other       let other users in; the kernel checks permissions
                      (default_permissions is always on)
    dev, nodev        allow device files (default nodev)
    suid, nosuid      honour setuid and setgid bits (default nosuid)
    exec, noexec      allow executing programs (default exec)
    noatime, atime, relatime, strictatime, nodiratime, diratime
                      access-time updates, as for any filesystem
    defaults, async, auto, noauto, nofail, user, nouser, users, owner,
    group, _netdev, x-*, comment=*
                      accepted and ignored (they are for mount(8))
    default_permissions
                      accepted; always on

    agfs's own options (never passed to the kernel):
    acl, noacl        POSIX ACLs, enforced by the kernel (default acl)
    cache_blocks=N    metadata cache size, in blocks
    checkpoint_interval=DURATION
                      how often the log is checkpointed (e.g. 30s, 5m)
    alloc=POLICY      block allocation: near (default), bestfit, firstfit,
                      contiguous
    writeback_cache, nowriteback_cache
                      let the kernel gather writes in its page cache and
                      send them later (default writeback_cache). When
                      free space falls below what the kernel may hold
                      dirty for the mount, files opened for writing
                      bypass the cache, so write(2) sees ENOSPC; a file
                      opened before that may get it from fsync(2) or
                      close(2) instead, as on NFS
    uring, nouring    serve requests over io_uring, a queue per CPU,
                      each answered by a thread on that CPU (Linux 6.14+,
                      root). Used by default when the fuse module allows
                      it (/sys/module/fuse/parameters/enable_uring is Y);
                      an explicit uring also turns that switch on, which
                      lets other FUSE servers ask for io_uring too.
                      The request and its reply then stay on the
                      caller's CPU (an untar of the Go tree: 2.8-3.2 s
                      instead of 6.8-7.0 s on 2 CPUs). mount.agfs --stats
                      counts them (fuse.uring_requests). Without it, or
                      where the kernel refuses, requests come through
                      /dev/fuse
    subtype=NAME      mount with kernel type fuse.NAME
    nosubtype         mount with kernel type fuse
    scan, noscan      run the background orphan scanner (default scan):
                      it cross-checks the bitmaps against what inodes and
                      directories reference and reclaims blocks and inodes
                      that nothing references; counted in --stats
    scan_interval=DURATION
                      pause before each scanner pass (default 5m)
    scan_rate=N       inodes the scanner visits, plus reclaims it makes,
                      per second (default 20000; 0: no limit). It also
                      backs off while other work is committing

    Any other option is an error, unless -s is given.

STATISTICS
    mount.agfs --stats MOUNTPOINT prints the counters of a live mount, one
    "NAME VALUE" per line: inodes in memory, allocation counters, the
    log's (log.*: transactions committed, bytes logged, device flushes,
    checkpoints, metadata cache hits and misses), the orphan scanner's
    (scan.*: passes, inodes scanned, orphans found and reclaimed by kind,
    reclaimed_at_mount for the files unlinked while open that the mount
    itself reclaimed) and the io_uring queues' (fuse.uring_queues, 0 when
    requests come through /dev/fuse, and fuse.uring_requests). They are
    the value of the read-only attribute agfs.stats of the mount's root, so
    getfattr --only-values -n agfs.stats MOUNTPOINT shows them too.

EXIT STATUS
    0 the filesystem is mounted (--stats: the counters were printed), 1
    usage error, 32 the mount failed (the message says why).
`

const (
	exitFailure = 32
	exitUsage   = 1
)

func main() {
	if err := run(os.Args[0], os.Args[1:], os.Stdout); err != nil {
		cli.Exit(filepath.Base(os.Args[0]), err, exitFailure, exitUsage)
	}
}

func run(prog string, args []string, out io.Writer) error {
	c, done, err := parseArgs(prog, args)
	if done || err != nil {
		return err
	}
	if c.statsOf != "" {
		return printStats(out, c.statsOf)
	}
	if c.notifyFD != 0 {
		return runChild(c)
	}
	if c.foreground {
		return serve(c, func(error) {})
	}
	return daemonize(c)
}

// oneLine makes an error message fit on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.TrimSpace(s)), " ")
}

func verbosef(c *config, format string, a ...any) {
	if c.verbose {
		fmt.Fprintf(os.Stderr, filepath.Base(c.prog)+": "+format+"\n", a...)
	}
}
