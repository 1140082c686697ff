package device

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agfs/disk"
)

// holdWith starts flock(1), under the name given, holding an exclusive
// lock on img (as disk.Open takes it) for d, and waits until /proc/locks
// shows it.
func holdWith(t *testing.T, name, img string, d time.Duration) {
	t.Helper()
	src, err := exec.LookPath("flock")
	if err != nil {
		t.Fatalf("flock(1) (util-linux) is needed: %v", err)
	}
	bin := filepath.Join(t.TempDir(), name)
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
	cmd := exec.Command(bin, img, "sleep", fmt.Sprintf("%.3f", d.Seconds()))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if h, _ := Holder(img); h != "" {
			return
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("flock never showed up in /proc/locks")
		}
	}
}

func image(t *testing.T) string {
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestOpenWaitsForDaemon: a device held by an agfs mount daemon (one
// finishing an unmount) is waited for.
func TestOpenWaitsForDaemon(t *testing.T) {
	img := image(t)
	holdWith(t, "mount.agfs", img, 700*time.Millisecond)
	if h, daemon := Holder(img); !daemon {
		t.Fatalf("holder %q not taken for an agfs daemon", h)
	}
	waits := 0
	start := time.Now()
	dev, err := Open(img, disk.Options{}, nil, func(string, ...any) { waits++ })
	if err != nil {
		t.Fatalf("Open did not wait for the daemon: %v", err)
	}
	dev.Close()
	if waits == 0 || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("Open returned after %v, told of %d waits", time.Since(start), waits)
	}
}

// TestOpenRefusesOthers: any other holder is an error naming it, at once;
// a mounted device is the caller's error.
func TestOpenRefusesOthers(t *testing.T) {
	img := image(t)
	holdWith(t, "flock", img, 30*time.Second)
	start := time.Now()
	_, err := Open(img, disk.Options{}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "is in use by pid") || !strings.Contains(err.Error(), "(flock)") {
		t.Fatalf("Open of a device another program holds: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("refusal took %v", time.Since(start))
	}
	mounted := os.ErrExist
	if _, err := Open(img, disk.Options{}, func() error { return mounted }, nil); err != mounted {
		t.Fatalf("Open of a mounted device: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := Open(missing, disk.Options{}, nil, nil); !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), missing+": ") {
		t.Fatalf("Open of a missing file: %v", err)
	}
}
