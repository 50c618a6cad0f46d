#!/usr/bin/env bash
# latency.sh — median wall time of `lvrepo guest create`, `mount --guest` and
# `umount` of an idle guest (issue 29's targets: 20 ms, 50 ms, 100 ms).
#
# Usage: benches/latency.sh [-h|--help]
#
# Environment:
#   LVREPO_BIN  lvrepo binary (default target/release/lvrepo of this checkout)
#   RUNS        cycles; medians are reported (default 20)
#   SCRATCH     repository, guests and mount points go here (fresh; default
#               /var/tmp/lvrepo-latency)
#
# One small image (a few files) is imported untimed. Each cycle, one after the
# other and nothing else in between: guest create gN, mount --guest gN MNT,
# umount MNT (the guest idle: nothing read or written), then a second
# mount --guest gN MNT ("remount": a guest mounted before) and an untimed
# umount. Times are taken with
# `date +%s%N` around each command. Needs root (FUSE).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LVREPO_BIN:-$here/target/release/lvrepo}
RUNS=${RUNS:-20}
SCRATCH=${SCRATCH:-/var/tmp/lvrepo-latency}
[ -x "$BIN" ] || { echo "no binary $BIN (cargo build --release -p lvrepo)" >&2; exit 1; }
mnt=$SCRATCH/mnt
cleanup() { mountpoint -q "$mnt" && "$BIN" umount "$mnt" >/dev/null 2>&1 || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT
cleanup
mkdir -p "$SCRATCH/tree/etc" "$mnt"
export LVREPO_REPO=$SCRATCH/repo
echo hello > "$SCRATCH/tree/etc/motd"
head -c 1M /dev/urandom > "$SCRATCH/tree/blob"
"$BIN" -q init >/dev/null
"$BIN" -q import "$SCRATCH/tree" --image lat:1 >/dev/null

us() { echo $(( ($2 - $1) / 1000 )); }   # ns -> us
median() { sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f", m / 1000}'; }
: > "$SCRATCH/create"; : > "$SCRATCH/mount"; : > "$SCRATCH/umount"; : > "$SCRATCH/remount"
for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N); "$BIN" -q guest create "g$i" --image lat:1 --overlay "$SCRATCH/guests/g$i" >/dev/null
    t1=$(date +%s%N); "$BIN" -q mount --guest "g$i" "$mnt" >/dev/null
    t2=$(date +%s%N); "$BIN" -q umount "$mnt" >/dev/null
    t3=$(date +%s%N); "$BIN" -q mount --guest "g$i" "$mnt" >/dev/null
    t4=$(date +%s%N); "$BIN" -q umount "$mnt" >/dev/null
    us "$t0" "$t1" >> "$SCRATCH/create"; us "$t1" "$t2" >> "$SCRATCH/mount"; us "$t2" "$t3" >> "$SCRATCH/umount"
    us "$t3" "$t4" >> "$SCRATCH/remount"
done
printf '%-14s %8s   (median of %d, ms)\n' command median "$RUNS"
for c in create mount umount remount; do printf '%-14s %8s\n' "$c" "$(median < "$SCRATCH/$c")"; done
