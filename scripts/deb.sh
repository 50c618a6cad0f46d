#!/bin/bash
# Build the Debian package of lvrepo: the binary, a man page per command,
# shell completions, the mount(8) helper link and the systemd units
# (metadata: repo-tools/Cargo.toml [package.metadata.deb]). Needs cargo-deb
# (`cargo install cargo-deb`). Prints the path of the .deb.
#   scripts/deb.sh [--profile dev]   (default: release)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = --profile ]; then profile=$2; fi
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
cargo build -q --profile "$profile" -p lvrepo
bin=target/$dir/lvrepo
# Under target/PROFILE/: cargo-deb maps the assets' `target/release/` there.
assets=target/$dir/deb-assets
rm -rf "$assets" && mkdir -p "$assets/man"
"$bin" man --out "$assets/man"
"$bin" completions bash > "$assets/lvrepo.bash"
"$bin" completions zsh > "$assets/_lvrepo"
"$bin" completions fish > "$assets/lvrepo.fish"
# mount -t fuse.lvrepo runs /sbin/mount.fuse.lvrepo: lvrepo itself, which
# acts as the helper when called by that name.
ln -s /usr/bin/lvrepo "$assets/mount.fuse.lvrepo"
# A dev package (the install test's) is compressed fast: its binary is large.
fast=$([ "$profile" = release ] || echo --fast)
cargo deb -p lvrepo --no-build --profile "$profile" $fast -o "target/debian/" 2>/dev/null | tail -1
