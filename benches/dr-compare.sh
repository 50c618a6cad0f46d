#!/usr/bin/env bash
# dr-compare.sh — disaster recovery: lvrepo backup/restore against restic, borg
# and btrfs send/receive, on a guest of a Debian image with its own data, then
# after a 1% change. One run (no medians); warm page cache throughout.
#
# Usage:
#   benches/dr-compare.sh [--keep] [-h|--help]
#
# Environment:
#   LVREPO_BIN  lvrepo binary (default /work/main/target/release/lvrepo)
#   IMAGE_TREE  the image (default /var/cache/lvrepo-tests/bookworm-minbase,
#               made by tests/fetch-debootstrap.sh)
#   DATA_MB     the guest's own data (default 200): half text-like, half random
#               (benches/gen-dr-data.py, same bytes in every contender's tree)
#   CHANGE_PCT  the change, in % of the guest's own data (default 1)
#   ONLY        "lvrepo": skip restic, borg and btrfs
#   SCRATCH     work directory parent (default /var/tmp/lvrepo-bench)
#
# Needs root (FUSE, loop mounts); installs restic and borgbackup if missing.
#
# What runs (each contender gets the same tree: the image plus dr-data/):
#  lvrepo   a guest of IMAGE (imported as deb:1) gets the data through its
#           mount; `checkpoint`, then `backup --no-checkpoint` to a site that
#           holds deb:1 ("image site") and to an empty one; after the change
#           the same again. A backup's time is its checkpoint's plus its copy's
#           (`lvrepo backup` does both). Restore: `restore` from the empty site
#           into an empty repository, and from the image site into one holding
#           deb:1. Also `send | receive` of the guest to an empty repository.
#  restic   `backup` of the tree to a repository that already holds a snapshot
#           of the image ("image site") and to an empty one; `restore`.
#  borg     the same, `borg create` / `borg extract`, no encryption (lz4).
#  btrfs    the image in a subvolume, the guest a snapshot of it; `send -p
#           image` (image site) and a full `send` (empty site) into other
#           loop-mounted btrfs filesystems, then `send -p previous` after the
#           change; restore: a full send back.
# Bytes: growth of the target (du -sb; btrfs: the stream's length). Reads: a
# further incremental `backup` (checkpoint + copy) runs under strace, its
# reads summed by file: the image's repository, the guest's directory, other.
# Targets (issue 26): first backup to the image site <= 1.05x the guest's
# unique compressed bytes (its checkpoint store); incremental <= 1.05x the
# changed bytes (the checkpoint store's growth) + 1% of the guest's data, and
# reads far less than the image; backup and restore >= 2x restic's throughput
# (empty site, same data).

set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GEN="$SCRIPT_DIR/gen-dr-data.py"
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
LVREPO_BIN=${LVREPO_BIN:-/work/main/target/release/lvrepo}
IMAGE_TREE=${IMAGE_TREE:-/var/cache/lvrepo-tests/bookworm-minbase}
DATA_MB=${DATA_MB:-200}
CHANGE_PCT=${CHANGE_PCT:-1}
ONLY=${ONLY:-}
SCRATCH=${SCRATCH:-/var/tmp/lvrepo-bench}
log() { printf '[dr-compare] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
[[ -d $IMAGE_TREE ]] || die "$IMAGE_TREE missing (tests/fetch-debootstrap.sh)"
[[ -x $LVREPO_BIN ]] || die "lvrepo binary missing: $LVREPO_BIN"
command -v strace >/dev/null || die "strace missing (apt-get install strace)"
if [[ -z $ONLY ]]; then
    for p in restic:restic borg:borgbackup; do
        command -v "${p%%:*}" >/dev/null || { log "installing ${p#*:}"; apt-get install -y "${p#*:}" >/dev/null; }
    done
    for t in restic borg btrfs mkfs.btrfs losetup; do command -v $t >/dev/null || die "$t missing"; done
fi

mkdir -p "$SCRATCH"
W=$(mktemp -d "$SCRATCH/dr.XXXXXX")
LV="$W/lvrepo"
cp "$LVREPO_BIN" "$LV"   # a concurrent build must not swap the binary mid-run
LOG=$W/log
export LOG
MOUNTS=()
cleanup() {
    set +e
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
        m=${MOUNTS[$i]}
        mountpoint -q "$m" && { "$LV" umount "$m" >/dev/null 2>&1 || umount "$m" || umount -l "$m"; }
    done
    [[ $KEEP == 1 ]] && { log "kept $W"; return; }
    rm -rf "$W"
}
trap cleanup EXIT

# tio NAME CMD...: run CMD (output to $LOG), set T[NAME] (wall ms), C[NAME]
# (CPU ms, user + system, children included) and R[NAME] (bytes read).
declare -A T C R B
tio() {
    local name=$1; shift
    local out
    out=$(bash -c 's=$(date +%s%N); "$@" >>"$LOG" 2>&1 || exit 1; e=$(date +%s%N)
          times >"$LOG.times"   # a builtin, run here (not in a subshell): children of this shell
          c=$(awk "NR==2{for(i=1;i<=2;i++){split(\$i,a,/[ms]/); t+=a[1]*60000+a[2]*1000}; printf \"%d\", t}" "$LOG.times")
          r=$(awk "/^rchar/{print \$2}" /proc/$$/io); echo "$(( (e - s) / 1000000 )) $c $r"' _ "$@") || die "$name failed (see $LOG)"
    read -r T[$name] C[$name] R[$name] <<<"$out"
    log "$name: ${T[$name]} ms, cpu ${C[$name]} ms"
}
size() { du -sb "$1" | cut -f1; }
lv() { "$LV" -q "$@"; }

log "work directory $W; $(basename "$LVREPO_BIN") built $(date -u -r "$LVREPO_BIN" +%FT%TZ)"
# The same tree for restic and borg: the image plus the guest's data.
TREE=$W/tree
cp -a "$IMAGE_TREE" "$TREE"
python3 "$GEN" gen "$TREE" --mb "$DATA_MB"
TREE_BYTES=$(size "$TREE")
IMAGE_BYTES=$(size "$IMAGE_TREE")
DATA_BYTES=$(size "$TREE/dr-data")

# ---- lvrepo ----
SRC=$W/src IMG=$W/site-img EMPTY=$W/site-empty
lv --repo "$SRC" init
lv --repo "$SRC" import --image deb:1 "$IMAGE_TREE"
lv --repo "$IMG" init
lv --repo "$IMG" import --image deb:1 "$IMAGE_TREE"
lv --repo "$EMPTY" init
lv --repo "$SRC" guest create g --image deb:1 --overlay "$W/g"
mkdir -p "$W/mnt"
lv --repo "$SRC" mount --guest g "$W/mnt"; MOUNTS+=("$W/mnt")
python3 "$GEN" gen "$W/mnt" --mb "$DATA_MB"
lv --repo "$SRC" umount "$W/mnt"
store_bytes() { size "$W/g/store"; }
tio lv-cp1 "$LV" -q --repo "$SRC" checkpoint g -m one
GUEST_UNIQUE=$(store_bytes)
b0=$(size "$IMG"); tio lv-img1 "$LV" -q --repo "$SRC" backup g --no-checkpoint --to "$IMG"; B[lv-img1]=$(( $(size "$IMG") - b0 ))
b0=$(size "$EMPTY"); tio lv-empty1 "$LV" -q --repo "$SRC" backup g --no-checkpoint --to "$EMPTY"; B[lv-empty1]=$(( $(size "$EMPTY") - b0 ))
lv --repo "$SRC" mount --guest g "$W/mnt"
CHANGED=$(python3 "$GEN" change "$W/mnt" --pct "$CHANGE_PCT")
lv --repo "$SRC" umount "$W/mnt"
tio lv-cp2 "$LV" -q --repo "$SRC" checkpoint g -m two
GUEST_CHANGED=$(( $(store_bytes) - GUEST_UNIQUE ))
b0=$(size "$IMG"); tio lv-img2 "$LV" -q --repo "$SRC" backup g --no-checkpoint --to "$IMG"; B[lv-img2]=$(( $(size "$IMG") - b0 ))
b0=$(size "$EMPTY"); tio lv-empty2 "$LV" -q --repo "$SRC" backup g --no-checkpoint --to "$EMPTY"; B[lv-empty2]=$(( $(size "$EMPTY") - b0 ))
lv --repo "$W/host-empty" init
tio lv-rs-empty "$LV" -q --repo "$W/host-empty" restore g --from "$EMPTY" --overlay "$W/rg1"
lv --repo "$W/host-img" init
lv --repo "$W/host-img" import --image deb:1 "$IMAGE_TREE"
tio lv-rs-img "$LV" -q --repo "$W/host-img" restore g --from "$IMG" --overlay "$W/rg2"
lv --repo "$W/rx" init
tio lv-stream bash -c '"$1" -q --repo "$2" send g | "$1" -q --repo "$3" receive -' _ "$LV" "$SRC" "$W/rx"
B[lv-stream]=$(size "$W/rx")
# The restored guest is the source guest, byte for byte.
mkdir -p "$W/mnt2"
lv --repo "$W/host-empty" mount --guest g "$W/mnt"
lv --repo "$SRC" mount --guest g "$W/mnt2"; MOUNTS+=("$W/mnt2")
diff -r --no-dereference -q "$W/mnt" "$W/mnt2" >>"$LOG" || die "the restored guest differs from the source"
lv --repo "$W/host-empty" umount "$W/mnt"
lv --repo "$SRC" umount "$W/mnt2"
# What an incremental `backup` (checkpoint + copy) reads, by file (untimed,
# under strace): another change of the same size first.
lv --repo "$SRC" mount --guest g "$W/mnt"
python3 "$GEN" change "$W/mnt" --pct "$CHANGE_PCT" --seed 7 >/dev/null
lv --repo "$SRC" umount "$W/mnt"
strace -f -y -e trace=read,pread64,readv,preadv -o "$W/strace" "$LV" -q --repo "$SRC" backup g --to "$IMG" -m three >>"$LOG"
read -r READ_IMAGE READ_GUEST READ_OTHER < <(python3 - "$W/strace" "$SRC/" "$W/g/" <<'EOF'
import re, sys
n = [0, 0, 0]
for line in open(sys.argv[1]):
    m = re.search(r"\b(?:read|pread64|readv|preadv)\(\d+<([^>]*)>.*= (\d+)$", line)
    if m:
        p = m.group(1)
        n[0 if p.startswith(sys.argv[2]) else 1 if p.startswith(sys.argv[3]) else 2] += int(m.group(2))
print(*n)
EOF
)

if [[ $ONLY != lvrepo ]]; then
    # ---- restic ----
    export RESTIC_PASSWORD=bench
    restic -q init -r "$W/restic-img" >>"$LOG"; restic -q init -r "$W/restic-empty" >>"$LOG"
    restic -q -r "$W/restic-img" backup "$IMAGE_TREE" >>"$LOG"
    # ---- borg ----
    export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
    borg init -e none "$W/borg-img" >>"$LOG" 2>&1; borg init -e none "$W/borg-empty" >>"$LOG" 2>&1
    (cd "$IMAGE_TREE/.." && borg create "$W/borg-img::image" "$(basename "$IMAGE_TREE")" >>"$LOG" 2>&1)
    for round in 1 2; do
        [[ $round == 2 ]] && python3 "$GEN" change "$TREE" --pct "$CHANGE_PCT" >/dev/null
        for s in img empty; do
            b0=$(size "$W/restic-$s"); tio "restic-$s$round" restic -q -r "$W/restic-$s" backup "$TREE"; B[restic-$s$round]=$(( $(size "$W/restic-$s") - b0 ))
            b0=$(size "$W/borg-$s"); tio "borg-$s$round" bash -c 'cd "$1" && borg create "$2::r$3" tree' _ "$W" "$W/borg-$s" "$round"; B[borg-$s$round]=$(( $(size "$W/borg-$s") - b0 ))
        done
    done
    tio restic-rs-empty restic -q -r "$W/restic-empty" restore latest --target "$W/restic-out"
    tio restic-rs-img restic -q -r "$W/restic-img" restore latest --target "$W/restic-out2"
    mkdir -p "$W/borg-out" "$W/borg-out2"
    tio borg-rs-empty bash -c 'cd "$1" && borg extract "$2::r2"' _ "$W/borg-out" "$W/borg-empty"
    tio borg-rs-img bash -c 'cd "$1" && borg extract "$2::r2"' _ "$W/borg-out2" "$W/borg-img"
    diff -r --no-dereference -q -x dev "$TREE" "$W/borg-out/tree" >>"$LOG" || die "borg's restore differs"
    # ---- btrfs ----
    mkbt() { truncate -s "$2" "$W/$1.img"; mkfs.btrfs -q "$W/$1.img" >>"$LOG" 2>&1; mkdir -p "$W/$1"; mount -o loop "$W/$1.img" "$W/$1"; MOUNTS+=("$W/$1"); }
    mkbt bsrc 4G; mkbt bimg 3G; mkbt bempty 3G
    btrfs -q subvolume create "$W/bsrc/base"; cp -a "$IMAGE_TREE/." "$W/bsrc/base/"
    btrfs -q subvolume snapshot -r "$W/bsrc/base" "$W/bsrc/base.ro"
    btrfs -q send "$W/bsrc/base.ro" | btrfs -q receive "$W/bimg" 2>>"$LOG"
    btrfs -q subvolume snapshot "$W/bsrc/base" "$W/bsrc/g"
    python3 "$GEN" gen "$W/bsrc/g" --mb "$DATA_MB"
    sync -f "$W/bsrc"
    btsend() { # NAME TARGET SEND-ARGS...
        local name=$1 target=$2; shift 2
        tio "$name" bash -c 'btrfs -q send "${@:3}" | tee >(wc -c >"$1") | btrfs -q receive "$2" && sync -f "$2"' _ "$W/$name.len" "$target" "$@"
        B[$name]=$(cat "$W/$name.len")
    }
    tio bt-snap1 btrfs -q subvolume snapshot -r "$W/bsrc/g" "$W/bsrc/g.1"
    btsend btrfs-img1 "$W/bimg" -p "$W/bsrc/base.ro" "$W/bsrc/g.1"
    btsend btrfs-empty1 "$W/bempty" "$W/bsrc/g.1"
    python3 "$GEN" change "$W/bsrc/g" --pct "$CHANGE_PCT" >/dev/null; sync -f "$W/bsrc"
    tio bt-snap2 btrfs -q subvolume snapshot -r "$W/bsrc/g" "$W/bsrc/g.2"
    btsend btrfs-img2 "$W/bimg" -p "$W/bsrc/g.1" "$W/bsrc/g.2"
    btsend btrfs-empty2 "$W/bempty" -p "$W/bsrc/g.1" "$W/bsrc/g.2"
    mkdir -p "$W/bsrc/restore"
    btsend btrfs-rs-empty "$W/bsrc/restore" "$W/bempty/g.2"
fi

# ---- table ----
mb() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.0f", (t>0 ? b/1048576/(t/1000) : 0)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf (b>0 ? "%.2f" : "-"), a/b}'; }
echo
echo "dr-compare: image $(mb "$IMAGE_BYTES") MiB, guest data $(mb "$DATA_BYTES") MiB (tree $(mb "$TREE_BYTES") MiB), change $(mb "$CHANGED") MiB ($CHANGE_PCT%)"
echo "guest's unique compressed bytes (checkpoint store): $(mb "$GUEST_UNIQUE") MiB; its growth at the change: $(mb "$GUEST_CHANGED") MiB"
echo
sec() { awk -v t="$1" 'BEGIN{printf "%.2f", t/1000}'; }
row() { # LABEL KEY [CHECKPOINT-KEY] (lvrepo backups: checkpoint + copy)
    local label=$1 k=$2 cp=${3:-}
    local lt=$(( ${T[lv-$k]} + ${cp:+${T[$cp]}}+0 )) lc=$(( ${C[lv-$k]} + ${cp:+${C[$cp]}}+0 ))
    local line="| $label | $(sec "$lt") s, cpu $(sec "$lc") s${B[lv-$k]:+, $(mb "${B[lv-$k]}") MiB}"
    for c in restic borg btrfs; do
        if [[ -n ${T[$c-$k]:-} ]]; then
            local ct=${T[$c-$k]} cc=${C[$c-$k]} snap=""
            [[ $c == btrfs && $k == *[12] ]] && snap=bt-snap${k: -1}
            [[ -n $snap ]] && { ct=$(( ct + ${T[$snap]} )); cc=$(( cc + ${C[$snap]} )); }
            line+=" | $(sec "$ct") s, cpu $(sec "$cc") s${B[$c-$k]:+, $(mb "${B[$c-$k]}") MiB} (**$(ratio "$ct" "$lt")x** / $(ratio "$cc" "$lc")x)"
        else
            line+=" | -"
        fi
    done
    echo "$line |"
    LT[$k]=$lt LC[$k]=$lc
}
echo "Cells: wall time, CPU time (user + system), bytes written to the target; in"
echo "brackets, that tool's wall time / lvrepo's and CPU time / lvrepo's (above 1: lvrepo is faster)."
echo
echo "| run | lvrepo | restic | borg | btrfs send |"
echo "|---|---|---|---|---|"
declare -A LT LC
row "first backup, image site" img1 lv-cp1
row "first backup, empty site" empty1 lv-cp1
row "after the change, image site" img2 lv-cp2
row "after the change, empty site" empty2 lv-cp2
row "restore from the empty site" rs-empty
row "restore from the image site" rs-img
echo
echo "lvrepo send | receive (guest, 2 checkpoints, to an empty repository): $(awk -v t="${T[lv-stream]}" 'BEGIN{printf "%.2f s", t/1000}'), $(mb "${B[lv-stream]}") MiB, $(rate "$TREE_BYTES" "${T[lv-stream]}") MiB/s of the tree"
echo "lvrepo backup throughput, empty site (checkpoint + copy): $(rate "$TREE_BYTES" "${LT[empty1]}") MiB/s of the tree; copy alone $(rate "$TREE_BYTES" "${T[lv-empty1]}") MiB/s"
echo "lvrepo restore throughput, empty site: $(rate "$TREE_BYTES" "${T[lv-rs-empty]}") MiB/s of the tree"
echo "incremental backup reads (rchar): checkpoint $(mb "${R[lv-cp2]}") MiB, copy to the image site $(mb "${R[lv-img2]}") MiB"
echo "an incremental backup (checkpoint + copy) read, by file: the image's repository $(mb "$READ_IMAGE") MiB (the image is $(mb "$IMAGE_BYTES") MiB), the guest's own store and overlay $(mb "$READ_GUEST") MiB, other $(mb "$READ_OTHER") MiB"
echo
verdict() { if awk -v a="$1" -v b="$2" 'BEGIN{exit !(a<=b)}'; then echo met; else echo MISSED; fi; }
lim1=$(awk -v u="$GUEST_UNIQUE" 'BEGIN{printf "%d", 1.05*u}')
lim2=$(awk -v c="$GUEST_CHANGED" -v d="$DATA_BYTES" 'BEGIN{printf "%d", 1.05*c + 0.01*d}')
echo "target: first backup to the image site <= 1.05x unique: $(mb "${B[lv-img1]}") MiB vs $(mb "$lim1") MiB — $(verdict "${B[lv-img1]}" "$lim1")"
echo "target: incremental <= 1.05x changed + 1%: $(mb "${B[lv-img2]}") MiB vs $(mb "$lim2") MiB — $(verdict "${B[lv-img2]}" "$lim2")"
echo "target: an incremental backup never reads the whole image: $(mb "$READ_IMAGE") MiB of its repository read, under a tenth of the image: $(verdict "$READ_IMAGE" $(( IMAGE_BYTES / 10 )))"
if [[ -n ${T[restic-empty1]:-} ]]; then
    echo "target: backup >= 2x restic (empty site, checkpoint + copy): wall $(ratio "${T[restic-empty1]}" "${LT[empty1]}")x — $(verdict $(( 2 * LT[empty1] )) "${T[restic-empty1]}"); cpu $(ratio "${C[restic-empty1]}" "${LC[empty1]}")x — $(verdict $(( 2 * LC[empty1] )) "${C[restic-empty1]}")"
    echo "target: restore >= 2x restic (empty site): wall $(ratio "${T[restic-rs-empty]}" "${T[lv-rs-empty]}")x — $(verdict $(( 2 * T[lv-rs-empty] )) "${T[restic-rs-empty]}"); cpu $(ratio "${C[restic-rs-empty]}" "${C[lv-rs-empty]}")x — $(verdict $(( 2 * C[lv-rs-empty] )) "${C[restic-rs-empty]}")"
fi
