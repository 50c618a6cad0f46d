//! `lvrepo group create|add|rm|list|show`, and the group forms of
//! `checkpoint --group` and `rollback --group` (each member in turn, each
//! reported; the exit code is the first failure's). `rebase --group` is in
//! `rebase.rs` (planned whole first).

use anyhow::Result;
use lvrepo_fs::guest;
use serde_json::json;

use crate::cli::{Cli, GroupCmd};
use crate::json::{self, Checkpoint, Guest, Image};

pub fn run(cli: &Cli, cmd: &GroupCmd) -> Result<()> {
    let p = super::repo_path(cli)?;
    match cmd {
        GroupCmd::Create { name, guests } => {
            guest::create_group(&p, name, guests)?;
        }
        GroupCmd::Add { name, guests } => {
            guest::add_members(&p, name, guests)?;
        }
        GroupCmd::Rm { name, guests } => {
            guest::remove_members(&p, name, guests)?;
        }
        GroupCmd::List { json } => {
            let all = guest::groups(&p)?;
            if *json {
                let v: Vec<_> = all.iter().map(|g| json!({ "name": g.name, "created": json::time(g.created), "members": g.members.iter().map(|m| Guest::named(m)).collect::<Vec<_>>() })).collect();
                return json::print("group list", &json!({ "groups": v }));
            }
            for g in all {
                println!("{:<24} {}", g.name, g.members.join(" "));
            }
        }
        GroupCmd::Show { name, json } => {
            let g = guest::find_group(&p, name)?;
            let rows: Vec<_> = g.members.iter().map(|m| (m, guest::find(&p, m).ok())).collect();
            if *json {
                let v: Vec<_> = rows.iter().map(|(m, r)| Guest { image: r.as_ref().map(|r| Image::label(&r.image)), registered: Some(r.is_some()), ..Guest::named(m) }).collect();
                return json::print("group show", &json!({ "group": { "name": g.name, "created": json::time(g.created), "members": v } }));
            }
            for (m, r) in rows {
                println!("{:<24} {}", m, r.map_or_else(|| "(not registered)".to_string(), |r| r.image));
            }
        }
    }
    Ok(())
}

/// Run `f` on every member of group `name`; a failure is reported and the
/// others still run; the exit is the first failure's. With `json`, the
/// document of `command` lists each member's result (`f`'s object's fields,
/// or its error and exit code), failures included.
fn each(cli: &Cli, name: &str, what: &str, command: Option<&str>, mut f: impl FnMut(&str) -> Result<serde_json::Value>) -> Result<()> {
    let p = super::repo_path(cli)?;
    let members = guest::find_group(&p, name)?.members;
    let mut out = Vec::new();
    let mut first: Option<(u8, String)> = None;
    for m in &members {
        match f(m) {
            Ok(mut v) => {
                v["guest"] = json!(Guest::named(m));
                v["ok"] = json!(true);
                out.push(v);
            }
            Err(e) => {
                let code = crate::exit_code(&e);
                eprintln!("lvrepo: {what} of guest {m}: {e:#}");
                out.push(json!({ "guest": Guest::named(m), "ok": false, "error": format!("{e:#}"), "exit": code }));
                first.get_or_insert((code, m.clone()));
            }
        }
    }
    if let Some(c) = command {
        json::print(c, &json!({ "group": { "name": name }, "results": out }))?;
    }
    match first {
        Some((code, m)) => {
            let failed = out.iter().filter(|v| v["ok"] == false).count();
            Err(crate::Exit(code, format!("{what} of group {name}: {failed} of {} guests failed, first {m}", members.len())).into())
        }
        None => Ok(()),
    }
}

pub fn checkpoint(cli: &Cli, name: &str, message: &str, json: bool) -> Result<()> {
    each(cli, name, "checkpoint", json.then_some("checkpoint"), |m| {
        let cp = super::checkpoint::take(cli, m, message)?;
        if !json {
            println!("checkpoint {} of {m}: {}", cp.version, cp.root.0);
        }
        Ok(json!({ "checkpoint": Checkpoint::of(&cp) }))
    })
}

pub fn rollback(cli: &Cli, name: &str, checkpoint: &str, disconnect: bool, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    each(cli, name, "rollback", json.then_some("rollback"), |m| {
        super::rollback::run(cli, m, Some(checkpoint), disconnect, false)?;
        let cp = lvrepo_fs::guest::GuestHandle::open(&p, m, false)?.checkpoint(checkpoint)?;
        Ok(json!({ "checkpoint": Checkpoint::of(&cp) }))
    })
}
