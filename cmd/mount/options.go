package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"agfs/ag"
	"agfs/cmd/internal/cli"
	"agfs/fs"
	"agfs/fs/fusefs"
)

// notifyEnv names the descriptor on which a daemon started by daemonize
// reports to its parent: "ok" once the mount is live, or the error.
const notifyEnv = "AGFS_MOUNT_NOTIFY_FD"

// config is everything a mount needs, from the command line.
type config struct {
	prog       string
	args       []string // as given, for the daemon to re-run
	device     string   // absolute
	mountPoint string   // absolute
	foreground bool
	debug      bool
	verbose    bool
	sloppy     bool
	notifyFD   int
	statsOf    string // --stats: the mount point to report on
	uringAsked bool   // -o uring: turn on the kernel's FUSE over io_uring

	mount fusefs.MountOptions
	fs    fs.Options
}

func parseArgs(prog string, args []string) (*config, bool, error) {
	set := cli.NewFlagSet(filepath.Base(prog), help)
	opts := set.StringArrayP("options", "o", nil, "mount options, comma-separated (see MOUNT OPTIONS)")
	fg := set.BoolP("foreground", "f", false, "stay in the foreground")
	debug := set.BoolP("debug", "d", false, "log every FUSE request and reply to stderr (implies -f)")
	sloppy := set.BoolP("sloppy", "s", false, "ignore unknown mount options (mount(8) -s)")
	verbose := set.BoolP("verbose", "v", false, "say what is being done")
	set.BoolP("no-mtab", "n", false, "accepted for mount(8); there is no mtab to write")
	fstype := set.StringP("type", "t", "", "fuse.agfs or fuse: the kernel type (as mount(8) passes it)")
	stats := set.Bool("stats", false, "print the counters of the agfs mounted at MOUNTPOINT and exit")
	if done, err := cli.Parse(set, args); done || err != nil {
		return nil, done, err
	}
	if *stats {
		if set.NArg() != 1 {
			return nil, false, cli.Usagef("--stats takes one MOUNTPOINT, got %d arguments", set.NArg())
		}
		return &config{prog: prog, statsOf: set.Arg(0)}, false, nil
	}
	if set.NArg() != 2 {
		return nil, false, cli.Usagef("expected DEVICE and MOUNTPOINT, got %d arguments", set.NArg())
	}
	c := &config{
		prog:       prog,
		args:       args,
		foreground: *fg || *debug,
		debug:      *debug,
		verbose:    *verbose,
		sloppy:     *sloppy,
	}
	c.mount.Debug = *debug
	// FUSE's defaults, as fusermount and go-fuse have them.
	c.mount.Flags = unix.MS_NOSUID | unix.MS_NODEV
	c.mount.Subtype = defaultSubtype(prog)
	c.mount.ACL = true
	c.mount.WritebackCache = true
	c.mount.URing = true
	switch *fstype {
	case "", "fuse.agfs":
		if *fstype != "" {
			c.mount.Subtype = "agfs"
		}
	case "fuse":
		c.mount.Subtype = ""
	default:
		return nil, false, cli.Usagef("type %q is not agfs's (fuse.agfs or fuse)", *fstype)
	}
	for _, o := range *opts {
		if err := c.parseOptions(o); err != nil {
			return nil, false, err
		}
	}

	var err error
	if c.device, err = filepath.Abs(set.Arg(0)); err != nil {
		return nil, false, err
	}
	if c.mountPoint, err = filepath.Abs(set.Arg(1)); err != nil {
		return nil, false, err
	}
	c.mount.Device = c.device
	if v := os.Getenv(notifyEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3 {
			return nil, false, fmt.Errorf("%s=%q is not a descriptor", notifyEnv, v)
		}
		c.notifyFD = n
	}
	return c, false, nil
}

// defaultSubtype: run by mount(8) as mount.fuse.agfs the kernel type is
// plain "fuse" (fstests with FSTYP=fuse finds its mounts by that type);
// run as mount.agfs it is "fuse.agfs".
func defaultSubtype(prog string) string {
	if strings.HasPrefix(filepath.Base(prog), "mount.fuse") {
		return ""
	}
	return "agfs"
}

// mountFlags are the options that set or clear MS_* flags.
var mountFlags = map[string]struct{ set, clear uintptr }{
	"dev":         {0, unix.MS_NODEV},
	"nodev":       {unix.MS_NODEV, 0},
	"suid":        {0, unix.MS_NOSUID},
	"nosuid":      {unix.MS_NOSUID, 0},
	"exec":        {0, unix.MS_NOEXEC},
	"noexec":      {unix.MS_NOEXEC, 0},
	"atime":       {0, unix.MS_NOATIME},
	"noatime":     {unix.MS_NOATIME, unix.MS_RELATIME | unix.MS_STRICTATIME},
	"relatime":    {unix.MS_RELATIME, unix.MS_NOATIME | unix.MS_STRICTATIME},
	"strictatime": {unix.MS_STRICTATIME, unix.MS_NOATIME | unix.MS_RELATIME},
	"diratime":    {0, unix.MS_NODIRATIME},
	"nodiratime":  {unix.MS_NODIRATIME, 0},
}

// ignored are options meant for mount(8) or fstab, not for the filesystem.
var ignored = map[string]bool{
	"defaults": true, "async": true, "auto": true, "noauto": true, "nofail": true,
	"user": true, "nouser": true, "users": true, "owner": true, "group": true,
	"_netdev": true, "default_permissions": true,
}

var policies = map[string]ag.Policy{
	"near": ag.Near, "bestfit": ag.BestFit, "firstfit": ag.FirstFit, "contiguous": ag.Contiguous,
}

// parseOptions applies one -o list. agfs's own options set fields of
// c.fs or c.mount and never reach the kernel.
func (c *config) parseOptions(list string) error {
	for _, opt := range strings.Split(list, ",") {
		if opt == "" {
			continue
		}
		if err := c.parseOption(opt); err != nil {
			if c.sloppy && errors.Is(err, errUnknown) {
				continue
			}
			return err
		}
	}
	return nil
}

var errUnknown = errors.New("unknown mount option")

func (c *config) parseOption(opt string) error {
	key, val, hasVal := strings.Cut(opt, "=")
	noValue := func() error {
		if hasVal {
			return fmt.Errorf("mount option %q takes no value", key)
		}
		return nil
	}
	needValue := func() error {
		if !hasVal || val == "" {
			return fmt.Errorf("mount option %q needs a value (%s=...)", key, key)
		}
		return nil
	}
	// number is the value as an integer of at least least; want says
	// what is expected.
	number := func(least int, want string) (int, error) {
		if err := needValue(); err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < least {
			return 0, fmt.Errorf("%s=%s: want %s", key, val, want)
		}
		return n, nil
	}
	// duration is the value as a positive duration; example shows one.
	duration := func(example string) (time.Duration, error) {
		if err := needValue(); err != nil {
			return 0, err
		}
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%s=%s: want a positive duration such as %s", key, val, example)
		}
		return d, nil
	}
	if f, ok := mountFlags[key]; ok {
		if err := noValue(); err != nil {
			return err
		}
		c.mount.Flags = c.mount.Flags&^f.clear | f.set
		return nil
	}
	switch {
	case ignored[key] || strings.HasPrefix(key, "x-") || key == "comment":
		return nil
	case key == "ro" || key == "rw":
		if err := noValue(); err != nil {
			return err
		}
		c.mount.ReadOnly = key == "ro"
		c.fs.ReadOnly = c.mount.ReadOnly
	case key == "allow_other":
		if err := noValue(); err != nil {
			return err
		}
		c.mount.AllowOther = true
	case key == "acl" || key == "noacl":
		if err := noValue(); err != nil {
			return err
		}
		c.mount.ACL = key == "acl"
	case key == "writeback_cache" || key == "nowriteback_cache":
		if err := noValue(); err != nil {
			return err
		}
		c.mount.WritebackCache = key == "writeback_cache"
	case key == "uring" || key == "nouring":
		if err := noValue(); err != nil {
			return err
		}
		c.mount.URing = key == "uring"
		c.uringAsked = c.mount.URing
	case key == "nosubtype":
		if err := noValue(); err != nil {
			return err
		}
		c.mount.Subtype = ""
	case key == "subtype":
		if strings.ContainsAny(val, "., /") {
			return fmt.Errorf("subtype=%q: a subtype is a plain name", val)
		}
		c.mount.Subtype = val
	case key == "cache_blocks":
		n, err := number(1, "a positive number of blocks")
		if err != nil {
			return err
		}
		c.fs.CacheBlocks = n
	case key == "checkpoint_interval":
		d, err := duration("30s or 5m")
		if err != nil {
			return err
		}
		c.fs.CheckpointInterval = d
	case key == "alloc":
		if err := needValue(); err != nil {
			return err
		}
		p, ok := policies[val]
		if !ok {
			return fmt.Errorf("alloc=%s: want near, bestfit, firstfit or contiguous", val)
		}
		c.fs.Policy = p
	case key == "scan" || key == "noscan":
		if err := noValue(); err != nil {
			return err
		}
		c.fs.NoScan = key == "noscan"
	case key == "scan_interval":
		d, err := duration("100ms or 10m")
		if err != nil {
			return err
		}
		c.fs.ScanInterval = d
	case key == "scan_rate":
		n, err := number(0, "a number of inodes per second (0: no limit)")
		if err != nil {
			return err
		}
		c.fs.ScanRate = n
		if n == 0 {
			c.fs.ScanRate = -1 // fs: no bound
		}
	default:
		return fmt.Errorf("%w %q", errUnknown, opt)
	}
	return nil
}
