#!/usr/bin/env bash
# nbd-cost.sh — what each NBD request costs the server: its CPU (user+sys of
# the server process over a fixed fio job, from /proc/PID/stat) per request,
# and with STRACE=1 its system calls per request (strace -c -f). Unlike the
# wall-clock figures of nbd-compare.sh, these hold on a busy machine.
#
#   bash benches/nbd-cost.sh [BIN|qemu] [SIZE_MIB] [REQUESTS]   (defaults: target/release/lvrepo, 512, 40000)
#
# BIN serves a volume guest of a SIZE_MIB volume of random bytes (on tmpfs,
# like nbd-compare.sh); `qemu` serves the raw file with qemu-nbd instead.
# Jobs, in order (fio's nbd engine over a Unix socket): cold 4K random reads
# QD32; a full 1 MiB sequential read; 4K random reads QD1 and QD32; 1 MiB
# sequential reads QD8; 4K random reads QD32 on two connections; 4K random
# writes QD32 to blocks never written, then the same writes again; 1 MiB
# sequential writes QD8. JOBS="r1 wover" runs only those (names as printed).
# One line per job: requests, CPU seconds, CPU per request, and fio's IOPS
# (wall clock: noisy on a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-$PWD/target/release/lvrepo}; SIZE=${2:-512}; N=${3:-40000}; ST=${STRACE:-0}
for t in fio python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ "$ST" = 1 ] && { command -v strace >/dev/null || { echo "missing strace" >&2; exit 1; }; }
W=$(mktemp -d /dev/shm/nbd-cost.XXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
head -c $((SIZE << 20)) /dev/urandom >"$W/base.raw"
S=$W/s.sock
if [ "$B" = qemu ]; then
  qemu-nbd -f raw -t -e 4 -k "$S" "$W/base.raw" & PID=$!
else
  "$B" -q --repo "$W/repo" init
  "$B" -q --repo "$W/repo" import "$W/base.raw" --volume --image vol:1 >/dev/null
  "$B" -q --repo "$W/repo" guest create vg --image vol:1 --overlay "$W/g"
  "$B" -q --repo "$W/repo" nbd serve --guest vg --socket "$S" -f 2>"$W/log" & PID=$!
fi
for _ in $(seq 200); do [ -S "$S" ] && break; sleep 0.05; done
ticks() { awk '{print $14+$15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
job() { # NAME RW BS DEPTH JOBS COUNT [fio args...]
  if [ -n "${JOBS:-}" ] && [[ " $JOBS " != *" $1 "* ]]; then return; fi
  local name=$1 rw=$2 bs=$3 d=$4 j=$5 n=$6 sp= t0 t1 out; shift 6
  if [ "$ST" = 1 ]; then strace -c -f -p "$PID" -o "$W/st.$name" 2>/dev/null & sp=$!; sleep 0.5; fi
  t0=$(ticks)
  out=$(fio --name="$name" --ioengine=nbd --uri="nbd+unix:///?socket=$S" --rw="$rw" --bs="$bs" --iodepth="$d" --numjobs="$j" \
      --group_reporting --size="${SIZE}m" --number_ios="$n" --io_size=$((n * ${bs%k}))k --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]; print(j["read"]["total_ios"]+j["write"]["total_ios"], round(j["read"]["iops"]+j["write"]["iops"]))')
  t1=$(ticks)
  [ -n "$sp" ] && { kill -INT "$sp"; wait "$sp" 2>/dev/null || true; }
  set -- $out
  python3 -c "ios=$1; t=($t1-$t0)/$HZ; print(f'$name: requests={ios} cpu={t:.2f}s cpu/req={t/ios*1e6:.1f}us wall-iops=$2')"
  [ -n "$sp" ] && python3 - "$W/st.$name" "$1" <<'PY'
import sys
tot, top = 0, []
for l in open(sys.argv[1]):
    p = l.split()
    if len(p) >= 5 and p[0][0].isdigit() and p[-1] != 'total':
        tot += int(p[3]); top.append((int(p[3]), p[-1]))
n = int(sys.argv[2]); top.sort(reverse=True)
print('  syscalls/req=%.2f ' % (tot / n) + ' '.join('%s=%.2f' % (k, c / n) for c, k in top[:6]))
PY
  return 0
}
job cold randread 4k 32 1 "$N"
fio --name=warm --ioengine=nbd --uri="nbd+unix:///?socket=$S" --rw=read --bs=1m --iodepth=8 --size="${SIZE}m" >/dev/null 2>&1
job r1 randread 4k 1 1 "$N"
job r32 randread 4k 32 1 "$N"
job seqr read 1024k 8 1 "$SIZE"
job r2c randread 4k 32 2 $((N / 2))
job wfirst randwrite 4k 32 1 $((SIZE * 16)) --randseed=7
job wover randwrite 4k 32 1 $((SIZE * 16)) --randseed=7
job seqw write 1024k 8 1 "$SIZE"
