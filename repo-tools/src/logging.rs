//! Where logs go and what they say: stderr (the default), or journald when
//! stderr is the journal (`JOURNAL_STREAM` names it: a systemd unit); the
//! level from `-v`/`-q`, overridden by `LVREPO_LOG` (an invalid filter is a
//! usage error, never ignored). Journal entries carry the tracing fields as
//! journal fields (`journalctl GUEST=web01`), tracing's INFO as priority 5.
//! And sd_notify: readiness to systemd.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Install the subscriber; `Err`: an invalid `LVREPO_LOG` (exit 2).
pub fn init(verbose: u8, quiet: bool) -> Result<(), String> {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("LVREPO_LOG") {
        Ok(v) => EnvFilter::builder().parse(&v).map_err(|e| format!("invalid LVREPO_LOG filter {v:?}: {e} (e.g. debug, or lvrepo_fs=trace,warn)"))?,
        Err(std::env::VarError::NotPresent) => EnvFilter::new(default),
        Err(std::env::VarError::NotUnicode(_)) => return Err("invalid LVREPO_LOG filter: not UTF-8".into()),
    };
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(j) => {
                tracing_subscriber::registry().with(filter).with(j.with_syslog_identifier("lvrepo".into()).with_field_prefix(None)).init();
                return Ok(());
            }
            // No journald socket: stderr still reaches the journal.
            Err(e) => eprintln!("lvrepo: journald not reachable ({e}); logging to stderr"),
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A daemon's stderr is its log file on the overlay partition: when that is
    // full, a failed log write must not turn into a panic (eprintln).
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_target(false).log_internal_errors(false);
    match crate::logrotate::Rotating::from_env() {
        // A detached daemon's daemon.log, rotated as it grows.
        Some(r) => fmt.with_writer(r).init(),
        None => fmt.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// Whether stderr is the journal stream systemd connected: `JOURNAL_STREAM`
/// is `DEV:INODE` of that stream (a child whose stderr was redirected
/// elsewhere inherits the variable but not the stream).
fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    let stderr = std::io::stderr();
    nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&stderr)).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// Tell systemd (a `Type=notify` unit: `NOTIFY_SOCKET` is set) that the
/// service is ready, with a status line. Nothing when not under systemd; a
/// failure is logged, not fatal (the mount works either way).
pub fn notify_ready(status: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let msg = format!("READY=1\nSTATUS={status}\nMAINPID={}\n", std::process::id());
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // An abstract socket name (`@` stands for the leading NUL).
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        } else {
            sock.send_to(msg.as_bytes(), &path)?;
        }
        Ok(())
    })();
    match sent {
        Ok(()) => tracing::debug!(status, "sd_notify READY=1 sent"),
        Err(e) => tracing::warn!(error = %e, "sd_notify to NOTIFY_SOCKET failed"),
    }
}
