package fs_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"

	"agfs/fs"
	"agfs/layout"
)

// TestConcurrent runs many operations at once on shared and private
// directories (across AGs, with lock-order retries), under the race
// detector in CI, and then checks the whole filesystem.
func TestConcurrent(t *testing.T) {
	e := newEnv(t, 96<<20, layout.Params{AGCount: 6})
	const workers = 8
	ops := 400
	if raceEnabled {
		ops = 200
	}
	shared := []uint64{e.mkdir(root, "s0"), e.mkdir(root, "s1")}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		own := e.mkdir(root, fmt.Sprintf("w%d", w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			f := e.f
			dirs := append([]uint64{own}, shared...)
			name := func() string { return fmt.Sprintf("n%d", rng.IntN(30)) }
			// Errors that races between workers make legitimate.
			benign := func(err error) bool {
				for _, x := range []syscall.Errno{syscall.ENOENT, syscall.EEXIST, syscall.ENOTEMPTY,
					syscall.ENOTDIR, syscall.EISDIR, syscall.EINVAL, syscall.ESTALE} {
					if errors.Is(err, x) {
						return true
					}
				}
				return err == nil
			}
			for i := range ops {
				d := dirs[rng.IntN(len(dirs))]
				var err error
				switch rng.IntN(10) {
				case 0, 1:
					_, err = f.Mknod(d, name(), syscall.S_IFREG|0644, 0, me)
				case 2:
					_, err = f.Mkdir(d, name(), 0755, me)
				case 3:
					var a fs.Attr
					if a, err = f.Lookup(d, name()); err == nil && a.Mode&syscall.S_IFMT == syscall.S_IFREG {
						_, err = f.Write(a.Ino, pattern(1+rng.IntN(50000), byte(i)), int64(rng.IntN(100000)))
					}
				case 4:
					err = f.Unlink(d, name())
				case 5:
					err = f.Rmdir(d, name())
				case 6, 7:
					err = f.Rename(d, name(), dirs[rng.IntN(len(dirs))], name(), uint32(rng.IntN(3)))
				case 8:
					var a fs.Attr
					if a, err = f.Lookup(d, name()); err == nil {
						if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
							_, err = f.Link(a.Ino, d, name())
							if errors.Is(err, syscall.EPERM) {
								err = nil
							}
						} else {
							_, err = f.Link(a.Ino, dirs[rng.IntN(len(dirs))], name())
						}
					}
				case 9:
					var a fs.Attr
					if a, err = f.Lookup(d, name()); err == nil {
						if rng.IntN(2) == 0 {
							err = f.SetXattr(a.Ino, "user.k", pattern(rng.IntN(2000), 1), 0)
						} else if a.Mode&syscall.S_IFMT == syscall.S_IFREG {
							_, err = f.SetAttr(a.Ino, fs.SetAttr{Valid: fs.SetSize, Size: uint64(rng.IntN(80000))})
						}
					}
				}
				if !benign(err) {
					errs <- fmt.Errorf("worker %d op %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.deep()
	t.Logf("stats %+v", e.f.Stats())
	if n := e.f.TableSize(); n != 0 {
		t.Fatalf("%d inodes still in memory", n)
	}
	e.reopen()
}

func TestLockOrderRetry(t *testing.T) {
	e := newEnv(t, 96<<20, layout.Params{AGCount: 6})
	n, err := e.f.LockOrderProbe(1, 4)
	if err != nil || n != 2 || e.f.Stats().LockRetries != 1 {
		t.Fatalf("attempts %d, err %v, stats %+v", n, err, e.f.Stats())
	}
}
