//! Remote repository URLs and their configuration.
//!
//! - `s3://BUCKET[/PREFIX]`: S3 or an S3-compatible server, configured by the
//!   standard variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`);
//! - `file:///ABS/DIR[/...]`: a directory through object_store's local
//!   filesystem store (the same code path, no server).
//!
//! Retries: `LVREPO_REMOTE_RETRIES` (default 4) with exponential backoff,
//! bounded by `LVREPO_REMOTE_TIMEOUT_SECS` (default 30) per request.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore as Bucket;

use crate::error::{Error, Result};

/// Where default cache directories live (`<this>/<bucket>[_<prefix>]`).
pub const DEFAULT_CACHE_ROOT: &str = "/var/cache/lvrepo";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    S3 { bucket: String, prefix: String },
    File { dir: PathBuf },
}

/// Whether a repository argument names a remote repository.
pub fn is_remote(arg: &OsStr) -> bool {
    let b = arg.as_encoded_bytes();
    b.starts_with(b"s3://") || b.starts_with(b"file://")
}

impl FromStr for RemoteUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &'static str| Error::BadRemoteUrl { url: s.to_string(), why };
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let ok = !bucket.is_empty() && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b));
            if !ok {
                return Err(bad("a bucket name is lower-case letters, digits, '.', '-' and '_'"));
            }
            let prefix = prefix.trim_matches('/').to_string();
            if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return Err(bad("the prefix may not hold '.', '..' or empty parts"));
            }
            return Ok(RemoteUrl::S3 { bucket: bucket.to_string(), prefix });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad("a file URL names an absolute directory: file:///DIR"));
            }
            return Ok(RemoteUrl::File { dir: PathBuf::from(rest.trim_end_matches('/')) });
        }
        Err(bad("a remote repository is s3://BUCKET[/PREFIX] or file:///DIR"))
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RemoteUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RemoteUrl::File { dir } => write!(f, "file://{}", dir.display()),
        }
    }
}

impl RemoteUrl {
    /// The key prefix inside the store.
    pub fn prefix(&self) -> &str {
        match self {
            RemoteUrl::S3 { prefix, .. } => prefix,
            RemoteUrl::File { .. } => "",
        }
    }

    /// The default cache directory: `/var/cache/lvrepo/<bucket>[_<prefix
    /// with / as _>]` (a file URL: its directory with / as _).
    pub fn default_cache(&self) -> PathBuf {
        let name = match self {
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => bucket.clone(),
            RemoteUrl::S3 { bucket, prefix } => format!("{bucket}_{}", prefix.replace('/', "_")),
            RemoteUrl::File { dir } => format!("file{}", dir.display().to_string().replace('/', "_")),
        };
        PathBuf::from(DEFAULT_CACHE_ROOT).join(name)
    }

    /// Make room for a new repository: a file URL's directory is created
    /// (a bucket must exist already, as a prefix need not).
    pub fn create_room(&self) -> Result<()> {
        if let RemoteUrl::File { dir } = self {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        Ok(())
    }

    /// The object store this URL names, configured from the environment.
    pub fn store(&self) -> Result<Arc<dyn Bucket>> {
        match self {
            RemoteUrl::S3 { bucket, .. } => {
                let env_num = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
                let retry = object_store::RetryConfig {
                    backoff: object_store::BackoffConfig::default(),
                    max_retries: env_num("LVREPO_REMOTE_RETRIES", 4) as usize,
                    retry_timeout: Duration::from_secs(env_num("LVREPO_REMOTE_TIMEOUT_SECS", 30)),
                };
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| Error::Remote { op: "configuring", object: self.to_string(), source: Box::new(e) })?;
                Ok(Arc::new(s3))
            }
            RemoteUrl::File { dir } => {
                if !dir.is_dir() {
                    return Err(Error::NotARepository(self.to_string().into()));
                }
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| Error::Remote { op: "opening", object: self.to_string(), source: Box::new(e) })?;
                Ok(Arc::new(fs))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_names_caches() {
        let u: RemoteUrl = "s3://golden/site/a".parse().unwrap();
        assert_eq!(u, RemoteUrl::S3 { bucket: "golden".into(), prefix: "site/a".into() });
        assert_eq!(u.default_cache(), PathBuf::from("/var/cache/lvrepo/golden_site_a"));
        assert_eq!("s3://golden".parse::<RemoteUrl>().unwrap().default_cache(), PathBuf::from("/var/cache/lvrepo/golden"));
        assert_eq!("s3://golden/".parse::<RemoteUrl>().unwrap().to_string(), "s3://golden");
        assert_eq!("file:///srv/b".parse::<RemoteUrl>().unwrap(), RemoteUrl::File { dir: "/srv/b".into() });
        for bad in ["s3://", "s3://Up", "s3://b/../x", "file://rel", "http://x"] {
            assert!(bad.parse::<RemoteUrl>().is_err(), "{bad}");
        }
    }
}
