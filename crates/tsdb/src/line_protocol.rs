//! The InfluxDB line protocol, so that Telegraf and the many tools that speak it can
//! feed Treaty unchanged. Sans I/O: text in, points and per-line errors out.
//!
//! Mapping rule: the `asset` tag names the asset path; each field is a signal of that
//! asset, named by the field key, except a field named `value`, which takes the
//! measurement's name (`bearing_temperature,asset=acme/p/l/p-1 value=61.2`). An
//! optional `quality` tag (`good`, `uncertain`, `bad`, or an OPC UA status code)
//! applies to every field of the line. Other tags are ignored.

use crate::sample::{Millis, Quality, Sample, SeriesKey, Severity};
use std::collections::HashMap;

/// Timestamp unit of a write, as InfluxDB's `precision` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ns" | "n" => Some(Self::Nanoseconds),
            "us" | "u" => Some(Self::Microseconds),
            "ms" => Some(Self::Milliseconds),
            "s" => Some(Self::Seconds),
            _ => None,
        }
    }

    fn to_millis(self, value: i64) -> Option<Millis> {
        match self {
            Self::Nanoseconds => Some(value.div_euclid(1_000_000)),
            Self::Microseconds => Some(value.div_euclid(1_000)),
            Self::Milliseconds => Some(value),
            Self::Seconds => value.checked_mul(1000),
        }
    }
}

/// A line that could not be read, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Points grouped by series; `lines[i]` is the line number of `samples[i]`.
pub type Parsed = Vec<(SeriesKey, Vec<Sample>, Vec<usize>)>;

/// Parses a whole body. Good lines are returned even when others fail.
pub fn parse_line_protocol(body: &str, precision: Precision, now: Millis) -> (Parsed, Vec<LineError>) {
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    let mut out: Parsed = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in body.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, precision, now) {
            Ok(points) => {
                for (key, sample) in points {
                    let at = *index.entry(key.clone()).or_insert_with(|| {
                        out.push((key, Vec::new(), Vec::new()));
                        out.len() - 1
                    });
                    out[at].1.push(sample);
                    out[at].2.push(i + 1);
                }
            }
            Err(message) => errors.push(LineError { line: i + 1, message }),
        }
    }
    (out, errors)
}

/// Splits at the first unescaped `stop` outside double quotes; returns (before, after).
fn split_unescaped(text: &str, stop: char) -> (&str, Option<&str>) {
    let mut escaped = false;
    let mut quoted = false;
    for (i, ch) in text.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c == stop && !quoted => return (&text[..i], Some(&text[i + ch.len_utf8()..])),
            _ => {}
        }
    }
    (text, None)
}

fn split_all(mut text: &str, stop: char) -> Vec<&str> {
    let mut parts = Vec::new();
    loop {
        let (head, rest) = split_unescaped(text, stop);
        parts.push(head);
        match rest {
            Some(rest) => text = rest,
            None => return parts,
        }
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            match chars.next() {
                Some(next @ (',' | '=' | ' ' | '"' | '\\')) => out.push(next),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn parse_line(line: &str, precision: Precision, now: Millis) -> Result<Vec<(SeriesKey, Sample)>, String> {
    let (series_part, rest) = split_unescaped(line, ' ');
    let rest = rest.ok_or("expected `measurement,asset=<path> field=value [timestamp]`: no fields")?;
    let (fields_part, timestamp_part) = split_unescaped(rest.trim_start(), ' ');
    let mut tags = split_all(series_part, ',').into_iter();
    let measurement = unescape(tags.next().unwrap_or_default());
    if measurement.is_empty() {
        return Err("the measurement name is empty".into());
    }
    let mut asset = None;
    let mut quality = Quality::GOOD;
    for tag in tags {
        let (key, value) = split_unescaped(tag, '=');
        let value = value.ok_or_else(|| format!("tag `{}` has no `=value`", unescape(key)))?;
        match unescape(key).as_str() {
            "asset" => asset = Some(unescape(value)),
            "quality" => quality = parse_quality(&unescape(value))?,
            _ => {}
        }
    }
    let asset =
        asset.ok_or("missing the `asset` tag naming the asset path, e.g. `,asset=acme/plant-1/line-1/p-101`")?;
    let ts = match timestamp_part.map(str::trim).filter(|t| !t.is_empty()) {
        None => now,
        Some(text) => {
            let raw: i64 = text.parse().map_err(|_| format!("timestamp `{text}` is not an integer"))?;
            precision.to_millis(raw).ok_or_else(|| format!("timestamp `{text}` is out of range"))?
        }
    };
    let mut points = Vec::new();
    for field in split_all(fields_part, ',') {
        let (key, value) = split_unescaped(field, '=');
        let key = unescape(key);
        let value = value.ok_or_else(|| format!("field `{key}` has no `=value`"))?;
        if key.is_empty() {
            return Err("a field name is empty".into());
        }
        let number = parse_field_value(value).map_err(|e| format!("field `{key}`: {e}"))?;
        let signal = if key == "value" { measurement.clone() } else { key };
        points.push((SeriesKey::new(asset.clone(), signal), Sample { ts, value: number, quality }));
    }
    Ok(points)
}

fn parse_quality(text: &str) -> Result<Quality, String> {
    match text {
        "good" => Ok(Quality::GOOD),
        "uncertain" => Ok(Quality::new(Severity::Uncertain, 0)),
        "bad" => Ok(Quality::new(Severity::Bad, 0)),
        other => other
            .parse::<u32>()
            .map(Quality)
            .map_err(|_| format!("quality `{other}` must be good, uncertain, bad or an OPC UA status code")),
    }
}

fn parse_field_value(text: &str) -> Result<f64, String> {
    if text.starts_with('"') {
        return Err("string values are not samples; send a number".into());
    }
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(1.0),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(0.0),
        _ => {}
    }
    if let Some(integer) = text.strip_suffix('i') {
        return integer.parse::<i64>().map(|v| v as f64).map_err(|_| format!("`{text}` is not an integer"));
    }
    if let Some(unsigned) = text.strip_suffix('u') {
        return unsigned.parse::<u64>().map(|v| v as f64).map_err(|_| format!("`{text}` is not an unsigned integer"));
    }
    text.parse::<f64>().map_err(|_| format!("`{text}` is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegraf_style_lines() {
        let body = "# comment\n\
            bearing_temperature,asset=acme/p/l/p-1,host=gw1 value=61.5 1700000000000000000\n\
            pump,asset=acme/p/l/p-1,quality=uncertain flow=12i,running=t 1700000001000000000\n\
            \n\
            pump,asset=acme/p/l/p\\ 2 flow=1.5e1\n";
        let (parsed, errors) = parse_line_protocol(body, Precision::Nanoseconds, 42);
        assert!(errors.is_empty(), "{errors:?}");
        let keys: Vec<String> = parsed.iter().map(|(k, _, _)| k.to_string()).collect();
        assert_eq!(
            keys,
            ["acme/p/l/p-1#bearing_temperature", "acme/p/l/p-1#flow", "acme/p/l/p-1#running", "acme/p/l/p 2#flow"]
        );
        assert_eq!(parsed[0].1[0], Sample::good(1_700_000_000_000, 61.5));
        assert_eq!(parsed[1].1[0].quality.severity(), Severity::Uncertain);
        assert_eq!((parsed[2].1[0].value, parsed[3].1[0].ts, parsed[3].1[0].value), (1.0, 42, 15.0));
        assert_eq!(parsed[1].2, vec![3]);
    }

    #[test]
    fn every_malformed_line_is_reported_with_its_number() {
        let body = "m,asset=a x=1 1\nno_fields_here\nm x=1\nm,asset=a x=\"text\"\nm,asset=a x=abc\nm,asset=a x=1 soon\nm,asset=a x=1 2";
        let (parsed, errors) = parse_line_protocol(body, Precision::Seconds, 0);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(errors[1].message.contains("asset"));
        assert_eq!(parsed[0].1.len(), 2);
        assert_eq!(parsed[0].1[1].ts, 2000);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 7u64;
        for _ in 0..3000 {
            let bytes: Vec<u8> = (0..48)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    b"m,asset=x =\\\" 1i.e\n\tt"[(state >> 59) as usize % 21]
                })
                .collect();
            let _ = parse_line_protocol(&String::from_utf8_lossy(&bytes), Precision::Nanoseconds, 0);
        }
    }
}
