// Package cli holds what agfs's commands share: size parsing, exit codes
// and man-page style usage text.
package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads a byte count with an optional binary suffix: K, M, G, T,
// P or E (KiB, MiB, ... also accepted, case-insensitive, and a trailing B).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(u, "B")
	u = strings.TrimSuffix(u, "I")
	shift := 0
	if n := len(u); n > 0 {
		if i := strings.IndexByte("KMGTPE", u[n-1]); i >= 0 {
			shift = 10 * (i + 1)
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseUint(u, 10, 64)
	if err != nil || u == "" {
		return 0, fmt.Errorf("%q is not a size (a number with an optional K, M, G or T suffix)", s)
	}
	if shift > 0 && v > (1<<63-1)>>shift || v > 1<<63-1 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v << shift), nil
}
