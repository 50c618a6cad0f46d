#!/usr/bin/env bash
# mount-compare.sh — compare the lvrepo FUSE overlay daemon against native ext4,
# kernel overlayfs and fuse-overlayfs on ONE tree: metadata walks, reads, the
# cost of the first write to image files (copy-up), and small-file writes.
#
# Usage (as root):
#   benches/mount-compare.sh [--quick] [--prepare] [-h|--help]
#
#   --quick    smoke test: FILES=10000, BIG_MIB=128, RUNS=1, RAND_MIB=32,
#              FSX_OPS=10000, WORKLOAD_TIMEOUT=600 (each only if not set in
#              the environment)
#   --prepare  only build/cache the tree and tarball, run nothing
#
# Environment:
#   LVREPO_BIN   lvrepo binary (default /work/main/target/release/lvrepo); copied into
#                the work dir at start, so a rebuild during the run does not mix builds
#   FUSE_NULL_BIN  fuse-null binary (default: next to LVREPO_BIN; built by
#                `cargo build --release -p lvrepo-benches`), copied likewise
#   RUNS         runs per contender; medians are reported (default 3)
#   FILES        synthetic files added to the debootstrap tree (default 100000)
#   BIG_MIB      size of the big image file var/lib/images/disk.img (default 1024)
#   SEED         seed for benches/gen-mount-tree.py (default 42)
#   NOPS         files touched / chmodded / created (default 10000)
#   TAR_MB       size of the untar tarball, cut from the tree (default 200)
#   RAND_MIB     MiB read by the 4 KiB random-read job (default 256)
#   FSX_OPS      fsx operations (default 100000; always `-S 1`)
#   FSX_BIN      fsx binary (default ~/.cargo/bin/fsx, else fsx on PATH)
#   CONTENDERS   subset of "native kernel-overlayfs fuse-overlayfs fuse-null lvrepo"
#                (default all; native is always run, ratios need it)
#   WORKLOADS    subset of "mount find_cold find_warm ls_cold ls_warm seqread randread
#                seqread_cold randread_cold append touch chmod create untar fsx"
#                (default all)
#   URING        1 (default): set fuse.enable_uring=Y so lvrepo serves over
#                per-CPU io_uring queues; 0: set it to N (/dev/fuse only)
#   OVL_OPTS     extra kernel overlayfs mount options, e.g. metacopy=on (default none:
#                the distribution defaults, i.e. full copy-up on chmod/touch)
#   WORKLOAD_TIMEOUT  seconds before one workload is killed and reported TIMEOUT (1800)
#   SCRATCH      work dir: native copy, repo, uppers (default /var/tmp/lvrepo-bench);
#                removed at exit. Keep it on the filesystem of BENCH_CACHE.
#   BENCH_CACHE  tree/tarball cache (default /var/cache/lvrepo-bench)
#   LVREPO_TEST_CACHE  debootstrap cache shared with tests/ (default /var/cache/lvrepo-tests)
#   DEBIAN_MIRROR      (default http://deb.debian.org/debian)
#
# The tree ($BENCH_CACHE/mount-tree-f$FILES-b$BIG_MIB-s$SEED, .ok marker):
#   the debootstrap bookworm minbase tree ($LVREPO_TEST_CACHE/bookworm-minbase,
#   built like import-compare.sh does if missing) + $FILES synthetic files of
#   lognormal sizes (median 3 KiB, mean ~11 KiB) under srv/app + one $BIG_MIB MiB
#   disk-image-like file var/lib/images/disk.img (benches/gen-mount-tree.py).
#
# Contenders, all over that same tree:
#   native            a plain copy of the tree (cp -a) in SCRATCH, made once per invocation
#   kernel-overlayfs  mount -t overlay, lower = the tree, fresh upper/work per mount
#   fuse-overlayfs    fuse-overlayfs, same
#   lvrepo            the tree imported once per invocation (lvrepo init + import),
#                     `lvrepo mount IMAGE --overlay DIR MNT` with a fresh overlay
#                     dir per mount, `lvrepo umount MNT` afterwards
#   fuse-null         the floor under any FUSE filesystem here (benches/bin/fuse-null.rs):
#                     the tree's names and attributes served from memory, every READ
#                     answered with zeros from one buffer, through lvrepo's FUSE
#                     transport and kernel options; runs the metadata workloads and
#                     the reads (find, ls -lR, fio, touch, chmod; "n/a" for the rest).
#                     Its memory is never cold: "cold" drops the kernel's caches only
#                     (so its cold reads are the FUSE data path with no disk and no
#                     decoding). A fresh daemon per mount, stopped by umount.
#
# Each run does, per contender (order rotated every run), on fresh mounts:
#   mount      (info) seconds until the mount is live — fresh upper/overlay
#   find       fresh mount, sync + drop_caches, `find MNT` (cold), again (warm)
#   ls -lR     fresh mount, sync + drop_caches, `ls -lR MNT` (cold), again (warm);
#              "cold" = fresh mount + `echo 3 >/proc/sys/vm/drop_caches`. For FUSE
#              drop_caches only drops the KERNEL side (page/dentry/inode caches);
#              daemon caches are empty only because the daemon is freshly started
#   seqread    same mount, file read once with cat (warm), then fio 1 MiB sequential
#              read of the whole big file (psync, invalidate=0)
#   randread   same mount, file read once with cat (warm, also when seqread is not
#              run), then fio 4 KiB random reads, $RAND_MIB MiB in total
#   seqread_cold   fresh mount, sync + drop_caches, the same fio sequential read:
#              for lvrepo every chunk comes from the repository's packs (index
#              lookup, pack read, zstd, BLAKE3), for the others from ext4
#   randread_cold  fresh mount, sync + drop_caches, the same fio random reads
#              (fio times = summed I/O latency from fio's JSON, not fio start-up)
#   append     fresh mount, append 1 byte to the big image file with
#              `dd oflag=append conv=notrunc,fsync` (time includes the fsync)
#   touch      fresh mount, `xargs touch` on $NOPS image files (every k-th regular
#              file of the tree, spread over all of it)
#   chmod      fresh mount, `xargs chmod 0600` on the same $NOPS files
#   create     fresh mount, create $NOPS x 4 KiB files in 100-file dirs (python)
#   untar      same mount, `tar -xf` a ~$TAR_MB MB tarball cut from the tree
#   fsx        same mount, `fsx -N $FSX_OPS -S 1` on a fresh file
# `sync` runs before every timed workload (earlier writeback is not charged);
# only append includes a flush (its fsync). For append/touch/chmod the growth of
# the upper layer is measured: du -sk of the upper dir (overlayfs) / the overlay
# dir (lvrepo) after the mount is taken down, minus right after mounting.
# The native copy is restored after append (truncate) and chmod (saved modes).
#
# Output: one table, rows = workloads, per contender median seconds and ratio to
# native; the upper-layer growth table; the targets and whether lvrepo meets
# them; all individual runs. Exit status is non-zero if a contender is missing
# (e.g. "lvrepo: binary missing"), cannot be set up or mounted, or any workload
# fails or times out — so nothing passes silently.

set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

QUICK=0
PREPARE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --prepare) PREPARE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [[ $QUICK == 1 ]]; then
    FILES=${FILES:-10000}
    BIG_MIB=${BIG_MIB:-128}
    RUNS=${RUNS:-1}
    RAND_MIB=${RAND_MIB:-32}
    FSX_OPS=${FSX_OPS:-10000}
    WORKLOAD_TIMEOUT=${WORKLOAD_TIMEOUT:-600}
fi
LVREPO_BIN=${LVREPO_BIN:-/work/main/target/release/lvrepo}
FUSE_NULL_BIN=${FUSE_NULL_BIN:-$(dirname "$LVREPO_BIN")/fuse-null}
RUNS=${RUNS:-3}
FILES=${FILES:-100000}
BIG_MIB=${BIG_MIB:-1024}
SEED=${SEED:-42}
NOPS=${NOPS:-10000}
TAR_MB=${TAR_MB:-200}
RAND_MIB=${RAND_MIB:-256}
FSX_OPS=${FSX_OPS:-100000}
if [[ -z ${FSX_BIN:-} ]]; then
    if [[ -x $HOME/.cargo/bin/fsx ]]; then FSX_BIN=$HOME/.cargo/bin/fsx; else FSX_BIN=$(command -v fsx || echo fsx); fi
fi
CONTENDERS=${CONTENDERS:-"native kernel-overlayfs fuse-overlayfs fuse-null lvrepo"}
ALL_WORKLOADS="mount find_cold find_warm ls_cold ls_warm seqread randread seqread_cold randread_cold append touch chmod create untar fsx"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}
OVL_OPTS=${OVL_OPTS:-}
WORKLOAD_TIMEOUT=${WORKLOAD_TIMEOUT:-1800}
SCRATCH=${SCRATCH:-/var/tmp/lvrepo-bench}
BENCH_CACHE=${BENCH_CACHE:-/var/cache/lvrepo-bench}
TEST_CACHE=${LVREPO_TEST_CACHE:-/var/cache/lvrepo-tests}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

for v in RUNS FILES BIG_MIB SEED NOPS TAR_MB RAND_MIB FSX_OPS WORKLOAD_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "$v must be a positive integer (got '${!v}')" >&2; exit 2; }
done

log() { printf '[mount-compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $EUID == 0 ]] || die "must run as root (mounts, drop_caches)"
for tool in python3 tar du find findmnt mountpoint timeout dd truncate xargs flock fio; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
for w in $WORKLOADS; do [[ " $ALL_WORKLOADS " == *" $w "* ]] || die "unknown workload $w"; done
wants() { [[ " $WORKLOADS " == *" $1 "* ]]; }
if wants fsx && [[ ! -x $FSX_BIN ]]; then die "fsx not found ($FSX_BIN); set FSX_BIN or drop fsx from WORKLOADS"; fi

read -r -a CONT <<<"$CONTENDERS"
[[ " $CONTENDERS " == *" native "* ]] || CONT=(native "${CONT[@]}")
for c in "${CONT[@]}"; do
    case $c in native|kernel-overlayfs|fuse-overlayfs|fuse-null|lvrepo) ;; *) die "unknown contender $c" ;; esac
done
# What a contender can run: fuse-null reads zeros and takes no writes or new files.
NULL_WORKLOADS="find_cold find_warm ls_cold ls_warm seqread randread seqread_cold randread_cold touch chmod"
runs_wl() { [[ $1 != fuse-null || " $NULL_WORKLOADS " == *" $2 "* ]]; }

mkdir -p "$BENCH_CACHE" "$SCRATCH"

# ------------------------------------------------------------------ cleanup

WORK=""
declare -a MOUNTS=()        # "kind|mountpoint|aux" of everything we mounted and not yet unmounted

is_mounted() { mountpoint -q -- "$1" 2>/dev/null; }

force_unmount() {   # kind mnt aux — best effort, used by the trap only
    local kind=$1 m=$2 aux=$3
    is_mounted "$m" || return 0
    case $kind in
        lvrepo)
            timeout 90 "$LVREPO_BIN" umount "$m" >/dev/null 2>&1 || true
            if is_mounted "$m"; then
                log "cleanup: lvrepo umount $m failed; lazy unmount + kill daemon"
                fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
            fi
            if [[ -f $aux/daemon.pid ]]; then
                local pid
                pid=$(cat "$aux/daemon.pid" 2>/dev/null || true)
                if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                    kill -TERM "$pid" 2>/dev/null || true
                    sleep 2
                    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
                fi
            fi ;;
        fuse-overlayfs)
            fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true ;;
        *)
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true ;;
    esac
}

cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        [[ -n ${MOUNTS[i]} ]] || continue
        IFS='|' read -r kind m aux <<<"${MOUNTS[i]}"
        force_unmount "$kind" "$m" "$aux"
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if grep -qF " $WORK/" /proc/self/mountinfo; then
            log "WARNING: something is still mounted under $WORK; leaving it in place"
        else
            rm -rf --one-file-system "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# FUSE over io_uring (Linux 6.14+) on, as docs/operations.md tells operators:
# the lvrepo daemon then uses per-CPU queues. fuse-overlayfs (libfuse 3.14)
# does not speak it and is unaffected; URING=0 keeps lvrepo on /dev/fuse too.
URING_PARAM=/sys/module/fuse/parameters/enable_uring
if [[ -w $URING_PARAM ]]; then
    if [[ ${URING:-1} == 1 ]]; then echo Y >"$URING_PARAM"; else echo N >"$URING_PARAM"; fi
    log "fuse.enable_uring=$(cat "$URING_PARAM")"
fi

# ------------------------------------------------------------------ datasets

write_marker() { printf '%s\n' "$2" >"$1.tmp.$$"; mv -f "$1.tmp.$$" "$1"; }

ensure_debootstrap() {   # same path, marker and lock as import-compare.sh
    DEBOOT=$TEST_CACHE/bookworm-minbase
    local mark="$TEST_CACHE/bookworm-minbase.ok"
    if [[ -f $mark && -d $DEBOOT ]]; then return 0; fi
    command -v debootstrap >/dev/null || die "debootstrap not installed and $DEBOOT missing"
    mkdir -p "$TEST_CACHE"
    exec {lockfd}>"$BENCH_CACHE/.bookworm-minbase.lock"
    flock "$lockfd"
    if [[ ! -f $mark || ! -d $DEBOOT ]]; then
        local tmp
        tmp=$(mktemp -d "$TEST_CACHE/.bench-bookworm-minbase.XXXXXX")
        log "debootstrap bookworm minbase -> $DEBOOT (log $BENCH_CACHE/debootstrap.log)"
        if ! debootstrap --variant=minbase bookworm "$tmp" "$DEBIAN_MIRROR" >"$BENCH_CACHE/debootstrap.log" 2>&1; then
            tail -n 30 "$BENCH_CACHE/debootstrap.log" >&2
            rm -rf "$tmp"
            die "debootstrap failed"
        fi
        if [[ -f $mark && -d $DEBOOT ]]; then
            rm -rf "$tmp"
        elif mv -T "$tmp" "$DEBOOT" 2>/dev/null; then
            write_marker "$mark" "$(date -u +%FT%TZ)"
        else
            rm -rf "$tmp"
            local i
            for i in $(seq 120); do [[ -f $mark ]] && break; sleep 1; done
            [[ -f $mark ]] || die "$DEBOOT exists without $mark; remove it and retry"
        fi
    fi
    flock -u "$lockfd"
    exec {lockfd}>&-
}

BIG_REL=var/lib/images/disk.img

ensure_tree() {
    local name="mount-tree-f$FILES-b$BIG_MIB-s$SEED"
    TREE=$BENCH_CACHE/$name
    local mark="$BENCH_CACHE/$name.ok" want
    want="debootstrap=$(cat "$TEST_CACHE/bookworm-minbase.ok") files=$FILES big_mib=$BIG_MIB seed=$SEED gen=$(sha256sum "$SCRIPT_DIR/gen-mount-tree.py" | cut -c1-16)"
    if [[ -f $mark && -d $TREE && $(cat "$mark") == "$want" ]]; then return 0; fi
    exec {lockfd}>"$BENCH_CACHE/.$name.lock"
    flock "$lockfd"
    if [[ ! -f $mark || ! -d $TREE || $(cat "$mark") != "$want" ]]; then
        log "building $TREE: debootstrap + $FILES files + $BIG_MIB MiB image"
        local tmp
        tmp=$(mktemp -d "$BENCH_CACHE/.$name.XXXXXX")
        cp -a "$DEBOOT/." "$tmp/"
        if ! python3 "$SCRIPT_DIR/gen-mount-tree.py" "$tmp" --source "$DEBOOT" \
                --files "$FILES" --big-mib "$BIG_MIB" --seed "$SEED"; then
            rm -rf "$tmp"
            die "gen-mount-tree.py failed"
        fi
        rm -f "$mark" "$TREE".tar-*
        rm -rf "$TREE"
        mv -T "$tmp" "$TREE"
        write_marker "$mark" "$want"
    fi
    flock -u "$lockfd"
    exec {lockfd}>&-
}

# Tarball for untar: dirs, regular files and symlinks of the tree in path order
# (the big image excluded) until TAR_MB MB of file data.
ensure_tarball() {
    TARBALL=$TREE.tar-${TAR_MB}m
    local mark="$TARBALL.ok" want
    want="tree=$(cat "$TREE.ok") tar_mb=$TAR_MB"
    if [[ -f $mark && -f $TARBALL && $(cat "$mark") == "$want" ]]; then return 0; fi
    log "building $TARBALL (~$TAR_MB MB cut from the tree)"
    local list=$TARBALL.list.$$
    python3 - "$TREE" "$TAR_MB" "$BIG_REL" >"$list" <<'EOF'
import os, stat, sys
root, budget, big = sys.argv[1], int(sys.argv[2]) * 1000 * 1000, "./" + sys.argv[3]
out, total = [], 0
def walk(d):
    global total
    for name in sorted(os.listdir(os.path.join(root, d))):
        rel = d + "/" + name
        st = os.lstat(os.path.join(root, rel))
        if total >= budget:
            return
        if stat.S_ISDIR(st.st_mode):
            out.append(rel); walk(rel)
        elif stat.S_ISREG(st.st_mode) and rel != big:
            out.append(rel); total += st.st_size
        elif stat.S_ISLNK(st.st_mode):
            out.append(rel)
walk(".")
sys.stdout.write("".join(p + "\0" for p in out))
EOF
    tar -C "$TREE" --no-recursion --null -T "$list" -cf "$TARBALL.tmp.$$"
    rm -f "$list"
    mv -f "$TARBALL.tmp.$$" "$TARBALL"
    write_marker "$mark" "$want"
}

ensure_debootstrap
ensure_tree
wants untar && ensure_tarball
if [[ $PREPARE == 1 ]]; then
    log "ready: tree $TREE${TARBALL:+, tarball $TARBALL}"
    exit 0
fi

BIG_BYTES=$(stat -c %s "$TREE/$BIG_REL")
WORK=$(mktemp -d "$SCRATCH/mount.XXXXXX")
[[ $(stat -c %d "$WORK") == $(stat -c %d "$TREE") ]] || log "WARNING: SCRATCH=$SCRATCH and $TREE are on different filesystems"

# The NOPS image files for touch/chmod: every k-th regular file (path order),
# spread over the whole tree; relative, NUL-separated. Plus their modes.
OPS_LIST=$WORK/ops.list
OPS_MODES=$WORK/ops.modes
python3 - "$TREE" "$NOPS" "$BIG_REL" "$OPS_LIST" "$OPS_MODES" <<'EOF'
import json, os, stat, sys
root, n, big, out, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
files = []
for d, dirs, names in os.walk(root):
    dirs.sort()
    for name in sorted(names):
        p = os.path.join(d, name)
        st = os.lstat(p)
        rel = os.path.relpath(p, root)
        if stat.S_ISREG(st.st_mode) and rel != big:
            files.append((rel, stat.S_IMODE(st.st_mode)))
if len(files) < n:
    sys.exit(f"the tree has only {len(files)} regular files, NOPS={n}")
step = len(files) / n
pick = [files[int(i * step)] for i in range(n)]
open(out, "w").write("".join(p + "\0" for p, _ in pick))
json.dump(pick, open(modes, "w"))
EOF

TREE_FILES=$(find "$TREE" -xdev -type f | wc -l)
TREE_ENTRIES=$(find "$TREE" -xdev | wc -l)
TREE_MIB=$(du -sm "$TREE" | cut -f1)
TAR_ENTRIES=""
if [[ -n ${TARBALL:-} ]]; then TAR_ENTRIES=$(tar -tf "$TARBALL" | wc -l); TAR_SIZE_MB=$(( $(stat -c %s "$TARBALL") / 1000000 )); fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cpus, load $LOAD_START, $(uname -r), $(fuse-overlayfs --version 2>/dev/null | awk '/fuse-overlayfs/ {print "fuse-overlayfs " $3}'), $(fio --version)"
log "tree: $TREE: $TREE_FILES files, $TREE_ENTRIES entries, $TREE_MIB MiB, big file $BIG_BYTES B"
log "runs=$RUNS nops=$NOPS rand=${RAND_MIB}MiB fsx_ops=$FSX_OPS timeout=${WORKLOAD_TIMEOUT}s work=$WORK"

# ------------------------------------------------------------------ contenders

declare -A CSTATE=() CNOTE=()
for c in "${CONT[@]}"; do CSTATE[$c]=ok; CNOTE[$c]=""; done

NATIVE=$WORK/native
if [[ " ${CONT[*]} " == *" kernel-overlayfs "* ]] && ! grep -qw overlay /proc/filesystems; then
    modprobe overlay 2>/dev/null || true
    grep -qw overlay /proc/filesystems || { CSTATE[kernel-overlayfs]=missing; CNOTE[kernel-overlayfs]="kernel has no overlay filesystem"; }
fi
if [[ " ${CONT[*]} " == *" fuse-overlayfs "* ]]; then
    command -v fuse-overlayfs >/dev/null || { CSTATE[fuse-overlayfs]=missing; CNOTE[fuse-overlayfs]="binary missing"; }
    command -v fusermount3 >/dev/null || { CSTATE[fuse-overlayfs]=missing; CNOTE[fuse-overlayfs]="fusermount3 missing"; }
    [[ -c /dev/fuse ]] || { CSTATE[fuse-overlayfs]=missing; CNOTE[fuse-overlayfs]="/dev/fuse missing"; }
fi
if [[ " ${CONT[*]} " == *" lvrepo "* ]]; then
    if [[ ! -x $LVREPO_BIN ]]; then
        CSTATE[lvrepo]=missing; CNOTE[lvrepo]="binary missing ($LVREPO_BIN)"
    elif [[ ! -c /dev/fuse ]]; then
        CSTATE[lvrepo]=missing; CNOTE[lvrepo]="/dev/fuse missing"
    fi
fi
if [[ " ${CONT[*]} " == *" fuse-null "* ]]; then
    if [[ ! -x $FUSE_NULL_BIN ]]; then
        CSTATE[fuse-null]=missing; CNOTE[fuse-null]="binary missing ($FUSE_NULL_BIN; cargo build --release -p lvrepo-benches)"
    elif [[ ! -c /dev/fuse ]]; then
        CSTATE[fuse-null]=missing; CNOTE[fuse-null]="/dev/fuse missing"
    else
        cp "$FUSE_NULL_BIN" "$WORK/fuse-null"
        FUSE_NULL_BIN=$WORK/fuse-null
    fi
fi

log "native: cp -a tree -> $NATIVE"
t0=$EPOCHREALTIME
cp -a "$TREE" "$NATIVE"
sync
log "  copied in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s"

REPO=$WORK/repo
IMAGE=mtree
LVREPO_DESC=""
if [[ ${CSTATE[lvrepo]:-} == ok ]]; then
    # Snapshot the binary: target/release is shared and may be rebuilt while we run;
    # one invocation must measure one build.
    cp "$LVREPO_BIN" "$WORK/lvrepo"
    LVREPO_DESC="$LVREPO_BIN, built $(stat -c %y "$LVREPO_BIN" | cut -d. -f1), sha256 $(sha256sum "$WORK/lvrepo" | cut -c1-12)"
    LVREPO_BIN=$WORK/lvrepo
    log "lvrepo: $LVREPO_DESC ($("$LVREPO_BIN" --version 2>/dev/null || echo 'version unknown')); import tree -> $REPO"
    t0=$EPOCHREALTIME
    if "$LVREPO_BIN" --repo "$REPO" init >"$WORK/lvrepo-import.log" 2>&1 &&
       "$LVREPO_BIN" --repo "$REPO" import "$TREE" --image "$IMAGE" >>"$WORK/lvrepo-import.log" 2>&1 && sync; then
        log "  imported in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s, repo $(du -sm "$REPO" | cut -f1) MiB"
    else
        tail -n 15 "$WORK/lvrepo-import.log" >&2
        CSTATE[lvrepo]=failed; CNOTE[lvrepo]="FAILED: lvrepo init/import of the tree (see log)"
    fi
fi

# mount_c CONTENDER -> sets MNT (where workloads run) and UPPER (dir whose growth
# is measured; empty for native). Non-zero if the mount cannot be set up.
MSEQ=0
declare -A MLOGGED=()
mount_c() {
    local c=$1 d
    MSEQ=$((MSEQ + 1))
    MNT=""; UPPER=""; MKIND=$c
    if [[ $c == native ]]; then
        [[ -d $NATIVE && -f $NATIVE/$BIG_REL ]] || { log "native copy $NATIVE is broken"; return 1; }
        MNT=$NATIVE; MOUNT_SECS=0
        return 0
    fi
    d=$WORK/m/$c-$MSEQ
    mkdir -p "$d/mnt"
    local t0=$EPOCHREALTIME fstype want
    case $c in
        kernel-overlayfs)
            mkdir -p "$d/upper" "$d/work"
            UPPER=$d/upper
            MOUNTS+=("$c|$d/mnt|$d")
            mount -t overlay overlay -o "lowerdir=$TREE,upperdir=$d/upper,workdir=$d/work${OVL_OPTS:+,$OVL_OPTS}" "$d/mnt" \
                >"$d.mount.log" 2>&1 || { log "$c: mount failed: $(cat "$d.mount.log")"; return 1; }
            want=overlay ;;
        fuse-overlayfs)
            mkdir -p "$d/upper" "$d/work"
            UPPER=$d/upper
            MOUNTS+=("$c|$d/mnt|$d")
            fuse-overlayfs -o "lowerdir=$TREE,upperdir=$d/upper,workdir=$d/work" "$d/mnt" \
                >"$d.mount.log" 2>&1 || { log "$c: mount failed: $(cat "$d.mount.log")"; return 1; }
            want=fuse.fuse-overlayfs ;;
        lvrepo)
            UPPER=$d/ov
            MOUNTS+=("$c|$d/mnt|$d/ov")
            timeout 120 "$LVREPO_BIN" --repo "$REPO" mount "$IMAGE" --overlay "$d/ov" "$d/mnt" \
                >"$d.mount.log" 2>&1 || { log "$c: lvrepo mount failed: $(tail -n 5 "$d.mount.log")"; return 1; }
            want=fuse ;;
        fuse-null)
            MOUNTS+=("$c|$d/mnt|$d")
            "$FUSE_NULL_BIN" "$TREE" "$d/mnt" >"$d.mount.log" 2>&1 &
            NULL_PID=$!
            local i
            for i in $(seq 600); do
                is_mounted "$d/mnt" && break
                kill -0 "$NULL_PID" 2>/dev/null || { log "$c: fuse-null exited: $(tail -n 5 "$d.mount.log")"; return 1; }
                sleep 0.1
            done
            want=fuse ;;
    esac
    MOUNT_SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.4f", b-a}')
    MNT=$d/mnt
    check_mount "$c" "$MNT" || return 1
    fstype=$(findmnt -n -o FSTYPE --mountpoint "$MNT" | tail -n 1)
    if [[ $fstype != "$want" && ! ($c == lvrepo && $fstype == fuse.lvrepo) ]]; then
        log "$c: $MNT has fstype '$fstype', expected $want"; return 1
    fi
    if [[ -z ${MLOGGED[$c]:-} ]]; then
        MLOGGED[$c]=1
        log "  $c mounted: $(findmnt -n -o FSTYPE,SOURCE,OPTIONS --mountpoint "$MNT" | tail -n 1 | cut -c1-240)"
    fi
    return 0
}

# The mount is live and shows the tree (big file with the right size).
check_mount() {
    local c=$1 m=$2 sz
    if [[ $c != native ]] && ! is_mounted "$m"; then log "$c: $m is not mounted"; return 1; fi
    sz=$(stat -c %s "$m/$BIG_REL" 2>/dev/null) || { log "$c: $m/$BIG_REL missing"; return 1; }
    [[ $sz -ge $BIG_BYTES ]] || { log "$c: $m/$BIG_REL has $sz bytes, expected $BIG_BYTES"; return 1; }
}

# umount_c: take down the current mount; non-zero if that fails.
umount_c() {
    local c=$MKIND m=$MNT i rc=0
    [[ $c == native || -z $m ]] && return 0
    if is_mounted "$m"; then
        case $c in
            kernel-overlayfs) umount "$m" >"$m.umount.log" 2>&1 || rc=$? ;;
            fuse-overlayfs) fusermount3 -u "$m" >"$m.umount.log" 2>&1 || rc=$? ;;
            lvrepo) timeout 120 "$LVREPO_BIN" umount "$m" >"$m.umount.log" 2>&1 || rc=$? ;;
            fuse-null) umount "$m" >"$m.umount.log" 2>&1 || rc=$? ;;
        esac
        if [[ $rc != 0 ]] || is_mounted "$m"; then
            log "$c: unmounting $m failed (rc=$rc): $(tail -n 3 "$m.umount.log")"
            return 1
        fi
    fi
    # Let a FUSE daemon that has dropped the mount finish exiting before du.
    if [[ $c == fuse-null && -n ${NULL_PID:-} ]]; then wait "$NULL_PID" 2>/dev/null || true; NULL_PID=""; fi
    for i in $(seq 50); do
        [[ $c == lvrepo && -f $UPPER/daemon.pid ]] || break
        sleep 0.1
    done
    for i in "${!MOUNTS[@]}"; do
        [[ ${MOUNTS[i]} == "$c|$m|"* ]] && unset 'MOUNTS[i]'
    done
    MOUNTS=("${MOUNTS[@]}")
    return 0
}

drop_mount_dir() { [[ $MKIND == native ]] && return 0; rm -rf --one-file-system "$(dirname "$MNT")" "$(dirname "$MNT").mount.log"; }

du_k() { if [[ -n $1 ]]; then du -sk "$1" | cut -f1; else echo 0; fi; }

# ------------------------------------------------------------------ workloads

secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.4f", b-a}'; }

# timed LOG CMD... : sync, run CMD under the workload timeout; STEP_SECS = wall
# seconds. 0 ok, 1 failed, 2 timed out.
timed() {
    local logf=$1 rc=0 t0; shift
    sync
    t0=$EPOCHREALTIME
    timeout -k 15 "$WORKLOAD_TIMEOUT" "$@" >>"$logf" 2>&1 || rc=$?
    STEP_SECS=$(secs_since "$t0")
    if [[ $rc == 124 || $rc == 137 ]]; then return 2; fi
    [[ $rc == 0 ]] || { echo "exit status $rc" >>"$logf"; return 1; }
}

fio_secs() {   # JSON -> summed I/O latency in seconds (total_ios x mean lat)
    python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))["jobs"][0]["read"]
assert r["total_ios"] > 0, "fio did no I/O"
print("%.4f" % (r["total_ios"] * r["lat_ns"]["mean"] / 1e9))' "$1"
}

PY_CREATE='import os, sys
d, n = sys.argv[1], int(sys.argv[2])
buf = bytes(range(256)) * 16
for i in range(n):
    sub = os.path.join(d, "d%03d" % (i // 100))
    if i % 100 == 0:
        os.mkdir(sub)
    with open(os.path.join(sub, "f%05d" % i), "wb") as f:
        f.write(buf)'

PY_RESTORE_MODES='import json, os, sys
for rel, mode in json.load(open(sys.argv[2])):
    os.chmod(os.path.join(sys.argv[1], rel), mode)'

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# run_wl CONTENDER WORKLOAD LOG: run one workload on $MNT; STEP_SECS on success.
# 0 ok, 1 failed, 2 timeout.
run_wl() {
    local c=$1 w=$2 lg=$3 m=$MNT rc=0 sz mode
    check_mount "$c" "$m" >>"$lg" 2>&1 || { echo "mount check failed before $w" >>"$lg"; return 1; }
    case $w in
        find_cold) drop_caches; timed "$lg" find "$m" -fprint /dev/null || return ;;
        find_warm) timed "$lg" find "$m" -fprint /dev/null || return ;;
        ls_cold) drop_caches; timed "$lg" bash -c 'ls -lR "$1" >/dev/null' _ "$m" || return ;;
        ls_warm) timed "$lg" bash -c 'ls -lR "$1" >/dev/null' _ "$m" || return ;;
        seqread|randread|seqread_cold|randread_cold)
            local job=(--name="$w" --filename="$m/$BIG_REL" --size="$BIG_BYTES" --ioengine=psync
                       --invalidate=0 --readonly --output-format=json --output="$lg.json")
            if [[ $w == *_cold ]]; then
                drop_caches
            else
                cat "$m/$BIG_REL" >/dev/null 2>>"$lg" || { echo "warm-up read failed" >>"$lg"; return 1; }
            fi
            if [[ $w == seqread* ]]; then
                job+=(--rw=read --bs=1M)
            else
                job+=(--rw=randread --bs=4k --io_size="${RAND_MIB}m" --norandommap --randrepeat=1)
            fi
            timed "$lg" fio "${job[@]}" || return
            STEP_SECS=$(fio_secs "$lg.json" 2>>"$lg") || return 1 ;;
        append)
            timed "$lg" bash -c 'printf x | dd of="$1" bs=1 count=1 oflag=append conv=notrunc,fsync status=none' _ "$m/$BIG_REL" || return
            sz=$(stat -c %s "$m/$BIG_REL")
            [[ $sz == $((BIG_BYTES + 1)) ]] || { echo "after append the file has $sz bytes, expected $((BIG_BYTES + 1))" >>"$lg"; rc=1; }
            [[ $c == native ]] && truncate -s "$BIG_BYTES" "$m/$BIG_REL"
            return $rc ;;
        touch)
            timed "$lg" xargs -0 -a "$OPS_LIST" env -C "$m" touch -- || return
            # spot check: the first listed file now has a recent mtime
            local first
            first=$(head -z -n 1 "$OPS_LIST" | tr -d '\0')
            (( $(date +%s) - $(stat -c %Y "$m/$first") < 3600 )) || { echo "touch: $first mtime not updated" >>"$lg"; return 1; } ;;
        chmod)
            timed "$lg" xargs -0 -a "$OPS_LIST" env -C "$m" chmod 0600 -- || rc=$?
            if [[ $rc == 0 ]]; then
                local first
                first=$(head -z -n 1 "$OPS_LIST" | tr -d '\0')
                mode=$(stat -c %a "$m/$first")
                [[ $mode == 600 ]] || { echo "chmod: $first has mode $mode, expected 600" >>"$lg"; rc=1; }
            fi
            [[ $c == native ]] && python3 -c "$PY_RESTORE_MODES" "$m" "$OPS_MODES"
            return $rc ;;
        create)
            mkdir "$m/bench-create" || return 1
            timed "$lg" python3 -c "$PY_CREATE" "$m/bench-create" "$NOPS" || return
            sz=$(find "$m/bench-create" -type f | wc -l)
            [[ $sz == "$NOPS" ]] || { echo "create: found $sz files, expected $NOPS" >>"$lg"; return 1; } ;;
        untar)
            mkdir "$m/bench-untar" || return 1
            timed "$lg" tar -xf "$TARBALL" -C "$m/bench-untar" || return ;;
        fsx)
            mkdir -p "$m/bench-fsx" "$lg.fsx" || return 1
            timed "$lg" "$FSX_BIN" -N "$FSX_OPS" -S 1 -P "$lg.fsx" "$m/bench-fsx/fsx.file" || return ;;
    esac
    return 0
}

declare -A T=() G=() WSTATE=()   # key "contender|workload": run times / upper growth KiB / ok|FAIL|TIMEOUT
for c in "${CONT[@]}"; do for w in $ALL_WORKLOADS; do T[$c|$w]=""; G[$c|$w]=""; WSTATE[$c|$w]=""; done; done
STATUS=0

record_fail() {   # contender workload rc log
    local c=$1 w=$2 rc=$3 lg=$4
    if [[ $rc == 2 ]]; then
        WSTATE[$c|$w]="TIMEOUT"
        log "  $c $w: TIMEOUT after ${WORKLOAD_TIMEOUT}s"
    else
        [[ ${WSTATE[$c|$w]} == TIMEOUT ]] || WSTATE[$c|$w]="FAIL"
        log "  $c $w: FAILED; last lines of $lg:"
        tail -n 12 "$lg" | sed 's/^/      /' >&2
    fi
    STATUS=1
}

# Size of an untouched upper: mount a fresh upper/overlay, unmount, du. lvrepo's
# overlay dir holds a RocksDB (preallocated WAL while mounted) and daemon.log,
# so "growth" = du after a workload's unmount minus this.
declare -A IDLE_K=()
idle_base() {
    local c=$1
    [[ -z ${IDLE_K[$c]:-} ]] || return 0
    if ! mount_c "$c"; then
        CSTATE[$c]=failed; CNOTE[$c]="FAILED: could not mount (see log)"; STATUS=1
        umount_c >/dev/null 2>&1 || true
        return 1
    fi
    if ! umount_c; then
        CSTATE[$c]=failed; CNOTE[$c]="FAILED: unmount failed (see log)"; STATUS=1
        return 1
    fi
    sync
    IDLE_K[$c]=$(du_k "$UPPER")
    drop_mount_dir
    log "  $c: untouched upper after mount+unmount = ${IDLE_K[$c]} KiB"
}

# phase CONTENDER RUN WORKLOAD... : one fresh mount, the workloads in order, unmount.
# Measures upper growth if the phase is a single write workload.
phase() {
    local c=$1 run=$2; shift 2
    local ws=("$@") w rc base=0 after lg
    local todo=()
    for w in "${ws[@]}"; do wants "$w" && runs_wl "$c" "$w" && todo+=("$w"); done
    [[ ${#todo[@]} -gt 0 ]] || return 0
    [[ ${CSTATE[$c]} == ok ]] || return 0
    if [[ ${#todo[@]} == 1 && $c != native && $c != fuse-null ]] && [[ " append touch chmod " == *" ${todo[0]} "* ]]; then
        idle_base "$c" || return 0
    fi
    if ! mount_c "$c"; then
        CSTATE[$c]=failed; CNOTE[$c]="FAILED: could not mount (see log)"; STATUS=1
        umount_c >/dev/null 2>&1 || true
        return 0
    fi
    if [[ ${todo[0]} == find_cold ]] && wants mount && runs_wl "$c" mount && [[ $c != native ]]; then
        T[$c|mount]+="$MOUNT_SECS "
    fi
    base=${IDLE_K[$c]:-0}
    for w in "${todo[@]}"; do
        lg=$WORK/log/$c-$w-$run.log
        mkdir -p "$WORK/log"
        : >"$lg"
        rc=0
        run_wl "$c" "$w" "$lg" || rc=$?
        if [[ $rc == 0 ]]; then
            T[$c|$w]+="$STEP_SECS "
            log "  $c $w: ${STEP_SECS}s"
        else
            record_fail "$c" "$w" "$rc" "$lg"
        fi
    done
    if ! umount_c; then
        CSTATE[$c]=failed; CNOTE[$c]="FAILED: unmount failed (see log)"; STATUS=1
        return 0
    fi
    if [[ ${#todo[@]} == 1 && -n $UPPER && ${WSTATE[$c|${todo[0]}]} == "" ]]; then
        sync
        after=$(du_k "$UPPER")
        G[$c|${todo[0]}]+="$((after - base)) "
        log "  $c ${todo[0]}: upper grew by $((after - base)) KiB"
    fi
    drop_mount_dir
    if [[ $c == native ]]; then rm -rf "$NATIVE/bench-create" "$NATIVE/bench-untar" "$NATIVE/bench-fsx"; fi
}

n=${#CONT[@]}
for ((run = 1; run <= RUNS; run++)); do
    for ((k = 0; k < n; k++)); do
        c=${CONT[$(((k + run - 1) % n))]}
        [[ ${CSTATE[$c]} == ok ]] || continue
        log "run $run/$RUNS: $c"
        phase "$c" "$run" find_cold find_warm
        phase "$c" "$run" ls_cold ls_warm seqread randread
        phase "$c" "$run" seqread_cold
        phase "$c" "$run" randread_cold
        phase "$c" "$run" append
        phase "$c" "$run" touch
        phase "$c" "$run" chmod
        phase "$c" "$run" create untar fsx
    done
done

# ------------------------------------------------------------------ report

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print ""; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fmt_s() { awk -v x="$1" 'BEGIN{ if (x < 0.001) printf "%.2gms", x * 1000; else if (x < 10) printf "%.3gs", x; else printf "%.1fs", x }'; }
fmt_r() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == "" || b <= 0) print "-"; else { r = a / b; if (r >= 100) printf "%.0fx", r; else if (r >= 10) printf "%.1fx", r; else printf "%.2fx", r } }'; }
fmt_k() { awk -v k="$1" 'BEGIN{ if (k == "") print "-"; else if (k < 1024) printf "%d KiB", k; else if (k < 1048576) printf "%.1f MiB", k / 1024; else printf "%.2f GiB", k / 1048576 }'; }

declare -A MED=()
for c in "${CONT[@]}"; do for w in $ALL_WORKLOADS; do MED[$c|$w]=$(median <<<"${T[$c|$w]}"); done; done

label() {
    case $1 in
        mount) echo "mount, fresh overlay (info)" ;;
        find_cold) echo "find, cold" ;;
        find_warm) echo "find, warm" ;;
        ls_cold) echo "ls -lR, cold" ;;
        ls_warm) echo "ls -lR, warm" ;;
        seqread) echo "seq read $BIG_MIB MiB, warm (fio)" ;;
        randread) echo "4K rand read $RAND_MIB MiB, warm (fio)" ;;
        seqread_cold) echo "seq read $BIG_MIB MiB, cold (fio)" ;;
        randread_cold) echo "4K rand read $RAND_MIB MiB, cold (fio)" ;;
        append) echo "append 1 B to $BIG_MIB MiB file +fsync" ;;
        touch) echo "touch $NOPS image files" ;;
        chmod) echo "chmod $NOPS image files" ;;
        create) echo "create $NOPS x 4 KiB files" ;;
        untar) echo "untar ${TAR_SIZE_MB:-?} MB, $TAR_ENTRIES entries" ;;
        fsx) echo "fsx -N $FSX_OPS -S 1" ;;
    esac
}

cell() {   # contender workload -> "time ratio" or FAIL/TIMEOUT/missing
    local c=$1 w=$2 med
    case ${CSTATE[$c]} in missing) echo "missing"; return ;; esac
    runs_wl "$c" "$w" || { echo "n/a"; return; }
    if [[ -n ${WSTATE[$c|$w]} ]]; then echo "${WSTATE[$c|$w]}"; return; fi
    med=${MED[$c|$w]}
    if [[ -z $med ]]; then
        if [[ ${CSTATE[$c]} == failed ]]; then echo "FAILED"; else echo "-"; fi
        return
    fi
    if [[ $c == native || $w == mount ]]; then fmt_s "$med"; else printf '%s %s' "$(fmt_s "$med")" "$(fmt_r "$med" "${MED[native|$w]}")"; fi
}

echo
printf '== mount-compare: %s\n' "$TREE"
printf '   %d files, %d entries, %d MiB; big file %d MiB; runs=%d (medians); ratio = time / native\n' \
    "$TREE_FILES" "$TREE_ENTRIES" "$TREE_MIB" "$BIG_MIB" "$RUNS"
printf '   %s, %s cpus, load average %s at start, %s at end; kernel overlayfs options: defaults%s\n' \
    "$(uname -r)" "$(nproc)" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "${OVL_OPTS:+ + $OVL_OPTS}"
if [[ -n $LVREPO_DESC ]]; then printf '   lvrepo: %s (copied for this invocation)\n' "$LVREPO_DESC"; fi
printf '%-38s' workload
for c in "${CONT[@]}"; do printf ' %-18s' "$c"; done
echo
for w in $ALL_WORKLOADS; do
    wants "$w" || continue
    printf '%-38s' "$(label "$w")"
    for c in "${CONT[@]}"; do printf ' %-18s' "$(cell "$c" "$w")"; done
    echo
done
for c in "${CONT[@]}"; do
    if [[ -n ${CNOTE[$c]} ]]; then printf '   %s: %s\n' "$c" "${CNOTE[$c]}"; fi
done

echo
echo "upper-layer growth (du -sk of the upper dir / lvrepo overlay dir after unmount, minus the same for an"
echo "untouched fresh mount: $(for c in "${!IDLE_K[@]}"; do printf '%s %s KiB; ' "$c" "${IDLE_K[$c]}"; done | sed 's/; $//'); median):"
printf '%-38s' workload
for c in "${CONT[@]}"; do [[ $c == native || $c == fuse-null ]] || printf ' %-18s' "$c"; done
echo
for w in append touch chmod; do
    wants "$w" || continue
    printf '%-38s' "$(label "$w")"
    for c in "${CONT[@]}"; do
        [[ $c == native || $c == fuse-null ]] && continue
        printf ' %-18s' "$(fmt_k "$(median <<<"${G[$c|$w]}")")"
    done
    echo
done

# Targets for lvrepo.
echo
echo "targets (lvrepo):"
echo "  reads and metadata: within 1.5x native and faster than fuse-overlayfs"
echo "  touch, chmod, append: >= 10x cheaper than kernel overlayfs AND fuse-overlayfs"
if [[ ${CSTATE[lvrepo]:-absent} == absent ]]; then
    echo "  (lvrepo not among CONTENDERS)"
else
    for w in find_cold find_warm ls_cold ls_warm seqread randread seqread_cold randread_cold; do
        wants "$w" || continue
        l=${MED[lvrepo|$w]}; nat=${MED[native|$w]}; fo=${MED[fuse-overlayfs|$w]:-}
        if [[ -z $l ]]; then printf '  %-38s %s\n' "$(label "$w")" "MISS (no result: $(cell lvrepo "$w"))"; continue; fi
        verdict=$(awk -v l="$l" -v n="$nat" -v f="$fo" 'BEGIN{
            if (n == "" || n <= 0) { ok = 0; s = "no native result" } else { r = l / n; ok = (r <= 1.5); s = sprintf("%.2fx native", r) }
            if (f != "") { s = s sprintf(", %.2fx fuse-overlayfs", l / f); if (l >= f) ok = 0 } else s = s ", no fuse-overlayfs result"
            print (ok ? "ok    " : "MISS  ") s }')
        printf '  %-38s %s\n' "$(label "$w")" "$verdict"
    done
    for w in touch chmod append; do
        wants "$w" || continue
        l=${MED[lvrepo|$w]}; ko=${MED[kernel-overlayfs|$w]:-}; fo=${MED[fuse-overlayfs|$w]:-}
        if [[ -z $l ]]; then printf '  %-38s %s\n' "$(label "$w")" "MISS (no result: $(cell lvrepo "$w"))"; continue; fi
        verdict=$(awk -v l="$l" -v k="$ko" -v f="$fo" 'BEGIN{
            ok = 1; s = ""
            if (k != "") { s = s sprintf("%.1fx cheaper than kernel overlayfs", k / l); if (k / l < 10) ok = 0 }
            if (f != "") { s = s (s == "" ? "" : ", ") sprintf("%.1fx cheaper than fuse-overlayfs", f / l); if (f / l < 10) ok = 0 }
            if (s == "") { s = "no overlay results to compare"; ok = 0 }
            print (ok ? "ok    " : "MISS  ") s }')
        printf '  %-38s %s\n' "$(label "$w")" "$verdict"
    done
fi

if [[ ${CSTATE[lvrepo]:-absent} != absent && ${CSTATE[fuse-null]:-absent} != absent ]]; then
    echo
    echo "lvrepo against the FUSE floor (fuse-null: same transport and options, a daemon that does no work):"
    for w in $NULL_WORKLOADS; do
        wants "$w" || continue
        l=${MED[lvrepo|$w]}; z=${MED[fuse-null|$w]}; nat=${MED[native|$w]}
        [[ -n $l && -n $z ]] || continue
        awk -v l="$l" -v z="$z" -v n="$nat" -v w="$(label "$w")" 'BEGIN{
            printf "  %-38s floor %.2fx native; lvrepo %.2fx the floor (%+.3fs)\n", w, (n > 0 ? z / n : 0), l / z, l - z }'
    done
fi

echo
echo "notes: cold = fresh mount + sync + drop_caches; drop_caches only drops the kernel's caches —"
echo "       a FUSE daemon's own caches are empty only because every phase starts a fresh daemon."
echo "       fio times are the summed I/O latency (total_ios x mean lat) from fio's JSON."
echo "       Only append includes a flush (fsync); create/untar/fsx/touch/chmod time the syscalls."

echo
echo "all runs (seconds):"
for w in $ALL_WORKLOADS; do
    wants "$w" || continue
    for c in "${CONT[@]}"; do
        if [[ -n ${T[$c|$w]} ]]; then printf '  %-10s %-18s %s\n' "$w" "$c" "${T[$c|$w]% }"; fi
    done
done

for c in "${CONT[@]}"; do [[ ${CSTATE[$c]} == ok ]] || STATUS=1; done
if [[ $STATUS != 0 ]]; then
    echo
    log "some contenders were missing or failed, or a workload failed/timed out — exiting non-zero"
fi
exit "$STATUS"
