//! Turning a suite run into what people read: medians with min–max, ratios taken within the same
//! run, the goals with measured values, a markdown table, SVG plots (plotters), the JSON file,
//! and `bench/RESULTS.md`. Also reads wrk's text output.
//!
//! Invariants:
//! - Every figure shown is a median over the run's repeats, with its min–max beside it; a figure
//!   whose spread exceeds [`NOISY_SPREAD`] of its median is marked noisy.
//! - Ratios compare medians of the same suite run only, never figures from different runs.
//! - A goal is "met" only when both of its figures were measured; missing data reads "not
//!   measured", never "met".
//!
//! This module holds the spread of repeated figures, number formatting and the files written;
//! reading the clients' output, the case summaries, the goals, the markdown and the plots each
//! have a module of their own.

mod goals;
mod markdown;
mod parse;
mod summary;
mod svg;
#[cfg(test)]
mod tests;
mod tls;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::results::SuiteResults;

pub use self::parse::{parse_ab, parse_wrk};
use self::{
    markdown::markdown,
    svg::{plot_cdf, plot_rps},
};

/// Spread (max − min) above this share of the median marks a figure as noisy.
pub const NOISY_SPREAD: f64 = 0.10;

/// Median and range of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }

    pub fn noisy(&self) -> bool {
        self.median > 0.0 && (self.max - self.min) / self.median > NOISY_SPREAD
    }
}

fn thousands(value: f64) -> String {
    let whole = value.round() as i64;
    let digits = whole.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn micros(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `<stem>.json`, `<stem>.md`, `<stem>-rps.svg` and `<stem>-latency-cdf.svg`.
pub fn write_all(results: &SuiteResults, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let json = PathBuf::from(format!("{}.json", stem.display()));
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let mut written = vec![json];
    written.extend(write_views(results, stem)?);
    Ok(written)
}

/// Writes `<stem>.md`, `<stem>-rps.svg` and `<stem>-latency-cdf.svg` from `results`.
pub fn write_views(results: &SuiteResults, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let with_suffix = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
    let rps = with_suffix("-rps.svg");
    plot_rps(results, &rps).context("plotting requests/s")?;
    let cdf = with_suffix("-latency-cdf.svg");
    let have_cdf = plot_cdf(results, &cdf).context("plotting the latency CDF")?;
    let md = with_suffix(".md");
    std::fs::write(&md, markdown(results, Some((&file_name(&rps), &file_name(&cdf)))))?;
    let mut written = vec![md, rps];
    if have_cdf {
        written.push(cdf);
    }
    Ok(written)
}

/// The heading of the part of `RESULTS.md` that people write (the reading of the figures and
/// profiles); everything from it on survives when the suite rewrites the file.
pub const NOTES_HEADING: &str = "## Notes (written by people; kept when the suite rewrites this file)";

/// Keeps the notes of an existing `RESULTS.md` behind freshly generated tables.
fn with_kept_notes(generated: String, existing: Option<&str>) -> String {
    match existing.and_then(|old| old.find(NOTES_HEADING).map(|at| &old[at..])) {
        Some(notes) => format!("{generated}\n{notes}"),
        None => generated,
    }
}

/// Writes `bench/RESULTS.md`: the latest table, with plots linked from `results/`, followed by
/// the notes already in the file.
pub fn write_results_md(results: &SuiteResults, stem: &Path, path: &Path) -> anyhow::Result<()> {
    let relative = |suffix: &str| format!("results/{}{suffix}", file_name(stem));
    let mut text = markdown(
        results,
        Some((&relative("-rps.svg"), &relative("-latency-cdf.svg"))),
    );
    let _ = writeln!(
        text,
        "\nFull data: [`{}`]({}). Regenerate with `scripts/bench.sh` (quick, about 2 minutes) or `scripts/bench.sh --full`.",
        relative(".json"),
        relative(".json")
    );
    let existing = std::fs::read_to_string(path).ok();
    let text = with_kept_notes(text, existing.as_deref());
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
