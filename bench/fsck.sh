#!/usr/bin/env bash
# NAME
#     bench/fsck.sh - fsck.agfs against e2fsck on a tree of a million inodes
#
# SYNOPSIS
#     bench/fsck.sh [-o FILE] [--dirs N] [--files N] [--size SIZE]
#
# DESCRIPTION
#     Builds the same tree on an agfs image and on an ext4 image of the same
#     size, then checks each once, cold (caches dropped first), under
#     /usr/bin/time -v, and prints a markdown table of wall time, CPU time
#     and peak memory (Maximum resident set size):
#
#       fsck.agfs -n -f IMG      (bin/, built here with make)
#       e2fsck -fn IMG
#
#     The tree (bench/gentree) is DIRS directories under the root holding
#     FILES regular files each, every tenth file with 4 KiB of data: with the
#     defaults 1,000 + 999,000 = 1,000,000 inodes besides the root. It is
#     written through the agfs fs library straight onto the agfs image (no
#     FUSE), and with the kernel's ext4 on the loop-mounted ext4 image. The
#     agfs image is formatted with one inode per 7 KiB (-i 7K), the ext4 one
#     with -N 1200000, so both have room for about 1.2 million inodes.
#
#     Everything lives in a private temporary directory, unmounted and
#     removed on every exit. Needs root (loop mount, drop_caches); installs
#     the time package when /usr/bin/time is missing.
#
# OPTIONS
#     -o, --results FILE  also write the table, with the run's conditions, here
#         --dirs N        directories in the tree (1000)
#         --files N       files in each directory (999)
#         --size SIZE     size of both images (8G)
#     -h, --help          show this text
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
results=
dirs=1000
files=999
size=8G

# shellcheck source=bench/common.sh
. "$repo/bench/common.sh"
die() { echo "fsck.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case $1 in
	-o | --results) results=${2:?$1 needs a value}; shift 2 ;;
	--dirs) dirs=${2:?$1 needs a value}; shift 2 ;;
	--files) files=${2:?$1 needs a value}; shift 2 ;;
	--size) size=${2:?$1 needs a value}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 16 ;;
	esac
done
[ "$(id -u)" = 0 ] || die "needs root (loop mount, drop_caches)"
if [ ! -x /usr/bin/time ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null || die "cannot install time"
fi
command -v e2fsck >/dev/null || die "e2fsck missing (Debian: e2fsprogs)"

tmp=$(mktemp -d /tmp/agfs-fsck-bench.XXXXXX)
cleanup() {
	if mountpoint -q "$tmp/mnt" 2>/dev/null; then
		umount "$tmp/mnt" || umount -l "$tmp/mnt"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make -s -C "$repo" build >/dev/null
(cd "$repo" && go build -o "$tmp/gentree" ./bench/gentree)

tree_args=(-dirs "$dirs" -files "$files")

echo "building the tree on agfs" >&2
truncate -s "$size" "$tmp/agfs.img"
"$repo/bin/mkfs.agfs" -q -f -i 7K "$tmp/agfs.img"
t0=$(now)
"$tmp/gentree" "${tree_args[@]}" -image "$tmp/agfs.img" >&2
gen_agfs=$(secs "$t0" "$(now)")

echo "building the tree on ext4" >&2
truncate -s "$size" "$tmp/ext4.img"
mkfs.ext4 -q -F -N 1200000 "$tmp/ext4.img"
mkdir "$tmp/mnt"
mount -o loop "$tmp/ext4.img" "$tmp/mnt"
t0=$(now)
"$tmp/gentree" "${tree_args[@]}" -dir "$tmp/mnt" >&2
umount "$tmp/mnt"
gen_ext4=$(secs "$t0" "$(now)")

# check TAG NAME CMD...: one cold run under time -v; prints a table row
# and leaves what the checker said in $tmp/TAG.log.
check() {
	local log=$tmp/$1.log name=$2 out=$tmp/time.out rc=0 t0 t1
	shift 2
	drop_caches
	echo "checking with $name" >&2
	t0=$(now)
	/usr/bin/time -v -o "$out" "$@" >"$log" 2>&1 || rc=$?
	t1=$(now)
	# Clean is 0 for both; anything else is shown, with what the checker said.
	[ "$rc" = 0 ] || { echo "$name exited $rc:" >&2; tail -5 "$log" >&2; }
	awk -F': ' -v name="$name" -v wall="$(secs "$t0" "$t1")" -v rc="$rc" '
		/User time/ { u = $2 } /System time/ { s = $2 }
		/Maximum resident set size/ { rss = $2 }
		END { printf "| %s | %s | %.2f | %.2f | %.0f | %s |\n", name, wall, u, s, rss / 1024, rc }' "$out"
}

load_start=$(uptime)
row_agfs=$(check agfs "fsck.agfs -n -f -v" "$repo/bin/fsck.agfs" -n -f -v "$tmp/agfs.img")
row_ext4=$(check ext4 "e2fsck -fn" e2fsck -fn "$tmp/ext4.img")
load_end=$(uptime)
# The inodes each checker counted: "IMG: N inodes in use: ..." and
# "IMG: N/TOTAL files (...)".
used_agfs=$(sed -n 's/.*: \([0-9]*\) inodes in use.*/\1/p' "$tmp/agfs.log")
used_ext4=$(sed -n 's|.*: \([0-9]*\)/[0-9]* files .*|\1|p' "$tmp/ext4.log")

report() {
	results_header fsck.sh
	echo "tree: $dirs dirs x $files files (every 10th with 4 KiB); images $size;" \
		"inodes in use as the checkers count them: agfs $used_agfs, ext4 $used_ext4 (ext4 counts its 11 reserved)"
	echo "tree built in ${gen_agfs} s on agfs (fs library), ${gen_ext4} s on ext4 (kernel, loop);" \
		"host footprint: agfs $(du -h "$tmp/agfs.img" | cut -f1), ext4 $(du -h "$tmp/ext4.img" | cut -f1)"
	echo "$(nproc) CPUs; one cold run each (caches dropped)"
	echo "load at start:${load_start#*load}"
	echo "load at end:  ${load_end#*load}"
	echo
	echo "| checker | wall s | user s | sys s | peak RSS MiB | exit |"
	echo "|---|---:|---:|---:|---:|---:|"
	echo "$row_agfs"
	echo "$row_ext4"
}

if [ -n "$results" ]; then
	report | tee "$results"
else
	report
fi
