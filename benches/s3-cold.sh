#!/usr/bin/env bash
# s3-cold.sh — the repository on S3 (issue 30, docs/remote.md), in one run:
#   1. import throughput of a Debian tree to a bucket (s3s-fs on loopback)
#      beside the same import to a local repository;
#   2. cold start of a guest on a fresh host cache: guest create + mount +
#      read a boot working set, with the bytes the host fetched (du of
#      CACHE/packs, and the daemon's "remote: fetched" line) beside the
#      image's size. Target: at most 10% of the image fetched.
# Not a test; run as root (FUSE).
#
#   bash benches/s3-cold.sh [RUNS]      (default 3; medians are reported)
#
# The tree is the boot test's bookworm minbase + systemd tree
# (tests/fetch-debootstrap.sh --systemd). The boot working set is what a
# systemd boot of it reads: /etc, the unit, udev, tmpfiles and sysusers
# files, and the boot's programs (systemd, journald, udevd, logind, agetty,
# login, bash, mount) with every shared library they load (the guest's own
# ld.so --list, run in a chroot of the mount). Each file is read whole.
#
# Environment: LVREPO_BIN (default target/release/lvrepo), S3S_FS (default
# /var/cache/lvrepo-ci/bin/s3s-fs, installed by scripts/setup.sh),
# LVREPO_TEST_CACHE (the tree cache, default /var/cache/lvrepo-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
L=$(realpath "${LVREPO_BIN:-target/release/lvrepo}")
S3S=${S3S_FS:-/var/cache/lvrepo-ci/bin/s3s-fs}
CACHE=${LVREPO_TEST_CACHE:-/var/cache/lvrepo-tests}
die() { echo "s3-cold.sh: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (FUSE, chroot, drop_caches)"
[[ -x $S3S ]] || die "$S3S missing: run scripts/setup.sh"
[[ -x $L ]] || die "$L missing: cargo build --release -p lvrepo (or set LVREPO_BIN)"
sh tests/fetch-debootstrap.sh --systemd >/dev/null
TREE=$CACHE/bookworm-systemd

W=$(mktemp -d /var/tmp/lvrepo-s3cold.XXXXXX)
S3PID=
cleanup() {
    mountpoint -q "$W/mnt" && { "$L" umount "$W/mnt" >/dev/null 2>&1 || umount -l "$W/mnt"; }
    if [[ -n $S3PID ]]; then kill "$S3PID" 2>/dev/null; wait "$S3PID" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

# s3s-fs on a free loopback port, bucket "bench".
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$W/s3/bench"
"$S3S" --host 127.0.0.1 --port "$PORT" --access-key bench --secret-key bench-secret-0123456789 "$W/s3" >"$W/s3s.log" 2>&1 &
S3PID=$!
for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$PORT/" || die "s3s-fs not answering (log: $W/s3s.log)"
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-0123456789
export AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
unset LVREPO_REPO LVREPO_CACHE

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
tar -C "$TREE" -cf - . | cat >/dev/null   # warm the source: both imports read it from memory

# 1. Import: local repository vs bucket, alternating, a fresh repository each run.
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$W/local"
    t0=$(now); "$L" -q --repo "$W/local" init >/dev/null; "$L" -q --repo "$W/local" import "$TREE" --image sys:1 >/dev/null; t1=$(now)
    secs "$t0" "$t1" >>"$W/t.local"
    rm -rf "$W/s3/bench/r$r" "$W/pub$r"
    t0=$(now)
    LVREPO_CACHE=$W/pub$r "$L" -q --repo "s3://bench/r$r" init >/dev/null
    LVREPO_CACHE=$W/pub$r "$L" -q --repo "s3://bench/r$r" import "$TREE" --image sys:1 >/dev/null
    t1=$(now)
    secs "$t0" "$t1" >>"$W/t.s3"
done
REPO=s3://bench/r1
IMG_BYTES=$(LVREPO_CACHE=$W/pub1 "$L" --repo "$REPO" images --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["logical_bytes"])')
BUCKET_BYTES=$(du -s --block-size=1 "$W/s3/bench/r1" | cut -f1)
TL=$(median <"$W/t.local"); TS=$(median <"$W/t.s3")

# The boot working set, as paths relative to the mount.
working_set() {
    local m=$1 b
    (cd "$m" && find etc usr/lib/systemd/system usr/lib/udev/rules.d usr/lib/tmpfiles.d usr/lib/sysusers.d -type f 2>/dev/null)
    for b in usr/lib/systemd/systemd usr/lib/systemd/systemd-journald usr/lib/systemd/systemd-udevd \
             usr/lib/systemd/systemd-logind usr/sbin/agetty usr/bin/login usr/bin/bash usr/bin/mount; do
        [[ -f $m/$b ]] || continue
        echo "$b"
        chroot "$m" /usr/bin/ldd "/$b" 2>/dev/null | grep -o '/[^ ]*' | sed 's|^/||'
    done
}

# One cold start: guest create + mount + read the working set, on a fresh
# host cache ($1) of repository $2, guest $4; its time appended to $3.
cold_start() {
    local h=$1 repo=$2 g=$4 t0 t1
    mkdir -p "$W/mnt"
    sync; echo 3 >/proc/sys/vm/drop_caches
    t0=$(now)
    LVREPO_CACHE=$h/cache "$L" -q --repo "$repo" guest create "$g" --image sys:1 --overlay "$h/ov" >/dev/null
    LVREPO_CACHE=$h/cache LVREPO_LOG=info "$L" -q --repo "$repo" mount --guest "$g" "$W/mnt" 2>>"$W/mount.log"
    working_set "$W/mnt" | sort -u >"$W/ws"
    (cd "$W/mnt" && while read -r f; do if [[ -f $f ]]; then cat -- "$f"; fi; done <"$W/ws") | wc -c >"$W/wsbytes"
    t1=$(now)
    LVREPO_CACHE=$h/cache "$L" -q --repo "$repo" umount "$W/mnt"
    secs "$t0" "$t1" >>"$3"
}

# 2. Cold start, RUNS times each: from the bucket on a fresh host cache, and
# from the local repository (a new guest each time).
for ((r = 1; r <= RUNS; r++)); do
    H=$W/host$r
    cold_start "$H" "$REPO" "$W/t.cold" g
    find "$H/cache/packs" -type f -printf '%b\n' 2>/dev/null | awk '{ s += $1 * 512 } END { print s + 0 }' >>"$W/fetched"
    line=$(grep -ho 'remote: fetched [0-9]* bytes in [0-9]* requests' "$H/ov/daemon.log" | tail -1 || true)
    echo "run $r: cold start from the bucket $(tail -1 "$W/t.cold") s, $(wc -l <"$W/ws") files ($(cat "$W/wsbytes") bytes) read, CACHE/packs $(tail -1 "$W/fetched") bytes; daemon: ${line:-no 'remote: fetched' line}"
    # The same without read-ahead (one ranged GET per record), alternated.
    H=$W/hostna$r
    LVREPO_REMOTE_READAHEAD_KIB=0 cold_start "$H" "$REPO" "$W/t.coldna" g
    find "$H/cache/packs" -type f -printf '%b\n' 2>/dev/null | awk '{ s += $1 * 512 } END { print s + 0 }' >>"$W/fetchedna"
    line=$(grep -ho 'remote: fetched [0-9]* bytes in [0-9]* requests' "$H/ov/daemon.log" | tail -1 || true)
    echo "run $r: the same without read-ahead $(tail -1 "$W/t.coldna") s, CACHE/packs $(tail -1 "$W/fetchedna") bytes; daemon: ${line:-no 'remote: fetched' line}"
    rm -rf "$W/lg"; mkdir -p "$W/lg"
    cold_start "$W/lg" "$W/local" "$W/t.coldlocal" "g$r"
    echo "run $r: cold start from the local repository $(tail -1 "$W/t.coldlocal") s"
done
FETCHEDNA=$(median <"$W/fetchedna"); TCNA=$(median <"$W/t.coldna")
FETCHED=$(median <"$W/fetched"); TC=$(median <"$W/t.cold"); TCL=$(median <"$W/t.coldlocal"); WSB=$(cat "$W/wsbytes")

MIB() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo
echo "tree: $TREE, image sys:1 $(MIB "$IMG_BYTES") MiB logical, $(MIB "$BUCKET_BYTES") MiB in the bucket; $RUNS runs, medians"
printf '%-34s %12s %12s %8s\n' "" "local" "s3 (s3s-fs)" "ratio"
printf '%-34s %11ss %11ss %8.2f\n' "import (init + import)" "$TL" "$TS" "$(awk -v a="$TS" -v b="$TL" 'BEGIN { print a / b }')"
printf '%-34s %9s MiB/s %7s MiB/s\n' "import throughput" \
    "$(awk -v b="$IMG_BYTES" -v t="$TL" 'BEGIN { printf "%.1f", b / 1048576 / t }')" \
    "$(awk -v b="$IMG_BYTES" -v t="$TS" 'BEGIN { printf "%.1f", b / 1048576 / t }')"
printf '%-34s %11ss %11ss %8.2f\n' "cold start (create+mount+read)" "$TCL" "$TC" "$(awk -v a="$TC" -v b="$TCL" 'BEGIN { print a / b }')"
printf '%-34s %12s %8s MiB\n' "boot working set read" "" "$(MIB "$WSB")"
printf '%-34s %12s %8s MiB %7.1f%% of the image (target <= 10%%), %.1f%% of its bucket bytes\n' "fetched (CACHE/packs, allocated)" "" "$(MIB "$FETCHED")" \
    "$(awk -v f="$FETCHED" -v i="$IMG_BYTES" 'BEGIN { print 100 * f / i }')" "$(awk -v f="$FETCHED" -v i="$BUCKET_BYTES" 'BEGIN { print 100 * f / i }')"
printf '%-34s %11ss %11ss %8.2f\n' "cold start, no read-ahead" "$TCL" "$TCNA" "$(awk -v a="$TCNA" -v b="$TCL" 'BEGIN { print a / b }')"
printf '%-34s %12s %8s MiB %7.1f%% of the image\n' "fetched, no read-ahead" "" "$(MIB "$FETCHEDNA")" "$(awk -v f="$FETCHEDNA" -v i="$IMG_BYTES" 'BEGIN { print 100 * f / i }')"
