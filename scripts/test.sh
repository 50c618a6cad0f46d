#!/usr/bin/env bash
# Build everything and run every test (unit, property, integration against the
# real binary, real RocksDB, real filesystems). Needs root (devices, chown).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --all-targets
# The debootstrap trees the round-trip, dedup and boot tests use, cached outside the repo.
bash tests/fetch-debootstrap.sh --systemd
cargo test --workspace -- --test-threads=2
