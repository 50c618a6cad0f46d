#!/usr/bin/env bash
# lvrepo's NBD server beside qemu-nbd (raw; qcow2 overlay over the raw file)
# and nbdkit (file; file + cow filter), one run, fio's nbd engine over a Unix
# socket, everything on tmpfs (/dev/shm) so the disk does not decide.
#
#   bash benches/nbd-compare.sh [SIZE_MIB] [SECONDS]    (defaults 1024, 5)
#
# Workloads per server, in this order (writes change what later ones see):
#   cold-4k-rand-qd32  4 KiB random reads, QD32, before anything was read
#   4k-rand-qd1/qd32   4 KiB random reads after a full sequential read (cached)
#   1m-seq-read        1 MiB sequential reads, QD8
#   2conn-4k-qd32      4 KiB random reads, QD32, two connections
#   4k-write-first     4 KiB random writes, QD32, to blocks never written
#   4k-write-over      the same writes again (overwrite)
#   1m-seq-write       1 MiB sequential writes, QD8
# Prints IOPS (MiB/s for 1 MiB workloads) and lvrepo's ratio to each peer.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
SECS=${2:-5}
B=${LVREPO:-$PWD/target/release/lvrepo}
[ -x "$B" ] || { echo "build first: cargo build --release -p lvrepo (or LVREPO=path)" >&2; exit 1; }
for t in fio qemu-nbd qemu-img nbdkit python3; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh)" >&2; exit 1; }; done
W=$(mktemp -d /dev/shm/nbd-compare.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; "$B" --repo "$W/repo" nbd stop --guest vg >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT

echo "# nbd-compare: ${SIZE_MIB} MiB volume, ${SECS} s per workload, $(nproc) CPUs, $(uname -r)"
# Incompressible data, like a used disk's blocks.
head -c $((SIZE_MIB << 20)) /dev/urandom >"$W/base.raw"

fio_run() { # SOCK NAME RW BS DEPTH JOBS [extra...]
  local sock=$1 name=$2 rw=$3 bs=$4 depth=$5 jobs=$6; shift 6
  fio --name="$name" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" --rw="$rw" --bs="$bs" --iodepth="$depth" \
      --numjobs="$jobs" --group_reporting --size="${SIZE_MIB}m" --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]; r=j["read"]["iops"]+j["write"]["iops"]; b=(j["read"]["bw_bytes"]+j["write"]["bw_bytes"])/1048576; print(f"{r:.0f} {b:.1f}")'
}

wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }

start_server() { # KIND SOCK
  local kind=$1 sock=$2
  rm -f "$sock"
  case $kind in
    qemu-nbd-raw) cp --reflink=auto "$W/base.raw" "$W/q.raw"; qemu-nbd -f raw -t -e 4 -k "$sock" "$W/q.raw" & PIDS+=($!) ;;
    qemu-nbd-qcow2) rm -f "$W/ov.qcow2"; qemu-img create -q -f qcow2 -b "$W/base.raw" -F raw "$W/ov.qcow2"; qemu-nbd -f qcow2 -t -e 4 -k "$sock" "$W/ov.qcow2" & PIDS+=($!) ;;
    nbdkit-file) cp --reflink=auto "$W/base.raw" "$W/k.raw"; nbdkit -f -U "$sock" file "$W/k.raw" & PIDS+=($!) ;;
    nbdkit-cow) nbdkit -f -U "$sock" --filter=cow file "$W/base.raw" & PIDS+=($!) ;;
    lvrepo)
      rm -rf "$W/repo" "$W/g"
      "$B" -q --repo "$W/repo" init
      "$B" -q --repo "$W/repo" import "$W/base.raw" --volume --image vol:1 >/dev/null
      "$B" -q --repo "$W/repo" guest create vg --image vol:1 --overlay "$W/g"
      "$B" -q --repo "$W/repo" nbd serve --guest vg --socket "$sock" ;;
  esac
  wait_sock "$sock"
}

stop_server() {
  "$B" --repo "$W/repo" nbd stop --guest vg >/dev/null 2>&1 || true
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
}

declare -A R
KINDS=(qemu-nbd-raw qemu-nbd-qcow2 nbdkit-file nbdkit-cow lvrepo)
WORK=(cold-4k-rand-qd32 4k-rand-qd1 4k-rand-qd32 1m-seq-read 2conn-4k-qd32 4k-write-first 4k-write-over 1m-seq-write)
for k in "${KINDS[@]}"; do
  S="$W/$k.sock"
  start_server "$k" "$S"
  T=(--runtime="$SECS" --time_based)
  R[$k,cold-4k-rand-qd32]=$(fio_run "$S" c randread 4k 32 1 "${T[@]}")
  fio_run "$S" warm read 1m 8 1 >/dev/null
  R[$k,4k-rand-qd1]=$(fio_run "$S" r1 randread 4k 1 1 "${T[@]}")
  R[$k,4k-rand-qd32]=$(fio_run "$S" r32 randread 4k 32 1 "${T[@]}")
  R[$k,1m-seq-read]=$(fio_run "$S" sr read 1m 8 1 "${T[@]}")
  R[$k,2conn-4k-qd32]=$(fio_run "$S" r2 randread 4k 32 2 "${T[@]}")
  N=$((SIZE_MIB * 16))  # a sixteenth of the blocks: almost all first touches
  R[$k,4k-write-first]=$(fio_run "$S" wf randwrite 4k 32 1 --number_ios=$N --randseed=7 --io_size=$((N * 4))k)
  R[$k,4k-write-over]=$(fio_run "$S" wo randwrite 4k 32 1 --number_ios=$N --randseed=7 --io_size=$((N * 4))k)
  R[$k,1m-seq-write]=$(fio_run "$S" sw write 1m 8 1 "${T[@]}")
  stop_server
done

printf '\n%-18s' workload; for k in "${KINDS[@]}"; do printf '%16s' "$k"; done; printf '%14s%14s\n' "lv/q-raw" "lv/q-qcow2"
for w in "${WORK[@]}"; do
  col=1; unit=IOPS
  case $w in 1m-*) col=2; unit=MiB/s ;; esac
  printf '%-18s' "$w"
  for k in "${KINDS[@]}"; do printf '%16s' "$(cut -d' ' -f$col <<<"${R[$k,$w]}")"; done
  lv=$(cut -d' ' -f$col <<<"${R[lvrepo,$w]}"); qr=$(cut -d' ' -f$col <<<"${R[qemu-nbd-raw,$w]}"); qq=$(cut -d' ' -f$col <<<"${R[qemu-nbd-qcow2,$w]}")
  printf '%14s%14s  (%s)\n' "$(python3 -c "print(f'{$lv/max($qr,1e-9):.2f}')")" "$(python3 -c "print(f'{$lv/max($qq,1e-9):.2f}')")" "$unit"
done
