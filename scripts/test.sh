#!/usr/bin/env bash
# Build everything and run every test (unit, property, integration against the
# real binary, real RocksDB, real filesystems). Needs root (devices, chown).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --all-targets
# The debootstrap tree the round-trip and dedup tests use, cached outside the repo.
bash tests/fetch-debootstrap.sh
cargo test --workspace -- --test-threads=2
