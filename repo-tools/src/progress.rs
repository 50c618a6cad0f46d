//! Progress bars for long work, drawn on stderr only when it is a terminal and
//! --quiet is off.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar(ProgressBar);

impl Bar {
    pub fn bytes(quiet: bool, what: &str) -> Self {
        let pb = ProgressBar::with_draw_target(Some(0), if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        pb.set_style(
            ProgressStyle::with_template("{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        Bar(pb)
    }
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl lvrepo_fs::Progress for Bar {
    fn set_total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn note(&self, what: &str) {
        self.0.set_message(what.to_string());
    }
}
