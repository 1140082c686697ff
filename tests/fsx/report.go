package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// line formats a log entry fsx style.
func (e *logEntry) line() string {
	return fmt.Sprintf("%d(%3d mod 256): %s", e.op, e.op%256, e.text)
}

// touches says whether the entry read or changed the byte at off.
func (e *logEntry) touches(off int64) bool {
	in := func(start, n int64) bool { return start >= 0 && off >= start && off < start+n }
	if e.kind == opTruncate {
		// Both directions move EOF across [min, max) and zero what is cut.
		return in(e.off, max(e.n, 1))
	}
	return in(e.off, e.n) || in(e.dst, e.n)
}

// firstDiff returns the first index at which a and b differ, how many
// indexes differ (a length difference counts in full) and the last one; -1
// when equal.
func firstDiff(a, b []byte) (first, count, last int) {
	first, last = -1, -1
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			if first < 0 {
				first = i
			}
			count++
			last = i
		}
	}
	if len(a) != len(b) {
		if first < 0 {
			first = n
		}
		count += max(len(a), len(b)) - n
		last = max(len(a), len(b)) - 1
	}
	return first, count, last
}

// writerOf says which operation wrote byte v at off, if a write or mapwrite
// wrote it there: see fillData.
func (f *fsx) writerOf(off int64, v byte) string {
	if v == 0 {
		return "0x00"
	}
	k := v
	if off&1 == 1 && off < int64(len(f.orig)) {
		k = v - f.orig[off]
	}
	return fmt.Sprintf("%#02x (if a write or mapwrite put it there: op = %d mod 256)", v, k)
}

// hexdump prints expected and actual bytes, both starting at file offset
// base, in rows of 16 file offsets around index at, marking the bytes that
// differ.
func hexdump(b *strings.Builder, base int64, exp, act []byte, at int) {
	start := max(base&^15, (base+int64(at))&^15-32)
	end := min(base+int64(max(len(exp), len(act))), start+96)
	byteAt := func(d []byte, p int64) int {
		if i := p - base; i >= 0 && i < int64(len(d)) {
			return int(d[i])
		}
		return -1
	}
	row := func(label string, d []byte, p int64) string {
		var s strings.Builder
		s.WriteString(label)
		for j := p; j < p+16; j++ {
			switch v := byteAt(d, j); {
			case j < base:
				s.WriteString("   ")
			case v < 0:
				s.WriteString(" --")
			default:
				fmt.Fprintf(&s, " %02x", v)
			}
		}
		return s.String()
	}
	for p := start; p < end; p += 16 {
		fmt.Fprintf(b, "0x%08x %s\n", p, row("expected", exp, p))
		fmt.Fprintf(b, "%10s %s\n", "", row("actual  ", act, p))
		var m strings.Builder
		for j := p; j < p+16; j++ {
			if j >= base && byteAt(exp, j) != byteAt(act, j) {
				m.WriteString(" ^^")
			} else {
				m.WriteString("   ")
			}
		}
		if marks := strings.TrimRight(m.String(), " "); marks != "" {
			fmt.Fprintf(b, "%10s %8s%s\n", "", "", marks)
		}
	}
}

// report prints the failure: seed, op, log, hexdump; and saves the model to
// FILE.fsxgood and the report to FILE.fsxlog.
func (f *fsx) report(err error) {
	var fl *failure
	if !errors.As(err, &fl) {
		fl = &failure{msg: err.Error()}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fsx: FAILURE at op %d on %s (seed %d)\n", f.op, f.cfg.path, f.cfg.seed)
	fmt.Fprintf(&b, "%s\n", fl.msg)
	bad := int64(-1)
	var first int
	if fl.hasData {
		var count, last int
		first, count, last = firstDiff(fl.expected, fl.actual)
		if first >= 0 {
			bad = fl.base + int64(first)
			fmt.Fprintf(&b, "%d byte(s) differ between %#x and %#x; expected %#x bytes from %#x, got %#x\n",
				count, fl.base+int64(first), fl.base+int64(last), len(fl.expected), fl.base, len(fl.actual))
			if first < len(fl.expected) {
				fmt.Fprintf(&b, "first bad byte at %#x: expected %s\n", bad, f.writerOf(bad, fl.expected[first]))
			} else {
				fmt.Fprintf(&b, "first bad byte at %#x: expected none (EOF)\n", bad)
			}
			if first < len(fl.actual) {
				fmt.Fprintf(&b, "%*s got %s\n", len(fmt.Sprintf("first bad byte at %#x:", bad)), "", f.writerOf(bad, fl.actual[first]))
			} else {
				fmt.Fprintf(&b, "%*s got none (EOF)\n", len(fmt.Sprintf("first bad byte at %#x:", bad)), "")
			}
		}
	}
	fmt.Fprintf(&b, "model size %#x; maxlen %#x, maxoplen %#x, page size %#x\n", f.size, f.cfg.maxLen, f.cfg.maxOpLen, f.pageSize)
	if len(f.disabled) > 0 {
		fmt.Fprintf(&b, "disabled as unsupported: %s\n", f.disabledList())
	}

	n := len(f.log)
	fmt.Fprintf(&b, "LOG DUMP (last %d entries, up to op %d", n, f.op)
	if bad >= 0 {
		fmt.Fprintf(&b, "; ****** marks those touching %#x", bad)
	}
	b.WriteString(")\n")
	for i := range n {
		e := &f.log[(f.logAll-int64(n)+int64(i))%logKeep]
		b.WriteString(e.line())
		if bad >= 0 && e.touches(bad) {
			b.WriteString("\t******")
		}
		b.WriteString("\n")
	}
	if bad >= 0 {
		fmt.Fprintf(&b, "EXPECTED (the model) vs ACTUAL around %#x:\n", bad)
		hexdump(&b, fl.base, fl.expected, fl.actual, first)
	}

	good := f.cfg.path + ".fsxgood"
	if err := os.WriteFile(good, f.good[:f.size], 0o644); err != nil {
		fmt.Fprintf(&b, "could not save the expected contents: %v\n", err)
	} else {
		fmt.Fprintf(&b, "expected contents (%#x bytes) saved to %s\n", f.size, good)
	}
	logPath := f.cfg.path + ".fsxlog"
	fmt.Fprintf(&b, "this report is saved to %s\n", logPath)
	repro := shellJoin(f.cfg.args)
	if !f.cfg.seedGiven {
		repro = fmt.Sprintf("%s -S %d", repro, f.cfg.seed) // the last -S wins
	}
	fmt.Fprintf(&b, "reproduce with: fsx %s\n", repro)
	os.WriteFile(logPath, []byte(b.String()), 0o644)
	fmt.Fprint(f.out, b.String())
}

func (f *fsx) disabledList() string {
	var s []string
	for k, why := range f.disabled {
		s = append(s, fmt.Sprintf("%s (%s)", opNames[k], why))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=./,:+@%", r))
		}) < 0 {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

func (f *fsx) summary(elapsed time.Duration) {
	rate := float64(f.op) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(f.out, "fsx: %d ops OK in %.2fs (%.0f ops/s), seed %d, final size %#x\n",
		f.op, elapsed.Seconds(), rate, f.cfg.seed, f.size)
	if f.cfg.quiet {
		if len(f.disabled) > 0 {
			fmt.Fprintf(f.out, "fsx: unsupported: %s\n", f.disabledList())
		}
		return
	}
	fmt.Fprintf(f.out, "  %-16s %9s %9s\n", "op", "done", "skipped")
	for k := range numOps {
		status := ""
		switch {
		case f.disabled[k] != "":
			status = "  unsupported: " + f.disabled[k]
		case !f.enabled[k]:
			status = "  off"
		}
		fmt.Fprintf(f.out, "  %-16s %9d %9d%s\n", opNames[k], f.done[k], f.skipped[k], status)
	}
	check := "the whole file after every op"
	if f.cfg.checkEvery > 1 {
		check = fmt.Sprintf("the whole file every %d ops, the size and the changed range after every op", f.cfg.checkEvery)
	}
	fmt.Fprintf(f.out, "  checked: %s\n", check)
	if f.cfg.fsyncCheck {
		how := "O_DIRECT"
		if f.direct == directNo {
			how = "buffered (" + f.directWhy + ")"
		}
		fmt.Fprintf(f.out, "  fsync check: %d reads through a new descriptor, %s\n", f.fsyncChk, how)
	}
}
