//! `lvrepo send IMAGE|GUEST [--since CHECKPOINT|IMAGE] [-o FILE] [--json]`:
//! write a stream (docs/format.md#streams). A registered guest of that name
//! is sent as its checkpoints; otherwise the image.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use lvrepo_fs::guest::{self, GuestHandle};
use lvrepo_fs::stream::{send_guest, send_image, SendReport};
use lvrepo_fs::{Error, ImageRef};

use crate::cli::Cli;
use crate::output::human_bytes;

pub fn run(cli: &Cli, what: &str, since: Option<&str>, out: Option<&Path>, json: bool) -> Result<()> {
    let p = super::repo_path(cli)?;
    let repo = super::open(cli, false)?;
    let write = |sink: &mut (dyn Write + Send)| -> Result<SendReport> {
        match guest::find(&p, what) {
            Ok(_) => {
                let since = since.map(|s| s.parse::<u32>().map_err(|_| crate::Exit(crate::exit::USAGE, format!("--since of a guest is a checkpoint number, not {s:?}")))).transpose()?;
                let g = GuestHandle::open(&p, what, false)?;
                Ok(send_guest(&g, super::shared(&repo), since, sink)?)
            }
            Err(Error::GuestNotFound(_)) => {
                let img = super::resolve(&repo, what)?;
                let base = match since {
                    // A bare number is another version of the same image.
                    Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => Some(super::resolve(&repo, &format!("{}:{s}", img.name))?),
                    Some(s) => Some(repo.resolve(&s.parse::<ImageRef>()?)?),
                    None => None,
                };
                Ok(send_image(&repo, &img, base.as_ref(), sink)?)
            }
            Err(e) => Err(e.into()),
        }
    };
    let r = match out {
        Some(path) => {
            // Written aside and renamed when complete: FILE is never a partial stream.
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".partial");
            let tmp = std::path::PathBuf::from(tmp);
            let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = BufWriter::new(f);
            let r = write(&mut w)?;
            w.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            r
        }
        None => write(&mut BufWriter::new(std::io::stdout()))?,
    };
    if json {
        // The stream owns stdout unless -o is given.
        if let Some(o) = out {
            let v = serde_json::json!({ "refs": r.refs, "base": r.base.map(|b| b.to_string()), "object_count": r.objects, "object_bytes": r.object_bytes, "stream_bytes": r.stream_bytes, "output": crate::json::path(o) });
            return crate::json::print("send", &v);
        }
    }
    if !cli.quiet {
        eprintln!("sent {}: {} objects ({}), stream {}", r.refs.join(", "), r.objects, human_bytes(r.object_bytes), human_bytes(r.stream_bytes));
    }
    Ok(())
}
