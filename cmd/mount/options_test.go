package main

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"agfs/ag"
	"agfs/cmd/internal/cli"
)

func parse(t *testing.T, prog string, args ...string) *config {
	t.Helper()
	t.Setenv(notifyEnv, "")
	c, done, err := parseArgs(prog, args)
	if err != nil || done {
		t.Fatalf("parseArgs(%q): done=%v err=%v", args, done, err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := parse(t, "mount.agfs", "img", "/mnt")
	if c.mount.Flags != unix.MS_NOSUID|unix.MS_NODEV {
		t.Errorf("flags %#x, want nosuid,nodev", c.mount.Flags)
	}
	if !c.mount.ACL {
		t.Error("ACLs are off by default")
	}
	if !c.mount.WritebackCache {
		t.Error("the writeback cache is off by default")
	}
	if !c.mount.URing || c.uringAsked {
		t.Errorf("io_uring: used %v, asked for %v; want used where allowed, not asked for", c.mount.URing, c.uringAsked)
	}
	if c.mount.Subtype != "agfs" || c.mount.ReadOnly || c.mount.AllowOther || c.foreground {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if !strings.HasPrefix(c.device, "/") || !strings.HasSuffix(c.device, "/img") || c.mount.Device != c.device {
		t.Errorf("device %q, source %q: want the absolute path", c.device, c.mount.Device)
	}
}

func TestOptions(t *testing.T) {
	c := parse(t, "mount.agfs", "-o", "rw,allow_other,dev,suid,noatime", "-o", "ro,cache_blocks=512,checkpoint_interval=2s,alloc=bestfit,writeback_cache", "img", "mnt")
	if !c.mount.ReadOnly || !c.fs.ReadOnly {
		t.Error("ro not applied to the mount and the fs")
	}
	if !c.mount.AllowOther || !c.mount.WritebackCache {
		t.Errorf("allow_other/writeback_cache not set: %+v", c.mount)
	}
	if c.mount.Flags != unix.MS_NOATIME {
		t.Errorf("flags %#x, want MS_NOATIME only", c.mount.Flags)
	}
	if c := parse(t, "mount.agfs", "-o", "noacl", "img", "mnt"); c.mount.ACL {
		t.Error("noacl left ACLs on")
	}
	if c := parse(t, "mount.agfs", "-o", "uring", "img", "mnt"); !c.mount.URing || !c.uringAsked {
		t.Error("-o uring is not asked for")
	}
	if c := parse(t, "mount.agfs", "-o", "uring,nouring", "img", "mnt"); c.mount.URing || c.uringAsked {
		t.Error("nouring after uring left io_uring on")
	}
	if c := parse(t, "mount.agfs", "-o", "writeback_cache,nowriteback_cache", "img", "mnt"); c.mount.WritebackCache {
		t.Error("nowriteback_cache after writeback_cache left the writeback cache on")
	}
	if c.fs.CacheBlocks != 512 || c.fs.CheckpointInterval != 2*time.Second || c.fs.Policy != ag.BestFit {
		t.Errorf("agfs options not applied: %+v", c.fs)
	}
	// mount(8) passes the options after the operands.
	c = parse(t, "mount.agfs", "img", "mnt", "-o", "nosuid,nodev,noexec,defaults,nofail,x-systemd.automount,_netdev,default_permissions")
	if c.mount.Flags != unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC {
		t.Errorf("flags %#x", c.mount.Flags)
	}
}

func TestSubtype(t *testing.T) {
	for _, tc := range []struct {
		prog string
		args []string
		want string
	}{
		{"mount.agfs", nil, "agfs"},
		{"/usr/local/sbin/mount.agfs", nil, "agfs"},
		{"/sbin/mount.fuse.agfs", nil, ""},
		{"/sbin/mount.fuse.agfs", []string{"-o", "subtype=agfs"}, "agfs"},
		{"mount.agfs", []string{"-o", "nosubtype"}, ""},
		{"mount.agfs", []string{"-t", "fuse"}, ""},
		{"/sbin/mount.fuse.agfs", []string{"-t", "fuse.agfs"}, "agfs"},
	} {
		c := parse(t, tc.prog, append(tc.args, "img", "mnt")...)
		if c.mount.Subtype != tc.want {
			t.Errorf("%s %q: subtype %q, want %q", tc.prog, tc.args, c.mount.Subtype, tc.want)
		}
	}
}

func TestBadOptions(t *testing.T) {
	t.Setenv(notifyEnv, "")
	for _, tc := range []struct {
		args  []string
		want  string
		usage bool
	}{
		{[]string{"-o", "frobnicate", "img", "mnt"}, `unknown mount option "frobnicate"`, false},
		{[]string{"-o", "passfile=/x", "img", "mnt"}, `unknown mount option "passfile=/x"`, false},
		{[]string{"-o", "ro=1", "img", "mnt"}, `"ro" takes no value`, false},
		{[]string{"-o", "cache_blocks=lots", "img", "mnt"}, "cache_blocks=lots", false},
		{[]string{"-o", "cache_blocks", "img", "mnt"}, "needs a value", false},
		{[]string{"-o", "checkpoint_interval=-1s", "img", "mnt"}, "positive duration", false},
		{[]string{"-o", "alloc=worst", "img", "mnt"}, "alloc=worst", false},
		{[]string{"-t", "ext4", "img", "mnt"}, "not agfs's", true},
		{[]string{"img"}, "expected DEVICE and MOUNTPOINT", true},
		{[]string{"--bogus", "img", "mnt"}, "unknown flag", true},
	} {
		_, _, err := parseArgs("mount.agfs", tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line with %q", tc.args, err, tc.want)
			continue
		}
		var ue cli.UsageError
		if isUsage := asUsage(err, &ue); isUsage != tc.usage {
			t.Errorf("%q: usage error %v, want %v", tc.args, isUsage, tc.usage)
		}
	}
	// -s (sloppy) ignores unknown options but not bad values.
	c := parse(t, "mount.agfs", "-s", "-o", "frobnicate,ro", "img", "mnt")
	if !c.mount.ReadOnly {
		t.Error("-s lost the known options")
	}
	if _, _, err := parseArgs("mount.agfs", []string{"-s", "-o", "alloc=worst", "img", "mnt"}); err == nil {
		t.Error("-s accepted a bad value")
	}
}

func asUsage(err error, ue *cli.UsageError) bool {
	u, ok := err.(cli.UsageError)
	if ok {
		*ue = u
	}
	return ok
}
