//! The InfluxDB line protocol, so that Telegraf and the many tools that speak it can
//! feed Treaty unchanged. Sans I/O: text in, points and per-line errors out.
//!
//! Mapping rule: the `asset` tag names the asset path; each field is a signal of that
//! asset, named by the field key, except a field named `value`, which takes the
//! measurement's name (`bearing_temperature,asset=acme/p/l/p-1 value=61.2`). An
//! optional `quality` tag (`good`, `uncertain`, `bad`, or an OPC UA status code)
//! applies to every field of the line. Other tags are ignored.

use model::sample::{Millis, Quality, Sample, SeriesKey, Severity};
use std::borrow::Cow;
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

/// One series while parsing: asset, signal (borrowed from the body), samples, line numbers.
type Group<'a> = (Cow<'a, str>, Cow<'a, str>, Vec<Sample>, Vec<usize>);

/// Parses a whole body. Good lines are returned even when others fail.
pub fn parse_line_protocol<'a>(body: &'a str, precision: Precision, now: Millis) -> (Parsed, Vec<LineError>) {
    let mut index: HashMap<(Cow<'a, str>, Cow<'a, str>), usize> = HashMap::new();
    let mut grouped: Vec<Group<'a>> = Vec::new();
    let mut last: Option<usize> = None;
    let mut errors = Vec::new();
    let bytes = body.as_bytes();
    let (mut at, mut number) = (0, 0);
    while at < bytes.len() {
        number += 1;
        // One pass over the line finds its end and, for the common shape, every separator.
        let (end, shape) = scan(bytes, at);
        let raw = &body[at..end];
        at = end + 1;
        let mut emit = |asset: Cow<'a, str>, signal: Cow<'a, str>, sample| {
            // Lines usually come grouped by series: try the previous one before hashing.
            let slot = match last {
                Some(slot) if grouped[slot].0 == asset && grouped[slot].1 == signal => slot,
                _ => *index.entry((asset.clone(), signal.clone())).or_insert_with(|| {
                    grouped.push((asset, signal, Vec::new(), Vec::new()));
                    grouped.len() - 1
                }),
            };
            last = Some(slot);
            grouped[slot].2.push(sample);
            grouped[slot].3.push(number);
        };
        if let Some(shape) = shape
            && let Some(()) = parse_plain(raw, &shape, precision, now, &mut emit)
        {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Err(message) = parse_line(line, precision, now, &mut emit) {
            errors.push(LineError { line: number, message });
        }
    }
    let parsed = grouped.into_iter().map(|(a, s, samples, lines)| (SeriesKey::new(a, s), samples, lines)).collect();
    (parsed, errors)
}

/// Separator positions of a plain line (relative to its start): no escapes, quotes,
/// tabs or carriage returns, one field, at most four tags.
#[derive(Default)]
struct Shape {
    first_space: usize,
    second_space: Option<usize>,
    commas: [usize; 4],
    tags: usize,
    field_equals: usize,
}

/// The bytes `scan` stops at.
const SEPARATOR: [bool; 256] = {
    let mut table = [false; 256];
    let mut k = 0;
    let stops = *b"\n ,=\\\"\r\t";
    while k < stops.len() {
        table[stops[k] as usize] = true;
        k += 1;
    }
    table
};

/// Finds the end of the line starting at `start` (its `\n` or the end of the body) and,
/// if the line has the plain shape, its separators.
fn scan(bytes: &[u8], start: usize) -> (usize, Option<Shape>) {
    let mut shape = Shape::default();
    let mut spaces = 0;
    let mut plain = !matches!(bytes.get(start), Some(b'#' | b' ') | None);
    let mut i = start;
    loop {
        // Most bytes are names and digits: skip them with one table lookup each.
        while bytes.get(i).is_some_and(|b| !SEPARATOR[usize::from(*b)]) {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'\n' => break,
            b' ' => {
                spaces += 1;
                match spaces {
                    1 => shape.first_space = i - start,
                    2 => shape.second_space = Some(i - start),
                    _ => plain = false,
                }
            }
            b',' if spaces == 0 && shape.tags < shape.commas.len() => {
                shape.commas[shape.tags] = i - start;
                shape.tags += 1;
            }
            b',' => plain = false,
            b'=' if spaces == 1 && shape.field_equals == 0 => shape.field_equals = i - start,
            b'\\' | b'"' | b'\r' | b'\t' => plain = false,
            _ => {}
        }
        i += 1;
    }
    (i, (plain && shape.first_space > 0 && shape.field_equals > 0).then_some(shape))
}

/// Splits at the first unescaped `stop` outside double quotes; returns (before, after).
fn split_unescaped(text: &str, stop: u8) -> (&str, Option<&str>) {
    let bytes = text.as_bytes();
    let mut escaped = false;
    let mut quoted = false;
    for (i, b) in bytes.iter().enumerate() {
        match *b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            c if c == stop && !quoted => return (&text[..i], Some(&text[i + 1..])),
            _ => {}
        }
    }
    (text, None)
}

/// Splits at the first `stop`; `plain` says the line has no escapes or quotes, so a
/// plain byte search is enough (the common case, and much faster).
fn split(text: &str, stop: u8, plain: bool) -> (&str, Option<&str>) {
    if !plain {
        return split_unescaped(text, stop);
    }
    // `str::find` with an ASCII char is a vectorised memchr.
    match text.find(char::from(stop)) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    }
}

/// Iterates over the parts of `text` separated by unescaped `stop`.
fn parts(text: &str, stop: u8, plain: bool) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let (head, tail) = split(rest?, stop, plain);
        rest = tail;
        Some(head)
    })
}

/// Removes line-protocol escapes, borrowing when there are none.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
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
    Cow::Owned(out)
}

fn parse_line<'a>(
    line: &'a str,
    precision: Precision,
    now: Millis,
    emit: &mut dyn FnMut(Cow<'a, str>, Cow<'a, str>, Sample),
) -> Result<(), String> {
    let plain = false;
    let (series_part, rest) = split(line, b' ', plain);
    let rest = rest.ok_or("expected `measurement,asset=<path> field=value [timestamp]`: no fields")?;
    let (fields_part, timestamp_part) = split(rest.trim_start(), b' ', plain);
    let mut tags = parts(series_part, b',', plain);
    let measurement = unescape(tags.next().unwrap_or_default());
    if measurement.is_empty() {
        return Err("the measurement name is empty".into());
    }
    let mut asset = None;
    let mut quality = Quality::GOOD;
    for tag in tags {
        let (key, value) = split(tag, b'=', plain);
        let value = value.ok_or_else(|| format!("tag `{}` has no `=value`", unescape(key)))?;
        match key {
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
    // Validate every field before emitting any, so that a bad line contributes nothing.
    let mut points: [Option<(Cow<'a, str>, f64)>; 8] = Default::default();
    let mut extra = Vec::new();
    for (n, field) in parts(fields_part, b',', plain).enumerate() {
        let (key, value) = split(field, b'=', plain);
        let key = unescape(key);
        let value = value.ok_or_else(|| format!("field `{key}` has no `=value`"))?;
        if key.is_empty() {
            return Err("a field name is empty".into());
        }
        let number = parse_field_value(value).map_err(|e| format!("field `{key}`: {e}"))?;
        let signal = if key == "value" { measurement.clone() } else { key };
        match points.get_mut(n) {
            Some(slot) => *slot = Some((signal, number)),
            None => extra.push((signal, number)),
        }
    }
    for (signal, value) in points.into_iter().flatten().chain(extra) {
        emit(asset.clone(), signal, Sample { ts, value, quality });
    }
    Ok(())
}

/// The fast path for a plain line (see `Shape`). Returns `None` to hand anything
/// unusual — including every error — to the general parser, which explains it.
fn parse_plain<'a>(
    line: &'a str,
    shape: &Shape,
    precision: Precision,
    now: Millis,
    emit: &mut dyn FnMut(Cow<'a, str>, Cow<'a, str>, Sample),
) -> Option<()> {
    let series_end = shape.first_space;
    let measurement = &line[..shape.commas.first().copied().filter(|_| shape.tags > 0).unwrap_or(series_end)];
    if measurement.is_empty() {
        return None;
    }
    let mut asset = None;
    for k in 0..shape.tags {
        let end = if k + 1 < shape.tags { shape.commas[k + 1] } else { series_end };
        let (key, value) = line[shape.commas[k] + 1..end].split_once('=')?;
        match key {
            "asset" => asset = Some(value),
            "quality" => return None,
            _ => {}
        }
    }
    let asset = asset.filter(|a| !a.is_empty())?;
    let field_end = shape.second_space.unwrap_or(line.len());
    let key = &line[shape.first_space + 1..shape.field_equals];
    let value = &line[shape.field_equals + 1..field_end];
    if key.is_empty() {
        return None;
    }
    let ts = match shape.second_space {
        None => now,
        Some(i) => precision.to_millis(line[i + 1..].parse().ok()?)?,
    };
    let value = parse_field_value(value).ok()?;
    let signal = if key == "value" { measurement } else { key };
    emit(Cow::Borrowed(asset), Cow::Borrowed(signal), Sample { ts, value, quality: Quality::GOOD });
    Some(())
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
    fn fast_and_general_paths_agree() {
        let plain = "m,asset=a/b,site=x=y v=1.5 1000\nm,asset=a/b value=2 2000\nm,asset=a/b v=3\n";
        let odd = "m,asset=a/b,site=x=y v=1.5 1000\r\n  m,asset=a/b value=2 2000\nm,asset=a/b   v=3\n# c\n\n";
        let (fast, fast_errors) = parse_line_protocol(plain, Precision::Milliseconds, 7);
        let (general, general_errors) = parse_line_protocol(odd, Precision::Milliseconds, 7);
        assert!(fast_errors.is_empty() && general_errors.is_empty(), "{fast_errors:?} {general_errors:?}");
        assert_eq!(fast, general);
        assert_eq!(fast[0].1, vec![Sample::good(1000, 1.5), Sample::good(7, 3.0)]);
        assert_eq!(fast[1].0, SeriesKey::new("a/b", "m"));
        // Errors found by the fast scan are explained by the general parser.
        let (_, errors) =
            parse_line_protocol("m,asset= v=1 1\nm,asset=a v= 1\nm,asset=a v=1 x\n", Precision::Seconds, 0);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3], "{errors:?}");
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
