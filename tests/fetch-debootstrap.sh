#!/bin/sh
# Build (once) the cached Debian bookworm minbase tree used by lvrepo's
# integration tests, so CI can pay for it up front. Same logic and paths as
# tests/debootstrap.rs: built into a temp dir next to the cache and renamed
# into place (an interrupted run never leaves a half tree); the .ok marker
# lives OUTSIDE the tree so importing it does not pick the marker up; both
# take the same flock so they never race.
set -eu
CACHE="${LVREPO_TEST_CACHE:-/var/cache/lvrepo-tests}"
DEST="$CACHE/bookworm-minbase"
MARK="$CACHE/bookworm-minbase.ok"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -f "$MARK" ] && [ -d "$DEST" ]; then
    echo "bookworm-minbase cached at $DEST"
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
