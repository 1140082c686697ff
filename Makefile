# agfs build and test entry points. `make` builds the commands into bin/;
# `make test` is what CI runs (see .ci/run).

GO       ?= go
BIN      := bin
CMDS     := $(notdir $(wildcard cmd/mkfs cmd/mount cmd/fsck))
FUZZTIME ?= 30s
PREFIX   ?= /usr/local
SBINDIR  ?= /sbin

.PHONY: all build test unit lint fstests fuzz campaign bench clean install

all: build

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		if ls cmd/$$c/*.go >/dev/null 2>&1; then \
			echo "go build -o $(BIN)/$$c.agfs ./cmd/$$c"; \
			$(GO) build -o $(BIN)/$$c.agfs ./cmd/$$c || exit 1; \
		fi; \
	done

# The full check: formatting, vet, the unit tests under the race detector,
# the quick group of the xfstests-style suite on real mounts (root, and the
# packages in tests/packages.txt), and every fuzz target for FUZZTIME.
test: lint unit fstests fuzz

fstests: build
	tests/check -g quick

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit: build
	$(GO) test -race -count=1 ./...

# Each Fuzz* target of each package runs on its own for FUZZTIME; see
# scripts/fuzz for how it tells a failing input from Go 1.26's fuzztime race.
fuzz:
	GO=$(GO) scripts/fuzz $(FUZZTIME)

# The crash campaign (fs) and the corruption campaign (fsck) at full size;
# make test runs them reduced.
campaign:
	AGFS_CAMPAIGN=full $(GO) test -count=1 -timeout 60m -v -run 'TestCrashCampaign|TestCorruptionCampaign' ./fs ./fsck

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./bitmap ./ag ./wal

clean:
	rm -rf $(BIN)

# install puts the commands in $(PREFIX)/sbin, and the mount helper under
# the name mount(8) runs for `mount -t fuse.agfs` and fstab lines of type
# fuse.agfs: $(SBINDIR)/mount.fuse.agfs, a symlink to mount.agfs (mount(8)
# looks in /sbin only). Under that name the mount's kernel type is "fuse"
# (fstests' FSTYP=fuse); see mount.agfs --help.
install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(SBINDIR)
	install -m 0755 $(BIN)/*.agfs $(DESTDIR)$(PREFIX)/sbin/
	ln -sfn $(PREFIX)/sbin/mount.agfs $(DESTDIR)$(SBINDIR)/mount.fuse.agfs
