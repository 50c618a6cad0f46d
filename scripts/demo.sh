#!/usr/bin/env bash
# The main job, end to end, on an embedded local repository: import a sample
# tree, list it, change it, import the change as version 2, diff, verify, export,
# then mount it with a private overlay, change it, unmount, remount, see the change;
# then a guest: create, mount, change, checkpoint, change more, roll back, diff;
# back it up to a second site and restore it; verify and fsck; then a block
# volume served over NBD, checkpointed, rolled back; then a repository on an
# object store (file://) shared by two hosts' caches.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p lvrepo
L="$PWD/target/release/lvrepo"
work=$(mktemp -d /var/tmp/lvrepo-demo.XXXXXX)
export LVREPO_REPO="$work/repo"
# On failure, leave no mount behind (the work dir stays for inspection).
trap 'rc=$?; if [ $rc -ne 0 ] && mountpoint -q "$work/mnt" 2>/dev/null; then "$L" umount "$work/mnt" || umount -l "$work/mnt"; fi' EXIT
echo "== working in $work"

# A small sample "golden image": a few system directories of this machine.
mkdir -p "$work/golden"
cp -a /etc/default /etc/skel "$work/golden/" 2>/dev/null || true
mkdir -p "$work/golden/usr/bin" && cp -a /usr/bin/bash /usr/bin/ls /usr/bin/tar "$work/golden/usr/bin/"
printf 'golden-1\n' > "$work/golden/etc-release"

set -x
"$L" init
"$L" import "$work/golden" --image sample -m "first golden image"
"$L" images
"$L" ls sample:/usr/bin
"$L" cat sample:/etc-release

# Change it: edit a file, add one, remove one, chmod one.
cp -a "$work/golden" "$work/golden2"
printf 'golden-2\n' > "$work/golden2/etc-release"
printf 'new\n' > "$work/golden2/added.conf"
rm "$work/golden2/usr/bin/ls"
chmod 0700 "$work/golden2/usr/bin/tar"
"$L" import "$work/golden2" --image sample -m "second version"
"$L" diff sample:1 sample:2
"$L" stats
"$L" verify
"$L" export sample:2 "$work/exported"
diff -r "$work/golden2" "$work/exported"

# Mount version 2 with a private writable overlay, change it, remount, see it.
mkdir -p "$work/mnt"
"$L" mount sample:2 --overlay "$work/overlay" "$work/mnt"
cat "$work/mnt/etc-release"
echo "guest-local change" > "$work/mnt/etc-release"
mkdir "$work/mnt/srv" && echo data > "$work/mnt/srv/app.conf"
chmod 0640 "$work/mnt/usr/bin/bash"
rm "$work/mnt/added.conf"
"$L" umount "$work/mnt"
"$L" mount sample:2 --overlay "$work/overlay" "$work/mnt"
ls -l "$work/mnt" "$work/mnt/usr/bin"
test "$(cat "$work/mnt/etc-release")" = "guest-local change"
test ! -e "$work/mnt/added.conf"
"$L" umount "$work/mnt"
du -sh "$work/overlay"

# Guests: an instant clone with its own identity; checkpoint, change, roll back.
"$L" guest create web01 --image sample:2 --overlay "$work/guests/web01" --set hostname=web01
"$L" mount --guest web01 "$work/mnt"
cat "$work/mnt/etc/hostname"
echo "installed app" > "$work/mnt/srv-app"
"$L" checkpoint web01 -m "app installed"
rm "$work/mnt/usr/bin/tar"; echo "oops" > "$work/mnt/etc-release"
"$L" diff web01 1
# Roll back while mounted: the mount shows checkpoint 1 at once.
"$L" rollback web01 1
test -e "$work/mnt/usr/bin/tar" && test "$(cat "$work/mnt/etc-release")" = golden-2
test "$(cat "$work/mnt/srv-app")" = "installed app"
"$L" diff web01
"$L" log web01
"$L" umount "$work/mnt"
# And unmounted; the state survives a remount.
"$L" rollback web01 1
"$L" mount --guest web01 "$work/mnt"
test -e "$work/mnt/usr/bin/tar" && test "$(cat "$work/mnt/srv-app")" = "installed app"
"$L" umount "$work/mnt"
"$L" stats

# Disaster recovery: back up the guest to a second site (only its own bytes
# travel when the site has the image), list, restore it there as a new guest.
"$L" --repo "$work/site" init
"$L" backup web01 --to "$work/site"
"$L" backups web01 --repo "$work/site"
"$L" send sample:2 -o "$work/sample.stream" && "$L" --repo "$work/site" receive "$work/sample.stream"
"$L" backup web01 --to "$work/site"
"$L" restore web01 --from "$work/site" --as web02 --overlay "$work/guests/web02"
"$L" mount --guest web02 "$work/mnt"
test "$(cat "$work/mnt/srv-app")" = "installed app"
"$L" umount "$work/mnt"

# Fleet: publish a guest's state as a new image version, name it on a
# channel, and move another guest onto it keeping that guest's own changes.
"$L" harvest web01 --image sample -m "web01's app, harvested"
"$L" tag sample:3 sample:stable
"$L" log sample
"$L" guest create web03 --image sample:1 --overlay "$work/guests/web03"
"$L" mount --guest web03 "$work/mnt"
echo "web03's own note" > "$work/mnt/note"
"$L" umount "$work/mnt"
"$L" rebase web03 --image sample:stable --dry-run
"$L" rebase web03 --image sample:stable
"$L" mount --guest web03 "$work/mnt"
test "$(cat "$work/mnt/note")" = "web03's own note" && test "$(cat "$work/mnt/srv-app")" = "installed app"
"$L" umount "$work/mnt"

# Many guests of one image: unchanged image files come from one verified
# copy per host (FUSE passthrough onto the host file cache).
"$L" prefetch sample:stable --file-cache "$work/filecache"
"$L" mount --guest web03 --file-cache "$work/filecache" "$work/mnt"
cmp "$work/mnt/usr/bin/bash" "$work/golden2/usr/bin/bash"
"$L" umount "$work/mnt"

# Health: every object of the repository and every guest's store, and every
# guest overlay's data checksums; a guest's own check.
"$L" verify --overlays
"$L" guest fsck web01

# Block volumes over NBD: a golden disk stored once, a copy-on-write volume
# guest, checkpoint and roll back while it is served (qemu-io is the client).
qemu-img create -q -f raw "$work/disk.raw" 64M
qemu-io -f raw -c "write -P 0xab 1M 1M" "$work/disk.raw" >/dev/null
"$L" import "$work/disk.raw" --volume --image disk
"$L" guest create vm01 --image disk:1 --overlay "$work/guests/vm01"
"$L" nbd serve --guest vm01 --socket "$work/vm01.sock"
U="nbd+unix:///vm01?socket=$work/vm01.sock"
qemu-io -f raw -c "read -P 0xab 1M 1M" -c "write -P 0x11 4M 64k" -c flush "$U"
"$L" checkpoint vm01 -m "first write"
qemu-io -f raw -c "write -P 0x22 4M 64k" -c flush "$U"
"$L" diff vm01 1
"$L" rollback vm01 1
qemu-io -f raw -c "read -P 0x11 4M 64k" "$U"
"$L" nbd stop --guest vm01
"$L" export disk:1 "$work/disk-out.raw" && cmp "$work/disk.raw" "$work/disk-out.raw"
# The repository on an object store (file:// here; s3:// with AWS_* set is
# the same code): publish from one host's cache, read and run a guest from
# another's, which fetches only what it reads; the first host's lease keeps
# the image through gc after it is deleted elsewhere.
R="file://$work/bucket/golden"
LVREPO_CACHE="$work/host-a" "$L" --repo "$R" init
LVREPO_CACHE="$work/host-a" "$L" --repo "$R" import "$work/golden2" --image base:1
LVREPO_CACHE="$work/host-b" "$L" --repo "$R" images
LVREPO_CACHE="$work/host-b" "$L" --repo "$R" guest create edge01 --image base:1 --overlay "$work/guests/edge01"
LVREPO_CACHE="$work/host-b" "$L" --repo "$R" mount --guest edge01 "$work/mnt"
cmp "$work/mnt/usr/bin/bash" "$work/golden2/usr/bin/bash"
LVREPO_CACHE="$work/host-b" "$L" --repo "$R" umount "$work/mnt"
LVREPO_CACHE="$work/host-a" "$L" --repo "$R" delete base:1
LVREPO_CACHE="$work/host-a" "$L" --repo "$R" gc --grace 0s
LVREPO_CACHE="$work/host-a" "$L" --repo "$R" gc --grace 0s
LVREPO_CACHE="$work/host-b" "$L" --repo "$R" mount --guest edge01 "$work/mnt"
cmp "$work/mnt/usr/bin/bash" "$work/golden2/usr/bin/bash"
LVREPO_CACHE="$work/host-b" "$L" --repo "$R" umount "$work/mnt"
set +x
echo "== main job done; repository at $LVREPO_REPO"
