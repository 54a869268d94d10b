//! The JSON batch, decoded. Gateways send many small batches, so decoding is on the
//! hot path: a scanner reads the shape they send (the documented fields, strings without
//! escapes, plain numbers) straight into samples, without the intermediate vectors and
//! field-name visitors of a derived decoder. Anything else — escapes, unknown fields,
//! malformed input — goes to the serde decoder, which also words every error. The two
//! must agree on everything the scanner accepts (tested on random batches and fuzzed).

use crate::error::{ApiError, ApiResult};
use ingest::SeriesSamples;
use model::sample::{Quality, Sample, SeriesKey};
use serde::Deserialize;

/// A decoded JSON batch.
#[derive(Debug, PartialEq)]
pub struct Decoded {
    pub batch_id: Option<String>,
    pub historical: bool,
    pub series: SeriesSamples,
}

/// Decodes a JSON telemetry batch (public for the fuzz target).
pub fn decode_batch(body: &[u8]) -> ApiResult<Decoded> {
    match std::str::from_utf8(body).ok().and_then(|text| Scanner::new(text).batch()) {
        Some(decoded) => Ok(decoded),
        None => decode_with_serde(body),
    }
}

/// The batch as the serde decoder sees it: samples grouped by series, columns per series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    #[serde(default)]
    batch_id: Option<String>,
    /// Data queued at the edge during an outage and replayed now.
    #[serde(default)]
    historical: bool,
    series: Vec<SeriesColumns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesColumns {
    asset: String,
    signal: String,
    /// Milliseconds since the epoch, UTC.
    timestamps: Vec<i64>,
    /// `null` stands for a missing value (rejected as not finite).
    values: Vec<Option<f64>>,
    /// OPC UA status codes; omitted means all good.
    #[serde(default)]
    qualities: Vec<u32>,
}

/// The serde decoder: every input, every error message.
pub fn decode_with_serde(body: &[u8]) -> ApiResult<Decoded> {
    let batch: JsonBatch = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {e}"))
        } else {
            ApiError::unprocessable("invalid_body", format!("the body is not a telemetry batch: {e}"))
        }
    })?;
    let mut series = Vec::with_capacity(batch.series.len());
    for (i, columns) in batch.series.into_iter().enumerate() {
        let n = columns.timestamps.len();
        if columns.values.len() != n || !(columns.qualities.is_empty() || columns.qualities.len() == n) {
            return Err(length_mismatch(i, &columns.asset, &columns.signal));
        }
        let samples = (0..n)
            .map(|k| Sample {
                ts: columns.timestamps[k],
                value: columns.values[k].unwrap_or(f64::NAN),
                quality: columns.qualities.get(k).map_or(Quality::GOOD, |q| Quality(*q)),
            })
            .collect();
        series.push((SeriesKey::new(columns.asset, columns.signal), samples));
    }
    Ok(Decoded { batch_id: batch.batch_id, historical: batch.historical, series })
}

fn length_mismatch(i: usize, asset: &str, signal: &str) -> ApiError {
    ApiError::unprocessable(
        "invalid_body",
        format!("series[{i}] ({asset}#{signal}): timestamps, values and qualities must have the same length"),
    )
}

/// The fast path. Every method returns `None` for anything it does not handle, and the
/// whole body then goes to serde.
struct Scanner<'a> {
    /// The body, checked as UTF-8 once: every slice of it below is at ASCII boundaries.
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, bytes: text.as_bytes(), at: 0 }
    }

    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = self.bytes[start..].iter().position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        self.text.get(start..start + len)
    }

    /// The text of a JSON number.
    fn number(&mut self) -> Option<&'a str> {
        self.skip_space();
        let start = self.at;
        let len = self.bytes[start..]
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(self.bytes.len() - start);
        self.at = start + len;
        let text = self.text.get(start..start + len)?;
        valid_number(text).then_some(text)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.skip_space();
        self.bytes.get(self.at..self.at + word.len()).filter(|w| *w == word)?;
        self.at += word.len();
        Some(())
    }

    /// `[item, item, ...]`, each read by `item`.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `{"key": value, ...}`, each value read by `field` (which knows the key).
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn batch(mut self) -> Option<Decoded> {
        let (mut batch_id, mut historical, mut series) = (None, None, None);
        self.object(|s, key| match key {
            "batch_id" if batch_id.is_none() => {
                batch_id = Some(if s.literal(b"null").is_some() { None } else { Some(s.string()?.to_owned()) });
                Some(())
            }
            "historical" if historical.is_none() => {
                historical = Some(if s.literal(b"true").is_some() {
                    true
                } else {
                    s.literal(b"false")?;
                    false
                });
                Some(())
            }
            "series" if series.is_none() => {
                let mut list = Vec::new();
                s.array(|s| {
                    list.push(s.series()?);
                    Some(())
                })?;
                series = Some(list);
                Some(())
            }
            _ => None,
        })?;
        self.skip_space();
        (self.at == self.bytes.len()).then_some(())?;
        Some(Decoded { batch_id: batch_id.flatten(), historical: historical.unwrap_or(false), series: series? })
    }

    fn series(&mut self) -> Option<(SeriesKey, Vec<Sample>)> {
        let (mut asset, mut signal) = (None, None);
        // Time stamps usually come first: they make the samples, which the values and
        // qualities then fill in place. Columns that come earlier wait in `early_*`.
        let mut samples: Option<Vec<Sample>> = None;
        let (mut early_values, mut early_qualities): (Option<Vec<f64>>, Option<Vec<u32>>) = (None, None);
        let (mut have_values, mut have_qualities) = (false, false);
        self.object(|s, key| {
            match key {
                "asset" if asset.is_none() => asset = Some(s.string()?),
                "signal" if signal.is_none() => signal = Some(s.string()?),
                "timestamps" if samples.is_none() => {
                    let mut list = Vec::new();
                    s.array(|s| {
                        list.push(Sample::good(integer(s.number()?)?, f64::NAN));
                        Some(())
                    })?;
                    samples = Some(list);
                }
                "values" if !have_values => {
                    have_values = true;
                    let mut k = 0;
                    let mut early = Vec::new();
                    s.array(|s| {
                        let value = if s.literal(b"null").is_some() {
                            f64::NAN
                        } else {
                            // Out of range (1e999) is an error serde words.
                            Some(s.number()?.parse::<f64>().ok()?).filter(|v| v.is_finite())?
                        };
                        match samples.as_mut() {
                            Some(samples) => samples.get_mut(k)?.value = value,
                            None => early.push(value),
                        }
                        k += 1;
                        Some(())
                    })?;
                    // Fewer values than time stamps is an error serde words.
                    if samples.as_ref().is_some_and(|samples| samples.len() != k) {
                        return None;
                    }
                    early_values = samples.is_none().then_some(early);
                }
                "qualities" if !have_qualities => {
                    have_qualities = true;
                    let mut k = 0;
                    let mut early = Vec::new();
                    s.array(|s| {
                        let quality = u32::try_from(integer(s.number()?)?).ok()?;
                        match samples.as_mut() {
                            Some(samples) => samples.get_mut(k)?.quality = Quality(quality),
                            None => early.push(quality),
                        }
                        k += 1;
                        Some(())
                    })?;
                    if k > 0 && samples.as_ref().is_some_and(|samples| samples.len() != k) {
                        return None;
                    }
                    early_qualities = samples.is_none().then_some(early);
                }
                _ => return None,
            }
            Some(())
        })?;
        let mut samples = samples?;
        if !have_values {
            return None;
        }
        if let Some(values) = early_values {
            if values.len() != samples.len() {
                return None;
            }
            for (sample, value) in samples.iter_mut().zip(values) {
                sample.value = value;
            }
        }
        if let Some(qualities) = early_qualities.filter(|q| !q.is_empty()) {
            if qualities.len() != samples.len() {
                return None;
            }
            for (sample, quality) in samples.iter_mut().zip(qualities) {
                sample.quality = Quality(quality);
            }
        }
        Some((SeriesKey::new(asset?, signal?), samples))
    }
}

/// A JSON number (already checked against the grammar) that is an integer in `i64`.
fn integer(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let mut value: i64 = 0;
    for byte in digits.bytes() {
        let digit = i64::from(byte.checked_sub(b'0').filter(|d| *d <= 9)?);
        // Accumulated negatively, so that i64::MIN fits.
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative { Some(value) } else { value.checked_neg() }
}

/// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn valid_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(body: &str) -> (Option<Decoded>, ApiResult<Decoded>) {
        (Scanner::new(body).batch(), decode_with_serde(body.as_bytes()))
    }

    /// Whatever the scanner accepts, serde decodes to the same batch (bit for bit).
    /// Returns whether the scanner accepted it.
    fn agree(body: &str) -> bool {
        let (fast, slow) = both(body);
        let accepted = fast.is_some();
        if let Some(fast) = fast {
            let slow =
                slow.unwrap_or_else(|e| panic!("the scanner accepted what serde refuses ({}): {body}", e.message));
            assert_eq!(fast.batch_id, slow.batch_id);
            assert_eq!(fast.historical, slow.historical);
            assert_eq!(fast.series.len(), slow.series.len(), "{body}");
            for ((fk, fs), (sk, ss)) in fast.series.iter().zip(&slow.series) {
                assert_eq!(fk, sk);
                assert!(fs.len() == ss.len() && fs.iter().zip(ss).all(|(a, b)| a.same_as(b)), "{body}");
            }
        }
        accepted
    }

    #[test]
    fn the_shape_gateways_send_takes_the_fast_path() {
        let body = r#"{ "batch_id": "gw-1-42", "historical": true, "series": [
            {"asset": "acme/p/l/a", "signal": "flow", "timestamps": [1795310000000, 1795310001000],
             "values": [2.31, null], "qualities": [0, 2155872256]},
            {"values": [-0.5e-3], "qualities": [7], "timestamps": [-5], "signal": "temp", "asset": "acme/p/l/a"} ] }"#;
        let (fast, _) = both(body);
        let fast = fast.expect("fast path");
        assert!(agree(body));
        assert_eq!((fast.batch_id.as_deref(), fast.historical), (Some("gw-1-42"), true));
        assert_eq!(fast.series[0].1[1].quality, Quality(2_155_872_256));
        assert!(fast.series[0].1[1].value.is_nan());
        assert_eq!(fast.series[1].1, vec![Sample { ts: -5, value: -0.0005, quality: Quality(7) }]);
    }

    #[test]
    fn anything_unusual_goes_to_serde_which_words_the_error() {
        for body in [
            r#"{"series": [{"asset": "a\/b", "signal": "s", "timestamps": [1], "values": [1]}]}"#,
            r#"{"series": [], "extra": 1}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1, 2], "values": [1]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1.5], "values": [1]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [01], "values": [1]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1], "values": [1]}]} x"#,
            r#"{"series": [{"asset": "a", "signal": "s", "values": [1, 2], "timestamps": [1]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1], "values": [1], "qualities": [0, 0]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "qualities": [0], "values": [1], "timestamps": [1, 2]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1]}]}"#,
            r#"{"series": [{"asset": "a", "asset": "b", "signal": "s", "timestamps": [1], "values": [1]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [99999999999999999999], "values": [1]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1], "values": [1e999]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1], "values": [.5]}]}"#,
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1], "values": [1], "qualities": [-1]}]}"#,
            "",
            "{",
            r#"{"series": [{"asset": "a", "signal": "s", "timestamps": [1], "values": [1],}]}"#,
        ] {
            let (fast, slow) = both(body);
            assert!(fast.is_none(), "the scanner should leave this to serde: {body}");
            if let Err(error) = &slow {
                assert!(!error.message.is_empty());
            }
        }
    }

    #[test]
    fn random_batches_decode_the_same_both_ways() {
        let mut state = 0x1234_5678_u64;
        let mut next = move |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut fast = 0;
        for _ in 0..500 {
            let mut body = String::from("{");
            if next(2) == 0 {
                body.push_str(&format!("\"batch_id\": \"b-{}\", ", next(1000)));
            }
            body.push_str("\"series\":[");
            for s in 0..next(4) {
                let n = next(5);
                let ts: Vec<String> =
                    (0..n).map(|_| (next(4_000_000_000) as i64 - 2_000_000_000).to_string()).collect();
                let values: Vec<String> = (0..n)
                    .map(|_| match next(6) {
                        0 => "null".to_owned(),
                        1 => format!("{}", next(1000) as f64 / 7.0),
                        2 => format!("{}e{}", next(100), next(40) as i64 - 20),
                        3 => format!("-{}", next(100_000)),
                        4 => format!("{}.{:03}", next(100), next(1000)),
                        _ => f64::from_bits(next(u64::MAX >> 2) << 2).to_string(),
                    })
                    .collect();
                let sep = if s > 0 { "," } else { "" };
                let mut fields = vec![
                    format!("\"asset\":\"a/{s}\""),
                    format!("\"signal\":\"x{}\"", next(9)),
                    format!("\"timestamps\":[{}]", ts.join(",")),
                    format!("\"values\":[{}]", values.join(" , ")),
                ];
                match next(4) {
                    0 => fields.push(format!(
                        "\"qualities\":[{}]",
                        (0..n).map(|_| next(1 << 31).to_string()).collect::<Vec<_>>().join(",")
                    )),
                    1 => fields
                        .push(format!("\"qualities\":[{}]", (0..next(3)).map(|_| "0").collect::<Vec<_>>().join(","))),
                    _ => {}
                }
                for i in (1..fields.len()).rev() {
                    fields.swap(i, next(i as u64 + 1) as usize);
                }
                body.push_str(&format!("{sep}{{{}}}", fields.join(",")));
            }
            body.push_str("]}");
            fast += usize::from(agree(&body));
        }
        assert!(fast > 250, "the scanner took only {fast} of 500 batches");
    }

    #[test]
    fn integers_parse_like_the_standard_library() {
        for text in ["0", "-0", "7", "-12", "9223372036854775807", "-9223372036854775808", "1795310000000"] {
            assert_eq!(integer(text), text.parse().ok(), "{text}");
        }
        for text in ["9223372036854775808", "-9223372036854775809", "1.5", "1e3", "99999999999999999999"] {
            assert_eq!(integer(text), None, "{text}");
        }
    }

    #[test]
    fn numbers_follow_json_grammar() {
        for good in ["0", "-0", "12", "1.5", "-1.5e3", "2E-7", "1e+2"] {
            assert!(valid_number(good), "{good}");
        }
        for bad in ["", "-", "01", "1.", ".5", "1e", "+1", "1e+", "--1", "1.2.3"] {
            assert!(!valid_number(bad), "{bad}");
        }
    }
}
