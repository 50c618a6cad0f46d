#!/usr/bin/env bash
# cold-read.sh — where a cold sequential read through an lvrepo mount spends
# its time: the read's time beside the daemon's user and system CPU, and its
# threads' share. One line per run; mount-compare.sh gives the side-by-side
# ratios, this gives the daemon's side of its "seq read, cold" workload.
#
# Usage (as root):
#   benches/cold-read.sh REPO IMAGE PATH [RUNS]
#
#   REPO    an lvrepo repository; IMAGE an image in it; PATH a file of the
#           image (e.g. var/lib/images/disk.img of the mount-compare tree)
#   RUNS    runs (default 3)
#
# Environment: LVREPO_BIN (default /work/main/target/release/lvrepo).
#
# Each run: a fresh mount with a fresh overlay dir, sync + drop_caches, then
# the same fio job as mount-compare (psync, 1 MiB sequential reads of the
# whole file); the time is fio's summed I/O latency. CPU times are from
# /proc/PID/stat (clock ticks, 100 per second) over the fio run; the threads'
# ticks are cumulative from mount. A system time that moves from run to run
# while the user time stays put is the machine (copies into fresh memory,
# docs/overlay.md, run M), not the daemon's work.
set -euo pipefail

[[ $# -ge 3 ]] || { sed -n '2,22p' "$0"; exit 2; }
REPO=$1 IMAGE=$2 REL=$3 RUNS=${4:-3}
L=${LVREPO_BIN:-/work/main/target/release/lvrepo}
[[ $(id -u) == 0 ]] || { echo "cold-read.sh: needs root (drop_caches, FUSE)" >&2; exit 2; }
for t in fio python3 "$L"; do command -v "$t" >/dev/null || { echo "cold-read.sh: $t not found" >&2; exit 2; }; done

W=$(mktemp -d /var/tmp/cold-read.XXXXXX)
cleanup() { mountpoint -q "$W/mnt" && "$L" umount "$W/mnt" >/dev/null 2>&1; rm -rf "$W"; }
trap cleanup EXIT

stat_of() { awk '{print $14, $15}' "/proc/$1/stat"; }   # utime stime

for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$W/ov"; mkdir -p "$W/ov" "$W/mnt"
    "$L" --repo "$REPO" mount "$IMAGE" --overlay "$W/ov" "$W/mnt"
    pid=$(pgrep -n -f -- "--overlay $W/ov") || { echo "cold-read.sh: no daemon" >&2; exit 1; }
    size=$(stat -c %s "$W/mnt/$REL")
    sync; echo 3 >/proc/sys/vm/drop_caches
    read -r u0 s0 < <(stat_of "$pid")
    fio --name=cold --filename="$W/mnt/$REL" --size="$size" --ioengine=psync --invalidate=0 --readonly \
        --rw=read --bs=1M --output-format=json --output="$W/fio.json" >/dev/null
    read -r u1 s1 < <(stat_of "$pid")
    secs=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.3f" % (j["total_ios"] * j["lat_ns"]["mean"] / 1e9))' "$W/fio.json")
    threads=$(for t in /proc/"$pid"/task/*; do awk '$14 + $15 > 0 { printf "%s=%d ", $2, $14 + $15 }' "$t/stat"; done)
    awk -v r="$r" -v s="$secs" -v u=$((u1 - u0)) -v k=$((s1 - s0)) -v t="$threads" \
        'BEGIN { printf "run %d: read %ss  daemon user %.2fs sys %.2fs  threads(ticks): %s\n", r, s, u / 100, k / 100, t }'
    "$L" umount "$W/mnt"
done
