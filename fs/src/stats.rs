//! Repository statistics: logical vs stored bytes, dedup ratio, and the bytes
//! unique to each image (what deleting it alone would free).

use std::collections::{HashMap, HashSet};

use crate::digest::Digest;
use crate::error::Result;
use crate::repo::Repository;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImageStats {
    pub image: String,
    pub files: u64,
    pub logical_bytes: u64,
    /// Stored (compressed) bytes of objects no other image references.
    pub unique_bytes: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RepoStats {
    /// Sum over images of their file sizes.
    pub logical_bytes: u64,
    /// Bytes the repository occupies on disk (packs and index).
    pub stored_bytes: u64,
    /// Stored payload bytes of indexed objects (compressed).
    pub object_bytes: u64,
    pub objects: u64,
    /// logical_bytes / stored_bytes.
    pub dedup_ratio: f64,
    pub images: Vec<ImageStats>,
}

pub fn stats(repo: &Repository) -> Result<RepoStats> {
    let entries = repo.packs().entries()?;
    let sizes: HashMap<Digest, u64> = entries.iter().map(|(d, e)| (*d, u64::from(e.stored_len))).collect();
    let mut st = RepoStats { objects: entries.len() as u64, object_bytes: sizes.values().sum(), stored_bytes: repo.disk_usage()?, ..Default::default() };
    let images = repo.images()?;
    let mut refs: Vec<HashSet<Digest>> = Vec::with_capacity(images.len());
    let mut count: HashMap<Digest, u32> = HashMap::new();
    for img in &images {
        let mut seen = HashSet::new();
        crate::reach::mark(repo.objects(), &img.root_tree(), &mut seen)?;
        for d in &seen {
            *count.entry(*d).or_default() += 1;
        }
        refs.push(seen);
    }
    for (img, seen) in images.iter().zip(&refs) {
        let unique = seen.iter().filter(|d| count.get(d) == Some(&1)).map(|d| sizes.get(d).copied().unwrap_or(0)).sum();
        st.logical_bytes += img.logical_bytes;
        st.images.push(ImageStats { image: img.label(), files: img.files, logical_bytes: img.logical_bytes, unique_bytes: unique });
    }
    st.dedup_ratio = if st.stored_bytes == 0 { 0.0 } else { st.logical_bytes as f64 / st.stored_bytes as f64 };
    Ok(st)
}
