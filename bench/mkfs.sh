#!/usr/bin/env bash
# bench/mkfs.sh: how long formatting a large sparse image takes and how much
# of it lands on the host, for agfs and, in the same run, its peers (ext4
# with lazy inode-table init, XFS). Usage: bench/mkfs.sh [SIZE] (default 1T).
# Needs bin/mkfs.agfs (make build); mkfs.ext4 and mkfs.xfs are measured when
# installed (Debian: e2fsprogs, xfsprogs).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1T}
runs=${RUNS:-5}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# measure NAME CMD... : median wall time over $runs fresh images, and the
# host footprint (du) of the last one.
measure() {
	local name=$1; shift
	local times=() img="$dir/img"
	for _ in $(seq "$runs"); do
		rm -f "$img"
		truncate -s "$size" "$img"
		local t0 t1
		t0=$(date +%s%N)
		"$@" "$img" >/dev/null 2>&1
		t1=$(date +%s%N)
		times+=($(( (t1 - t0) / 1000 )))
	done
	local med
	med=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
	printf '%-28s %10.1f ms %10s\n' "$name" "$(echo "$med / 1000" | bc -l)" "$(du -h "$img" | cut -f1)"
}

printf '%-28s %13s %10s\n' "mkfs of a $size image" "median time" "on host"
measure "agfs" bin/mkfs.agfs -q -f
if command -v mkfs.ext4 >/dev/null; then
	measure "ext4 (lazy_itable_init)" mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1
fi
if command -v mkfs.xfs >/dev/null; then
	measure "xfs" mkfs.xfs -q -f
fi
