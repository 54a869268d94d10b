//! The data every system ingests: a synthetic fleet of sensor-quantised 1 Hz series, the
//! 21 C-MAPSS FD001 sensors of 100 engines, and the NAB series — all from real files in
//! `../shared/data` except the fleet, which is generated deterministically.

use anyhow::{Context, bail};
use model::sample::{Sample, SeriesKey};
use std::path::Path;

/// A named set of series.
pub struct Dataset {
    pub name: String,
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
}

impl Dataset {
    pub fn samples(&self) -> usize {
        self.series.iter().map(|(_, s)| s.len()).sum()
    }
}

/// Signals per benchmark asset; series are `bench/site/line/a<n>` + `s<k>`.
pub const SIGNALS_PER_ASSET: usize = 24;

pub fn asset_path(n: usize) -> String {
    format!("bench/site/line/a{n:05}")
}

pub fn signal_name(k: usize) -> String {
    format!("s{k:02}")
}

/// `series` series at 1 Hz for `seconds`, starting 2026-01-01. Values behave like real
/// sensors: a slow process swing, a random walk and measurement noise, quantised to the
/// sensor's resolution (0.01 to 1 unit depending on the series).
pub fn fleet(series: usize, seconds: i64) -> Dataset {
    let start = 1_767_225_600_000_i64;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let resolutions = [0.01, 0.1, 0.5, 1.0];
    let mut out = Vec::with_capacity(series);
    for i in 0..series {
        let key = SeriesKey::new(asset_path(i / 20), signal_name(i % 20));
        let resolution = resolutions[i % resolutions.len()];
        let level = 20.0 + 80.0 * next();
        let swing = level * 0.05;
        let period = 600.0 + 3000.0 * next();
        let mut walk = 0.0;
        let samples = (0..seconds)
            .map(|t| {
                walk += (next() - 0.5) * resolution;
                let noise = (next() - 0.5) * resolution * 2.0;
                let raw = level + swing * (t as f64 * std::f64::consts::TAU / period).sin() + walk + noise;
                Sample::good(start + t * 1000, (raw / resolution).round() * resolution)
            })
            .collect();
        out.push((key, samples));
    }
    Dataset { name: format!("synthetic fleet ({series} series x {seconds} s at 1 Hz)"), series: out }
}

/// C-MAPSS FD001 training set: the 21 sensors of each of the 100 engines, one sample per
/// cycle (a cycle is a flight; timestamped one second apart).
pub fn cmapss(data: &Path) -> anyhow::Result<Dataset> {
    let path = data.join("cmapss/train_FD001.txt");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (is ../shared beside the checkout?)", path.display()))?;
    let start = 1_767_225_600_000_i64;
    let mut by_series: std::collections::BTreeMap<(usize, usize), Vec<Sample>> = Default::default();
    for (line_no, line) in text.lines().enumerate() {
        let fields: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}:{}", path.display(), line_no + 1))?;
        if fields.len() != 26 {
            bail!("{}:{}: expected 26 columns, found {}", path.display(), line_no + 1, fields.len());
        }
        let (unit, cycle) = (fields[0] as usize, fields[1] as i64);
        for sensor in 0..21 {
            by_series.entry((unit, sensor)).or_default().push(Sample::good(start + cycle * 1000, fields[5 + sensor]));
        }
    }
    let series = by_series
        .into_iter()
        .map(|((unit, sensor), samples)| (SeriesKey::new(asset_path(unit), signal_name(sensor)), samples))
        .collect();
    Ok(Dataset { name: "C-MAPSS FD001 (100 engines x 21 sensors)".into(), series })
}

/// The NAB files present in `../shared/data/nab` (each file one series), timestamps read as UTC.
pub fn nab(data: &Path) -> anyhow::Result<Dataset> {
    let mut files = Vec::new();
    for folder in ["realKnownCause", "realAWSCloudwatch"] {
        let dir = data.join("nab").join(folder);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "csv") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut series = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path)?;
        let mut samples = Vec::new();
        for line in text.lines().skip(1) {
            let Some((ts, value)) = line.split_once(',') else { continue };
            let (Some(ts), Ok(value)) = (parse_naive_utc(ts), value.trim().parse::<f64>()) else { continue };
            samples.push(Sample::good(ts, value));
        }
        samples.sort_by_key(|s| s.ts);
        samples.dedup_by_key(|s| s.ts);
        series.push((SeriesKey::new(asset_path(i), signal_name(0)), samples));
    }
    Ok(Dataset { name: format!("NAB ({} files)", files.len()), series })
}

fn parse_naive_utc(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ')?;
    let date = model::Date::parse(date).ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let (y, mo, d) = (i64::from(date.year()), i64::from(date.month()), i64::from(date.day()));
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(((days * 24 + h) * 60 + m) * 60_000 + s * 1000)
}

/// Splits a dataset into write batches of about `target` samples: a few series at a
/// time, a window of time at a time, as a gateway would send them.
pub fn batches(dataset: &Dataset, target: usize) -> Vec<Vec<(SeriesKey, Vec<Sample>)>> {
    let mut out = Vec::new();
    let longest = dataset.series.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let window = longest.clamp(1, 1000);
    let per_batch = (target / window).max(1);
    let mut offset = 0;
    while offset < longest {
        for group in dataset.series.chunks(per_batch) {
            let batch: Vec<_> = group
                .iter()
                .filter(|(_, s)| s.len() > offset)
                .map(|(k, s)| (k.clone(), s[offset..(offset + window).min(s.len())].to_vec()))
                .collect();
            if !batch.is_empty() {
                out.push(batch);
            }
        }
        offset += window;
    }
    out
}
