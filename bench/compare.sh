#!/usr/bin/env bash
# NAME
#     bench/compare.sh - agfs against fuse2fs and go-fuse's loopback, one run
#
# SYNOPSIS
#     bench/compare.sh [-n RUNS] [-o FILE] [--fs LIST] [-w LIST] [--size SIZE]
#
# DESCRIPTION
#     Runs the same workloads on three FUSE filesystems mounted side by side
#     and prints one markdown table of the medians:
#
#       agfs      bin/mount.agfs (built here with make) on a fresh image,
#                 with its default options plus $AGFS_MOUNT_OPTS; its
#                 requests travel over io_uring when the fuse module
#                 allows it (AGFS_MOUNT_OPTS=uring turns that on,
#                 nouring compares without), and the report says which
#       fuse2fs   e2fsprogs' fuse2fs over an ext4 image of the same size
#                 (installed with apt-get when missing)
#       loopback  go-fuse's example/loopback over a host directory: the cost
#                 of FUSE and go-fuse alone, with the host filesystem behind
#
#     Workload groups (-w), each run RUNS times, interleaved across the
#     filesystems so that load from other users of the machine spreads evenly:
#
#       seq        dd 1 GiB in 1 MiB writes with conv=fsync (MB/s, the fsync
#                  included), then read it back after dropping caches (MB/s)
#       randwrite  fio: 4 KiB random overwrites of a 64 MiB file, fsync after
#                  each; IOPS, and p50 latency = p50(write) + p50(fsync)
#       meta       bench/metaops: create, lstat, unlink 20,000 files in one
#                  directory (per second); caches dropped between phases
#       tree       untar /usr/local/go/src (a tar made once, read from the
#                  page cache), then rm -rf of it after dropping caches (s)
#
#     The ratio columns are agfs's speed-up: the peer's figure over agfs's for
#     times and latencies, agfs's over the peer's otherwise, so above 1 always
#     means agfs is faster. The target column checks issue 4's goals: 2x
#     fuse2fs on metadata, 1x fuse2fs on data, 0.8x loopback on sequential.
#
#     Images, mount points and tools live in a private temporary directory;
#     everything is unmounted and removed on every exit (trap). Caches are
#     dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before reads and
#     between metadata phases: this needs root, as do the mounts.
#
# OPTIONS
#     -n, --runs RUNS     runs of each workload; the table shows medians (3)
#     -o, --results FILE  also write the table, with the run's conditions, here
#         --fs LIST       filesystems, comma-separated (agfs,fuse2fs,loopback)
#     -w, --workloads LIST
#                         workload groups, comma-separated
#                         (seq,randwrite,meta,tree)
#         --size SIZE     size of the agfs and ext4 images (4G)
#     -h, --help          show this text
#
# ENVIRONMENT
#     AGFS_MOUNT_OPTS     extra -o options for mount.agfs, e.g. noscan, to
#                         compare the same workload with and without a feature
#     META_FILES          files of the meta workload (20000)
#
# EXAMPLES
#     bench/compare.sh -o /tmp/bench.md
#     AGFS_MOUNT_OPTS=noscan bench/compare.sh --fs agfs -w tree -n 5
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=3
results=
fslist=agfs,fuse2fs,loopback
workloads=seq,randwrite,meta,tree
size=4G
meta_files=${META_FILES:-20000}

# shellcheck source=bench/common.sh
. "$repo/bench/common.sh"
die() { echo "compare.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case $1 in
	-n | --runs) runs=${2:?$1 needs a value}; shift 2 ;;
	-o | --results) results=${2:?$1 needs a value}; shift 2 ;;
	--fs) fslist=${2:?$1 needs a value}; shift 2 ;;
	-w | --workloads) workloads=${2:?$1 needs a value}; shift 2 ;;
	--size) size=${2:?$1 needs a value}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 16 ;;
	esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs $runs: want a positive number"
IFS=, read -ra fss <<<"$fslist"
IFS=, read -ra wls <<<"$workloads"
for f in "${fss[@]}"; do
	case $f in agfs | fuse2fs | loopback) ;; *) die "--fs: unknown filesystem $f" ;; esac
done
for w in "${wls[@]}"; do
	case $w in seq | randwrite | meta | tree) ;; *) die "-w: unknown workload group $w" ;; esac
done
[ "$(id -u)" = 0 ] || die "needs root (mounts, drop_caches)"

# --- tools ------------------------------------------------------------------

need_pkg() { # need_pkg COMMAND PACKAGE
	command -v "$1" >/dev/null && return
	echo "installing $2 (for $1)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null || die "cannot install $2"
}
need_pkg fio fio
need_pkg jq jq
need_pkg mkfs.ext4 e2fsprogs
[[ ,$fslist, == *,fuse2fs,* ]] && need_pkg fuse2fs fuse2fs

tmp=$(mktemp -d /tmp/agfs-bench.XXXXXX)
declare -A pid=() mnt=()

cleanup() {
	local f
	for f in "${!mnt[@]}"; do umount_fs "$f" || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building into $repo/bin and $tmp" >&2
make -s -C "$repo" build >/dev/null
(cd "$repo" && go build -o "$tmp/metaops" ./bench/metaops)
if [[ ,$fslist, == *,loopback,* ]]; then
	(cd "$repo" && go build -o "$tmp/loopback" github.com/hanwen/go-fuse/v2/example/loopback) ||
		die "cannot build go-fuse's loopback example from the module cache"
fi

# --- mounts -----------------------------------------------------------------

# mount_fs FS: a fresh filesystem of that kind at $tmp/mnt/FS, its server
# in the foreground of a background job so that its PID is ours to wait for.
mount_fs() {
	local f=$1 m=$tmp/mnt/$1 img=$tmp/$1.img
	mkdir -p "$m"
	case $f in
	agfs)
		truncate -s "$size" "$img"
		"$repo/bin/mkfs.agfs" -q -f "$img"
		"$repo/bin/mount.agfs" -f ${AGFS_MOUNT_OPTS:+-o "$AGFS_MOUNT_OPTS"} "$img" "$m" >"$tmp/$f.log" 2>&1 &
		;;
	fuse2fs)
		truncate -s "$size" "$img"
		mkfs.ext4 -q -F "$img"
		fuse2fs "$img" "$m" -f >"$tmp/$f.log" 2>&1 &
		;;
	loopback)
		mkdir -p "$tmp/loopback-src"
		"$tmp/loopback" -q -directmount "$m" "$tmp/loopback-src" >"$tmp/$f.log" 2>&1 &
		;;
	esac
	pid[$f]=$!
	mnt[$f]=$m
	local i
	for i in $(seq 100); do
		if mountpoint -q "$m"; then
			if [ "$f" = agfs ]; then
				agfs_queues=$("$repo/bin/mount.agfs" --stats "$m" | awk '$1 == "fuse.uring_queues" { print $2 }')
			fi
			return 0
		fi
		kill -0 "${pid[$f]}" 2>/dev/null || break
		sleep 0.1
	done
	die "$f did not mount: $(cat "$tmp/$f.log")"
}

# umount_fs FS: unmount and wait for the server to write everything out.
umount_fs() {
	local f=$1 m=${mnt[$1]} i
	for i in 1 2 3 4 5; do
		mountpoint -q "$m" || break
		umount "$m" 2>/dev/null && break
		sleep 1
	done
	mountpoint -q "$m" && umount -l "$m"
	if [ -n "${pid[$f]:-}" ]; then
		for i in $(seq 300); do
			kill -0 "${pid[$f]}" 2>/dev/null || break
			sleep 0.1
		done
		kill "${pid[$f]}" 2>/dev/null || true
		wait "${pid[$f]}" 2>/dev/null || true
	fi
	unset "mnt[$f]" "pid[$f]"
}

# --- measuring --------------------------------------------------------------

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s }'; }

# Each workload prints "ROW VALUE" lines; run_group keeps them per
# filesystem and row, and median picks the middle of the RUNS values.
declare -A vals=()

wl_seq() { # MNT RUN
	local m=$1 t0 t1
	rm -f "$m/seq"
	drop_caches
	t0=$(now)
	dd if=/dev/zero of="$m/seq" bs=1M count=1024 conv=fsync status=none
	t1=$(now)
	echo "seqwrite $(rate 1073.741824 "$(secs "$t0" "$t1")")"
	drop_caches
	t0=$(now)
	dd if="$m/seq" of=/dev/null bs=1M status=none
	t1=$(now)
	echo "seqread $(rate 1073.741824 "$(secs "$t0" "$t1")")"
}

wl_randwrite() { # MNT RUN
	local m=$1 out=$tmp/fio.json
	# overwrite=1 lays the whole file out first (once, untimed), so every
	# figure is of overwrites: the fsync pattern of databases.
	fio --name=randwrite --filename="$m/rand" --rw=randwrite --bs=4k --size=64M \
		--io_size=32M --runtime=30 --fsync=1 --overwrite=1 --ioengine=psync \
		--output-format=json >"$out"
	jq -r '.jobs[0] | "randiops \(.write.iops)",
		"randlat \((.write.clat_ns.percentile["50.000000"] + .sync.lat_ns.percentile["50.000000"]) / 1000)"' "$out"
}

wl_meta() { # MNT RUN
	local d=$1/meta$2
	mkdir "$d"
	echo "create $("$tmp/metaops" create "$d" "$meta_files")"
	drop_caches
	echo "stat $("$tmp/metaops" stat "$d" "$meta_files")"
	drop_caches
	echo "unlink $("$tmp/metaops" unlink "$d" "$meta_files")"
	rmdir "$d"
}

tarball=$tmp/go-src.tar
wl_tree() { # MNT RUN
	local d=$1/tree$2 t0 t1
	[ -f "$tarball" ] || tar -C /usr/local/go -cf "$tarball" src
	cat "$tarball" >/dev/null # from the page cache: time the target, not the source
	mkdir "$d"
	t0=$(now)
	tar -C "$d" -xf "$tarball"
	t1=$(now)
	echo "untar $(secs "$t0" "$t1")"
	drop_caches
	t0=$(now)
	rm -rf "$d"
	t1=$(now)
	echo "rm $(secs "$t0" "$t1")"
}

run_group() { # GROUP
	local r f row v
	for r in $(seq "$runs"); do
		for f in "${fss[@]}"; do
			echo "  $1 run $r on $f" >&2
			# Into a file, not a pipe: a failing workload must stop the run.
			"wl_$1" "${mnt[$f]}" "$r" >"$tmp/figures"
			while read -r row v; do
				vals[$f,$row]+="$v "
			done <"$tmp/figures"
		done
	done
}

median() { # VALUES...
	[ $# -gt 0 ] || { echo -; return; }
	printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"
}

# show VALUE: three significant digits at most, no exponent.
show() {
	[[ $1 == - ]] && { echo -; return; }
	awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else printf "%.2f", v }'
}

# --- the run ----------------------------------------------------------------

load_start=$(uptime)
for f in "${fss[@]}"; do mount_fs "$f"; done
for w in "${wls[@]}"; do
	echo "workload $w ($runs runs)" >&2
	run_group "$w"
done
load_end=$(uptime)
for f in "${fss[@]}"; do umount_fs "$f"; done

# ROW|label|unit|lower-is-better|target-vs-fuse2fs|target-vs-loopback
rows=(
	"seqwrite|seq write 1 GiB, 1 MiB + fsync|MB/s|0|1|0.8"
	"seqread|seq read 1 GiB, cold cache|MB/s|0|1|0.8"
	"randiops|4 KiB random write + fsync|IOPS|0|1|"
	"randlat|4 KiB random write + fsync, p50|µs|1|1|"
	"create|create $meta_files files|files/s|0|2|"
	"stat|stat $meta_files files, cold|files/s|0|2|"
	"unlink|unlink $meta_files files, cold|files/s|0|2|"
	"untar|untar Go tree ($(du -sm /usr/local/go/src | cut -f1) MiB)|s|1|2|"
	"rm|rm -rf Go tree, cold|s|1|2|"
)

# speedup AGFS PEER LOWER: agfs's speed-up over the peer.
speedup() {
	[[ $1 == - || $2 == - ]] && { echo -; return; }
	awk -v a="$1" -v p="$2" -v low="$3" 'BEGIN {
		if (low) { if (a > 0) printf "%.2f", p / a; else print "-" }
		else     { if (p > 0) printf "%.2f", a / p; else print "-" } }'
}
# verdict SPEEDUP GOAL NAME: the target cell's part for one peer.
verdict() {
	[[ -z $2 || $1 == - ]] && return
	awk -v s="$1" -v g="$2" -v n="$3" 'BEGIN { printf "%s %sx %s ", (s >= g ? "met" : "MISSED"), g, n }'
}

table() {
	echo "| workload | unit | agfs | fuse2fs | loopback | agfs/fuse2fs | agfs/loopback | target |"
	echo "|---|---|---:|---:|---:|---:|---:|---|"
	local spec row label unit low g2 gl a e l
	for spec in "${rows[@]}"; do
		IFS='|' read -r row label unit low g2 gl <<<"$spec"
		# shellcheck disable=SC2086 # the values are space-separated numbers
		a=$(median ${vals[agfs,$row]:-})
		# shellcheck disable=SC2086
		e=$(median ${vals[fuse2fs,$row]:-})
		# shellcheck disable=SC2086
		l=$(median ${vals[loopback,$row]:-})
		[[ $a == - && $e == - && $l == - ]] && continue
		local se sl
		se=$(speedup "$a" "$e" "$low")
		sl=$(speedup "$a" "$l" "$low")
		echo "| $label | $unit | $(show "$a") | $(show "$e") | $(show "$l") | $se | $sl | $(verdict "$se" "$g2" fuse2fs)$(verdict "$sl" "$gl" loopback)|"
	done
}

# runs_table: every run's figure, in run order, to judge the noise.
runs_table() {
	echo "| workload | agfs runs | fuse2fs runs | loopback runs |"
	echo "|---|---|---|---|"
	local spec row label f cells
	for spec in "${rows[@]}"; do
		IFS='|' read -r row label _ <<<"$spec"
		cells=
		for f in agfs fuse2fs loopback; do
			cells+=" $(echo ${vals[$f,$row]:--}) |"
		done
		[[ $cells == " - | - | - |" ]] || echo "| $label |$cells"
	done
}

report() {
	results_header compare.sh
	echo "median of $runs runs; $(nproc) CPUs; kernel $(uname -r); images $size;" \
		"AGFS_MOUNT_OPTS='${AGFS_MOUNT_OPTS:-}'"
	if [ "${agfs_queues:-0}" -gt 0 ]; then
		echo "agfs requests over io_uring ($agfs_queues queues); fuse2fs and loopback over /dev/fuse"
	elif [ -n "${agfs_queues:-}" ]; then
		echo "every filesystem's requests over /dev/fuse"
	fi
	echo "load at start:${load_start#*load}"
	echo "load at end:  ${load_end#*load}"
	echo
	table
	echo
	runs_table
}

if [ -n "$results" ]; then
	report | tee "$results"
else
	report
fi
