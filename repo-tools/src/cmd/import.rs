//! `lvrepo import SRC --image NAME[:VERSION] [--volume]`: a directory, a tar
//! file, or a tar stream on stdin; with `--volume` a disk (raw file, block
//! device, `-`, or qcow2/vmdk through `qemu-img convert`). `--exclude` and
//! `--one-file-system` leave parts of a tree out.

use std::path::Path;

use anyhow::{bail, Context, Result};
use lvrepo_fs::import::{import_dir_filtered, import_tar_filtered, ImportFilter, Pattern};
use lvrepo_fs::{ImageRef, ImportTarget};

use crate::cli::Cli;
use crate::json::{self, Image};
use crate::output::human_bytes;
use crate::progress::Bar;

/// The filter of `--exclude` and `--one-file-system` (a bad pattern: exit 2).
pub fn filter(exclude: &[std::ffi::OsString], one_file_system: bool) -> Result<ImportFilter> {
    let exclude = exclude.iter().map(|p| Pattern::new(p.as_encoded_bytes())).collect::<lvrepo_fs::Result<Vec<_>>>()?;
    Ok(ImportFilter { exclude, one_file_system })
}

#[allow(clippy::too_many_arguments)]
pub fn run(cli: &Cli, source: &Path, image: &str, message: &str, parent: Option<&str>, volume: bool, filter: &ImportFilter, json: bool) -> Result<()> {
    let image: ImageRef = image.parse()?;
    if let Some(p) = parent {
        p.parse::<ImageRef>()?;
    }
    let repo = super::open(cli, true)?;
    let target = ImportTarget { image, message: message.to_string(), parent: parent.map(str::to_string) };
    let bar = Bar::bytes(cli.quiet, "importing");
    if volume && !filter.is_empty() {
        bail!(crate::Exit(crate::exit::USAGE, "--exclude and --one-file-system apply to trees, not to --volume".into()));
    }
    if filter.one_file_system && !source.is_dir() {
        bail!(crate::Exit(crate::exit::USAGE, "--one-file-system applies to a directory source".into()));
    }
    let import_tar = |r: Box<dyn std::io::Read + '_>| import_tar_filtered(&repo, r, &target, filter, &bar);
    let (rec, stats) = if volume {
        super::volume::import(&repo, source, &target, &bar).with_context(|| format!("importing {}", source.display()))?
    } else if source == Path::new("-") {
        import_tar(Box::new(std::io::stdin().lock())).with_context(|| format!("importing {}", source.display()))?
    } else if source.is_dir() {
        import_dir_filtered(&repo, source, &target, filter, &bar).with_context(|| format!("importing {}", source.display()))?
    } else {
        let f = std::fs::File::open(source).with_context(|| format!("opening {}", source.display()))?;
        lvrepo_fs::Progress::set_total(&bar, f.metadata().map(|m| m.len()).unwrap_or(0));
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let magic = std::io::BufRead::fill_buf(&mut r).map(|b| b.get(..4).map(<[u8]>::to_vec).unwrap_or_default()).unwrap_or_default();
        if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            // A zstd-compressed tar (as `export IMAGE OUT.tar.zst` writes).
            import_tar(Box::new(zstd::Decoder::with_buffer(r)?))
        } else if magic.starts_with(&[0x1f, 0x8b]) || magic.starts_with(b"BZh") || magic.starts_with(&[0xfd, b'7', b'z', b'X']) {
            bail!(crate::Exit(crate::exit::USAGE, format!("{} is compressed: decompress it into `lvrepo import - ...` (e.g. zcat FILE | lvrepo import - --image NAME)", source.display())));
        } else {
            import_tar(Box::new(r))
        }
        .with_context(|| format!("importing {}", source.display()))?
    };
    bar.finish();
    if json {
        json::print("import", &serde_json::json!({ "image": Image::of(&rec), "new_bytes": stats.new_bytes }))?;
    } else if !cli.quiet {
        println!(
            "{} {} entries, {} logical, {} new chunk data, root {}",
            rec.label(),
            stats.entries,
            human_bytes(stats.logical_bytes),
            human_bytes(stats.new_bytes),
            rec.root.0
        );
    }
    Ok(())
}
