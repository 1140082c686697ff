package orphan

import (
	"fmt"
	"time"
)

// Stats are the scanner's counters since the mount.
type Stats struct {
	Enabled  bool          // the scanner runs (not -o noscan, not read-only)
	Interval time.Duration // pause before each pass
	Rate     int           // work units per second (0: unbounded)

	Passes   uint64        // passes completed
	Aborted  uint64        // passes given up on an error (logged)
	LastPass time.Duration // how long the last completed pass took
	Scanned  uint64        // inode slots visited, all passes

	FoundUnlinked uint64 // inodes with link count 0 not on their way out
	FoundUnnamed  uint64 // used inodes no directory names
	FoundBlocks   uint64 // used blocks no inode owns

	ReclaimedUnlinked uint64
	ReclaimedUnnamed  uint64
	ReclaimedBlocks   uint64

	Stale    uint64 // findings the re-check showed to be in use after all
	Deferred uint64 // reclaims put off: the orphan was still referenced
	Resolved uint64 // orphans in the tree that went away by themselves
	Errors   uint64 // failed passes and reclaims (logged)
	Pending  int    // orphans in the tree now

	// AtMount is the number of inodes on the on-disk orphan lists (files
	// unlinked while open when the filesystem was last used) that the
	// mount reclaimed before it returned; the filesystem fills it in.
	AtMount uint64
}

// AppendText appends the counters as "scan.NAME VALUE" lines, the format
// of the agfs.stats virtual attribute (mount.agfs --stats).
func (s Stats) AppendText(b []byte) []byte {
	on := 0
	if s.Enabled {
		on = 1
	}
	for _, f := range []struct {
		name string
		v    any
	}{
		{"enabled", on},
		{"interval_seconds", s.Interval.Seconds()},
		{"rate", s.Rate},
		{"passes", s.Passes},
		{"aborted_passes", s.Aborted},
		{"last_pass_seconds", s.LastPass.Seconds()},
		{"inodes_scanned", s.Scanned},
		{"found_unlinked_inodes", s.FoundUnlinked},
		{"found_unnamed_inodes", s.FoundUnnamed},
		{"found_unowned_blocks", s.FoundBlocks},
		{"reclaimed_unlinked_inodes", s.ReclaimedUnlinked},
		{"reclaimed_unnamed_inodes", s.ReclaimedUnnamed},
		{"reclaimed_unowned_blocks", s.ReclaimedBlocks},
		{"reclaimed_at_mount", s.AtMount},
		{"stale", s.Stale},
		{"deferred", s.Deferred},
		{"resolved", s.Resolved},
		{"errors", s.Errors},
		{"pending", s.Pending},
	} {
		b = fmt.Appendf(b, "scan.%s %v\n", f.name, f.v)
	}
	return b
}
