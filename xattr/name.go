package xattr

import (
	"fmt"
	"strings"
	"syscall"
)

// Namespace is an attribute namespace, as stored on disk.
type Namespace uint8

// The namespaces.
const (
	User     Namespace = 1 // "user."
	Trusted  Namespace = 2 // "trusted."
	Security Namespace = 3 // "security."
	System   Namespace = 4 // "system."
)

var prefixes = [...]string{User: "user.", Trusted: "trusted.", Security: "security.", System: "system."}

// Limits, as Linux's.
const (
	NameMax = 255   // XATTR_NAME_MAX: bytes of a full name, prefix included
	SizeMax = 65536 // XATTR_SIZE_MAX: bytes of a value
)

// Set flags, as setxattr(2)'s.
const (
	Create  = 0x1 // XATTR_CREATE: fail with EEXIST if the name exists
	Replace = 0x2 // XATTR_REPLACE: fail with ENODATA if it does not
)

func (ns Namespace) valid() bool { return ns >= User && ns <= System }

// Prefix returns the namespace's prefix ("user." …), or "" for an unknown
// namespace.
func (ns Namespace) Prefix() string {
	if !ns.valid() {
		return ""
	}
	return prefixes[ns]
}

func (ns Namespace) String() string {
	if !ns.valid() {
		return fmt.Sprintf("namespace(%d)", uint8(ns))
	}
	return strings.TrimSuffix(prefixes[ns], ".")
}

// ParseName splits a full attribute name into its namespace and suffix,
// with Linux's errors: ERANGE for an empty name or one over NameMax bytes,
// EOPNOTSUPP for an unknown namespace, EINVAL for an empty suffix or a
// NUL byte.
func ParseName(name string) (Namespace, string, error) {
	if len(name) == 0 || len(name) > NameMax {
		return 0, "", syscall.ERANGE
	}
	for ns := User; ns <= System; ns++ {
		if suf, ok := strings.CutPrefix(name, prefixes[ns]); ok {
			if suf == "" || strings.IndexByte(suf, 0) >= 0 {
				return 0, "", syscall.EINVAL
			}
			return ns, suf, nil
		}
	}
	return 0, "", syscall.EOPNOTSUPP
}

// validSuffix reports whether suf is a possible suffix of ns on disk.
func validSuffix(ns Namespace, suf []byte) bool {
	if !ns.valid() || len(suf) == 0 || len(prefixes[ns])+len(suf) > NameMax {
		return false
	}
	for _, c := range suf {
		if c == 0 {
			return false
		}
	}
	return true
}
