//! `treaty bench edge-filters`: how much each edge filter saves, and what it costs in
//! fidelity, on the real series in `../shared/data` (NAB, C-MAPSS FD001). Thresholds are
//! in percent of each series' observed span; the error is the largest difference between
//! a sample and what the hub reconstructs from the sent ones.

use crate::datasets::{self, Dataset};
use edge::filter::{Aggregate, FilterSpec, Threshold, evaluate};
use std::fmt::Write as _;
use std::path::PathBuf;

pub struct FilterBench {
    pub data_dir: PathBuf,
}

fn specs(interval_ms: i64) -> Vec<(String, FilterSpec)> {
    let pct = Threshold::PercentOfSpan;
    let window_ms = interval_ms * 10;
    vec![
        (
            "report by exception (any change)".into(),
            FilterSpec::Deadband { threshold: Threshold::Absolute(0.0), heartbeat_ms: None },
        ),
        ("deadband 0.5% of span".into(), FilterSpec::Deadband { threshold: pct(0.5), heartbeat_ms: None }),
        ("deadband 2% of span".into(), FilterSpec::Deadband { threshold: pct(2.0), heartbeat_ms: None }),
        ("deadband 5% of span".into(), FilterSpec::Deadband { threshold: pct(5.0), heartbeat_ms: None }),
        ("swinging door 0.5% of span".into(), FilterSpec::SwingingDoor { threshold: pct(0.5), heartbeat_ms: None }),
        ("swinging door 2% of span".into(), FilterSpec::SwingingDoor { threshold: pct(2.0), heartbeat_ms: None }),
        ("swinging door 5% of span".into(), FilterSpec::SwingingDoor { threshold: pct(5.0), heartbeat_ms: None }),
        (
            format!("window mean, 10 samples ({} s)", window_ms / 1000),
            FilterSpec::Window { window_ms, aggregate: Aggregate::Mean },
        ),
    ]
}

fn median_interval(dataset: &Dataset) -> i64 {
    let mut gaps: Vec<i64> = dataset.series.iter().flat_map(|(_, s)| s.windows(2).map(|w| w[1].ts - w[0].ts)).collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(1000).max(1)
}

pub fn run(bench: &FilterBench) -> anyhow::Result<String> {
    let mut report = String::from(
        "## Edge filters on real series\n\nThresholds in percent of each series' span (max - min); error = largest |sample - reconstruction| (straight lines for the swinging door, step-hold otherwise), as % of span, worst series.\n",
    );
    for dataset in [datasets::nab(&bench.data_dir)?, datasets::cmapss(&bench.data_dir)?] {
        let interval = median_interval(&dataset);
        let _ = write!(
            report,
            "\n### {} — {} series, {} samples, median interval {} s\n\n| filter | sent | reduction | max error (% of span) |\n|---|---|---|---|\n",
            dataset.name,
            dataset.series.len(),
            dataset.samples(),
            interval / 1000
        );
        for (name, spec) in specs(interval) {
            let (mut samples, mut sent, mut worst) = (0usize, 0usize, 0f64);
            for (_, series) in &dataset.series {
                let (min, max) = series
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| (lo.min(s.value), hi.max(s.value)));
                let span = max - min;
                let fidelity = evaluate(&spec, Some(span).filter(|s| *s > 0.0).or(Some(1.0)), series)?;
                samples += fidelity.samples;
                sent += fidelity.sent;
                if span > 0.0 {
                    worst = worst.max(fidelity.max_error / span * 100.0);
                }
            }
            let _ = writeln!(report, "| {name} | {sent} | {:.1}x | {worst:.2}% |", samples as f64 / sent.max(1) as f64);
        }
    }
    Ok(report)
}
