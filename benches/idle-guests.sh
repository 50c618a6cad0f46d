#!/usr/bin/env bash
# idle-guests.sh — how many idle mounted guests this host holds, and what
# each one costs: N guests of one image (`guest create` + `mount --guest`,
# then one `ls` of the root, as a mount check or `df` would look; nothing
# else read or written), then memory per guest and file descriptors.
#
# Usage (as root): benches/idle-guests.sh [-h|--help]
#
# Environment:
#   LVREPO_BIN  lvrepo binary (default target/release/lvrepo of this checkout)
#   N           guests to mount (default 200; capped by the safety checks)
#   RESERVE_MIB MemAvailable that must stay free on this shared host
#               (default 8192): N is cut to what fits at MAX_MIB per guest
#   MAX_MIB     assumed worst-case MiB per guest for that cap (default 8)
#   TREE        image tree (default the debootstrap bookworm minbase tree
#               shared with tests/, else a small generated tree)
#   SCRATCH     work dir (default /var/tmp/lvrepo-idle), removed at exit
#
# Prints, once all N are mounted and settled (2 s): the sum of the daemons'
# PSS (/proc/PID/smaps_rollup; shared pages such as the binary and
# librocksdb split among them) and anonymous memory, each / N; the drop of
# MemAvailable from before the first mount, / N; the daemons' threads and
# open fds (/proc/PID/fd), / N; and RLIMIT_NOFILE and fs.file-max for scale.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LVREPO_BIN:-$here/target/release/lvrepo}
N=${N:-200}
RESERVE_MIB=${RESERVE_MIB:-8192}
MAX_MIB=${MAX_MIB:-8}
SCRATCH=${SCRATCH:-/var/tmp/lvrepo-idle}
TREE=${TREE:-/var/cache/lvrepo-tests/bookworm-minbase}
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 2; }
[[ -x $BIN ]] || { echo "no binary $BIN (cargo build --release -p lvrepo)" >&2; exit 2; }

avail_mib() { awk '/^MemAvailable:/ {printf "%d", $2 / 1024}' /proc/meminfo; }
fits=$(( ($(avail_mib) - RESERVE_MIB) / MAX_MIB ))
if (( fits < N )); then
    echo "MemAvailable $(avail_mib) MiB: keeping $RESERVE_MIB MiB free, N cut from $N to $fits" >&2
    N=$fits
fi
(( N > 0 )) || { echo "not enough free memory on this host" >&2; exit 1; }

rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
LV=$SCRATCH/lvrepo; cp "$BIN" "$LV"   # the daemons' name, for pgrep
export LVREPO_REPO=$SCRATCH/repo
cleanup() {
    for m in $(awk -v s="$SCRATCH" '$2 ~ "^"s {print $2}' /proc/mounts | sort -r); do
        "$LV" -q umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
if [[ ! -d $TREE ]]; then
    TREE=$SCRATCH/tree; mkdir -p "$TREE/etc"; echo hello > "$TREE/etc/motd"
    head -c 4M /dev/urandom > "$TREE/blob"
fi
"$LV" -q init >/dev/null
"$LV" -q import "$TREE" --image idle:1 >/dev/null

sync; sleep 1
a0=$(avail_mib)
mounted=0
for i in $(seq 1 "$N"); do
    mkdir -p "$SCRATCH/m$i"
    "$LV" -q guest create "g$i" --image idle:1 --overlay "$SCRATCH/g/$i" >/dev/null
    if ! "$LV" -q mount --guest "g$i" "$SCRATCH/m$i" >/dev/null; then
        echo "mount $i failed; stopping at $mounted guests" >&2; break
    fi
    mounted=$i
    ls "$SCRATCH/m$i" >/dev/null
    # Stop before the host gets tight, whatever N asked for.
    (( i % 50 )) || (( $(avail_mib) > RESERVE_MIB )) || { echo "MemAvailable under $RESERVE_MIB MiB: stopping at $i" >&2; break; }
done
sleep 2
a1=$(avail_mib)
pids=$(pgrep -f "^$LV -q mount --guest" || true)
np=$(echo "$pids" | wc -w)
kb() { for p in $pids; do awk -v k="^$1:" '$0 ~ k {print $2}' "/proc/$p/$2"; done | awk '{s += $1} END {printf "%d", s}'; }
pss=$(kb Pss smaps_rollup); anon=$(kb Anonymous smaps_rollup)
fds=$(for p in $pids; do ls "/proc/$p/fd" | wc -l; done | awk '{s += $1} END {print s}')
thr=$(for p in $pids; do ls "/proc/$p/task" | wc -l; done | awk '{s += $1} END {print s}')
echo "guests mounted: $mounted (daemons: $np)"
awk -v n="$mounted" -v pss="$pss" -v anon="$anon" -v drop=$((a0 - a1)) -v fds="$fds" -v thr="$thr" 'BEGIN {
    printf "PSS total %.1f MiB, per guest %.2f MiB (anonymous %.2f MiB)\n", pss / 1024, pss / 1024 / n, anon / 1024 / n
    printf "MemAvailable drop %d MiB, per guest %.2f MiB\n", drop, drop / n
    printf "fds total %d, per guest %.1f; threads per guest %.1f\n", fds, fds / n, thr / n
}'
echo "RLIMIT_NOFILE (soft) $(ulimit -n), fs.file-max $(cat /proc/sys/fs/file-max), MemAvailable now $(avail_mib) MiB"
