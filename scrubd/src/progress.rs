//! Progress bars for `scrubd check`: one bar of items done out of items
//! planned, with the names of the items running now, drawn on stderr.
//!
//! The command uses it only when stderr is a terminal and `--quiet` was
//! not given, so pipes and log files never see control sequences.

use crate::report::item_name;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scrub::{FindingKind, ItemId, Progress};
use std::sync::Mutex;
use std::time::Duration;

/// How many running item names the bar shows before "and N more".
const SHOWN: usize = 3;

/// An overall progress bar that implements [`scrub::Progress`].
pub struct BarProgress {
    bar: ProgressBar,
    running: Mutex<Vec<ItemId>>,
}

impl BarProgress {
    /// A bar of `total` items drawn on stderr.
    pub fn stderr(total: u64) -> Self {
        Self::with_target(total, ProgressDrawTarget::stderr())
    }

    /// A bar of `total` items drawn on `target` (hidden in tests). With a
    /// total of 0 it is a spinner until [`set_total`](Self::set_total).
    pub fn with_target(total: u64, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let this = Self {
            bar,
            running: Mutex::new(Vec::new()),
        };
        if total == 0 {
            let spinner = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            this.bar.set_style(spinner);
        } else {
            this.set_total(total);
        }
        this.bar.enable_steady_tick(Duration::from_millis(120));
        this
    }

    /// Shows `what` while no item runs (opening the image, which for a
    /// compressed image means decompressing it).
    pub fn status(&self, what: impl Into<String>) {
        self.bar.set_message(what.into());
    }

    /// Sets the number of items planned, once known.
    pub fn set_total(&self, total: u64) {
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} items  {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        self.bar.set_style(style);
        self.bar.set_length(total);
    }

    /// Items finished so far.
    pub fn done(&self) -> u64 {
        self.bar.position()
    }

    /// The message shown now: the running items.
    pub fn message(&self) -> String {
        self.bar.message()
    }

    /// Removes the bar from the terminal (before the report is printed).
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    fn update(&self, running: &[ItemId]) {
        let mut names: Vec<String> = running.iter().take(SHOWN).map(item_name).collect();
        if running.len() > SHOWN {
            names.push(format!("and {} more", running.len() - SHOWN));
        }
        self.bar.set_message(names.join(", "));
    }
}

impl Progress for BarProgress {
    fn begin(&self, item: &ItemId, _total: u64) {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.push(item.clone());
        self.update(&r);
    }

    fn finish(&self, item: &ItemId, _worst: Option<FindingKind>) {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|i| i != item);
        self.bar.inc(1);
        self.update(&r);
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &'static str, g: Option<u64>) -> ItemId {
        ItemId {
            scrubber: s,
            group: g,
        }
    }

    #[test]
    fn counts_items_and_names_the_running_ones() {
        let p = BarProgress::with_target(6, ProgressDrawTarget::hidden());
        p.begin(&id("agf", Some(0)), 0);
        p.begin(&id("agf", Some(1)), 0);
        assert_eq!(p.message(), "agf AG 0, agf AG 1");
        p.finish(&id("agf", Some(0)), None);
        assert_eq!(p.done(), 1);
        assert_eq!(p.message(), "agf AG 1");
        // Absent items finish without beginning.
        p.finish(&id("finobt", Some(0)), None);
        assert_eq!(p.done(), 2);
        for g in 2..6 {
            p.begin(&id("bnobt", Some(g)), 0);
        }
        p.begin(&id("fscounters", None), 0);
        assert_eq!(p.message(), "agf AG 1, bnobt AG 2, bnobt AG 3, and 3 more");
    }
}
