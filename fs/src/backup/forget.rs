//! `forget`: retention of a guest's backed-up checkpoints.
//!
//! The rules are the usual ones (restic's): `last` keeps the newest N;
//! `hourly`/`daily`/`weekly`/`monthly` keep, for each of the newest N
//! periods (UTC; weeks start on Monday) that hold a checkpoint, the newest
//! checkpoint in it. A checkpoint any rule keeps is kept. The dropped refs
//! are deleted in one synced batch; gc then reclaims what only they used.

use std::collections::HashSet;

use rocksdb::{WriteBatch, WriteOptions};

use super::checkpoints;
use crate::error::{Error, Result};
use crate::repo::{ImageRecord, Repository, CF_REFS};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl KeepPolicy {
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ForgetReport {
    pub guest: String,
    pub kept: Vec<u32>,
    pub forgotten: Vec<u32>,
    pub dry_run: bool,
}

/// Days since 1970-01-01 → (year, month) (proleptic Gregorian; Hinnant's
/// civil-from-days).
fn year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// A period of a checkpoint's creation time (Unix seconds): hour, day, ...
type Bucket = fn(i64) -> i64;

/// Which checkpoint numbers `policy` keeps of `cps`.
pub fn plan(cps: &[ImageRecord], policy: &KeepPolicy) -> HashSet<u32> {
    let mut newest_first: Vec<&ImageRecord> = cps.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse((c.created, c.version)));
    let mut keep: HashSet<u32> = newest_first.iter().take(policy.last as usize).map(|c| c.version).collect();
    let rules: [(u32, Bucket); 4] = [
        (policy.hourly, |t| t.div_euclid(3600)),
        (policy.daily, |t| t.div_euclid(86_400)),
        // 1970-01-01 was a Thursday: shift so weeks start on Monday.
        (policy.weekly, |t| (t.div_euclid(86_400) + 3).div_euclid(7)),
        (policy.monthly, |t| {
            let (y, m) = year_month(t.div_euclid(86_400));
            y * 12 + i64::from(m)
        }),
    ];
    for (n, bucket) in rules {
        let mut seen: HashSet<i64> = HashSet::new();
        for c in &newest_first {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket(c.created)) {
                keep.insert(c.version);
            }
        }
    }
    keep
}

/// Apply `policy` to guest `guest`'s backups at `target` (unless `dry_run`).
pub fn forget(target: &Repository, guest: &str, policy: &KeepPolicy, dry_run: bool) -> Result<ForgetReport> {
    let cps = checkpoints(target, guest)?;
    if cps.is_empty() {
        return Err(Error::GuestNotFound(format!("{guest} (no backup of it in {})", target.path().display())));
    }
    let keep = plan(&cps, policy);
    let (kept, gone): (Vec<&ImageRecord>, Vec<&ImageRecord>) = cps.iter().partition(|c| keep.contains(&c.version));
    let report = ForgetReport { guest: guest.to_string(), kept: kept.iter().map(|c| c.version).collect(), forgotten: gone.iter().map(|c| c.version).collect(), dry_run };
    if dry_run || gone.is_empty() {
        return Ok(report);
    }
    target.writable()?;
    target.refuse_if_append_only()?;
    if let Some(r) = target.remote() {
        for c in &gone {
            crate::remote::publish::delete_ref(r, c)?;
        }
    }
    let mut b = WriteBatch::default();
    for c in &gone {
        b.delete_cf(target.cf(CF_REFS)?, crate::repo::refs::key(&c.name, c.version));
    }
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    target.db().write_opt(b, &wo)?;
    tracing::info!(guest, forgotten = ?report.forgotten, "forgot backed-up checkpoints");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{ImageId, TreeId};

    fn cp(version: u32, created: i64) -> ImageRecord {
        ImageRecord { name: "backup/g".into(), version, root: ImageId(TreeId::of(&version.to_le_bytes())), parent: None, created, message: String::new(), files: 0, logical_bytes: 0, volume: false }
    }

    fn kept(cps: &[ImageRecord], p: KeepPolicy) -> Vec<u32> {
        let mut v: Vec<u32> = plan(cps, &p).into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn calendar() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(31), (1970, 2));
        assert_eq!(year_month(19_723), (2024, 1)); // 2024-01-01
        assert_eq!(year_month(19_782), (2024, 2)); // 2024-02-29
        assert_eq!(year_month(19_783), (2024, 3));
    }

    #[test]
    fn rules_keep_the_newest_of_each_period_and_union() {
        let h = 3600;
        let d = 86_400;
        // 2024-01-01 00:00 UTC is a Monday.
        let t0 = 19_723 * d;
        // Two per hour for three hours, then one a day later, a week later, a month later.
        let cps = vec![cp(1, t0), cp(2, t0 + 60), cp(3, t0 + h), cp(4, t0 + h + 60), cp(5, t0 + 2 * h), cp(6, t0 + 2 * h + 60), cp(7, t0 + d), cp(8, t0 + 7 * d), cp(9, t0 + 31 * d)];
        assert_eq!(kept(&cps, KeepPolicy { last: 2, ..Default::default() }), vec![8, 9]);
        // The newest 3 hours holding checkpoints: 9's, 8's, 7's.
        assert_eq!(kept(&cps, KeepPolicy { hourly: 3, ..Default::default() }), vec![7, 8, 9]);
        assert_eq!(kept(&cps, KeepPolicy { hourly: 6, ..Default::default() }), vec![2, 4, 6, 7, 8, 9]);
        assert_eq!(kept(&cps, KeepPolicy { daily: 3, ..Default::default() }), vec![7, 8, 9]);
        assert_eq!(kept(&cps, KeepPolicy { daily: 4, ..Default::default() }), vec![6, 7, 8, 9]);
        // Weeks: 9 (Feb 1), 8 (Jan 8), 7 and 1..6 (week of Jan 1: newest is 7).
        assert_eq!(kept(&cps, KeepPolicy { weekly: 5, ..Default::default() }), vec![7, 8, 9]);
        assert_eq!(kept(&cps, KeepPolicy { monthly: 2, ..Default::default() }), vec![8, 9]);
        assert_eq!(kept(&cps, KeepPolicy { last: 1, monthly: 2, daily: 4, ..Default::default() }), vec![6, 7, 8, 9]);
        assert!(kept(&cps, KeepPolicy::default()).is_empty());
    }
}
