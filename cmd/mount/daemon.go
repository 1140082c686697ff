package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"log/syslog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// readyMsg is what a daemon writes to its parent once the mount is live.
const readyMsg = "ok\n"

// daemonize runs this program again as the daemon, in a new session
// (setsid: it must outlive the caller's process group), with stdio on
// /dev/null and its working directory at /, and waits until the daemon
// reports: nil once the mount is live, else the daemon's own error.
func daemonize(c *config) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find my own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, c.args...)
	cmd.Args[0] = c.prog // the name chooses the default subtype
	cmd.Env = append(os.Environ(), notifyEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	// The daemon resolves relative paths here, then moves to / so that it
	// pins no directory the caller may want to unmount.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	verbosef(c, "starting the daemon for %s on %s", c.device, c.mountPoint)
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("cannot start the daemon: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	if string(msg) == readyMsg {
		verbosef(c, "mounted %s on %s (daemon pid %d)", c.device, c.mountPoint, cmd.Process.Pid)
		cmd.Process.Release()
		return nil
	}
	state, werr := cmd.Process.Wait()
	if len(msg) > 0 {
		return errors.New(oneLine(string(msg)))
	}
	if werr != nil {
		return fmt.Errorf("the daemon failed before the mount was live: %w", werr)
	}
	return fmt.Errorf("the daemon failed before the mount was live (%s)", state)
}

// runChild is the daemon side of daemonize.
func runChild(c *config) error {
	notify := os.NewFile(uintptr(c.notifyFD), "notify")
	os.Unsetenv(notifyEnv)
	os.Chdir("/")
	reported := false
	report := func(err error) {
		if reported {
			return
		}
		reported = true
		msg := readyMsg
		if err != nil {
			msg = oneLine(err.Error())
		}
		io.WriteString(notify, msg)
		notify.Close()
	}
	logger := daemonLogger()
	err := serveLog(c, report, logger)
	report(err)
	if err != nil {
		logger.Printf("mount on %s failed: %v", c.mountPoint, err)
		os.Exit(exitFailure)
	}
	return nil
}

// daemonLogger logs to syslog, else to the kernel log (/dev/kmsg, read
// with dmesg), else nowhere: the daemon's stderr is /dev/null.
func daemonLogger() *log.Logger {
	tag := "agfs[" + strconv.Itoa(os.Getpid()) + "]"
	if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_NOTICE, tag); err == nil {
		return log.New(w, "", 0)
	}
	if k, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		return log.New(kmsg{k}, "<4>"+tag+": ", 0)
	}
	return log.New(io.Discard, "", 0)
}

// kmsg writes each log line as one kernel log record.
type kmsg struct{ f *os.File }

func (k kmsg) Write(p []byte) (int, error) {
	if _, err := k.f.Write(bytes.TrimRight(p, "\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}

// plainLogger logs to stderr, for a daemon in the foreground.
func plainLogger(c *config) *log.Logger {
	return log.New(os.Stderr, filepath.Base(c.prog)+": ", log.LstdFlags)
}
