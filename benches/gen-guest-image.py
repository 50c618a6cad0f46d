#!/usr/bin/env python3
"""Deterministic small-file "golden image" trees and file rewrites, for guest-compare.sh.

Usage:
    gen-guest-image.py generate OUT_DIR --files N [--seed 42]
    gen-guest-image.py change ROOT --files N --count K [--span M] [--round R] [--seed 42]
    gen-guest-image.py verify ROOT --files N --count K [--span M] [--round R] [--seed 42]
    gen-guest-image.py paths --files N --count K [--span M]

generate: OUT_DIR must not exist. Writes N regular files, 100 per leaf
    directory, at data/dNNN/S/fIIIIII (dNNN = i // 1000, S = (i // 100) % 10),
    plus a small etc/ with a hostname, a passwd-like file and a symlink. Sizes
    are lognormal (median 2 KiB, sigma 1.0, capped at 256 KiB; mean ~3.3 KiB,
    so 100,000 files are ~330 MB). Content: a unique first line, then a slice of
    a seeded pseudo-text corpus (compresses like text; no two files identical).
    All mtimes fixed (2024-01-01). The output depends only on N and the seed,
    and the files of an N-file tree are a prefix of a bigger tree's (same i,
    same path, same bytes).

change: rewrites K of the N image files under ROOT (a mounted guest, or a copy
    of the tree): evenly spaced indices i = k * M // K (M = --span, default N:
    spread over the whole image; M < N: only among the first M files, which
    have the same paths and bytes in every image of at least M files), each
    truncated and
    rewritten with 2 KiB of new content that depends on (i, round, seed). So
    the same K, N and round produce byte-identical changes on every contender,
    and every change costs the same bytes whatever the image size.

verify: exits 1 (naming the first few) unless each of those K files holds
    exactly the content `change` wrote in round R.

paths: prints the K changed paths (relative), one per line.
"""

import argparse
import os
import random
import sys

KiB = 1 << 10
FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z
CHANGE_BYTES = 2 * KiB
CORPUS_BYTES = 8 << 20
MAX_SIZE = 256 * KiB
PRINTABLE = bytes(32 + b % 95 for b in range(256))

WORDS = ("the of and to in is for on with as by at from this that be are or an it "
         "lib share conf data cache local module plugin core util net io base common "
         "extra test doc locale main server client agent tools kernel driver mount "
         "service daemon socket timer user group path value key option default enable "
         "disable start stop restart reload status error warning info debug trace").split()


def log(msg):
    print(f"[gen-guest-image] {msg}", file=sys.stderr, flush=True)


def rel_path(i):
    return f"data/d{i // 1000:03d}/{(i // 100) % 10}/f{i:06d}"


def corpus(seed):
    rng = random.Random(f"corpus-{seed}")
    out = []
    n = 0
    while n < CORPUS_BYTES:
        line_words = rng.randint(3, 14)
        line = " ".join(rng.choice(WORDS) for _ in range(line_words))
        if rng.random() < 0.2:
            line = f"{rng.choice(WORDS)}.{rng.choice(WORDS)} = {rng.randint(0, 1 << 20)}"
        b = (line + "\n").encode()
        out.append(b)
        n += len(b)
    return b"".join(out)


def generate(out, files, seed):
    if os.path.exists(out):
        sys.exit(f"{out} exists")
    text = corpus(seed)
    made_dirs = set()
    total = 0
    for i in range(files):
        rng = random.Random(f"file-{seed}-{i}")
        size = min(MAX_SIZE, int(rng.lognormvariate(0, 1.0) * 2 * KiB))
        header = f"# file {i} seed {seed} size {size}\n".encode()
        body_len = max(0, size - len(header))
        off = rng.randrange(0, len(text) - MAX_SIZE)
        data = (header + text[off:off + body_len])[:max(size, len(header))]
        p = os.path.join(out, rel_path(i))
        d = os.path.dirname(p)
        if d not in made_dirs:
            os.makedirs(d, exist_ok=True)
            made_dirs.add(d)
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (FIXED_MTIME, FIXED_MTIME))
        total += len(data)
        if i and i % 20000 == 0:
            log(f"{i}/{files} files")
    etc = os.path.join(out, "etc")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "hostname"), "wb") as f:
        f.write(b"golden\n")
    with open(os.path.join(etc, "passwd"), "wb") as f:
        f.write(b"root:x:0:0:root:/root:/bin/sh\n")
    os.symlink("../data", os.path.join(etc, "data-link"))
    for dirpath, _dirnames, filenames in os.walk(out, topdown=False):
        for n in filenames:
            os.utime(os.path.join(dirpath, n), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))
    log(f"{out}: {files} files, {total / (1 << 20):.1f} MiB")


def change_indices(files, count, span=None):
    span = files if span is None else span
    if not count <= span <= files:
        sys.exit(f"need count <= span <= files, got {count}, {span}, {files}")
    return [k * span // count for k in range(count)]


def changed_bytes(i, rnd, seed):
    rng = random.Random(f"change-{seed}-{rnd}-{i}")
    head = f"# file {i} rewritten in round {rnd}\n".encode()
    return head + rng.randbytes(CHANGE_BYTES - len(head) - 1).translate(PRINTABLE) + b"\n"


def change(root, files, count, rnd, seed, span):
    for i in change_indices(files, count, span):
        with open(os.path.join(root, rel_path(i)), "wb") as f:
            f.write(changed_bytes(i, rnd, seed))


def verify(root, files, count, rnd, seed, span):
    bad = 0
    for i in change_indices(files, count, span):
        p = os.path.join(root, rel_path(i))
        try:
            with open(p, "rb") as f:
                ok = f.read() == changed_bytes(i, rnd, seed)
        except OSError as e:
            ok = False
            log(f"{p}: {e}")
        if not ok:
            bad += 1
            if bad <= 5:
                log(f"{rel_path(i)}: not the round-{rnd} content")
    if bad:
        log(f"{bad} of {count} changed files under {root} do not hold their round-{rnd} content")
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out")
    g.add_argument("--files", type=int, required=True)
    g.add_argument("--seed", type=int, default=42)
    c = sub.add_parser("change")
    c.add_argument("root")
    c.add_argument("--files", type=int, required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--span", type=int, default=None)
    c.add_argument("--round", type=int, default=1)
    c.add_argument("--seed", type=int, default=42)
    v = sub.add_parser("verify")
    v.add_argument("root")
    v.add_argument("--files", type=int, required=True)
    v.add_argument("--count", type=int, required=True)
    v.add_argument("--span", type=int, default=None)
    v.add_argument("--round", type=int, default=1)
    v.add_argument("--seed", type=int, default=42)
    p = sub.add_parser("paths")
    p.add_argument("--files", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--span", type=int, default=None)
    a = ap.parse_args()
    if a.cmd == "generate":
        generate(a.out, a.files, a.seed)
    elif a.cmd == "change":
        change(a.root, a.files, a.count, a.round, a.seed, a.span)
    elif a.cmd == "verify":
        verify(a.root, a.files, a.count, a.round, a.seed, a.span)
    else:
        for i in change_indices(a.files, a.count, a.span):
            print(rel_path(i))


if __name__ == "__main__":
    main()
