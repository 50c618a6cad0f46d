#!/usr/bin/env python3
"""gen-dr-data.py — a guest's own data for benches/dr-compare.sh, and its change.

  gen-dr-data.py gen DIR [--mb 200] [--seed 42]
      Writes DIR/dr-data/: half text-like files (lognormal sizes, median
      ~24 KiB, compress ~3x), half random files (1-8 MiB, incompressible).
      Deterministic for a seed: run on several trees, they hold the same bytes.
  gen-dr-data.py change DIR [--pct 1] [--seed 42]
      Changes PCT % of DIR/dr-data's bytes in place: whole text files
      rewritten, 256 KiB regions of random files overwritten (same sizes).
      Deterministic for a seed and a tree made by `gen`. Prints the bytes
      changed.
"""
import argparse
import os
import random
import sys

WORDS = ("the of and to in is was for on that with as by at from this it be are "
         "kernel module package system file directory mount guest image backup "
         "restore checkpoint overlay chunk index config service network user "
         "error warning info debug level value default option path version").split()


def text_pool(rng, size=1 << 20):
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        line += " %d\n" % rng.randint(0, 99999)
        out.append(line)
        n += len(line)
    return "".join(out).encode()


def text_file(rng, pool, size):
    parts, n = [], 0
    while n < size:
        k = min(size - n, rng.randint(200, 2000))
        at = rng.randrange(0, len(pool) - k)
        parts.append(pool[at:at + k])
        n += k
    return b"".join(parts)


def files(root):
    out = []
    for d, _, names in os.walk(root):
        for f in names:
            p = os.path.join(d, f)
            out.append((os.path.relpath(p, root), os.path.getsize(p)))
    out.sort()
    return out


def gen(root, mb, seed):
    rng = random.Random(seed)
    pool = text_pool(rng)
    half = mb * (1 << 20) // 2
    base = os.path.join(root, "dr-data")
    n, i = 0, 0
    while n < half:
        size = max(64, min(int(rng.lognormvariate(10.1, 1.0)), 1 << 20))
        d = os.path.join(base, "text", "%03d" % (i // 100))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d.txt" % i), "wb") as f:
            f.write(text_file(rng, pool, size))
        n += size
        i += 1
    n, i = 0, 0
    d = os.path.join(base, "rand")
    os.makedirs(d, exist_ok=True)
    while n < half:
        size = rng.randint(1 << 20, 8 << 20)
        with open(os.path.join(d, "r%04d.bin" % i), "wb") as f:
            f.write(rng.randbytes(size))
        n += size
        i += 1


def change(root, pct, seed):
    rng = random.Random(seed * 7919 + 1)
    pool = text_pool(rng)
    base = os.path.join(root, "dr-data")
    fl = files(base)
    total = sum(s for _, s in fl)
    want = total * pct / 100
    rng.shuffle(fl)
    done = 0
    for rel, size in fl:
        if done >= want:
            break
        p = os.path.join(base, rel)
        with open(p, "r+b") as f:
            if rel.endswith(".txt"):
                f.write(text_file(rng, pool, size))
                done += size
            else:
                region = min(256 << 10, size)
                f.seek(rng.randrange(0, size - region + 1))
                f.write(rng.randbytes(region))
                done += region
    print(done)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "change"])
    ap.add_argument("dir")
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--pct", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.dir, a.mb, a.seed)
    else:
        change(a.dir, a.pct, a.seed)


if __name__ == "__main__":
    sys.exit(main())
