//! The Examples of every command (`--help` shows them after the options,
//! the man pages in EXAMPLES), and the sections every man page shares.
//! Keyed by the command's path below `lvrepo` ("guest create"); a unit test
//! requires an entry for every command and subcommand.

pub const EXAMPLES: &[(&str, &str)] = &[
    ("", "lvrepo --repo /srv/lvrepo init\nexport LVREPO_REPO=/srv/lvrepo\nlvrepo import /srv/rootfs --image web -m 'certified'\nlvrepo guest create web01 --image web:1\nlvrepo mount --guest web01 /guests/web01"),
    ("init", "lvrepo --repo /srv/lvrepo init\nlvrepo --repo /srv/backup init --append-only      # a backup target"),
    ("import", "lvrepo import /srv/rootfs --image web -m 'certified 2026-11'\nlvrepo import web.tar --image web:3\ntar -C /src -cf - . | lvrepo import - --image web\nlvrepo import / --image host -x --exclude '*.log' --exclude /var/cache\nlvrepo import disk.qcow2 --volume --image web-disk"),
    ("delete", "lvrepo delete web:1 && lvrepo gc\nlvrepo delete web:1 --force --json"),
    ("images", "lvrepo images\nlvrepo images web --json"),
    ("ls", "lvrepo ls web:2:/etc\nlvrepo ls web -R --json"),
    ("cat", "lvrepo cat web:/etc/hostname\nlvrepo cat web:2:/usr/bin/env > env"),
    ("prefetch", "lvrepo prefetch web:2 --file-cache /var/cache/lvrepo/files\nlvrepo prefetch web:2 /usr /etc --json"),
    ("harvest", "lvrepo harvest web01 --image web-tuned -m 'tuned by ops'\nlvrepo harvest web01 --checkpoint 3 --image web:4 --json"),
    ("propagate", "lvrepo propagate --from web01 --path /etc/nginx/nginx.conf --to web02 web03 --dry-run\nlvrepo propagate --from web01:4 --path /etc/ssl/certs --group web --prefer source"),
    ("rebase", "lvrepo rebase web01 --image web:3 --dry-run\nlvrepo rebase web01 --image web:3 --prefer guest"),
    ("tag", "lvrepo tag web:3 web:stable\nlvrepo guest create web09 --image web:stable"),
    ("audit", "lvrepo audit --since 2026-12-01\nlvrepo audit --json\nlvrepo audit verify"),
    ("audit verify", "lvrepo audit verify || echo 'the audit log was tampered with'"),
    ("group", "lvrepo group create web web01 web02\nlvrepo checkpoint --group web -m 'before upgrade'"),
    ("group create", "lvrepo group create web web01 web02"),
    ("group add", "lvrepo group add web web03"),
    ("group rm", "lvrepo group rm web web03\nlvrepo group rm web              # the group itself"),
    ("group list", "lvrepo group list --json"),
    ("group show", "lvrepo group show web"),
    ("key", "lvrepo key generate --out /etc/lvrepo/publisher.key"),
    ("key generate", "lvrepo key generate --out /etc/lvrepo/publisher.key"),
    ("sign", "lvrepo sign web:3 --key /etc/lvrepo/publisher.key"),
    ("policy", "lvrepo policy require-signature --key /etc/lvrepo/publisher.key.pub\nlvrepo policy show"),
    ("policy require-signature", "lvrepo policy require-signature --key /etc/lvrepo/publisher.key.pub"),
    ("policy show", "lvrepo policy show --json"),
    ("export", "lvrepo export web:2 /srv/out\nlvrepo export web:2 web.tar.zst\nlvrepo export web:2:/etc etc.tar\nlvrepo export web:2 - | ssh host tar -xpf -"),
    ("diff", "lvrepo diff web:1 web:2\nlvrepo diff web01                  # what guest web01 changed against its image\nlvrepo diff web01 3 --stat\nlvrepo diff web01 web02 --json"),
    ("guest", "lvrepo guest create web01 --image web:2\nlvrepo guest list"),
    ("guest create", "lvrepo guest create web01 --image web:2\nlvrepo guest create web02 --image web --overlay /srv/guests/web02 --set hostname=web02\nlvrepo guest create vm01 --image web-disk:1 --json"),
    ("guest list", "lvrepo guest list\nlvrepo guest list --json"),
    ("guest show", "lvrepo guest show web01\nlvrepo guest show web01 --json"),
    ("guest rm", "lvrepo umount /guests/web01 && lvrepo guest rm web01"),
    ("guest rename", "lvrepo guest rename web01 web-frontend"),
    ("guest clone", "lvrepo guest clone web01:3 web01-test\nlvrepo guest clone web01 web01-copy --overlay /srv/guests/web01-copy"),
    ("guest fsck", "lvrepo guest fsck web01\nlvrepo guest fsck web01 --repair --json"),
    ("checkpoint", "lvrepo checkpoint web01 -m 'before upgrade'\nlvrepo checkpoint web01 --json"),
    ("checkpoint prune", "lvrepo checkpoint prune web01 --keep 5"),
    ("checkpoint delete", "lvrepo checkpoint delete web01 2"),
    ("log", "lvrepo log web01\nlvrepo log web01 --json"),
    ("rollback", "lvrepo rollback web01 3\nlvrepo rollback vm01 1 --disconnect"),
    ("verify", "lvrepo verify\nlvrepo verify --overlays --json\nlvrepo verify --repair-from /srv/rootfs --repair-from /mnt/backup-repo"),
    ("gc", "lvrepo gc --dry-run\nlvrepo gc --json"),
    ("stats", "lvrepo stats\nlvrepo stats --json"),
    ("mount", "lvrepo mount --guest web01 /guests/web01\nlvrepo mount web:2 --overlay /var/lib/web /srv/web -o nosuid,nodev\nlvrepo mount web:2 --read-only /mnt\nlvrepo mount --guest web01:3 --read-only /mnt\nmount -t fuse.lvrepo -o repo=/srv/lvrepo guest:web01 /guests/web01"),
    ("umount", "lvrepo umount /guests/web01"),
    ("nbd", "lvrepo nbd serve --guest vm01 --socket /run/lvrepo/vm01.sock\nlvrepo nbd stop --guest vm01"),
    ("nbd serve", "lvrepo nbd serve --guest vm01 --socket /run/lvrepo/vm01.sock\nlvrepo nbd serve --image web-disk:1 --listen 127.0.0.1:10809\nlvrepo nbd serve --guest vm01 --checkpoint 1 --socket /run/lvrepo/vm01-1.sock"),
    ("nbd stop", "lvrepo nbd stop --guest vm01"),
    ("backup", "lvrepo backup web01 --to /srv/backup\nlvrepo backup web01 --to /srv/backup --no-checkpoint --json"),
    ("restore", "lvrepo restore web01 --from /srv/backup --overlay /var/lib/lvrepo/guests/web01\nlvrepo restore web01 --from /srv/backup --checkpoint 3 --as web01-old --overlay /srv/g/web01-old"),
    ("backups", "lvrepo --repo /srv/backup backups\nlvrepo --repo /srv/backup backups web01 --json"),
    ("send", "lvrepo send web:2 -o web-2.lvs\nlvrepo send web01 --since 3 | ssh dr lvrepo --repo /srv/dr receive"),
    ("receive", "lvrepo receive web-2.lvs\nssh prod lvrepo send web01 | lvrepo receive -"),
    ("forget", "lvrepo --repo /srv/backup forget web01 --keep-daily 7 --keep-weekly 4 --dry-run"),
    ("serve", "lvrepo --repo /srv/lvrepo serve --socket /run/lvrepo/lvrepo.sock\nsystemctl enable --now lvrepo.socket        # the same, started by systemd at the first request"),
    ("man", "lvrepo man --out /usr/local/share/man/man1"),
    ("completions", "lvrepo completions bash > /etc/bash_completion.d/lvrepo\nlvrepo completions zsh > ~/.zfunc/_lvrepo"),
];

/// The examples of the command at `path` ("" for lvrepo itself).
pub fn examples(path: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// Man page sections shared by every page: (heading, paragraphs).
pub const SHARED: &[(&str, &[&str])] = &[
    (
        "EXIT STATUS",
        &[
            "0 success; 1 error (I/O, a full partition, unsafe tar, not a repository); 2 usage (bad arguments, invalid image or guest name, no repository given); 3 not found (image, path, guest, checkpoint); 4 damaged data found (verify, any read of a damaged object or index, fsck); 5 already exists (image version, guest, non-empty destination); 6 busy (writer lock held, guest mounted or locked, image in use, newest checkpoint); 7 conflict; 77 not permitted (file permissions, append-only repository).",
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            "LVREPO_REPO: the repository directory, when --repo is not given.",
            "LVREPO_LOG: a tracing filter (error, warn, info, debug, trace, or per module, e.g. lvrepo_fs=debug) that overrides -v and -q; an invalid filter exits 2.",
            "NOTIFY_SOCKET: set by systemd for Type=notify units; a mount daemon sends READY=1 there once the mount is live.",
            "JOURNAL_STREAM: set by systemd when stderr is the journal; daemons then log to journald with structured fields.",
            "LVREPO_LOG_ROTATE_BYTES: the size past which a detached mount daemon rotates OVERLAY/daemon.log to daemon.log.1 (default 8 MiB).",
            "TMPDIR: where a browsing mount (--read-only without --overlay) keeps its scratch overlay until unmounted (default /tmp).",
            "LVREPO_SOCKET: the socket of the lvrepo service (default /run/lvrepo/lvrepo.sock); a user other than root whose lvrepo finds it there runs commands through it, in their roles. Empty: never.",
            "LVREPO_ROLES: the roles file lvrepo serve reads (default /etc/lvrepo/roles).",
            "LVREPO_CACHE: this host's cache directory of a remote repository (s3://, file://), when --cache is not given (default /var/cache/lvrepo/BUCKET[_PREFIX]).",
            "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP: the S3 server and credentials of an s3:// repository.",
            "LVREPO_CACHE_MIB: the bound of a remote repository's cache in MiB (default a tenth of its filesystem).",
            "LVREPO_REMOTE_RETRIES, LVREPO_REMOTE_TIMEOUT_SECS: retries of a failed object-store request (default 4) and each request's time limit (default 30).",
            "LVREPO_REMOTE_READAHEAD_KIB: the most a fetch from an object store reads ahead for a reader walking a pack in order (default 2048; 0: off).",
            "LVREPO_FAILPOINT: crash testing only; aborts the process at the named point.",
        ],
    ),
    (
        "FILES",
        &[
            "REPO/packs/, REPO/index/: the repository's objects and their index (docs/format.md).",
            "REPO/guests/NAME.json: the registry entry of guest NAME.",
            "/var/lib/lvrepo/guests/NAME: the default directory of guest NAME (STATE, overlay generations gen-N/, its own store/, lock, daemon.log).",
            "/etc/lvrepo/backup.conf: configuration of the lvrepo-backup@ and lvrepo-forget@ systemd units; /etc/lvrepo/guests.conf: of lvrepo-guest@.",
        ],
    ),
    ("SEE ALSO", &["mount(8), fstab(5), systemd.service(5); docs/operations.md in the lvrepo sources."]),
];
