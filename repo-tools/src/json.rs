//! The `--json` documents (schema `lvrepo/1`, docs/json.md; machine-readable
//! in docs/schema/lvrepo-1.json): the shapes every command shares, so the
//! same thing has the same name and type everywhere.
//!
//! Invariants: every document is one object starting with `schema` and
//! `command` ([`print`]); times are RFC 3339 UTC strings with nanoseconds
//! ([`time`]); ids are `b3:` and 64 hex digits; a count is an integer named
//! `*_count`, a byte total an integer named `*_bytes`; an array holds objects
//! ([`Image`], [`Guest`], [`Checkpoint`], ...) or plain names/paths. A new
//! command prints with [`print`] and adds its definition to the schema file
//! (the `json_schema` test fails otherwise).

use std::path::Path;

use lvrepo_fs::backup::BackupEntry;
use lvrepo_fs::backup::CopyStats;
use lvrepo_fs::gc::GcReport;
use lvrepo_fs::guest::{GuestRecord, GuestState};
use lvrepo_fs::ImageRecord;
use serde::Serialize;

/// The schema version every document carries; bumped on any incompatible
/// change (a field renamed, removed or retyped), not on added fields.
pub const SCHEMA: &str = "lvrepo/1";

#[derive(Serialize)]
struct Doc<'a, T: Serialize> {
    schema: &'static str,
    command: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// Print `body` (a struct or `json!` object) as the document of `command`
/// (its path: `guest list`), with the `schema` and `command` fields first.
pub fn print<T: Serialize>(command: &str, body: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&Doc { schema: SCHEMA, command, body })?);
    Ok(())
}

/// The opening of a document whose last field is an array streamed element
/// by element (`ls -R`): `head` holds the other fields (an object).
pub fn open_stream<T: Serialize>(command: &str, head: &T, array: &str) -> serde_json::Result<String> {
    let mut s = serde_json::to_string_pretty(&Doc { schema: SCHEMA, command, body: head })?;
    s.truncate(s.trim_end().trim_end_matches('}').trim_end().len());
    Ok(format!("{s},\n  {}: [", serde_json::to_string(array)?))
}

/// RFC 3339 in UTC with nanoseconds: `2026-12-07T22:55:01.123456789Z`.
pub fn time_ns(sec: i64, nsec: u32) -> String {
    let (y, m, d, hh, mm, ss) = crate::output::civil(sec);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{nsec:09}Z")
}

/// [`time_ns`] of a time kept in whole seconds.
pub fn time(sec: i64) -> String {
    time_ns(sec, 0)
}

/// A path as a string (file names need not be UTF-8: lossy).
pub fn path(p: &Path) -> String {
    p.display().to_string()
}

/// An image version. A reference (a guest's image, a rebase's target) has
/// `name`, `version` and `label` only; the rest comes from its record.
#[derive(Serialize, Clone, Debug)]
pub struct Image {
    pub name: String,
    pub version: u32,
    /// `NAME:VERSION`, as commands take it.
    pub label: String,
    #[serde(flatten)]
    pub record: Option<ImageDetail>,
}

#[derive(Serialize, Clone, Debug)]
pub struct ImageDetail {
    pub id: String,
    pub created: String,
    pub message: String,
    pub parent: Option<String>,
    pub entry_count: u64,
    pub logical_bytes: u64,
    pub volume: bool,
}

impl Image {
    pub fn of(r: &ImageRecord) -> Image {
        let record = ImageDetail {
            id: r.root.0.to_string(),
            created: time(r.created),
            message: r.message.clone(),
            parent: r.parent.clone(),
            entry_count: r.files,
            logical_bytes: r.logical_bytes,
            volume: r.volume,
        };
        Image { name: r.name.clone(), version: r.version, label: r.label(), record: Some(record) }
    }

    /// A reference by label (`NAME:VERSION`); a label without a version
    /// (never written by lvrepo) is version 0.
    pub fn label(label: &str) -> Image {
        let (name, version) = match label.rsplit_once(':') {
            Some((n, v)) if v.parse::<u32>().is_ok() => (n, v.parse().unwrap_or(0)),
            _ => (label, 0),
        };
        Image { name: name.to_string(), version, label: label.to_string(), record: None }
    }
}

/// A guest checkpoint: its number, its root tree's id, when it was taken.
/// `entry_count` and `logical_bytes` (its tree's totals) where a command
/// reads the tree (`log`).
#[derive(Serialize, Clone, Debug)]
pub struct Checkpoint {
    pub number: u32,
    pub id: String,
    pub created: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_bytes: Option<u64>,
}

impl Checkpoint {
    pub fn of(c: &lvrepo_fs::guest::Checkpoint) -> Checkpoint {
        Checkpoint { number: c.version, id: c.root.0.to_string(), created: time(c.created), message: c.message.clone(), entry_count: None, logical_bytes: None }
    }

    pub fn of_backup(b: &BackupEntry) -> Checkpoint {
        Checkpoint { number: b.checkpoint, id: b.root.0.to_string(), created: time(b.created), message: b.message.clone(), entry_count: None, logical_bytes: None }
    }

    /// With its tree's totals: (entries, logical bytes).
    pub fn with_totals(self, (entries, bytes): (u64, u64)) -> Checkpoint {
        Checkpoint { entry_count: Some(entries), logical_bytes: Some(bytes), ..self }
    }
}

/// A guest. A reference has `name` only; the other fields are there when
/// the command read them (the registry, STATE, its socket).
#[derive(Serialize, Clone, Debug, Default)]
pub struct Guest {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<bool>,
    /// The root tree its current overlay generation sits on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_bytes: Option<u64>,
    /// In a group: whether the member is a registered guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<bool>,
    /// The uid that owns it (roles: a user acts on the guests they own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

impl Guest {
    pub fn named(name: &str) -> Guest {
        Guest { name: name.to_string(), ..Default::default() }
    }

    pub fn of(r: &GuestRecord) -> Guest {
        Guest { name: r.name.clone(), image: Some(Image::label(&r.image)), dir: Some(path(&r.dir)), created: Some(time(r.created)), volume: Some(r.volume), owner: r.owner, ..Default::default() }
    }

    pub fn with_state(mut self, s: &GuestState) -> Guest {
        (self.base, self.generation) = (Some(s.base.to_string()), Some(s.generation));
        self
    }
}

/// A channel (`web:stable`): the version it names, since when, and where
/// it pointed before (oldest first).
pub fn channel(c: &lvrepo_fs::repo::channels::Channel) -> serde_json::Value {
    let history: Vec<_> = c.history.iter().map(|(v, t)| serde_json::json!({ "version": v, "time": time(*t) })).collect();
    serde_json::json!({ "name": c.name, "channel": c.channel, "label": format!("{}:{}", c.name, c.channel), "version": c.version, "time": time(c.time), "history": history })
}

/// What a copy between stores moved (backup, restore, harvest).
#[derive(Serialize, Clone, Debug)]
pub struct Copied {
    pub object_count: u64,
    /// Uncompressed, and as stored (compressed).
    pub object_bytes: u64,
    pub stored_bytes: u64,
    /// Objects the destination already held.
    pub skipped_count: u64,
}

impl From<CopyStats> for Copied {
    fn from(c: CopyStats) -> Copied {
        Copied { object_count: c.objects, object_bytes: c.bytes, stored_bytes: c.stored_bytes, skipped_count: c.skipped }
    }
}

/// A gc run on a remote repository (`gc` on s3:// or file://): two-phase,
/// so packs are marked by one run and swept by a later one after the grace.
#[derive(Serialize, Clone, Debug)]
pub struct RemoteGc {
    pub dry_run: bool,
    /// Packs in the store, and how many some image, guest or backup uses.
    pub pack_count: u64,
    pub live_pack_count: u64,
    /// Packs this run marked unreachable, and packs it deleted (marked by
    /// an earlier run at least the grace ago and still unreachable).
    pub marked_packs: Vec<String>,
    pub swept_packs: Vec<String>,
    /// Hosts' leases (docs/remote.md), and the images they keep.
    pub lease_count: u64,
    pub leased_image_count: u64,
}

impl RemoteGc {
    pub fn new(r: &lvrepo_fs::remote::gc::RemoteGcReport, dry_run: bool) -> RemoteGc {
        RemoteGc { dry_run, pack_count: r.packs as u64, live_pack_count: r.live as u64, marked_packs: r.marked.clone(), swept_packs: r.swept.clone(), lease_count: r.leases as u64, leased_image_count: r.leased_images as u64 }
    }
}

/// A gc run (`gc`, and `forget`'s).
#[derive(Serialize, Clone, Debug)]
pub struct Gc {
    pub dry_run: bool,
    pub live_object_count: u64,
    pub removed_object_count: u64,
    pub removed_bytes: u64,
    pub rewritten_pack_count: u64,
    pub deleted_pack_count: u64,
    /// Unreferenced packs kept because readers had the repository open.
    pub deferred_pack_count: u64,
    /// The repository's size on disk before and after (an estimate after
    /// a dry run).
    pub before_bytes: u64,
    pub after_bytes: u64,
}

impl From<&GcReport> for Gc {
    fn from(r: &GcReport) -> Gc {
        Gc {
            dry_run: r.dry_run,
            live_object_count: r.live_objects,
            removed_object_count: r.removed_objects,
            removed_bytes: r.removed_bytes,
            rewritten_pack_count: r.packs_rewritten,
            deleted_pack_count: r.packs_deleted,
            deferred_pack_count: r.packs_deferred,
            before_bytes: r.bytes_before,
            after_bytes: r.bytes_after,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_with_nanoseconds() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(super::time_ns(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(super::time_ns(-1, 5), "1969-12-31T23:59:59.000000005Z");
    }

    #[test]
    fn image_labels() {
        let i = super::Image::label("web:3");
        assert_eq!((i.name.as_str(), i.version, i.label.as_str()), ("web", 3, "web:3"));
    }

    /// Every command with `--json` has its document defined in the schema
    /// file (the integration test `json_schema` validates real output).
    #[test]
    fn every_json_command_is_in_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(include_str!("../../docs/schema/lvrepo-1.json")).unwrap();
        let mut missing = Vec::new();
        let mut stack = vec![(String::new(), crate::cli::command())];
        while let Some((path, c)) = stack.pop() {
            if c.get_arguments().any(|a| a.get_id() == "json") && schema["$defs"].get(format!("command:{}", path.replace(' ', "-"))).is_none() {
                missing.push(path.clone());
            }
            for s in c.get_subcommands() {
                stack.push((format!("{path} {}", s.get_name()).trim().to_string(), s.clone()));
            }
        }
        assert!(missing.is_empty(), "commands with --json missing from docs/schema/lvrepo-1.json: {missing:?}");
    }

    #[test]
    fn documents_start_with_schema_and_command() {
        let s = super::open_stream("ls", &serde_json::json!({ "image": 1 }), "entries").unwrap();
        assert_eq!(s, "{\n  \"schema\": \"lvrepo/1\",\n  \"command\": \"ls\",\n  \"image\": 1,\n  \"entries\": [");
    }
}
