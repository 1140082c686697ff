// SPDX-License-Identifier: GPL-2.0-or-later
// fsop: one system call (or one small scenario) per invocation, with the
// result printed in a host-independent way: "ok" or the symbolic errno
// name (EEXIST, ENOTEMPTY, ...) for status operations; the data for the
// operations that return data. Exit status 0 on success, 1 on failure,
// 2 on usage errors. Compiled by tests/check into $SRC_BIN/fsop.
//
// Usage: fsop OP ARGS...   (fsop help lists the operations)
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static const char *ename(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

// status prints "ok" or the errno name of a -1 result.
static int status(long r)
{
	if (r < 0) {
		printf("%s\n", ename(errno));
		return 1;
	}
	printf("ok\n");
	return 0;
}

static int fail(const char *what)
{
	printf("%s\n", ename(errno));
	(void)what;
	return 1;
}

static void usage(void)
{
	fprintf(stderr,
		"fsop OP ARGS...\n"
		"  rename2 none|noreplace|exchange OLD NEW\n"
		"  rename OLD NEW | link OLD NEW | symlink TARGET PATH | unlink PATH\n"
		"  mkdir PATH [MODE] | rmdir PATH | chdir PATH | truncate PATH LEN\n"
		"  chmod PATH MODE | chown PATH UID GID | lchown PATH UID GID\n"
		"  access PATH r|w|x|f... | readlink PATH [BUFSIZE] | exec PATH\n"
		"  open PATH FLAG[,FLAG...] [MODE]   (rdonly wronly rdwr creat excl trunc append\n"
		"                                    directory nofollow direct)\n"
		"  read PATH | write PATH   (open + read/write one byte at the end)\n"
		"  utimens PATH ATIME MTIME [nofollow]   (now | omit | SEC[.NSEC])\n"
		"  mknod PATH reg|fifo|sock|chr|blk MODE [MAJOR MINOR]\n"
		"  setxattr|lsetxattr PATH NAME VALUE [create|replace]  (VALUE: text, size:N, empty)\n"
		"  getxattr|lgetxattr PATH NAME [BUFSIZE] | listxattr|llistxattr PATH [BUFSIZE]\n"
		"  removexattr|lremovexattr PATH NAME\n"
		"  fallocate PATH MODE OFF LEN  (0 keep punch zero zerokeep collapse insert punchonly)\n"
		"  seek PATH data|hole OFF | cfr SRC SOFF DST DOFF LEN\n"
		"  dtype DIR | readdir-seek DIR N | readdir-mod DIR N | posixlock FILE\n");
	exit(2);
}

static long long num(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 0);
	if (*s == 0 || *end != 0) {
		fprintf(stderr, "fsop: bad number %s\n", s);
		exit(2);
	}
	return v;
}

static mode_t octal(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 8);
	if (*s == 0 || *end != 0) {
		fprintf(stderr, "fsop: bad mode %s\n", s);
		exit(2);
	}
	return (mode_t)v;
}

static int open_flags(const char *s)
{
	static const struct {
		const char *n;
		int f;
	} tab[] = {
		{"rdonly", O_RDONLY}, {"wronly", O_WRONLY},       {"rdwr", O_RDWR},
		{"creat", O_CREAT},   {"excl", O_EXCL},           {"trunc", O_TRUNC},
		{"append", O_APPEND}, {"directory", O_DIRECTORY}, {"nofollow", O_NOFOLLOW},
		{"direct", O_DIRECT}, {"path", O_PATH},           {"noatime", O_NOATIME},
	};
	int flags = 0;
	char *copy = strdup(s), *tok, *save = NULL;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i;
		for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
			if (strcmp(tab[i].n, tok) == 0)
				break;
		if (i == sizeof(tab) / sizeof(tab[0])) {
			fprintf(stderr, "fsop: unknown open flag %s\n", tok);
			exit(2);
		}
		flags |= tab[i].f;
	}
	free(copy);
	return flags;
}

static struct timespec parse_time(const char *s)
{
	struct timespec ts = {0, 0};
	if (strcmp(s, "now") == 0) {
		ts.tv_nsec = UTIME_NOW;
		return ts;
	}
	if (strcmp(s, "omit") == 0) {
		ts.tv_nsec = UTIME_OMIT;
		return ts;
	}
	char *dot;
	ts.tv_sec = strtoll(s, &dot, 10);
	if (*dot == '.') {
		char buf[10] = "000000000";
		size_t n = strlen(dot + 1);
		if (n > 9)
			n = 9;
		memcpy(buf, dot + 1, n);
		ts.tv_nsec = strtol(buf, NULL, 10);
	}
	return ts;
}

// xattr value argument: literal text, "empty", or "size:N" (N bytes of a
// position-dependent pattern).
static char *xvalue(const char *s, size_t *len)
{
	if (strcmp(s, "empty") == 0) {
		*len = 0;
		return strdup("");
	}
	if (strncmp(s, "size:", 5) == 0) {
		size_t n = (size_t)num(s + 5);
		char *v = malloc(n + 1);
		for (size_t i = 0; i < n; i++)
			v[i] = (char)('a' + (i * 7 + i / 26) % 26);
		*len = n;
		return v;
	}
	*len = strlen(s);
	return strdup(s);
}

static int xflags(const char *s)
{
	if (!s || strcmp(s, "0") == 0)
		return 0;
	if (strcmp(s, "create") == 0)
		return XATTR_CREATE;
	if (strcmp(s, "replace") == 0)
		return XATTR_REPLACE;
	fprintf(stderr, "fsop: bad xattr flag %s\n", s);
	exit(2);
}

static void print_value(const char *v, ssize_t n)
{
	int printable = 1;
	for (ssize_t i = 0; i < n; i++)
		if (v[i] < 0x20 || v[i] > 0x7e)
			printable = 0;
	if (printable && n <= 80)
		printf("%zd bytes: \"%.*s\"\n", n, (int)n, v);
	else {
		// a cheap stable digest: FNV-1a 64
		uint64_t h = 1469598103934665603ULL;
		for (ssize_t i = 0; i < n; i++) {
			h ^= (unsigned char)v[i];
			h *= 1099511628211ULL;
		}
		printf("%zd bytes: fnv1a %016llx\n", n, (unsigned long long)h);
	}
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int do_listxattr(int follow, const char *path, const char *bufarg)
{
	ssize_t size = follow ? listxattr(path, NULL, 0) : llistxattr(path, NULL, 0);
	if (size < 0)
		return fail("listxattr");
	size_t bufsize = bufarg ? (size_t)num(bufarg) : (size_t)size + 1;
	char *buf = malloc(bufsize + 1);
	ssize_t n = follow ? listxattr(path, buf, bufsize) : llistxattr(path, buf, bufsize);
	if (n < 0)
		return fail("listxattr");
	if (n != size)
		printf("size probe said %zd, list returned %zd\n", size, n);
	char *names[70000];
	int cnt = 0;
	for (char *p = buf; p < buf + n && cnt < 70000; p += strlen(p) + 1)
		names[cnt++] = p;
	qsort(names, cnt, sizeof(char *), cmpstr);
	for (int i = 0; i < cnt; i++)
		printf("%s\n", names[i]);
	return 0;
}

static int do_getxattr(int follow, const char *path, const char *name, const char *bufarg)
{
	ssize_t size = follow ? getxattr(path, name, NULL, 0) : lgetxattr(path, name, NULL, 0);
	if (size < 0)
		return fail("getxattr");
	size_t bufsize = bufarg ? (size_t)num(bufarg) : (size_t)size;
	char *buf = malloc(bufsize + 1);
	ssize_t n = follow ? getxattr(path, name, buf, bufsize) : lgetxattr(path, name, buf, bufsize);
	if (n < 0)
		return fail("getxattr");
	if (n != size)
		printf("size probe said %zd, get returned %zd\n", size, n);
	print_value(buf, n);
	return 0;
}

static const char *dtname(unsigned char t)
{
	switch (t) {
	case DT_REG: return "reg";
	case DT_DIR: return "dir";
	case DT_LNK: return "lnk";
	case DT_FIFO: return "fifo";
	case DT_SOCK: return "sock";
	case DT_CHR: return "chr";
	case DT_BLK: return "blk";
	case DT_UNKNOWN: return "unknown";
	}
	return "?";
}

static const char *modename(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "reg";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "lnk";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "sock";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	}
	return "?";
}

// dtype DIR: every entry as "name type", sorted; d_ino and d_type are
// compared with lstat (DT_UNKNOWN is allowed, as POSIX allows it).
static int do_dtype(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return fail("opendir");
	if (chdir(dir) < 0)
		return fail("chdir");
	char **lines = NULL;
	int n = 0, cap = 0, bad = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d))) {
		struct stat st;
		char line[600];
		if (lstat(de->d_name, &st) < 0) {
			printf("%s: lstat %s\n", de->d_name, ename(errno));
			bad = 1;
			continue;
		}
		if (strcmp(de->d_name, "..") != 0 && de->d_ino != st.st_ino) {
			printf("%s: d_ino %llu != st_ino %llu\n", de->d_name,
			       (unsigned long long)de->d_ino, (unsigned long long)st.st_ino);
			bad = 1;
		}
		if (de->d_type != DT_UNKNOWN && strcmp(dtname(de->d_type), modename(st.st_mode))) {
			printf("%s: d_type %s but lstat says %s\n", de->d_name, dtname(de->d_type),
			       modename(st.st_mode));
			bad = 1;
		}
		snprintf(line, sizeof(line), "%s %s", de->d_name, modename(st.st_mode));
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			lines = realloc(lines, cap * sizeof(char *));
		}
		lines[n++] = strdup(line);
		errno = 0;
	}
	if (errno)
		return fail("readdir");
	qsort(lines, n, sizeof(char *), cmpstr);
	for (int i = 0; i < n; i++) {
		printf("%s\n", lines[i]);
		if (i > 0 && strcmp(lines[i], lines[i - 1]) == 0) {
			printf("duplicate entry %s\n", lines[i]);
			bad = 1;
		}
	}
	closedir(d);
	return bad;
}

static void mkfile(const char *fmt, int i)
{
	char name[64];
	snprintf(name, sizeof(name), fmt, i);
	int fd = open(name, O_CREAT | O_WRONLY, 0644);
	if (fd < 0) {
		printf("create %s: %s\n", name, ename(errno));
		exit(1);
	}
	close(fd);
}

static void rmfile(const char *fmt, int i)
{
	char name[64];
	snprintf(name, sizeof(name), fmt, i);
	if (unlink(name) < 0) {
		printf("unlink %s: %s\n", name, ename(errno));
		exit(1);
	}
}

// name -> small int: f%05d -> i, g%05d -> 1000000+i, others -> -1
static int nameidx(const char *s)
{
	if ((s[0] == 'f' || s[0] == 'g') && strlen(s) == 6)
		return (s[0] == 'g' ? 1000000 : 0) + atoi(s + 1);
	return -1;
}

// readdir-seek DIR N: telldir/seekdir must be stable, also across
// creations and removals of other entries.
static int do_readdir_seek(const char *dir, int n)
{
	if (chdir(dir) < 0)
		return fail("chdir");
	for (int i = 0; i < n; i++)
		mkfile("f%05d", i);
	DIR *d = opendir(".");
	if (!d)
		return fail("opendir");
	int total = n + 2, cnt = 0, bad = 0;
	long *pos = calloc(total + 1, sizeof(long));
	char **names = calloc(total + 1, sizeof(char *));
	struct dirent *de;
	for (;;) {
		long p = telldir(d);
		errno = 0;
		de = readdir(d);
		if (!de)
			break;
		if (cnt == total) {
			printf("more entries than files\n");
			return 1;
		}
		pos[cnt] = p;
		names[cnt++] = strdup(de->d_name);
	}
	if (errno)
		return fail("readdir");
	if (cnt != total)
		printf("pass 1: %d entries, expected %d\n", cnt, total), bad = 1;
	char *seen = calloc(n, 1);
	for (int i = 0; i < cnt; i++) {
		int k = nameidx(names[i]);
		if (k >= 0 && k < n && seen[k]++)
			printf("pass 1: duplicate %s\n", names[i]), bad = 1;
	}
	// seekdir to saved positions with no change: the same entry comes back
	for (int i = 0; i < cnt; i += 37) {
		seekdir(d, pos[i]);
		de = readdir(d);
		if (!de || strcmp(de->d_name, names[i]))
			printf("seekdir to entry %d gave %s, expected %s\n", i, de ? de->d_name : "(end)",
			       names[i]),
				bad = 1;
	}
	// change the directory: remove every 7th f, add n/4 g files
	char *removed = calloc(n, 1);
	for (int i = 0; i < n; i += 7)
		rmfile("f%05d", i), removed[i] = 1;
	for (int i = 0; i < n / 4; i++)
		mkfile("g%05d", i);
	// from the middle: every stable entry at or after k exactly once, and no
	// stable entry before k
	int k = cnt / 2;
	char *want = calloc(n, 1), *got = calloc(n, 1);
	for (int i = k; i < cnt; i++) {
		int x = nameidx(names[i]);
		if (x >= 0 && x < n && !removed[x])
			want[x] = 1;
	}
	seekdir(d, pos[k]);
	errno = 0;
	while ((de = readdir(d))) {
		int x = nameidx(de->d_name);
		if (x < 0 || x >= n)
			continue;
		if (removed[x])
			continue; // may or may not be returned
		if (got[x]++)
			printf("after seekdir: %s returned twice\n", de->d_name), bad = 1;
		if (!want[x])
			printf("after seekdir: %s was before the seek position\n", de->d_name), bad = 1;
	}
	if (errno)
		return fail("readdir");
	int missing = 0;
	for (int i = 0; i < n; i++)
		if (want[i] && !got[i])
			missing++;
	if (missing)
		printf("after seekdir: %d stable entries skipped\n", missing), bad = 1;
	// rewind: exactly the current contents
	rewinddir(d);
	int m = 0, dots = 0;
	char *gseen = calloc(n / 4 + 1, 1);
	memset(seen, 0, n);
	while ((de = readdir(d))) {
		int x = nameidx(de->d_name);
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) {
			dots++;
			continue;
		}
		m++;
		if (x >= 1000000) {
			if (gseen[x - 1000000]++)
				printf("after rewind: %s twice\n", de->d_name), bad = 1;
		} else if (x >= 0 && x < n) {
			if (removed[x])
				printf("after rewind: removed %s returned\n", de->d_name), bad = 1;
			if (seen[x]++)
				printf("after rewind: %s twice\n", de->d_name), bad = 1;
		} else
			printf("after rewind: unexpected %s\n", de->d_name), bad = 1;
	}
	int expect = n - (n + 6) / 7 + n / 4;
	if (m != expect || dots != 2)
		printf("after rewind: %d entries + %d dots, expected %d + 2\n", m, dots, expect), bad = 1;
	closedir(d);
	printf(bad ? "readdir-seek: FAILED\n" : "readdir-seek: ok\n");
	return bad;
}

// readdir-mod DIR N: entries added and removed during one readdir pass;
// every entry present throughout must be returned exactly once. Then
// unlink-as-you-read must empty the directory in one pass.
static int do_readdir_mod(const char *dir, int n)
{
	if (chdir(dir) < 0)
		return fail("chdir");
	for (int i = 0; i < n; i++)
		mkfile("f%05d", i);
	DIR *d = opendir(".");
	if (!d)
		return fail("opendir");
	char *seen = calloc(n, 1), *gseen = calloc(n, 1);
	int cnt = 0, bad = 0, changed = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d))) {
		int x = nameidx(de->d_name);
		if (x >= 1000000) {
			if (gseen[x - 1000000]++)
				printf("%s returned twice\n", de->d_name), bad = 1;
		} else if (x >= 0 && x < n) {
			if (seen[x]++)
				printf("%s returned twice\n", de->d_name), bad = 1;
		}
		if (++cnt == n / 2 && !changed) {
			changed = 1;
			for (int i = 0; i < n; i += 5)
				rmfile("f%05d", i);
			for (int i = 0; i < n / 2; i++)
				mkfile("g%05d", i);
		}
		errno = 0;
	}
	if (errno)
		return fail("readdir");
	int missing = 0;
	for (int i = 0; i < n; i++)
		if (i % 5 && !seen[i])
			missing++;
	if (missing)
		printf("%d stable entries skipped\n", missing), bad = 1;
	closedir(d);

	// unlink every entry as it is returned
	d = opendir(".");
	int removed = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlink(de->d_name) < 0)
			printf("unlink %s: %s\n", de->d_name, ename(errno)), bad = 1;
		else
			removed++;
	}
	closedir(d);
	d = opendir(".");
	int left = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			left++;
	closedir(d);
	if (left)
		printf("%d entries left after unlink-as-you-read\n", left), bad = 1;
	int expect = n - (n + 4) / 5 + n / 2;
	if (removed != expect)
		printf("unlinked %d entries, expected %d\n", removed, expect), bad = 1;
	printf(bad ? "readdir-mod: FAILED\n" : "readdir-mod: ok\n");
	return bad;
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &fl);
}

static const char *lkres(int r)
{
	if (r == 0)
		return "ok";
	if (errno == EAGAIN || errno == EACCES)
		return "conflict";
	return ename(errno);
}

static void wait_child(pid_t p)
{
	int st;
	waitpid(p, &st, 0);
}

// posixlock FILE: fcntl byte-range locks between two processes.
static int do_posixlock(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT, 0644), fd2;
	if (fd < 0)
		return fail("open");
	pid_t parent = getpid(), c;
	setvbuf(stdout, NULL, _IONBF, 0);

	printf("parent wrlck 0+100: %s\n", lkres(setlk(fd, F_SETLK, F_WRLCK, 0, 100)));
	if ((c = fork()) == 0) {
		int f = open(path, O_RDWR);
		printf("child wrlck 50+10: %s\n", lkres(setlk(f, F_SETLK, F_WRLCK, 50, 10)));
		printf("child rdlck 0+10: %s\n", lkres(setlk(f, F_SETLK, F_RDLCK, 0, 10)));
		printf("child wrlck 100+100: %s\n", lkres(setlk(f, F_SETLK, F_WRLCK, 100, 100)));
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 1};
		if (fcntl(f, F_GETLK, &fl) < 0)
			printf("child getlk: %s\n", ename(errno));
		else
			printf("child getlk 10+1: type=%s start=%lld len=%lld pid=%s\n",
			       fl.l_type == F_WRLCK ? "wrlck" : fl.l_type == F_RDLCK ? "rdlck" : "unlck",
			       (long long)fl.l_start, (long long)fl.l_len,
			       fl.l_pid == parent ? "parent" : "other");
		fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 300, .l_len = 1};
		fcntl(f, F_GETLK, &fl);
		printf("child getlk 300+1: type=%s\n", fl.l_type == F_UNLCK ? "unlck" : "locked");
		_exit(0);
	}
	wait_child(c);

	printf("parent downgrade to rdlck 0+100: %s\n", lkres(setlk(fd, F_SETLK, F_RDLCK, 0, 100)));
	if ((c = fork()) == 0) {
		int f = open(path, O_RDWR);
		printf("child rdlck 0+100: %s\n", lkres(setlk(f, F_SETLK, F_RDLCK, 0, 100)));
		printf("child wrlck 90+20: %s\n", lkres(setlk(f, F_SETLK, F_WRLCK, 90, 20)));
		_exit(0);
	}
	wait_child(c);

	printf("parent unlock 0+50: %s\n", lkres(setlk(fd, F_SETLK, F_UNLCK, 0, 50)));
	if ((c = fork()) == 0) {
		int f = open(path, O_RDWR);
		printf("child wrlck 0+50: %s\n", lkres(setlk(f, F_SETLK, F_WRLCK, 0, 50)));
		printf("child wrlck 50+50: %s\n", lkres(setlk(f, F_SETLK, F_WRLCK, 50, 50)));
		_exit(0);
	}
	wait_child(c);

	// blocking lock: the child waits until the parent unlocks. The child
	// reports through a pipe, so that the parent prints every line: the
	// child may wake and run before the parent's printf of the unlock.
	// "blocked" is read without waiting 300 ms after the child announced
	// its F_SETLKW; a slow machine can only delay the child, never make it
	// take the lock early, so the check has no timing to lose.
	printf("parent wrlck 0+10: %s\n", lkres(setlk(fd, F_SETLK, F_WRLCK, 0, 10)));
	int ready[2], res[2];
	if (pipe(ready) < 0 || pipe(res) < 0)
		return fail("pipe");
	if ((c = fork()) == 0) {
		int f = open(path, O_RDWR);
		char ch = 'x', msg[64];
		write(ready[1], &ch, 1);
		int r = setlk(f, F_SETLKW, F_WRLCK, 5, 1);
		int n = snprintf(msg, sizeof msg, "%s", lkres(r));
		write(res[1], msg, n);
		_exit(0);
	}
	close(res[1]);
	char ch, msg[64] = "";
	read(ready[0], &ch, 1);
	usleep(300000);
	struct pollfd pf = {.fd = res[0], .events = POLLIN};
	printf("child setlkw 5+1 before the unlock: %s\n", poll(&pf, 1, 0) == 0 ? "blocked" : "not blocked");
	printf("parent unlock 0+10: %s\n", lkres(setlk(fd, F_SETLK, F_UNLCK, 0, 10)));
	ssize_t got = read(res[0], msg, sizeof msg - 1);
	msg[got > 0 ? got : 0] = 0;
	printf("child setlkw 5+1 after the unlock: %s\n", got > 0 ? msg : "no answer");
	wait_child(c);
	close(ready[0]), close(ready[1]), close(res[0]);

	// closing any fd of the file drops all the process's locks on it
	printf("parent wrlck 0+0 (whole file): %s\n", lkres(setlk(fd, F_SETLK, F_WRLCK, 0, 0)));
	fd2 = open(path, O_RDONLY);
	close(fd2);
	if ((c = fork()) == 0) {
		int f = open(path, O_RDWR);
		printf("child wrlck 0+0 after parent closed another fd: %s\n",
		       lkres(setlk(f, F_SETLK, F_WRLCK, 0, 0)));
		_exit(0);
	}
	wait_child(c);
	close(fd);
	return 0;
}

static int do_fallocate(const char *path, const char *m, off_t off, off_t len)
{
	int mode;
	if (!strcmp(m, "0"))
		mode = 0;
	else if (!strcmp(m, "keep"))
		mode = FALLOC_FL_KEEP_SIZE;
	else if (!strcmp(m, "punch"))
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	else if (!strcmp(m, "punchonly"))
		mode = FALLOC_FL_PUNCH_HOLE;
	else if (!strcmp(m, "zero"))
		mode = FALLOC_FL_ZERO_RANGE;
	else if (!strcmp(m, "zerokeep"))
		mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	else if (!strcmp(m, "collapse"))
		mode = FALLOC_FL_COLLAPSE_RANGE;
	else if (!strcmp(m, "insert"))
		mode = FALLOC_FL_INSERT_RANGE;
	else
		mode = (int)num(m);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		return fail("open");
	return status(fallocate(fd, mode, off, len));
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *op = argv[1];
	char **a = argv + 2;
	int n = argc - 2;
#define NEED(k)                 \
	do {                    \
		if (n < (k))    \
			usage(); \
	} while (0)

	if (!strcmp(op, "rename2")) {
		NEED(3);
		unsigned fl = !strcmp(a[0], "noreplace") ? RENAME_NOREPLACE
			      : !strcmp(a[0], "exchange") ? RENAME_EXCHANGE : 0;
		return status(renameat2(AT_FDCWD, a[1], AT_FDCWD, a[2], fl));
	}
	if (!strcmp(op, "rename")) { NEED(2); return status(rename(a[0], a[1])); }
	if (!strcmp(op, "link")) { NEED(2); return status(link(a[0], a[1])); }
	if (!strcmp(op, "symlink")) { NEED(2); return status(symlink(a[0], a[1])); }
	if (!strcmp(op, "unlink")) { NEED(1); return status(unlink(a[0])); }
	if (!strcmp(op, "mkdir")) { NEED(1); return status(mkdir(a[0], n > 1 ? octal(a[1]) : 0755)); }
	if (!strcmp(op, "rmdir")) { NEED(1); return status(rmdir(a[0])); }
	if (!strcmp(op, "chdir")) { NEED(1); return status(chdir(a[0])); }
	if (!strcmp(op, "truncate")) { NEED(2); return status(truncate(a[0], num(a[1]))); }
	if (!strcmp(op, "chmod")) { NEED(2); return status(chmod(a[0], octal(a[1]))); }
	if (!strcmp(op, "chown")) { NEED(3); return status(chown(a[0], num(a[1]), num(a[2]))); }
	if (!strcmp(op, "lchown")) { NEED(3); return status(lchown(a[0], num(a[1]), num(a[2]))); }
	if (!strcmp(op, "access")) {
		NEED(2);
		int m = 0;
		for (const char *p = a[1]; *p; p++)
			m |= *p == 'r' ? R_OK : *p == 'w' ? W_OK : *p == 'x' ? X_OK : F_OK;
		return status(access(a[0], m));
	}
	if (!strcmp(op, "readlink")) {
		NEED(1);
		size_t sz = n > 1 ? (size_t)num(a[1]) : 8192;
		char *buf = malloc(sz + 1);
		ssize_t r = readlink(a[0], buf, sz);
		if (r < 0)
			return fail("readlink");
		printf("%zd bytes: %.*s\n", r, (int)r, buf);
		return 0;
	}
	if (!strcmp(op, "exec")) {
		NEED(1);
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			return fail("pipe");
		pid_t c = fork();
		if (c == 0) {
			int devnull = open("/dev/null", O_WRONLY);
			dup2(devnull, 1);
			char *av[] = {a[0], NULL};
			execv(a[0], av);
			int e = errno;
			write(p[1], &e, sizeof(e));
			_exit(127);
		}
		close(p[1]);
		int e = 0;
		ssize_t r = read(p[0], &e, sizeof(e));
		wait_child(c);
		if (r == sizeof(e)) {
			printf("%s\n", ename(e));
			return 1;
		}
		printf("ok\n");
		return 0;
	}
	if (!strcmp(op, "open")) {
		NEED(2);
		int fd = open(a[0], open_flags(a[1]), n > 2 ? octal(a[2]) : 0644);
		if (fd >= 0)
			close(fd);
		return status(fd);
	}
	if (!strcmp(op, "read")) {
		NEED(1);
		char c;
		int fd = open(a[0], O_RDONLY);
		if (fd < 0)
			return fail("open");
		return status(read(fd, &c, 1));
	}
	if (!strcmp(op, "write")) {
		NEED(1);
		int fd = open(a[0], O_WRONLY | O_APPEND);
		if (fd < 0)
			return fail("open");
		return status(write(fd, "w", 1));
	}
	if (!strcmp(op, "utimens")) {
		NEED(3);
		struct timespec ts[2] = {parse_time(a[1]), parse_time(a[2])};
		int fl = (n > 3 && !strcmp(a[3], "nofollow")) ? AT_SYMLINK_NOFOLLOW : 0;
		return status(utimensat(AT_FDCWD, a[0], ts, fl));
	}
	if (!strcmp(op, "mknod")) {
		NEED(3);
		mode_t t = !strcmp(a[1], "reg")    ? S_IFREG
			   : !strcmp(a[1], "fifo") ? S_IFIFO
			   : !strcmp(a[1], "sock") ? S_IFSOCK
			   : !strcmp(a[1], "chr")  ? S_IFCHR
			   : !strcmp(a[1], "blk")  ? S_IFBLK : 0;
		if (!t)
			usage();
		dev_t dev = n > 4 ? makedev(num(a[3]), num(a[4])) : 0;
		return status(mknod(a[0], t | octal(a[2]), dev));
	}
	if (!strcmp(op, "setxattr") || !strcmp(op, "lsetxattr")) {
		NEED(3);
		size_t len;
		char *v = xvalue(a[2], &len);
		int fl = xflags(n > 3 ? a[3] : NULL);
		return status(op[0] == 'l' ? lsetxattr(a[0], a[1], v, len, fl)
					   : setxattr(a[0], a[1], v, len, fl));
	}
	if (!strcmp(op, "getxattr") || !strcmp(op, "lgetxattr")) {
		NEED(2);
		return do_getxattr(op[0] != 'l', a[0], a[1], n > 2 ? a[2] : NULL);
	}
	if (!strcmp(op, "listxattr") || !strcmp(op, "llistxattr")) {
		NEED(1);
		return do_listxattr(op[0] != 'l', a[0], n > 1 ? a[1] : NULL);
	}
	if (!strcmp(op, "removexattr") || !strcmp(op, "lremovexattr")) {
		NEED(2);
		return status(op[0] == 'l' ? lremovexattr(a[0], a[1]) : removexattr(a[0], a[1]));
	}
	if (!strcmp(op, "fallocate")) {
		NEED(4);
		return do_fallocate(a[0], a[1], num(a[2]), num(a[3]));
	}
	if (!strcmp(op, "seek")) {
		NEED(3);
		int fd = open(a[0], O_RDONLY);
		if (fd < 0)
			return fail("open");
		off_t r = lseek(fd, num(a[2]), !strcmp(a[1], "data") ? SEEK_DATA : SEEK_HOLE);
		if (r < 0)
			return fail("lseek");
		printf("%lld\n", (long long)r);
		return 0;
	}
	if (!strcmp(op, "cfr")) {
		NEED(5);
		int in = open(a[0], O_RDONLY), out = open(a[2], O_WRONLY);
		if (in < 0 || out < 0)
			return fail("open");
		loff_t so = num(a[1]), dof = num(a[3]);
		size_t left = num(a[4]);
		long long total = 0;
		while (left > 0) {
			ssize_t r = copy_file_range(in, &so, out, &dof, left, 0);
			if (r < 0)
				return fail("copy_file_range");
			if (r == 0)
				break;
			total += r;
			left -= r;
		}
		printf("copied %lld\n", total);
		return 0;
	}
	if (!strcmp(op, "dtype")) { NEED(1); return do_dtype(a[0]); }
	if (!strcmp(op, "readdir-seek")) { NEED(2); return do_readdir_seek(a[0], num(a[1])); }
	if (!strcmp(op, "readdir-mod")) { NEED(2); return do_readdir_mod(a[0], num(a[1])); }
	if (!strcmp(op, "posixlock")) { NEED(1); return do_posixlock(a[0]); }
	usage();
	return 2;
}
