#!/usr/bin/env bash
# Install everything lvrepo needs to build, test and benchmark on Debian 12.
# Idempotent; run as root (or via sudo). The Rust toolchain (cargo, rustc) must
# already be installed (rustup); everything else comes from Debian's packages.
set -euo pipefail

need=(
  build-essential pkg-config clang libclang-dev   # cc, bindgen for librocksdb-sys
  librocksdb-dev                                  # RocksDB 7.8, linked instead of compiled (25 min)
  fuse3 libfuse3-dev                              # FUSE mounts (issue: the daemon)
  attr acl                                        # getfattr/setfacl in tests
  zstd tar debootstrap                            # sample images and the round-trip test
  ostree fuse-overlayfs fio qemu-utils libnbd-bin # peers and clients in benches and tests
  nbdkit python3-libnbd                           # NBD peers (nbdkit cow) and nbdsh in the NBD tests
  btrfs-progs strace rsync                        # guest benches; strace in tests (labels.rs)
  python3-jsonschema                              # validates --json output (tests/tests/json_schema.rs)
  python3-venv curl                               # moto's S3 server (below); curl in the S3 bench
)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Boot tests: a Debian kernel (with its initrd) booted by QEMU under TCG.
# Debian 12's qemu-system-x86 (7.2) cannot sit beside a newer qemu-utils
# (which Breaks qemu-system-common << 8.0): take both from Debian 12.
# dracut-core (not dracut: that one conflicts with initramfs-tools) builds
# the dracut variant of the lvrepo initrd (tests/tests/boot/main.rs).
boot=(qemu-system-x86 linux-image-amd64 initramfs-tools busybox-static dracut-core)
missing=()
for p in "${boot[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" qemu-utils/bookworm
fi
if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
fi
export PATH="$HOME/.cargo/bin:$PATH"
# Peers' test suites run against our mounts (tests/tests/pjdfstest.rs, fsx.rs);
# cargo-deb builds the Debian package (scripts/deb.sh, tests/tests/deb.rs).
for tool in pjdfstest@0.2.2 fsx@0.3.2 cargo-deb@3.8.0; do
  command -v "${tool%@*}" >/dev/null || cargo install --locked --quiet "$tool"
done
# S3 servers the object-store tests start on loopback (tests/tests/s3):
# s3s-fs (persistence, restarts, large objects) built once into a cache dir
# that CI keeps between runs (later versions need a newer rustc), and moto's
# server (conditional-write races) in a venv: Debian's pip refuses to
# install into the system python. The tests look in these two places.
s3_cache=${LVREPO_CI_CACHE:-/var/cache/lvrepo-ci}
if ! cargo install --list --root "$s3_cache" 2>/dev/null | grep -qx 's3s-fs v0.14.1:'; then
  nice cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary --root "$s3_cache"
fi
moto_venv=/opt/lvrepo-moto
if [ ! -x "$moto_venv/bin/moto_server" ]; then
  /usr/bin/python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install --quiet 'moto[server]==5.2.1'
fi
# FUSE over io_uring (Linux 6.14+): the daemon then serves each CPU's requests
# on that CPU (docs/overlay.md). Off by default in the kernel; a kernel without
# it has no such parameter and the daemon uses /dev/fuse.
if [ -e /sys/module/fuse/parameters/enable_uring ]; then
  echo Y >/sys/module/fuse/parameters/enable_uring
fi
# pjdfstest switches to the users "nobody" and "tests".
id tests >/dev/null 2>&1 || useradd -U -M -s /usr/sbin/nologin tests
echo "setup: all dependencies present"
