# bench/common.sh: what the bench scripts share. Sourced, never run; $repo
# must name the repository's top.

# usage prints the script's header comment, from its second line to the
# `set -euo` line, as its --help.
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

now() { date +%s%N; }

# secs T0 T1: the seconds between two readings of now.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# drop_caches empties the page, dentry and inode caches (root only), so a
# read that follows goes to the filesystem and its device.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# results_header SCRIPT: the first line of a results file: what ran, when,
# and on which agfs.
results_header() {
	echo "agfs bench/$1, $(date -u '+%Y-%m-%d %H:%M UTC')," \
		"agfs $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '(not a git tree)')"
}
