#!/usr/bin/env python3
"""Generate a deterministic "mixed" filesystem tree for lvrepo import benchmarks.

Usage:
    gen-mixed-tree.py OUT_DIR [--size-gib 2.0] [--seed 42]

OUT_DIR must not exist (it is created). The tree approximates a golden OS image:

  ~25%  small text / config-like files (tens of thousands at 2 GiB; lognormal
        sizes, median ~3 KiB), cut from real text on this host (/usr/share/doc,
        /etc, python stdlib sources) or synthesised INI-style configs. Each file
        gets a unique header line, so no two are byte-identical.
  ~37%  ELF binaries / shared libraries copied from /usr/bin, /usr/sbin,
        /usr/lib, /usr/libexec and mutated (a few random bytes every 1-16 KiB,
        like a rebuild with shifted addresses), so compression ratio is that of
        real machine code but cross-file chunk dedup is defeated.
  ~30%  four large files (50-200 MiB at 2 GiB, scaled with --size-gib):
        a compressible log, a disk-image-like blob (zeros + code + text +
        random), a bundle of concatenated binaries, and one fully random file.
  ~7%   duplicates: exact copies of small files and binaries, plus a few
        near-duplicates (a binary with one 4 KiB region rewritten).
  plus  a few symlinks and empty files/dirs.

Determinism: the output depends only on --seed, --size-gib and the contents of
the host files used as raw material (sorted path lists). On the same host the
tree is byte-for-byte reproducible; all mtimes are fixed.
"""

import argparse
import gzip
import math
import os
import random
import shutil
import stat
import sys

MiB = 1 << 20
KiB = 1 << 10
FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z

# Fractions of the total size.
FRAC_SMALL = 0.25
FRAC_ELF = 0.37
FRAC_LARGE = {"log": 0.088, "random": 0.049, "disk-image": 0.098, "bin-bundle": 0.065}
FRAC_DUP_SMALL = 0.02
FRAC_DUP_ELF = 0.035
FRAC_NEARDUP = 0.015

CORPUS_MAX = 48 * MiB
ELF_MAX = 32 * MiB
ELF_MIN = 4 * KiB


def log(msg):
    print(f"[gen-mixed-tree] {msg}", file=sys.stderr, flush=True)


def sorted_walk(root):
    """Deterministic os.walk yielding regular-file paths (no symlinks)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield p, st.st_size


def read_file(path, limit=None):
    try:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError:
        return None


def build_text_corpus():
    """Concatenate real text from the host, up to CORPUS_MAX bytes."""
    parts = []
    total = 0
    roots = ["/usr/share/doc", "/etc", "/usr/share/perl", "/usr/lib/python3"]
    roots += sorted(
        os.path.join("/usr/lib", d)
        for d in (os.listdir("/usr/lib") if os.path.isdir("/usr/lib") else [])
        if d.startswith("python3.")
    )
    per_root = CORPUS_MAX // max(1, len([r for r in roots if os.path.isdir(r)]))
    for root in roots:
        if not os.path.isdir(root):
            continue
        got = 0
        for path, size in sorted_walk(root):
            if got >= per_root or total >= CORPUS_MAX:
                break
            if size == 0 or size > 4 * MiB:
                continue
            data = read_file(path)
            if data is None:
                continue
            if path.endswith(".gz"):
                try:
                    data = gzip.decompress(data)
                except Exception:
                    continue
            if b"\0" in data[:4096]:
                continue
            parts.append(data)
            got += len(data)
            total += len(data)
    corpus = b"".join(parts)
    if len(corpus) < 1 * MiB:
        # Fallback: synthetic English-ish text.
        rng = random.Random(7)
        words = [
            "the", "system", "package", "config", "default", "value", "error",
            "service", "network", "kernel", "module", "user", "file", "path",
            "option", "enable", "disable", "version", "license", "copyright",
        ]
        lines = []
        for _ in range(200000):
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 14))))
        corpus = ("\n".join(lines) + "\n").encode()
    return corpus


def build_elf_pool():
    pool = []
    for root in ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec"]:
        if not os.path.isdir(root):
            continue
        for path, size in sorted_walk(root):
            if size < ELF_MIN or size > ELF_MAX:
                continue
            head = read_file(path, 4)
            if head == b"\x7fELF":
                pool.append((path, size))
    return pool


def mutate_binary(rng, data):
    """Overwrite 1-8 random bytes every 1-16 KiB (keeps code-like entropy)."""
    buf = bytearray(data)
    n = len(buf)
    pos = rng.randint(0, 16 * KiB)
    while pos < n:
        k = rng.randint(1, 8)
        buf[pos:pos + k] = rng.randbytes(min(k, n - pos))
        pos += rng.randint(1 * KiB, 16 * KiB)
    return bytes(buf)


class Gen:
    def __init__(self, out, total, seed):
        self.out = out
        self.total = total
        self.rng = random.Random(seed)
        self.written = 0
        self.small_files = []
        self.elf_files = []
        self.nfiles = 0

    def path(self, rel):
        p = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write(self, rel, data, mode=0o644):
        p = self.path(rel)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        self.written += len(data)
        self.nfiles += 1
        return p

    # ---------------------------------------------------------------- small
    def config_text(self, target):
        rng = self.rng
        keys = ["enabled", "path", "timeout", "max_connections", "user", "group",
                "listen", "port", "log_level", "cache_dir", "retries", "mode",
                "include", "pidfile", "interval", "buffer_size", "compression",
                "ssl_cert", "ssl_key", "allow", "deny", "description", "name"]
        vals = ["yes", "no", "true", "false", "auto", "info", "debug", "warn",
                "/var/lib/app", "/etc/app/conf.d", "/run/app.pid", "0.0.0.0",
                "127.0.0.1", "root", "www-data", "nobody", "zstd", "lz4", "none"]
        out = []
        size = 0
        while size < target:
            if rng.random() < 0.08:
                line = f"\n[{rng.choice(keys)}.{rng.randint(0, 99)}]"
            elif rng.random() < 0.15:
                line = "# " + " ".join(rng.choice(keys) for _ in range(rng.randint(3, 10)))
            else:
                r = rng.random()
                if r < 0.4:
                    v = rng.choice(vals)
                elif r < 0.7:
                    v = str(rng.randint(0, 65535))
                elif r < 0.85:
                    v = rng.randbytes(8).hex()
                else:
                    v = f"/usr/lib/{rng.choice(keys)}/{rng.choice(keys)}.so.{rng.randint(0, 9)}"
                line = f"{rng.choice(keys)} = {v}"
            out.append(line)
            size += len(line) + 1
        return ("\n".join(out) + "\n").encode()[:target]

    def gen_small(self, corpus):
        rng = self.rng
        budget = int(self.total * FRAC_SMALL)
        top = ["etc", "usr/share/doc", "usr/share/locale", "usr/lib/python3/dist-packages",
               "usr/share/man", "var/lib/dpkg/info", "opt/app/share", "usr/include"]
        done = 0
        i = 0
        dirname = None
        left_in_dir = 0
        while done < budget:
            if left_in_dir <= 0:
                depth = rng.randint(0, 3)
                parts = [rng.choice(top)] + [f"d{rng.randint(0, 999):03d}" for _ in range(depth)]
                dirname = "/".join(parts)
                left_in_dir = rng.randint(5, 60)
            left_in_dir -= 1
            size = int(math.exp(rng.gauss(math.log(3 * KiB), 1.2)))
            size = max(64, min(size, 512 * KiB, budget - done))
            if rng.random() < 0.01:
                size = 0
            header = f"# id={i} seed-file {dirname}\n".encode()
            if size == 0:
                data = b""
            elif rng.random() < 0.65:
                # 1-3 slices of real text.
                nslices = rng.randint(1, 3)
                pieces = [header]
                rem = max(0, size - len(header))
                for s in range(nslices):
                    ln = rem // (nslices - s)
                    off = rng.randint(0, max(0, len(corpus) - ln - 1))
                    pieces.append(corpus[off:off + ln])
                    rem -= ln
                data = b"".join(pieces)
            else:
                data = header + self.config_text(max(0, size - len(header)))
            ext = rng.choice([".conf", ".txt", ".py", ".md", ".list", ".cfg", "", ".h", ".json"])
            rel = f"{dirname}/f{i:06d}{ext}"
            self.write(rel, data)
            self.small_files.append((rel, len(data)))
            done += len(data)
            i += 1
        log(f"small files: {i} files, {done / MiB:.1f} MiB")

    # ---------------------------------------------------------------- ELF
    def gen_elf(self, pool):
        rng = self.rng
        budget = int(self.total * FRAC_ELF)
        done = 0
        i = 0
        dirs = ["usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/libexec/app",
                "opt/app/lib", "usr/lib/x86_64-linux-gnu/plugins"]
        while done < budget and pool:
            src, size = pool[rng.randrange(len(pool))]
            if size > budget - done and budget - done < ELF_MIN:
                break
            data = read_file(src)
            if data is None:
                continue
            data = mutate_binary(rng, data[: budget - done])
            d = rng.choice(dirs)
            rel = f"{d}/{os.path.basename(src)}.{i}"
            self.write(rel, data, 0o755 if "bin" in d else 0o644)
            self.elf_files.append((rel, len(data)))
            done += len(data)
            i += 1
        log(f"binaries: {i} files, {done / MiB:.1f} MiB (pool {len(pool)} ELF files)")

    # ---------------------------------------------------------------- large
    def stream(self, rel, size, block_fn, mode=0o644):
        p = self.path(rel)
        n = 0
        with open(p, "wb") as f:
            while n < size:
                blk = block_fn(min(4 * MiB, size - n))
                blk = blk[: size - n]
                f.write(blk)
                n += len(blk)
        os.chmod(p, mode)
        self.written += n
        self.nfiles += 1
        log(f"large: {rel} {n / MiB:.1f} MiB")

    def gen_large(self, corpus, pool):
        rng = self.rng
        sizes = {k: max(4 * MiB, int(self.total * v)) for k, v in FRAC_LARGE.items()}

        hosts = [f"node{n:02d}" for n in range(16)]
        svcs = ["sshd", "systemd", "kernel", "nginx", "cron", "dbus-daemon", "containerd", "kubelet"]
        msgs = ["Accepted publickey for", "Started", "Stopped", "connection reset by peer",
                "GET /api/v1/items HTTP/1.1 200", "oom-killer invoked", "Reloading",
                "session opened for user", "link up", "timeout waiting for", "cache miss"]
        state = {"t": 1_700_000_000.0}

        def log_block(n):
            lines = []
            size = 0
            while size < n:
                state["t"] += rng.expovariate(50.0)
                t = state["t"]
                line = (f"{int(t)}.{int((t % 1) * 1e6):06d} {rng.choice(hosts)} "
                        f"{rng.choice(svcs)}[{rng.randint(100, 40000)}]: {rng.choice(msgs)} "
                        f"id={rng.getrandbits(32):08x} dur={rng.randint(0, 5000)}ms\n")
                lines.append(line)
                size += len(line)
            return "".join(lines).encode()

        self.stream("var/log/big/syslog.1", sizes["log"], log_block)

        self.stream("var/lib/blobs/random.bin", sizes["random"], lambda n: rng.randbytes(n))

        def elf_piece(n):
            src, _ = pool[rng.randrange(len(pool))]
            data = read_file(src) or b""
            if len(data) > n:
                off = rng.randint(0, len(data) - n)
                data = data[off:off + n]
            return mutate_binary(rng, data)

        def img_block(n):
            out = []
            size = 0
            while size < n:
                seg = min(n - size, rng.choice([64 * KiB, 256 * KiB, 1 * MiB]))
                r = rng.random()
                if r < 0.3:
                    piece = bytes(seg)
                elif r < 0.6 and pool:
                    piece = elf_piece(seg)
                elif r < 0.9:
                    off = rng.randint(0, max(0, len(corpus) - seg - 1))
                    piece = corpus[off:off + seg]
                else:
                    piece = rng.randbytes(seg)
                if not piece:
                    piece = bytes(seg)
                out.append(piece)
                size += len(piece)
            return b"".join(out)

        self.stream("var/lib/images/disk.img", sizes["disk-image"], img_block)

        def bundle_block(n):
            out = []
            size = 0
            while size < n:
                piece = elf_piece(n - size) if pool else rng.randbytes(n - size)
                if not piece:
                    continue
                out.append(piece)
                size += len(piece)
            return b"".join(out)

        self.stream("opt/app/lib/bundle.pak", sizes["bin-bundle"], bundle_block)

    # ---------------------------------------------------------------- dups
    def gen_dups(self):
        rng = self.rng

        def copy_some(files, budget, tag):
            done = 0
            n = 0
            while done < budget and files:
                rel, size = files[rng.randrange(len(files))]
                if size > budget - done + 64 * KiB and done > 0:
                    # avoid overshooting much; try a few times then stop
                    if rng.random() < 0.9:
                        continue
                dst = f"usr/share/{tag}/c{n:05d}/{os.path.basename(rel)}"
                shutil.copyfile(os.path.join(self.out, rel), self.path(dst))
                os.chmod(os.path.join(self.out, dst), 0o644)
                self.written += size
                self.nfiles += 1
                done += size
                n += 1
            log(f"duplicates ({tag}): {n} files, {done / MiB:.1f} MiB")

        copy_some(self.small_files, int(self.total * FRAC_DUP_SMALL), "dup-small")
        copy_some(self.elf_files, int(self.total * FRAC_DUP_ELF), "dup-bin")

        # near-duplicates: a binary with a single 4 KiB region rewritten
        budget = int(self.total * FRAC_NEARDUP)
        done = 0
        n = 0
        big = [f for f in self.elf_files if f[1] >= 256 * KiB] or self.elf_files
        while done < budget and big:
            rel, size = big[rng.randrange(len(big))]
            data = bytearray(read_file(os.path.join(self.out, rel)) or b"")
            if not data:
                break
            off = rng.randint(0, max(0, len(data) - 4 * KiB))
            data[off:off + 4 * KiB] = rng.randbytes(min(4 * KiB, len(data) - off))
            self.write(f"usr/lib/neardup/n{n:04d}/{os.path.basename(rel)}", bytes(data), 0o755)
            done += len(data)
            n += 1
        log(f"near-duplicates: {n} files, {done / MiB:.1f} MiB")

    def gen_misc(self):
        rng = self.rng
        for k in range(50):
            if not self.small_files:
                break
            rel, _ = self.small_files[rng.randrange(len(self.small_files))]
            link = self.path(f"etc/alternatives/link{k:03d}")
            os.symlink("/" + rel, link)
        if self.elf_files:
            os.symlink(os.path.basename(self.elf_files[0][0]),
                       self.path("usr/bin/" + "sym-" + os.path.basename(self.elf_files[0][0])))
        for d in ["tmp", "run", "srv", "home", "mnt", "var/empty"]:
            os.makedirs(os.path.join(self.out, d), exist_ok=True)

    def fix_times(self):
        for dirpath, dirnames, filenames in os.walk(self.out, topdown=False):
            for name in filenames + dirnames:
                p = os.path.join(dirpath, name)
                os.utime(p, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
        os.utime(self.out, (FIXED_MTIME, FIXED_MTIME))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()

    if os.path.exists(a.out):
        sys.exit(f"{a.out} already exists")
    total = int(a.size_gib * 1024 * MiB)
    os.makedirs(a.out)
    log(f"target {total / MiB:.0f} MiB, seed {a.seed}, out {a.out}")
    corpus = build_text_corpus()
    log(f"text corpus: {len(corpus) / MiB:.1f} MiB")
    pool = build_elf_pool()
    log(f"ELF pool: {len(pool)} files, {sum(s for _, s in pool) / MiB:.0f} MiB")

    g = Gen(a.out, total, a.seed)
    g.gen_small(corpus)
    g.gen_elf(pool)
    g.gen_large(corpus, pool)
    g.gen_dups()
    g.gen_misc()
    g.fix_times()
    log(f"done: {g.nfiles} files, {g.written / MiB:.1f} MiB")


if __name__ == "__main__":
    main()
