package fusefs_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"agfs/fs/fusefs/fusetest"
)

// TestListingFollowsChanges: agfs declines OPENDIR, so the kernel keeps a
// directory's listing in its cache once it has been read to the end, and
// lists the directory again from there. Every change to the directory, by
// any path (create, mkdir, unlink, rename in, out and within, link,
// symlink), must show in the next listing, and a listing read twice with
// no change between must be the same.
func TestListingFollowsChanges(t *testing.T) {
	fusetest.Require(t)
	for _, opts := range [][]string{nil, {"nowriteback_cache"}} {
		img := fusetest.Format(t, "64M")
		mnt := fusetest.Mount(t, img, opts...)
		d, other := filepath.Join(mnt, "d"), filepath.Join(mnt, "other")
		for _, p := range []string{d, other} {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		in := func(name string) string { return filepath.Join(d, name) }
		var want []string
		// check lists d twice, each time to the end: the second listing
		// comes from the kernel's cache.
		check := func(after string) {
			t.Helper()
			for i := range 2 {
				es, err := os.ReadDir(d)
				if err != nil {
					t.Fatalf("%v: after %s: %v", opts, after, err)
				}
				var got []string
				for _, e := range es {
					got = append(got, e.Name())
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("%v: after %s: listing %d = %q, want %q", opts, after, i+1, got, want)
				}
			}
		}
		check("mkdir")
		steps := []struct {
			what string
			do   func() error
			add  []string
			drop []string
		}{
			{"create", func() error { return os.WriteFile(in("a"), []byte("x"), 0o644) }, []string{"a"}, nil},
			{"mkdir", func() error { return os.Mkdir(in("sub"), 0o755) }, []string{"sub"}, nil},
			{"link", func() error { return os.Link(in("a"), in("b")) }, []string{"b"}, nil},
			{"symlink", func() error { return os.Symlink("a", in("s")) }, []string{"s"}, nil},
			{"rename within", func() error { return os.Rename(in("b"), in("c")) }, []string{"c"}, []string{"b"}},
			{"rename out", func() error { return os.Rename(in("c"), filepath.Join(other, "c")) }, nil, []string{"c"}},
			{"rename in", func() error { return os.Rename(filepath.Join(other, "c"), in("e")) }, []string{"e"}, nil},
			{"unlink", func() error { return os.Remove(in("a")) }, nil, []string{"a"}},
			{"rmdir", func() error { return os.Remove(in("sub")) }, nil, []string{"sub"}},
		}
		for _, s := range steps {
			if err := s.do(); err != nil {
				t.Fatalf("%v: %s: %v", opts, s.what, err)
			}
			want = append(want, s.add...)
			want = slices.DeleteFunc(want, func(n string) bool { return slices.Contains(s.drop, n) })
			check(s.what)
		}
		if err := fusetest.Unmount(mnt, img); err != nil {
			t.Fatal(err)
		}
		fusetest.CheckClosed(t, img)
	}
}
