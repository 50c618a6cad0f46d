//! `lvrepo key generate`, `lvrepo sign`, `lvrepo policy` (lvrepo_fs::sign).

use std::path::Path;

use anyhow::Result;
use lvrepo_fs::sign;

use crate::cli::{Cli, PolicyCmd};

pub fn generate(cli: &Cli, out: &Path, json: bool) -> Result<()> {
    let public = sign::generate(out)?;
    if json {
        let v = serde_json::json!({ "public_key": public, "secret_file": crate::json::path(out), "public_file": crate::json::path(&sign::public_path(out)) });
        return crate::json::print("key generate", &v);
    }
    if !cli.quiet {
        eprintln!("wrote {} and {}", out.display(), sign::public_path(out).display());
    }
    println!("{public}");
    Ok(())
}

pub fn sign(cli: &Cli, image: &str, key: &Path, json: bool) -> Result<()> {
    let repo = super::open(cli, true)?;
    let rec = super::resolve(&repo, image)?;
    let public = sign::sign(&repo, &rec, key)?;
    if json {
        return crate::json::print("sign", &serde_json::json!({ "image": crate::json::Image::of(&rec), "public_key": public }));
    }
    if !cli.quiet {
        eprintln!("signed {} with key {public}", rec.label());
    }
    Ok(())
}

pub fn policy(cli: &Cli, cmd: &PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::RequireSignature { key } => {
            let repo = super::open(cli, true)?;
            let pol = sign::require_signature(&repo, key)?;
            if !cli.quiet {
                eprintln!("images now need a signature by one of {} keys", pol.require_signature.len());
            }
            Ok(())
        }
        PolicyCmd::Show { json } => {
            let pol = sign::policy(&super::repo_path(cli)?)?;
            if *json {
                return crate::json::print("policy show", &pol);
            }
            for k in &pol.require_signature {
                println!("require-signature {k}");
            }
            Ok(())
        }
    }
}
