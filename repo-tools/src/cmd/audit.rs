//! `lvrepo audit [--since T] [--json]` and `lvrepo audit verify`.

use anyhow::{bail, Result};
use lvrepo_fs::audit;

use crate::cli::Cli;
use crate::output::utc;

/// `audit verify`: check the chain (exit 4 at the first bad entry).
pub fn verify(cli: &Cli, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    super::open(cli, false)?;
    let n = audit::verify(&p)?;
    if json {
        return crate::json::print("audit verify", &serde_json::json!({ "event_count": n }));
    }
    if !cli.quiet {
        eprintln!("audit log: {n} entries, chain intact");
    }
    Ok(())
}

pub fn run(cli: &Cli, since: Option<&str>, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    super::open(cli, false)?;
    let from = match since {
        Some(t) => match parse_time(t, now()) {
            Some(v) => v,
            None => bail!(crate::Exit(crate::exit::USAGE, format!("--since wants seconds since the epoch, YYYY-MM-DD[THH:MM[:SS]] or an age (30m, 12h, 7d), got {t:?}"))),
        },
        None => i64::MIN,
    };
    let entries: Vec<_> = audit::read(&p)?.into_iter().filter(|e| e.time >= from).collect();
    if json {
        let events: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({ "seq": e.seq, "time": crate::json::time(e.time), "uid": e.uid, "user": e.user, "sudo_user": e.sudo_user, "role": e.role, "command": e.command, "target": e.target, "result": e.result, "prev": e.prev, "hash": e.hash }))
            .collect();
        return crate::json::print("audit", &serde_json::json!({ "events": events }));
    }
    for e in entries {
        let user = match &e.sudo_user {
            Some(s) => format!("{} (sudo {s})", e.user),
            None => e.user.clone(),
        };
        println!("{:>6}  {}  {:<16} {:<22} {:<28} {}", e.seq, utc(e.time), user, e.command, e.target, e.result);
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Seconds since the epoch of `t`: an integer, an age (`30m`, `12h`, `7d`,
/// `45s`) before `now`, or a UTC date `YYYY-MM-DD[THH:MM[:SS]]`.
fn parse_time(t: &str, now: i64) -> Option<i64> {
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = t[..t.len() - 1].parse::<i64>() {
            let mult = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return Some(now - n * mult);
        }
    }
    let (date, time) = t.split_once(['T', ' ']).unwrap_or((t, "00:00:00"));
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let h: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss @ ..]) = (d.as_slice(), h.as_slice()) else { return None };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || ss.len() > 1 {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm), as `output::utc` inverts.
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss.first().copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_times() {
        use super::parse_time;
        assert_eq!(parse_time("1700000000", 0), Some(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20", 0), Some(1_700_000_000));
        assert_eq!(parse_time("2023-11-14", 0), Some(1_699_920_000));
        assert_eq!(parse_time("1970-01-01 00:01", 0), Some(60));
        assert_eq!(parse_time("2h", 10_000), Some(2800));
        for bad in ["", "x", "2023-13-01", "2023-11-14T25:00", "h"] {
            assert_eq!(parse_time(bad, 0), None, "{bad:?}");
        }
    }
}
