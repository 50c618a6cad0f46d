#!/usr/bin/env bash
# checkpoint-chain.sh — the cost of a mounted checkpoint after a big one: a
# guest on image tree TREE, K files appended to through the mount, checkpoint
# (timed), then one more changed file and checkpoint again, twice (timed). With
# the fold memo the follow-up checkpoints cost the one change, not the K.
#
# Usage (as root): benches/checkpoint-chain.sh [LVREPO_BIN] [TREE] [K]
#   defaults: target/release/lvrepo, /var/cache/lvrepo-bench/guest-img-f100000-s42
#   (made by benches/guest-compare.sh), K=10000
set -euo pipefail
L=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/lvrepo}
IMG=${2:-/var/cache/lvrepo-bench/guest-img-f100000-s42}
K=${3:-10000}
[[ -d $IMG ]] || { echo "no image tree at $IMG (run benches/guest-compare.sh --quick once)" >&2; exit 2; }
W=$(mktemp -d /var/tmp/ckchain.XXXXXX)
trap 'mountpoint -q "$W/mnt" && { "$L" --repo "$W/R" umount "$W/mnt" || umount -l "$W/mnt"; }; rm -rf "$W"' EXIT
mkdir "$W/mnt"
lv() { "$L" --repo "$W/R" "$@"; }
lv init >/dev/null
lv import -q --image img:1 "$IMG"
lv guest create g --image img:1 --overlay "$W/G" >/dev/null
lv mount --guest g "$W/mnt"
# change FILE-INDEX...: append a line to the n-th regular file (path order).
change() {
    python3 - "$W/mnt" "$@" <<'PY'
import os, sys
root, picks = sys.argv[1], sys.argv[2:]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f)))
if picks[0] == "spread":
    k = int(picks[1]); step = max(1, len(files) // k); chosen = files[::step][:k]
else:
    chosen = [files[int(i)] for i in picks]
for p in chosen:
    with open(p, "ab") as fh:
        fh.write(b"changed\n")
PY
}
timed() { local s=$EPOCHREALTIME; "$@" >/dev/null; awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
change spread "$K"
c1=$(timed lv checkpoint g)
change 7;  c2=$(timed lv checkpoint g)
change 99; c3=$(timed lv checkpoint g)
echo "K=$K changed files: checkpoint ${c1}s; then +1 file: ${c2}s; +1 more: ${c3}s; guest-local bytes $(lv guest show g --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["guest"]["local_bytes"])')"
