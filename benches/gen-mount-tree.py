#!/usr/bin/env python3
"""Add synthetic files and one big image file to a tree, for mount-compare.sh.

Usage:
    gen-mount-tree.py ROOT --source SRC [--files 100000] [--big-mib 1024] [--seed 42]

ROOT must exist (mount-compare.sh copies the debootstrap tree there first).
SRC is the raw material (the debootstrap tree): its text files and ELF
binaries are sliced into the synthetic files, so the output depends only on
SRC, the arguments and the seed — not on the host.

Writes:
  ROOT/srv/app/<32 top dirs>/<~32 subdirs>/<files>
        --files regular files, ~100 per directory. Sizes are lognormal
        (median 3 KiB, mean ~11 KiB, capped at 8 MiB; ~3% empty), roughly the
        shape of /usr on a real system. Content: 60% text cut from SRC's text
        files (with a unique first line, so no two files are identical), 40%
        binary cut from SRC's ELF files with a few bytes mutated per 4 KiB
        (compresses like code, defeats cross-file dedup).
  ROOT/var/lib/images/disk.img
        --big-mib MiB, written in 1 MiB blocks: 1/2 pseudo-random, 3/8 text
        (compressible), 1/8 zeros (written, not sparse) — a disk-image-like mix.
All mtimes are fixed (2024-01-01).
"""

import argparse
import math
import os
import random
import stat
import sys

KiB = 1 << 10
MiB = 1 << 20
FIXED_MTIME = 1704067200
CORPUS_MAX = 32 * MiB
ELF_MAX = 32 * MiB

WORDS = ("lib share conf data cache local module plugin core util net io "
         "base common extra test doc locale main server client agent tools").split()


def log(msg):
    print(f"[gen-mount-tree] {msg}", file=sys.stderr, flush=True)


def walk_files(root):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                yield p, st.st_size


def build_pools(src):
    text, elf = [], []
    tsize = esize = 0
    for path, size in walk_files(src):
        if tsize >= CORPUS_MAX and esize >= ELF_MAX:
            break
        if size > 4 * MiB:
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if data[:4] == b"\x7fELF":
            if esize < ELF_MAX:
                elf.append(data)
                esize += len(data)
        elif b"\0" not in data[:4096]:
            if tsize < CORPUS_MAX:
                text.append(data)
                tsize += len(data)
    if tsize < MiB or esize < MiB:
        raise SystemExit(f"source {src} has too little text ({tsize} B) or ELF ({esize} B)")
    return b"".join(text), b"".join(elf)


def cut(rng, pool, n):
    if n >= len(pool):
        reps = pool * (n // len(pool) + 1)
        return reps[:n]
    off = rng.randrange(0, len(pool) - n)
    return pool[off:off + n]


def mutate(rng, data):
    b = bytearray(data)
    for pos in range(rng.randrange(0, 64), len(b), 4096):
        for _ in range(4):
            i = min(len(b) - 1, pos + rng.randrange(0, 4096))
            b[i] = rng.randrange(256)
    return bytes(b)


def file_size(rng):
    if rng.random() < 0.03:
        return 0
    return int(min(8 * MiB, rng.lognormvariate(math.log(3 * KiB), 1.55)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--source", required=True)
    ap.add_argument("--files", type=int, default=100000)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if not os.path.isdir(a.root):
        raise SystemExit(f"{a.root} is not a directory")
    rng = random.Random(a.seed)
    text, elf = build_pools(a.source)
    log(f"pools: text {len(text) // MiB} MiB, ELF {len(elf) // MiB} MiB")

    base = os.path.join(a.root, "srv", "app")
    ndirs = max(1, math.ceil(a.files / 100))
    ntop = max(1, math.ceil(math.sqrt(ndirs)))
    dirs = []
    for i in range(ndirs):
        top = f"{rng.choice(WORDS)}{i % ntop:02d}"
        sub = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}{i // ntop:03d}"
        dirs.append(os.path.join(base, top, sub))
    total = 0
    for k in range(a.files):
        d = dirs[k % ndirs]
        if k < ndirs:
            os.makedirs(d, exist_ok=True)
        size = file_size(rng)
        if rng.random() < 0.6:
            name = f"{rng.choice(WORDS)}_{k:06d}.{rng.choice(['conf', 'txt', 'py', 'pl', 'xml', 'json', 'h'])}"
            hdr = f"# {name} generated seed={a.seed} n={k}\n".encode()
            data = (hdr + cut(rng, text, size))[:size] if size else b""
            mode = 0o644
        else:
            name = f"lib{rng.choice(WORDS)}{k:06d}.so.{rng.randrange(1, 9)}"
            data = mutate(rng, cut(rng, elf, size)) if size else b""
            mode = 0o755 if rng.random() < 0.3 else 0o644
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        os.utime(p, (FIXED_MTIME, FIXED_MTIME))
        total += size
        if (k + 1) % 20000 == 0:
            log(f"{k + 1}/{a.files} files, {total // MiB} MiB")
    log(f"{a.files} files, {total // MiB} MiB in {ndirs} dirs")

    img_dir = os.path.join(a.root, "var", "lib", "images")
    os.makedirs(img_dir, exist_ok=True)
    img = os.path.join(img_dir, "disk.img")
    zero = bytes(MiB)
    with open(img, "wb") as f:
        for i in range(a.big_mib):
            r = rng.random()
            if r < 0.5:
                f.write(rng.randbytes(MiB))
            elif r < 0.875:
                f.write(cut(rng, text, MiB))
            else:
                f.write(zero)
    os.utime(img, (FIXED_MTIME, FIXED_MTIME))
    log(f"{img}: {a.big_mib} MiB")
    for dirpath, dirnames, _ in os.walk(base, topdown=False):
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))


if __name__ == "__main__":
    main()
