#!/usr/bin/env bash
# rebase-fleet.sh — `lvrepo rebase --group` of a fleet of guests from version 1
# to version 2 of an image, for images of several sizes: total and per-guest
# time beside the image size (issue 28: 100 guests with 100 changed files
# each, under 10 s on a ~100k-file image, and flat in image size).
#
# Usage: benches/rebase-fleet.sh [-h|--help]
#
# Environment:
#   LVREPO_BIN     lvrepo binary (default target/release/lvrepo of this checkout)
#   SIZES          image sizes in files (default "10000 100000")
#   GUESTS         guests in the fleet (default 100)
#   CHANGED        files each guest changed (default 100)
#   IMAGE_CHANGES  files version 2 rewrites (default 200)
#   SCRATCH        work directory (fresh; default /var/tmp/lvrepo-rebase-fleet)
#   JOBS           guests rebased at once (rebase --jobs; default: lvrepo's, 8)
#
# Per size, untimed: benches/gen-guest-image.py generates the tree (files of
# ~3.3 KiB mean in directories of 100), imported as img:1; IMAGE_CHANGES files
# spread over the image are rewritten and the tree imported as img:2. Each
# guest is created from img:1 with CHANGED of its own files (`--file`: files
# of the image, spread over it, none of those img:2 changes, 2 KiB of content
# unique to the guest), then all are put in group `fleet`. Timed: one
# `lvrepo rebase --group fleet --image img:2` (every guest planned, then each
# checkpointed and merged; unmounted guests). Then checked: every guest stands
# on img:2, and guest 1 differs from img:2 in exactly its CHANGED files.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LVREPO_BIN:-$here/target/release/lvrepo}
SIZES=${SIZES:-10000 100000}
GUESTS=${GUESTS:-100}
CHANGED=${CHANGED:-100}
IMAGE_CHANGES=${IMAGE_CHANGES:-200}
SCRATCH=${SCRATCH:-/var/tmp/lvrepo-rebase-fleet}
GEN=$here/benches/gen-guest-image.py
[ -x "$BIN" ] || { echo "no binary $BIN (cargo build --release -p lvrepo)" >&2; exit 1; }
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT

ms() { echo $(( ($2 - $1) / 1000000 )); }
printf '%-8s %-10s %-7s %-8s %-10s %-12s\n' files image_MiB guests changed total_s per_guest_ms
for n in $SIZES; do
    d=$SCRATCH/n$n
    mkdir -p "$d/guests"
    export LVREPO_REPO=$d/repo
    "$BIN" -q init
    python3 "$GEN" generate "$d/tree" --files "$n" >/dev/null
    "$BIN" -q import "$d/tree" --image img:1 >/dev/null
    python3 "$GEN" change "$d/tree" --files "$n" --count "$IMAGE_CHANGES" --round 1
    "$BIN" -q import "$d/tree" --image img:2 >/dev/null
    mib=$("$BIN" images img --json | python3 -c 'import json,sys; print(round(max(i["logical_bytes"] for i in json.load(sys.stdin)["images"]) / 2**20))')
    # Each guest's own files: indices k*n//CHANGED + 7 (img:2 rewrites
    # multiples of n//IMAGE_CHANGES), as `--file DEST=SRC` lines.
    python3 - "$d/changes" "$n" "$GUESTS" "$CHANGED" <<'EOF'
import os, sys
out, n, guests, changed = sys.argv[1], *map(int, sys.argv[2:])
for g in range(1, guests + 1):
    gd = os.path.join(out, f"g{g}")
    os.makedirs(gd)
    args = []
    for k in range(changed):
        i = k * n // changed + 7
        src = os.path.join(gd, str(k))
        with open(src, "wb") as f:
            f.write((f"guest {g} file {i}\n" * 128)[:2048].encode())
        args.append(f"--file=/data/d{i // 1000:03d}/{(i // 100) % 10}/f{i:06d}={src}")
    with open(gd + ".args", "w") as f:
        f.write("\n".join(args) + "\n")
EOF
    names=()
    for g in $(seq 1 "$GUESTS"); do
        mapfile -t args < "$d/changes/g$g.args"
        "$BIN" -q guest create "g$g" --image img:1 --overlay "$d/guests/g$g" "${args[@]}" >/dev/null
        names+=("g$g")
    done
    "$BIN" -q group create fleet "${names[@]}"
    t0=$(date +%s%N)
    "$BIN" -q rebase --group fleet --image img:2 ${JOBS:+--jobs "$JOBS"}
    t1=$(date +%s%N)
    total=$(ms "$t0" "$t1")
    for g in "${names[@]}"; do
        img=$("$BIN" guest show "$g" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["guest"]["image"]["label"])')
        [ "$img" = img:2 ] || { echo "guest $g stands on $img after the rebase" >&2; exit 1; }
    done
    own=$("$BIN" diff g1 img:2 --json | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["changes"] if not e["path"].endswith("/") and e["path"].count("/") == 4))')
    [ "$own" = "$CHANGED" ] || { echo "guest g1 differs from img:2 in $own files, not $CHANGED" >&2; "$BIN" diff g1 img:2 | head >&2; exit 1; }
    printf '%-8s %-10s %-7s %-8s %-10s %-12s\n' "$n" "$mib" "$GUESTS" "$CHANGED" "$(awk -v t="$total" 'BEGIN{printf "%.2f", t/1000}')" "$(awk -v t="$total" -v g="$GUESTS" 'BEGIN{printf "%.1f", t/g}')"
    rm -rf "$d"
done
