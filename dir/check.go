package dir

// Info describes a checked directory index.
type Info struct {
	Entries    uint64 // live entries
	Tombstones uint64
	Depth      int // B+tree levels
}

// Check verifies the whole index for fsck: the B+tree (btree.Check:
// nodes, key order, sibling chain), every key and value decoded (names
// valid, inode non-zero, type valid), positions unique, every entry
// reachable from its name's home position (so its name hashes to where it
// is), and no tombstone ending a run. Problems are errors wrapping
// layout.ErrCorrupt.
func (d *Dir) Check() (Info, error) {
	var info Info
	if err := d.t.Check(); err != nil {
		return info, d.wrap(err)
	}
	depth, err := d.t.Depth()
	if err != nil {
		return info, d.wrap(err)
	}
	info.Depth = depth

	type wrapped struct {
		name      string
		home, pos uint64
	}
	var (
		have          bool
		prevPos       uint64
		prevTomb      bool
		runStart      uint64
		wraps         []wrapped // entries whose walk wrapped past MaxPos
		firstRunAtMin bool
	)
	it := d.t.Seek(nil)
	for it.Next() {
		e, err := d.decode(it.Key(), it.Value())
		if err != nil {
			return info, err
		}
		switch {
		case !have:
			runStart = e.pos
			firstRunAtMin = e.pos == MinPos
		case e.pos == prevPos:
			return info, d.corrupt("position %#x used twice", e.pos)
		case e.pos == prevPos+1:
			// the run goes on
		default:
			if prevTomb {
				return info, d.corrupt("tombstone at %#x ends a run", prevPos)
			}
			runStart = e.pos
		}
		if e.tomb() {
			info.Tombstones++
		} else {
			info.Entries++
			h := d.home(string(e.name))
			switch {
			case h <= e.pos && h < runStart:
				return info, d.corrupt("entry %q at %#x: its home %#x is not in its run (from %#x): unreachable, name and position disagree", e.name, e.pos, h, runStart)
			case h > e.pos:
				if runStart != MinPos {
					return info, d.corrupt("entry %q at %#x: its home %#x is after it and its run starts at %#x: unreachable", e.name, e.pos, h, runStart)
				}
				wraps = append(wraps, wrapped{string(e.name), h, e.pos})
			}
		}
		prevPos, prevTomb, have = e.pos, e.tomb(), true
	}
	if err := it.Err(); err != nil {
		return info, d.wrap(err)
	}
	if !have {
		return info, nil
	}
	// The last run continues into the first when it ends at MaxPos and
	// the first starts at MinPos.
	joined := prevPos == MaxPos && firstRunAtMin
	if prevTomb && !joined {
		return info, d.corrupt("tombstone at %#x ends a run", prevPos)
	}
	for _, w := range wraps {
		if !joined || w.home < runStart {
			return info, d.corrupt("entry %q at %#x: its home %#x is not in its (wrapped) run: unreachable", w.name, w.pos, w.home)
		}
	}
	return info, nil
}
