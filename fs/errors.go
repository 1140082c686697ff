package fs

import (
	"errors"
	"fmt"
	"syscall"

	"agfs/layout"
)

// errno is applied to every error the API returns: an error that carries a
// syscall.Errno is returned as it is; anything else (I/O errors,
// corruption, a closed log) is wrapped so that it also matches
// syscall.EIO, keeping its own text and chain (errors.Is(err,
// layout.ErrCorrupt) still holds).
func errno(err error) error {
	if err == nil {
		return nil
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return err
	}
	return &ioError{err}
}

type ioError struct{ err error }

func (e *ioError) Error() string   { return e.err.Error() }
func (e *ioError) Unwrap() []error { return []error{syscall.EIO, e.err} }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", layout.ErrCorrupt, fmt.Sprintf(format, args...))
}
