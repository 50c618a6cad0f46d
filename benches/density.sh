#!/usr/bin/env bash
# density.sh — many guests of one image on one host: memory (page cache plus
# anonymous memory) and read times for N guests each reading the same
# working set, kernel overlayfs vs fuse-overlayfs vs lvrepo (without and with
# the host file cache, `mount --file-cache`), plus idle memory per guest.
#
# Usage (as root): benches/density.sh
#
# Environment:
#   LVREPO_BIN   lvrepo binary (default /work/main/target/release/lvrepo)
#   NS           guest counts (default "1 8"; the issue also asks for 64)
#   BIG_MIB      MiB of large files in the working set (default 128: 4 files)
#   CONTENDERS   subset of "kernel-overlayfs fuse-overlayfs lvrepo lvrepo-fc"
#   IDLE         guests mounted for the idle-memory count (default 32; 0 skips)
#   SCRATCH      work dir (default /var/tmp/lvrepo-density), removed at exit
#   LVREPO_TEST_CACHE  debootstrap cache shared with tests/ (default /var/cache/lvrepo-tests)
#
# The image: the debootstrap bookworm minbase tree plus BIG_MIB MiB in four
# files under srv/big. The working set each guest reads: srv/big/* and every
# file under usr/bin (cat to /dev/null).
#
# Per contender and N: drop caches; take MemInfo; mount N guests (fresh
# uppers/overlays); each guest reads the working set (cold: the first guest's
# read is timed cold, the others find what the host holds), then once more
# (warm, timed); memory = growth of (Cached + AnonPages) from before the
# mounts, in MiB; then everything is unmounted. "native" times read the tree
# directly (cold after drop_caches, then warm).
# Memory numbers are robust on a shared machine; times are medians of one run.

set -euo pipefail
export LC_ALL=C

LVREPO_BIN=${LVREPO_BIN:-/work/main/target/release/lvrepo}
NS=${NS:-"1 8"}
BIG_MIB=${BIG_MIB:-128}
CONTENDERS=${CONTENDERS:-"kernel-overlayfs fuse-overlayfs lvrepo lvrepo-fc"}
IDLE=${IDLE:-32}
SCRATCH=${SCRATCH:-/var/tmp/lvrepo-density}
CACHE=${LVREPO_TEST_CACHE:-/var/cache/lvrepo-tests}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 2; }
[[ -x $LVREPO_BIN ]] || { echo "lvrepo: binary missing at $LVREPO_BIN" >&2; exit 2; }
command -v fuse-overlayfs >/dev/null || apt-get install -y -q fuse-overlayfs >/dev/null
bash "$SCRIPT_DIR/../tests/fetch-debootstrap.sh" >/dev/null

rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
LV="$SCRATCH/lvrepo"; cp "$LVREPO_BIN" "$LV"
cleanup() {
    for m in $(awk -v s="$SCRATCH" '$2 ~ "^"s {print $2}' /proc/mounts | sort -r); do
        "$LV" umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

TREE="$SCRATCH/tree"
cp -a "$CACHE/bookworm-minbase" "$TREE"
mkdir -p "$TREE/srv/big"
for i in 1 2 3 4; do
    head -c $((BIG_MIB / 4 << 20)) /dev/urandom > "$TREE/srv/big/f$i"
done
R="$SCRATCH/repo"
"$LV" --repo "$R" init >/dev/null 2>&1
"$LV" --repo "$R" import "$TREE" --image img:1 >/dev/null 2>&1

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mem_mib() { awk '/^Cached:|^AnonPages:/ {s += $2} END {printf "%d", s / 1024}' /proc/meminfo; }
now() { date +%s.%N; }
# Read the working set under $1; print seconds.
readset() {
    local t0; t0=$(now)
    cat "$1"/srv/big/* > /dev/null
    find "$1/usr/bin" -type f -exec cat {} + > /dev/null
    echo "$(now) - $t0" | bc
}

mount_one() { # contender index mountpoint
    local c=$1 i=$2 mp=$3
    mkdir -p "$mp"
    case $c in
        kernel-overlayfs) mkdir -p "$SCRATCH/u$i" "$SCRATCH/w$i"
            mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$SCRATCH/u$i,workdir=$SCRATCH/w$i" "$mp" ;;
        fuse-overlayfs) mkdir -p "$SCRATCH/u$i" "$SCRATCH/w$i"
            fuse-overlayfs -o "lowerdir=$TREE,upperdir=$SCRATCH/u$i,workdir=$SCRATCH/w$i" "$mp" 2>/dev/null ;;
        lvrepo) "$LV" --repo "$R" mount img:1 --overlay "$SCRATCH/o$i" "$mp" ;;
        lvrepo-fc) "$LV" --repo "$R" mount img:1 --overlay "$SCRATCH/o$i" --file-cache "$SCRATCH/fc" "$mp" ;;
    esac
}
umount_one() { # contender mountpoint
    case $1 in
        lvrepo|lvrepo-fc) "$LV" umount "$2" ;;
        *) umount "$2" ;;
    esac
}
clean_uppers() { rm -rf "$SCRATCH"/u* "$SCRATCH"/w* "$SCRATCH"/o* "$SCRATCH"/m*; }

drop; nc=$(readset "$TREE"); nw=$(readset "$TREE")
printf 'native: cold %.2f s, warm %.2f s (working set: %d MiB of big files + usr/bin)\n\n' "$nc" "$nw" "$BIG_MIB"
printf '%-18s %4s %10s %9s %9s %11s %11s\n' contender N mem_MiB cold_s warm_s cold/native warm/native
declare -A MEM
for n in $NS; do
    for c in $CONTENDERS; do
        clean_uppers
        rm -rf "$SCRATCH/fc"
        drop
        m0=$(mem_mib)
        for i in $(seq 1 "$n"); do mount_one "$c" "$i" "$SCRATCH/m$i"; done
        cold=$(readset "$SCRATCH/m1")
        for i in $(seq 2 "$n"); do readset "$SCRATCH/m$i" >/dev/null; done
        warm=$(readset "$SCRATCH/m1")
        for i in $(seq 2 "$n"); do readset "$SCRATCH/m$i" >/dev/null; done
        m1=$(mem_mib)
        MEM[$c.$n]=$((m1 - m0))
        printf '%-18s %4d %10d %9.2f %9.2f %11.2f %11.2f\n' "$c" "$n" $((m1 - m0)) "$cold" "$warm" "$(echo "$cold / $nc" | bc -l)" "$(echo "$warm / $nw" | bc -l)"
        for i in $(seq 1 "$n"); do umount_one "$c" "$SCRATCH/m$i"; done
    done
done
echo
for n in $NS; do
    k=${MEM[kernel-overlayfs.$n]:-0}
    for c in lvrepo lvrepo-fc fuse-overlayfs; do
        [[ -n ${MEM[$c.$n]:-} && $k -gt 0 ]] && printf 'N=%d: %s memory / kernel overlayfs = %.2f (target for lvrepo: <= 1.5)\n' "$n" "$c" "$(echo "${MEM[$c.$n]} / $k" | bc -l)"
    done
done

if [[ $IDLE -gt 0 ]]; then
    clean_uppers; drop
    m0=$(mem_mib)
    for i in $(seq 1 "$IDLE"); do mount_one lvrepo "$i" "$SCRATCH/m$i"; done
    sleep 2
    m1=$(mem_mib)
    # PSS: shared pages (the binary, librocksdb) split among the daemons.
    pss=$(for p in $(pgrep -f "$LV --repo $R mount"); do awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"; done | awk '{s += $1} END {printf "%d", s / 1024}')
    anon=$(for p in $(pgrep -f "$LV --repo $R mount"); do awk '/^RssAnon/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {printf "%d", s / 1024}')
    echo
    printf 'idle: %d lvrepo guests mounted: +%d MiB (Cached+AnonPages), daemons PSS %d MiB (%.1f per guest; target <= 2), anonymous %d MiB (%.1f per guest)\n' "$IDLE" $((m1 - m0)) "$pss" "$(echo "$pss / $IDLE" | bc -l)" "$anon" "$(echo "$anon / $IDLE" | bc -l)"
    for i in $(seq 1 "$IDLE"); do umount_one lvrepo "$SCRATCH/m$i"; done
fi
