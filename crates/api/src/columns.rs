//! Samples as JSON columns (`{"timestamps":[…],"values":[…],"qualities":[…]}`), written
//! without serde.
//!
//! A window of an asset is 72,000 samples; through serde_json, formatting them was most
//! of the request's CPU (shortest-float formatting of every value, a small copy per
//! number). Here numbers are written in place into a page on the stack that is appended
//! to the output in 8 KiB copies; a time stamp continues from the previous one (its high
//! digits copied, its last eight the previous ones plus the step, added digit-wise in
//! one integer: 1 Hz stamps share all but the last eight digits for a day); values
//! that are exact short decimals — what sensor readings are, and what the engine stores
//! as integers — are printed from their integer digits instead of by a float algorithm.
//! The text differs from serde_json's only in notation (`0.000001` where serde_json
//! writes `1e-6`): every number parses back to the same `f64`, bit for bit.

use model::sample::Sample;

/// Powers of ten up to the most fractional digits the decimal fast path prints.
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// 2^53: integers below it are exact in an `f64`.
const EXACT: u64 = 1 << 53;
/// Every power of ten that fits a `u64`.
const POW10_U64: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Number of decimal digits of `n`.
fn digit_count(n: u64) -> usize {
    // log10(2) ~ 1233 / 4096: a guess from the bit length, corrected by one comparison.
    let guess = (((64 - (n | 1).leading_zeros()) * 1233) >> 12) as usize;
    guess + usize::from(guess < 20 && n >= POW10_U64[guess]).max(usize::from(guess == 0))
}

/// Writes the last two digits of `n` at `out[i - 2..i]`; returns `n / 100`.
fn put_pair(out: &mut [u8], i: usize, n: u64) -> u64 {
    let pair = (n % 100) as usize * 2;
    out[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
    n / 100
}

/// The eight decimal digits of `n < 10^8` (with leading zeros), one per byte, most
/// significant in the lowest byte: all computed at once in the lanes of one integer.
fn eight_digits(n: u32) -> u64 {
    debug_assert!(n < 100_000_000);
    let merged = u64::from(n / 10_000) | (u64::from(n % 10_000) << 32);
    let hundreds = ((merged * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let pairs = ((merged - 100 * hundreds) << 16) | hundreds;
    let tens = ((pairs * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | ((pairs - 10 * tens) << 8)
}

const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// Writes `n < 10^8` as exactly eight digits (with leading zeros) at `out[at..at + 8]`.
fn put_eight(out: &mut [u8], at: usize, n: u32) {
    out[at..at + 8].copy_from_slice(&(eight_digits(n) | ASCII_ZEROS).to_le_bytes());
}

/// Adds two numbers held as eight decimal digits, one per byte, least significant in
/// the lowest byte; the sum must stay below 10^8. Each byte gets 246 added so that a
/// digit sum of ten or more carries into the next byte by itself; bytes that did not
/// carry (their top bit is set) take the 246 back.
fn add_digits(a: u64, b: u64) -> u64 {
    let t = a.wrapping_add(b).wrapping_add(0xf6f6_f6f6_f6f6_f6f6);
    t - ((t & 0x8080_8080_8080_8080) >> 7) * 0xf6
}

/// Writes the digits of `n` at `out[at..]`; returns where they end.
fn put_digits(out: &mut [u8], at: usize, mut n: u64) -> usize {
    let end = at + digit_count(n);
    let mut i = end;
    while n >= 100 {
        n = put_pair(out, i, n);
        i -= 2;
    }
    if n >= 10 {
        put_pair(out, i, n);
    } else {
        out[i - 1] = b'0' + n as u8;
    }
    end
}

/// Writes `bytes` at `out[at..]`; returns where they end.
fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    out[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

const PAGE: usize = 8192;
/// More than any one number with its separator takes.
const MOST: usize = 32;

/// Text gathered in a page on the stack and appended to `out` a page at a time.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    page: [u8; PAGE],
    at: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, page: [0; PAGE], at: 0 }
    }

    /// The page and the position to write up to `MOST` bytes at.
    fn room(&mut self) -> (&mut [u8; PAGE], usize) {
        if self.at + MOST > PAGE {
            self.flush();
        }
        (&mut self.page, self.at)
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.flush();
        self.out.extend_from_slice(bytes);
    }

    fn flush(&mut self) {
        self.out.extend_from_slice(&self.page[..self.at]);
        self.at = 0;
    }

    /// `[f(item),f(item),…]`: `f` writes one item (at most `MOST - 1` bytes) at a position
    /// of the page and returns where it ended.
    fn array<T>(&mut self, items: &[T], mut f: impl FnMut(&mut [u8; PAGE], usize, &T) -> usize) {
        let (page, at) = self.room();
        self.at = put(page, at, b"[");
        for (i, item) in items.iter().enumerate() {
            let (page, mut at) = self.room();
            if i > 0 {
                at = put(page, at, b",");
            }
            self.at = f(page, at, item);
        }
        let (page, at) = self.room();
        self.at = put(page, at, b"]");
    }
}

/// Time stamps: the digits above the last eight are kept from the previous stamp.
#[derive(Default)]
struct Stamps {
    high: u64,
    /// The digits of `high` (at most 12: stamps below 2^63), padded so that a copy of
    /// it has a constant size.
    high_text: [u8; 16],
    high_len: usize,
    /// The previous stamp, its low eight digits as a number and as digits (least
    /// significant byte first; see `add_digits`); `previous == 0`: none yet.
    previous: u64,
    low: u64,
    low_digits: u64,
    /// The last difference between stamps, and its digits.
    step: u64,
    step_digits: u64,
}

impl Stamps {
    const LOW: u64 = 100_000_000;

    fn put(&mut self, out: &mut [u8], at: usize, ts: i64) -> usize {
        let Ok(n) = u64::try_from(ts) else {
            self.previous = 0;
            let at = put(out, at, b"-");
            return put_digits(out, at, ts.unsigned_abs());
        };
        if n < Self::LOW {
            self.previous = 0;
            return put_digits(out, at, n);
        }
        let step = n.wrapping_sub(self.previous);
        if self.previous != 0 && step < Self::LOW && self.low + step < Self::LOW {
            // The usual case, a later stamp with the same high digits: its low digits are
            // the previous ones plus the step, added digit-wise (no division).
            if step != self.step {
                self.step = step;
                self.step_digits = eight_digits(step as u32).swap_bytes();
            }
            self.low += step;
            self.low_digits = add_digits(self.low_digits, self.step_digits);
        } else {
            let high = n / Self::LOW;
            if high != self.high || self.high_len == 0 {
                self.high = high;
                self.high_len = put_digits(&mut self.high_text, 0, high);
            }
            self.low = n % Self::LOW;
            self.low_digits = eight_digits(self.low as u32).swap_bytes();
        }
        self.previous = n;
        // A constant-size copy (no call); what lies past the digits is overwritten next.
        out[at..at + 16].copy_from_slice(&self.high_text);
        let at = at + self.high_len;
        out[at..at + 8].copy_from_slice(&(self.low_digits | ASCII_ZEROS).to_be_bytes());
        at + 8
    }
}

/// `(m / 10^k, m % 10^k)` for `1 <= k <= 6`, with a constant divisor per scale (the
/// compiler turns each into a multiplication; a division by a variable is a slow
/// instruction).
fn split_decimal(m: u64, k: usize) -> (u64, u64) {
    match k {
        1 => (m / 10, m % 10),
        2 => (m / 100, m % 100),
        3 => (m / 1_000, m % 1_000),
        4 => (m / 10_000, m % 10_000),
        5 => (m / 100_000, m % 100_000),
        _ => (m / 1_000_000, m % 1_000_000),
    }
}

/// Values, remembering which decimal scale the previous one had (a column is almost
/// always all one scale, or all not decimal).
struct Values {
    /// `Some(k)`: the last value was an exact decimal with `k` fractional digits;
    /// `None`: it was not, so the next one goes straight to the float formatter.
    scale: Option<usize>,
    float: zmij::Buffer,
}

impl Values {
    fn new() -> Self {
        Self { scale: Some(0), float: zmij::Buffer::new() }
    }

    /// `magnitude` (not negative) as an integer `m` with `magnitude = m / 10^k`, exactly:
    /// checked by dividing back, so a wrong guess is never printed.
    fn decimal(magnitude: f64, k: usize) -> Option<u64> {
        let m = (magnitude * POW10[k] + 0.5) as u64; // saturates for huge values
        (m < EXACT && (m as f64 / POW10[k]).to_bits() == magnitude.to_bits()).then_some(m)
    }

    /// Writes `v` at `out[at..]` (`null` if not finite); returns where it ends.
    fn put(&mut self, out: &mut [u8], at: usize, v: f64) -> usize {
        if !v.is_finite() {
            // JSON has no NaN or infinity; serde_json writes null as well.
            return put(out, at, b"null");
        }
        let magnitude = v.abs();
        let found = match self.scale {
            Some(k) => Self::decimal(magnitude, k)
                .map(|m| (m, k))
                .or_else(|| (0..POW10.len()).filter(|j| *j != k).find_map(|j| Some((Self::decimal(magnitude, j)?, j)))),
            None => None,
        };
        let Some((mut m, mut k)) = found else {
            self.scale = None;
            return put(out, at, self.float.format_finite(v).as_bytes());
        };
        self.scale = Some(k);
        while k > 0 && m % 10 == 0 {
            m /= 10;
            k -= 1;
        }
        let at = if v.is_sign_negative() { put(out, at, b"-") } else { at };
        if k == 0 {
            let end = put_digits(out, at, m);
            return put(out, end, b".0");
        }
        // 1234 with k = 2: "12", ".", then "34000000" of which the first two count (the
        // rest lies past the end, to be overwritten or cut off).
        let (whole, fraction) = split_decimal(m, k);
        let end = put_digits(out, at, whole);
        let point = put(out, end, b".");
        put_eight(out, point, (fraction * POW10_U64[8 - k]) as u32);
        point + k
    }
}

/// Appends `samples` as `{"timestamps":[…],"values":[…],"qualities":[…]}`.
pub(crate) fn write_columns(out: &mut Vec<u8>, samples: &[Sample]) {
    out.reserve(estimate(samples.len()));
    let mut w = Writer::new(out);
    columns(&mut w, samples);
    w.flush();
}

fn columns(w: &mut Writer<'_>, samples: &[Sample]) {
    w.raw(b"{\"timestamps\":");
    let mut stamps = Stamps::default();
    w.array(samples, |page, at, s| stamps.put(page, at, s.ts));
    w.raw(b",\"values\":");
    let mut values = Values::new();
    w.array(samples, |page, at, s| values.put(page, at, s.value));
    w.raw(b",\"qualities\":");
    w.array(samples, |page, at, s| match s.quality.0 {
        0 => put(page, at, b"0"),
        q => put_digits(page, at, u64::from(q)),
    });
    w.raw(b"}");
}

/// Appends a JSON string (quoted and escaped).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Bytes to reserve for `samples` written as columns (1 Hz sensor data takes about 21
/// per sample; more is grown into).
pub(crate) fn estimate(samples: usize) -> usize {
    64 + samples * 22
}

/// Appends `"<name>":<columns>`.
pub(crate) fn write_named(out: &mut Vec<u8>, name: &str, samples: &[Sample]) {
    write_str(out, name);
    out.push(b':');
    write_columns(out, samples);
}

/// Appends `{"<name>":<columns>,…}` for named sample lists.
pub(crate) fn write_named_columns<'a>(out: &mut Vec<u8>, named: impl IntoIterator<Item = (&'a str, &'a [Sample])>) {
    out.push(b'{');
    for (i, (name, samples)) in named.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_named(out, name, samples);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::sample::Quality;

    /// A reproducible stream of 64-bit numbers (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// Writes the samples, parses the text with serde_json, and checks every number
    /// comes back bit for bit (non-finite values as null).
    fn round_trip(samples: &[Sample]) -> String {
        let mut out = Vec::new();
        write_columns(&mut out, samples);
        let text = String::from_utf8(out).expect("utf-8");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let column = |name: &str| parsed[name].as_array().cloned().unwrap_or_default();
        let (ts, values, qualities) = (column("timestamps"), column("values"), column("qualities"));
        assert_eq!((ts.len(), values.len(), qualities.len()), (samples.len(), samples.len(), samples.len()));
        for (i, s) in samples.iter().enumerate() {
            assert_eq!(ts[i].as_i64(), Some(s.ts), "timestamp {i} in {text}");
            assert_eq!(qualities[i].as_u64(), Some(u64::from(s.quality.0)), "quality {i}");
            if s.value.is_finite() {
                let back = values[i].as_f64().unwrap_or(f64::NAN);
                assert_eq!(back.to_bits(), s.value.to_bits(), "value {} printed as {}", s.value, values[i]);
                // Same kind of JSON number as serde_json writes, so `json!` comparisons hold.
                assert!(values[i].is_f64(), "{} must print as a float, got {}", s.value, values[i]);
            } else {
                assert!(values[i].is_null(), "{} must print as null", s.value);
            }
        }
        text
    }

    fn samples(values: &[f64]) -> Vec<Sample> {
        values.iter().enumerate().map(|(i, v)| Sample::good(1_767_225_600_000 + i as i64 * 1000, *v)).collect()
    }

    #[test]
    fn decimals_print_short_and_exact() {
        let text = round_trip(&samples(&[53.7, 53.70, 0.005, -0.5, 60.0, 0.0, -0.0, 1234.5678, 0.000001, 42.0]));
        assert!(text.contains(r#""values":[53.7,53.7,0.005,-0.5,60.0,0.0,-0.0,1234.5678,0.000001,42.0]"#), "{text}");
    }

    #[test]
    fn every_kind_of_value_parses_back_bit_for_bit() {
        let mut rng = Rng(7);
        let mut values = vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            9_007_199_254_740_991.0,
            9_007_199_254_740_993.0,
            1e16,
            0.1 + 0.2,
            f64::from(53.7_f32),
            1.0 / 3.0,
        ];
        for _ in 0..20_000 {
            let r = rng.next();
            let k = (r % 7) as i32;
            let m = (rng.next() % 10_000_000_000) as f64 * if r & 8 == 0 { 1.0 } else { -1.0 };
            values.push(m / 10f64.powi(k)); // decimal
            values.push(m * [1.0, 0.1, 0.01, 0.001, 0.0001, 0.00001, 0.000001][k as usize]); // scaled
            values.push(f64::from_bits(rng.next())); // anything, including NaN
            values.push(f64::from(f32::from_bits(rng.next() as u32))); // Modbus float registers
        }
        round_trip(&samples(&values));
        // Columns that switch between decimal and not, and between scales.
        for chunk in values.chunks(7) {
            round_trip(&samples(chunk));
        }
    }

    #[test]
    fn timestamps_and_qualities_of_any_size() {
        let mut s = samples(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        for (sample, ts) in s.iter_mut().zip([i64::MIN, -1, 0, 9, 1_767_225_600_123, i64::MAX]) {
            sample.ts = ts;
        }
        s[1].quality = Quality::BAD;
        s[2].quality = Quality(u32::MAX);
        s[3].quality = Quality(7);
        round_trip(&s);
        round_trip(&[]);
    }

    #[test]
    fn digit_counts_and_eight_digit_lanes() {
        for (i, p) in POW10_U64.iter().enumerate() {
            assert_eq!(digit_count(*p), i + 1, "{p}");
            if *p > 1 {
                assert_eq!(digit_count(p - 1), i, "{}", p - 1);
            }
        }
        assert_eq!((digit_count(0), digit_count(u64::MAX)), (1, 20));
        let mut rng = Rng(3);
        for n in [0, 1, 9, 10, 99_999_999, 12_345_678, 10_000_000]
            .into_iter()
            .chain((0..100_000).map(|_| (rng.next() % 100_000_000) as u32))
        {
            let mut out = [0u8; 8];
            put_eight(&mut out, 0, n);
            assert_eq!(std::str::from_utf8(&out), Ok(format!("{n:08}").as_str()));
        }
    }

    #[test]
    fn time_stamps_in_any_steps_and_across_digit_boundaries() {
        let mut rng = Rng(11);
        let mut ts = 99_999_990_i64; // just below eight digits
        let mut stamps = Vec::new();
        for i in 0..20_000 {
            stamps.push(ts);
            ts += match i % 5 {
                0 => 1000,
                1 => 1,
                2 => (rng.next() % 100_000_000) as i64, // up to a whole low part
                3 => 99_999_999,
                _ => 1000,
            };
        }
        stamps.extend([1_767_225_599_999, 1_767_225_600_000, 1_799_999_999_999, 1_800_000_000_000, 5, 100_000_000]);
        stamps.extend([1_767_225_600_000, 1_767_225_599_000]); // back in time
        let samples: Vec<Sample> = stamps.iter().map(|t| Sample::good(*t, 1.0)).collect();
        round_trip(&samples);
        for (a, b) in [(0, 0), (99_999_998, 1), (12_345_678, 87_654_321), (9_999, 90_000_001), (19, 81)] {
            let sum = add_digits(eight_digits(a).swap_bytes(), eight_digits(b).swap_bytes());
            assert_eq!(sum, eight_digits(a + b).swap_bytes(), "{a} + {b}");
        }
    }

    #[test]
    fn named_columns_escape_their_names() {
        let one = samples(&[1.5]);
        let mut out = Vec::new();
        write_named_columns(&mut out, [("a\"b", one.as_slice()), ("plain", &one[..0])]);
        let parsed: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(parsed["a\"b"]["values"], serde_json::json!([1.5]));
        assert_eq!(parsed["plain"]["timestamps"], serde_json::json!([]));
    }
}
