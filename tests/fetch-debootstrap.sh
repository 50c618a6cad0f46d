#!/bin/sh
# Build (once) the cached Debian bookworm minbase tree used by lvrepo's
# integration tests, so CI can pay for it up front. Same logic and paths as
# tests/debootstrap.rs: built into a temp dir next to the cache and renamed
# into place (an interrupted run never leaves a half tree); the .ok marker
# lives OUTSIDE the tree so importing it does not pick the marker up; both
# take the same flock so they never race.
#
# --systemd also builds bookworm-systemd (the boot test's tier 2): a copy of
# the minbase tree with systemd-sysv and udev installed by apt-get in a
# chroot (network needed once); the minbase tree is left untouched.
set -eu
CACHE="${LVREPO_TEST_CACHE:-/var/cache/lvrepo-tests}"
DEST="$CACHE/bookworm-minbase"
MARK="$CACHE/bookworm-minbase.ok"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

systemd_tree() {
    SD="$CACHE/bookworm-systemd"
    [ -f "$SD.ok" ] && [ -d "$SD" ] && { echo "bookworm-systemd cached at $SD"; return 0; }
    exec 8>"$CACHE/bookworm-systemd.lock"
    flock 8
    [ -f "$SD.ok" ] && [ -d "$SD" ] && { echo "bookworm-systemd cached at $SD"; return 0; }
    rm -rf "$SD" "$SD.ok" "$CACHE"/bookworm-systemd.tmp.*
    T="$CACHE/bookworm-systemd.tmp.$$"
    cp -a "$DEST" "$T"
    if ! chroot "$T" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd-sysv udev && apt-get clean' \
        >"$CACHE/bookworm-systemd.log" 2>&1; then
        tail -n 40 "$CACHE/bookworm-systemd.log" >&2
        echo "apt-get install systemd-sysv udev in a copy of $DEST failed (log: $CACHE/bookworm-systemd.log)" >&2
        rm -rf "$T"
        exit 1
    fi
    rm -rf "$T/var/lib/apt/lists/"*
    mv "$T" "$SD"
    echo ok >"$SD.ok"
    echo "bookworm-systemd built at $SD"
}

if [ -f "$MARK" ] && [ -d "$DEST" ]; then
    echo "bookworm-minbase cached at $DEST"
    [ "${1:-}" = --systemd ] && systemd_tree
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -q && apt-get install -y -q debootstrap
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/bookworm-minbase.lock"
flock 9
if [ -f "$MARK" ] && [ -d "$DEST" ]; then
    echo "bookworm-minbase cached at $DEST"
    exit 0
fi
rm -rf "$DEST" "$MARK" "$CACHE"/bookworm-minbase.tmp.*
TMP="$CACHE/bookworm-minbase.tmp.$$"
if ! debootstrap --variant=minbase bookworm "$TMP" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 40 "$CACHE/debootstrap.log" >&2
    echo "debootstrap failed (log: $CACHE/debootstrap.log)" >&2
    rm -rf "$TMP"
    exit 1
fi
mv "$TMP" "$DEST"
echo ok >"$MARK"
echo "bookworm-minbase built at $DEST"
[ "${1:-}" = --systemd ] && systemd_tree
exit 0
