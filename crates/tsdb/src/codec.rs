//! Byte formats, sans I/O: varints, the compressed chunk format and the WAL record
//! format. Every decoder takes `&[u8]` from disk and returns an error, never panics.
//!
//! Chunk = `[n u32][ts_len u32][val_len u32] ts(pco i64) values(pco f64) quality(RLE)`.
//! Pcodec picks delta orders and modes per chunk: regular 1 Hz timestamps cost almost
//! nothing and quantised sensor values compress to a few bits each.

use crate::SeriesId;
use crate::query::Bucket;
use crate::{Error, Result};
use model::sample::{Quality, Sample};

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over bytes read from disk.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or_else(|| corrupt("varint runs past the end"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(corrupt("varint longer than 10 bytes"))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| corrupt("field runs past the end"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(what.to_owned())
}

/// Qualities as (value, run length) pairs: almost always one pair, `(0, n)`.
fn encode_quality(samples: &[Sample], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < samples.len() {
        let q = samples[i].quality;
        let run = samples[i..].iter().take_while(|s| s.quality == q).count();
        put_varint(out, u64::from(q.0));
        put_varint(out, run as u64);
        i += run;
    }
}

/// Quality runs `(quality, length)` covering exactly `n` samples.
fn decode_quality_runs(reader: &mut Reader<'_>, n: usize) -> Result<Vec<(Quality, usize)>> {
    let mut runs = Vec::with_capacity(1);
    let mut covered = 0;
    while covered < n {
        let q = u32::try_from(reader.varint()?).map_err(|_| corrupt("quality out of range"))?;
        let run = reader.varint()? as usize;
        if run == 0 || run > n - covered {
            return Err(corrupt("quality run length"));
        }
        runs.push((Quality(q), run));
        covered += run;
    }
    Ok(runs)
}

fn decode_quality(reader: &mut Reader<'_>, n: usize) -> Result<Vec<Quality>> {
    Ok(decode_quality_runs(reader, n)?.into_iter().flat_map(|(q, run)| std::iter::repeat_n(q, run)).collect())
}

/// The most samples one chunk may hold (heads are sealed long before).
pub const MAX_CHUNK_SAMPLES: usize = 1 << 24;

/// Chunk format version written by this build.
const CHUNK_VERSION: u8 = 2;

/// Powers of ten used to turn decimal values into exact integers and back.
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// Their reciprocals as written in source code (`0.01`), for values computed as `m * 0.01`.
const NEG_POW10: [f64; 7] = [1.0, 0.1, 0.01, 0.001, 0.0001, 0.00001, 0.000001];

/// How the values of a chunk are represented before pcodec sees them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ValueForm {
    /// Raw f64.
    Float = 0,
    /// `m / 10^k`: values that came from decimal text (sensor readings, CSV files).
    Decimal = 1,
    /// `m * 10^-k`: values computed by multiplying a count by a resolution.
    Scaled = 2,
    /// Every value has the same bits (states, booleans, idle sensors).
    Constant = 3,
}

/// The exact integer form of `values`, if one exists: (form, k, integers).
fn integer_form(values: &[f64]) -> Option<(ValueForm, u8, Vec<i64>)> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: integers exactly representable
    for k in 0..POW10.len() {
        for form in [ValueForm::Decimal, ValueForm::Scaled] {
            let decode = |m: i64| match form {
                ValueForm::Decimal => m as f64 / POW10[k],
                _ => m as f64 * NEG_POW10[k],
            };
            let mut ints = Vec::with_capacity(values.len());
            let exact = values.iter().all(|v| {
                let m = (v * POW10[k]).round();
                let ok = m.abs() < LIMIT && decode(m as i64).to_bits() == v.to_bits();
                ints.push(m as i64);
                ok
            });
            if exact {
                return Some((form, k as u8, ints));
            }
            if k == 0 {
                break; // both forms are the same at k = 0
            }
        }
    }
    None
}

/// The sum of values that are all exact decimals (or scaled integers), computed on their
/// integers and rounded once, so it is again a short decimal that compresses well.
pub(crate) fn exact_sum(values: &[f64]) -> Option<f64> {
    let (_, k, ints) = integer_form(values)?;
    let sum: i128 = ints.iter().map(|m| i128::from(*m)).sum();
    (sum.unsigned_abs() < 1 << 53).then(|| sum as f64 / POW10[usize::from(k)])
}

/// Numbers compressed both ways to choose between them: a long column is judged by its
/// first `PROBE` numbers and compressed once, with the winner.
const PROBE: usize = 512;

/// Pcodec with the better of its automatic choice and plain first-order deltas (which
/// wins on noisy sensor data, where the automatic choice often guesses wrong).
fn pco_best<T: pco::data_types::Number>(numbers: &[T]) -> Result<Vec<u8>> {
    let auto = pco::ChunkConfig::default();
    let first_order = pco::ChunkConfig::default().with_delta_spec(pco::DeltaSpec::TryConsecutive(1));
    let compress = |numbers: &[T], config: &pco::ChunkConfig| {
        pco::standalone::simple_compress(numbers, config).map_err(|e| Error::Codec(e.to_string()))
    };
    if numbers.len() <= 2 * PROBE {
        let (a, b) = (compress(numbers, &auto)?, compress(numbers, &first_order)?);
        return Ok(if b.len() < a.len() { b } else { a });
    }
    let probe = &numbers[..PROBE];
    let first_order_wins = compress(probe, &first_order)?.len() < compress(probe, &auto)?.len();
    compress(numbers, if first_order_wins { &first_order } else { &auto })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend(bytes);
}

fn encode_timestamps(ts: &[i64], out: &mut Vec<u8>) -> Result<()> {
    let first = ts.first().copied().unwrap_or(0);
    let step = if ts.len() > 1 { ts[1].wrapping_sub(first) } else { 0 };
    let regular = ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step);
    if regular {
        out.push(0);
        put_varint(out, zigzag(first));
        put_varint(out, zigzag(step));
    } else {
        out.push(1);
        put_bytes(out, &pco_best(ts)?);
    }
    Ok(())
}

fn encode_values(values: &[f64], out: &mut Vec<u8>) -> Result<()> {
    let first = values.first().map_or(0, |v| v.to_bits());
    if values.iter().all(|v| v.to_bits() == first) {
        out.push(ValueForm::Constant as u8);
        out.extend(first.to_le_bytes());
        return Ok(());
    }
    // Exact integers compress at least as well as their floats in practice, so only one
    // representation is compressed (sealing is on the ingest path's CPU budget).
    if let Some((form, k, ints)) = integer_form(values) {
        out.push(form as u8);
        out.push(k);
        put_bytes(out, &pco_best(&ints)?);
        return Ok(());
    }
    out.push(ValueForm::Float as u8);
    put_bytes(out, &pco_best(values)?);
    Ok(())
}

/// Compresses samples (sorted by time, unique timestamps) into one chunk:
/// `[version][n] timestamps values qualities`. Regular timestamps cost two varints;
/// values that are exact decimals are stored as integers; pcodec does the rest.
pub fn encode_chunk(samples: &[Sample]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + samples.len());
    out.push(CHUNK_VERSION);
    put_varint(&mut out, samples.len() as u64);
    let ts: Vec<i64> = samples.iter().map(|s| s.ts).collect();
    encode_timestamps(&ts, &mut out)?;
    let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
    encode_values(&values, &mut out)?;
    encode_quality(samples, &mut out);
    Ok(out)
}

fn take_pco<T: pco::data_types::Number + Default>(reader: &mut Reader<'_>, n: usize) -> Result<Vec<T>> {
    let len = reader.varint()? as usize;
    let bytes = reader.take(len)?;
    // Decompress into a buffer of the size we expect: the compressed header's own count
    // comes from disk and must not size an allocation.
    let mut numbers = vec![T::default(); n];
    let progress =
        pco::standalone::simple_decompress_into(bytes, &mut numbers).map_err(|e| Error::Corrupt(e.to_string()))?;
    if progress.n_processed != n || !progress.finished {
        return Err(corrupt("chunk column length disagrees with its count"));
    }
    Ok(numbers)
}

fn byte(reader: &mut Reader<'_>) -> Result<u8> {
    Ok(reader.take(1)?[0])
}

fn decode_timestamps(reader: &mut Reader<'_>, n: usize) -> Result<Vec<i64>> {
    match byte(reader)? {
        0 => {
            let first = unzigzag(reader.varint()?);
            let step = unzigzag(reader.varint()?);
            Ok((0..n as i64).map(|i| first.wrapping_add(step.wrapping_mul(i))).collect())
        }
        1 => take_pco(reader, n),
        _ => Err(corrupt("unknown timestamp encoding")),
    }
}

/// A chunk's value column as stored.
enum ValueColumn {
    Floats(Vec<f64>),
    /// `m / 10^k`.
    Decimal(Vec<i64>, f64),
    /// `m * 10^-k`.
    Scaled(Vec<i64>, f64),
    Constant(f64),
}

fn decode_value_column(reader: &mut Reader<'_>, n: usize) -> Result<ValueColumn> {
    match byte(reader)? {
        0 => Ok(ValueColumn::Floats(take_pco(reader, n)?)),
        form @ (1 | 2) => {
            let k = byte(reader)? as usize;
            if k >= POW10.len() {
                return Err(corrupt("decimal exponent out of range"));
            }
            let ints: Vec<i64> = take_pco(reader, n)?;
            Ok(if form == 1 { ValueColumn::Decimal(ints, POW10[k]) } else { ValueColumn::Scaled(ints, NEG_POW10[k]) })
        }
        3 => {
            let b = reader.take(8)?;
            Ok(ValueColumn::Constant(f64::from_bits(u64::from_le_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ]))))
        }
        _ => Err(corrupt("unknown value encoding")),
    }
}

/// Rollup format version written by this build.
const ROLLUP_VERSION: u8 = 2;

/// Encodes rollup buckets (sorted by start): `[version][n] starts counts min max sum
/// first last`. Rollups are written on the ingest path and are short (60 buckets an
/// hour), so they use varint columns rather than pcodec, whose fixed cost per column
/// would dominate.
pub fn encode_rollups(buckets: &[Bucket]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(32 + buckets.len() * 8);
    out.push(ROLLUP_VERSION);
    put_varint(&mut out, buckets.len() as u64);
    let mut previous = 0i64;
    for b in buckets {
        put_varint(&mut out, zigzag(b.start.wrapping_sub(previous)));
        previous = b.start;
    }
    for b in buckets {
        put_varint(&mut out, b.count);
    }
    let columns: [fn(&Bucket) -> f64; 5] = [|b| b.min, |b| b.max, |b| b.sum, |b| b.first, |b| b.last];
    for column in columns {
        let values: Vec<f64> = buckets.iter().map(column).collect();
        put_fast_values(&values, &mut out);
    }
    Ok(out)
}

pub fn decode_rollups(bytes: &[u8]) -> Result<Vec<Bucket>> {
    let mut reader = Reader::new(bytes);
    if byte(&mut reader)? != ROLLUP_VERSION {
        return Err(corrupt("unknown rollup version"));
    }
    let n = reader.varint()? as usize;
    // Every bucket takes at least one byte per column.
    if n > bytes.len() {
        return Err(corrupt("bucket count larger than the record"));
    }
    let mut starts = Vec::with_capacity(n);
    let mut previous = 0i64;
    for _ in 0..n {
        previous = previous.wrapping_add(unzigzag(reader.varint()?));
        starts.push(previous);
    }
    let mut counts = Vec::with_capacity(n);
    for _ in 0..n {
        counts.push(reader.varint()?);
    }
    let mut columns = Vec::with_capacity(5);
    for _ in 0..5 {
        columns.push(take_fast_values(&mut reader, n)?);
    }
    if !reader.is_done() {
        return Err(corrupt("trailing bytes in rollup"));
    }
    Ok((0..n)
        .map(|i| Bucket {
            start: starts[i],
            count: counts[i],
            min: columns[0][i],
            max: columns[1][i],
            sum: columns[2][i],
            first: columns[3][i],
            last: columns[4][i],
        })
        .collect())
}

pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    decode_chunk_range(bytes, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

/// Appends the samples of a chunk with `from <= ts < to` to `out`, in chunk order.
/// Only those samples are built: the time stamps (sorted in every chunk the engine
/// writes) locate them, and values and qualities are converted for that span alone.
pub fn decode_chunk_range(bytes: &[u8], from: i64, to: i64, out: &mut Vec<Sample>) -> Result<()> {
    let mut reader = Reader::new(bytes);
    if byte(&mut reader)? != CHUNK_VERSION {
        return Err(corrupt("unknown chunk version"));
    }
    let n = reader.varint()? as usize;
    // Regular timestamps and constant values take a few bytes for any count, so the
    // count is bounded by the largest chunk the engine writes, not by the input size.
    if n > MAX_CHUNK_SAMPLES {
        return Err(corrupt("sample count larger than any chunk the engine writes"));
    }
    let ts = decode_timestamps(&mut reader, n)?;
    let values = decode_value_column(&mut reader, n)?;
    let runs = decode_quality_runs(&mut reader, n)?;
    if !reader.is_done() {
        return Err(corrupt("trailing bytes in chunk"));
    }
    let sorted = ts.windows(2).all(|w| w[0] < w[1]);
    let (lo, hi) = if sorted {
        let lo = ts.partition_point(|t| *t < from);
        (lo, ts.partition_point(|t| *t < to).max(lo))
    } else {
        (0, n) // not written by this engine; filtered below
    };
    let start = out.len();
    out.reserve(hi - lo);
    fn push<T: Copy>(out: &mut Vec<Sample>, ts: &[i64], raw: &[T], value: impl Fn(T) -> f64) {
        out.extend(ts.iter().zip(raw).map(|(ts, v)| Sample { ts: *ts, value: value(*v), quality: Quality::GOOD }));
    }
    let span = &ts[lo..hi];
    match &values {
        ValueColumn::Floats(v) => push(out, span, &v[lo..hi], |v| v),
        ValueColumn::Decimal(m, scale) => push(out, span, &m[lo..hi], |m| m as f64 / scale),
        ValueColumn::Scaled(m, scale) => push(out, span, &m[lo..hi], |m| m as f64 * scale),
        ValueColumn::Constant(v) => {
            out.extend(span.iter().map(|ts| Sample { ts: *ts, value: *v, quality: Quality::GOOD }))
        }
    }
    let mut at = 0;
    for (quality, run) in runs {
        if quality != Quality::GOOD {
            for i in at.max(lo)..(at + run).min(hi) {
                out[start + i - lo].quality = quality;
            }
        }
        at += run;
    }
    if !sorted {
        let mut kept = start;
        for i in start..out.len() {
            if out[i].ts >= from && out[i].ts < to {
                out[kept] = out[i];
                kept += 1;
            }
        }
        out.truncate(kept);
    }
    Ok(())
}

/// Compresses sorted samples into an in-memory head block, cheaply enough for the ingest
/// path: timestamps as delta-of-delta varints, exact decimals as integer delta varints
/// (other values XOR-ed with their predecessor, zero bytes dropped), qualities as runs.
/// Typical sensor data costs 2-4 bytes per sample instead of 24.
pub(crate) fn encode_block(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + samples.len() * 3);
    put_varint(&mut out, samples.len() as u64);
    let (mut previous, mut previous_delta) = (0i64, 0i64);
    for (i, s) in samples.iter().enumerate() {
        if i == 0 {
            put_varint(&mut out, zigzag(s.ts));
        } else {
            let delta = s.ts.wrapping_sub(previous);
            put_varint(&mut out, zigzag(delta.wrapping_sub(previous_delta)));
            previous_delta = delta;
        }
        previous = s.ts;
    }
    let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
    put_fast_values(&values, &mut out);
    encode_quality(samples, &mut out);
    out
}

/// A value column without pcodec, for small arrays on the ingest path: exact decimals as
/// zigzag varint deltas of their integers, other values XOR-ed with their predecessor
/// (a control byte `leading zero bytes << 4 | trailing zero bytes`, then the rest).
fn put_fast_values(values: &[f64], out: &mut Vec<u8>) {
    if let Some((form, k, ints)) = integer_form(values) {
        out.push(form as u8);
        out.push(k);
        let mut previous = 0i64;
        for m in ints {
            put_varint(out, zigzag(m.wrapping_sub(previous)));
            previous = m;
        }
        return;
    }
    out.push(ValueForm::Float as u8);
    let mut previous = 0u64;
    for v in values {
        let x = v.to_bits() ^ previous;
        previous = v.to_bits();
        let (lead, trail) =
            if x == 0 { (8, 0) } else { ((x.leading_zeros() / 8) as usize, (x.trailing_zeros() / 8) as usize) };
        out.push(((lead << 4) | trail) as u8);
        out.extend(&x.to_le_bytes()[trail..8 - lead]);
    }
}

fn take_fast_values(reader: &mut Reader<'_>, n: usize) -> Result<Vec<f64>> {
    // `n` was checked against the input length by the caller.
    let mut values = Vec::with_capacity(n);
    let form = byte(reader)?;
    match form {
        1 | 2 => {
            let k = byte(reader)? as usize;
            if k >= POW10.len() {
                return Err(corrupt("decimal exponent out of range"));
            }
            let mut m = 0i64;
            for _ in 0..n {
                m = m.wrapping_add(unzigzag(reader.varint()?));
                values.push(if form == 1 { m as f64 / POW10[k] } else { m as f64 * NEG_POW10[k] });
            }
        }
        0 => {
            let mut bits = 0u64;
            for _ in 0..n {
                let control = byte(reader)? as usize;
                let (lead, trail) = (control >> 4, control & 0x0f);
                if lead + trail > 8 {
                    return Err(corrupt("bad XOR control byte"));
                }
                let mut x = [0u8; 8];
                x[trail..8 - lead].copy_from_slice(reader.take(8 - lead - trail)?);
                bits ^= u64::from_le_bytes(x);
                values.push(f64::from_bits(bits));
            }
        }
        _ => return Err(corrupt("unknown value form")),
    }
    Ok(values)
}

/// Appends the samples of a head block to `out`.
pub(crate) fn decode_block(bytes: &[u8], out: &mut Vec<Sample>) -> Result<()> {
    let mut reader = Reader::new(bytes);
    let n = reader.varint()? as usize;
    if n > bytes.len() {
        return Err(corrupt("block count larger than the block"));
    }
    let first = out.len();
    let (mut ts, mut delta) = (0i64, 0i64);
    for i in 0..n {
        if i == 0 {
            ts = unzigzag(reader.varint()?);
        } else {
            delta = delta.wrapping_add(unzigzag(reader.varint()?));
            ts = ts.wrapping_add(delta);
        }
        out.push(Sample { ts, value: 0.0, quality: Quality::GOOD });
    }
    let values = take_fast_values(&mut reader, n)?;
    for (sample, value) in out[first..].iter_mut().zip(values) {
        sample.value = value;
    }
    for (sample, quality) in out[first..].iter_mut().zip(decode_quality(&mut reader, n)?) {
        sample.quality = quality;
    }
    if !reader.is_done() {
        return Err(corrupt("trailing bytes in block"));
    }
    Ok(())
}

/// Which format a WAL record is in (the frame says; see `wal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFormat {
    /// `[batch id][series...]`: written before stream flags and batch digests existed.
    First,
    /// `[flags u8][batch: scope, id, sha-256 digest, if flagged][series...]`.
    Current,
}

const FLAG_HISTORICAL: u8 = 1;
const FLAG_BATCH: u8 = 2;

/// A batch's identity for retries, as the WAL keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalBatch {
    /// Who sent it (batch ids are unique per sender only).
    pub scope: String,
    pub id: String,
    /// Digest of the batch's content; `None` in records of the first format.
    pub digest: Option<[u8; 32]>,
}

/// One durable write: its batch, whether it is replayed edge data, and samples per series.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub batch: Option<WalBatch>,
    pub historical: bool,
    pub series: Vec<(SeriesId, Vec<Sample>)>,
}

/// Payload of a WAL record in the current format (framing and checksum are the WAL's
/// business).
pub fn encode_wal_record(batch: Option<&WalBatch>, historical: bool, series: &[(SeriesId, &[Sample])]) -> Vec<u8> {
    let total: usize = series.iter().map(|(_, s)| s.len()).sum();
    let mut out = Vec::with_capacity(48 + total * 11);
    let mut flags = 0;
    if historical {
        flags |= FLAG_HISTORICAL;
    }
    if batch.is_some() {
        flags |= FLAG_BATCH;
    }
    out.push(flags);
    if let Some(batch) = batch {
        for text in [&batch.scope, &batch.id] {
            put_varint(&mut out, text.len() as u64);
            out.extend(text.as_bytes());
        }
        out.extend(batch.digest.unwrap_or_default());
    }
    put_varint(&mut out, series.len() as u64);
    for (id, samples) in series {
        put_varint(&mut out, u64::from(*id));
        put_varint(&mut out, samples.len() as u64);
        let mut previous = 0i64;
        for s in *samples {
            put_varint(&mut out, zigzag(s.ts.wrapping_sub(previous)));
            previous = s.ts;
        }
        for s in *samples {
            out.extend(s.value.to_bits().to_le_bytes());
        }
        encode_quality(samples, &mut out);
    }
    out
}

fn take_text(reader: &mut Reader<'_>) -> Result<String> {
    let n = reader.varint()? as usize;
    String::from_utf8(reader.take(n)?.to_vec()).map_err(|_| corrupt("batch id is not UTF-8"))
}

pub fn decode_wal_record(bytes: &[u8], format: WalFormat) -> Result<WalRecord> {
    let mut reader = Reader::new(bytes);
    let (batch, historical) = match format {
        WalFormat::First => {
            let batch = match reader.varint()? as usize {
                0 => None,
                n => {
                    let id = String::from_utf8(reader.take(n - 1)?.to_vec())
                        .map_err(|_| corrupt("batch id is not UTF-8"))?;
                    Some(WalBatch { scope: String::new(), id, digest: None })
                }
            };
            (batch, false)
        }
        WalFormat::Current => {
            let flags = reader.take(1)?[0];
            if flags & !(FLAG_HISTORICAL | FLAG_BATCH) != 0 {
                return Err(corrupt("unknown WAL record flags"));
            }
            let batch = if flags & FLAG_BATCH != 0 {
                let scope = take_text(&mut reader)?;
                let id = take_text(&mut reader)?;
                let digest: [u8; 32] = reader.take(32)?.try_into().map_err(|_| corrupt("short digest"))?;
                Some(WalBatch { scope, id, digest: Some(digest) })
            } else {
                None
            };
            (batch, flags & FLAG_HISTORICAL != 0)
        }
    };
    let n_series = reader.varint()? as usize;
    let mut series = Vec::with_capacity(n_series.min(1 << 16));
    for _ in 0..n_series {
        let id = SeriesId::try_from(reader.varint()?).map_err(|_| corrupt("series id out of range"))?;
        let n = reader.varint()? as usize;
        if n > bytes.len() {
            return Err(corrupt("sample count larger than the record"));
        }
        let mut ts = Vec::with_capacity(n);
        let mut previous = 0i64;
        for _ in 0..n {
            previous = previous.wrapping_add(unzigzag(reader.varint()?));
            ts.push(previous);
        }
        let raw = reader.take(n * 8)?;
        let qualities = decode_quality(&mut reader, n)?;
        let samples = ts
            .into_iter()
            .zip(raw.chunks_exact(8))
            .zip(qualities)
            .map(|((ts, v), quality)| {
                let bits = u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
                Sample { ts, value: f64::from_bits(bits), quality }
            })
            .collect();
        series.push((id, samples));
    }
    if !reader.is_done() {
        return Err(corrupt("trailing bytes in WAL record"));
    }
    Ok(WalRecord { batch, historical, series })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_blocks_round_trip_every_value_form() {
        let decimal: Vec<Sample> = (0..300).map(|i| Sample::good(1_000 + i * 1000, (i % 37) as f64 / 100.0)).collect();
        let mut floats: Vec<Sample> =
            (0..300).map(|i| Sample::good(5 + i * 7 + i * i, (i as f64 * 0.37).sin() * 1e3)).collect();
        floats[3].quality = Quality::BAD;
        floats[4].value = f64::NAN;
        floats[5].value = -0.0;
        for samples in [decimal, floats, vec![Sample::good(i64::MIN, f64::MAX)], vec![]] {
            let block = encode_block(&samples);
            let mut back = vec![Sample::good(1, 1.0)];
            decode_block(&block, &mut back).expect("decode");
            assert_eq!(back.len(), samples.len() + 1);
            assert!(back[1..].iter().zip(&samples).all(|(a, b)| a.same_as(b)));
        }
        let mut sink = Vec::new();
        assert!(decode_block(&[5, 0], &mut sink).is_err());
    }

    fn samples() -> Vec<Sample> {
        (0..5000)
            .map(|i| Sample {
                ts: 1_700_000_000_000 + i * 1000,
                value: ((i as f64) * 0.01).sin().mul_add(10.0, 50.0),
                quality: if i % 977 == 0 { Quality::BAD } else { Quality::GOOD },
            })
            .collect()
    }

    #[test]
    fn chunks_round_trip_bit_exactly() {
        let original = samples();
        let bytes = encode_chunk(&original).expect("encode");
        let decoded = decode_chunk(&bytes).expect("decode");
        assert!(original.iter().zip(&decoded).all(|(a, b)| a.same_as(b)));
        assert_eq!(decoded.len(), original.len());
        assert!(bytes.len() < original.len() * 8, "{} bytes for {} samples", bytes.len(), original.len());
    }

    #[test]
    fn a_range_of_a_chunk_is_exactly_its_samples_in_that_range() {
        let mut original = samples();
        for (i, s) in original.iter_mut().enumerate().skip(2990).take(20) {
            s.quality = Quality(0x8031_0000 + i as u32 % 2); // runs that start and end inside
        }
        let mut irregular = original.clone();
        for (i, s) in irregular.iter_mut().enumerate() {
            s.ts += (i as i64 % 7) * 13; // pco-coded stamps, still increasing
        }
        let constant: Vec<Sample> = original.iter().map(|s| Sample { value: 4.5, ..*s }).collect();
        let floats: Vec<Sample> = original.iter().map(|s| Sample { value: s.value.sqrt(), ..*s }).collect();
        for chunk in [original, irregular, constant, floats] {
            let bytes = encode_chunk(&chunk).expect("encode");
            let (first, last) = (chunk[0].ts, chunk[chunk.len() - 1].ts);
            let edges =
                [i64::MIN, first - 1, first, first + 1, chunk[2995].ts, chunk[2995].ts + 1, last, last + 1, i64::MAX];
            for from in edges {
                for to in edges {
                    let mut out = vec![Sample::good(1, 1.0)]; // appended after what is there
                    decode_chunk_range(&bytes, from, to, &mut out).expect("decode");
                    let expected: Vec<&Sample> = chunk.iter().filter(|s| s.ts >= from && s.ts < to).collect();
                    assert_eq!(out.len(), expected.len() + 1, "[{from}, {to})");
                    assert!(out[1..].iter().zip(expected).all(|(a, b)| a.same_as(b)), "[{from}, {to})");
                }
            }
        }
    }

    #[test]
    fn every_value_form_round_trips_bit_exactly() {
        let base: Vec<i64> = (0..300).map(|i| 1_000 + i * 7 + (i % 3)).collect();
        let cases: Vec<Vec<f64>> = vec![
            base.iter().map(|i| *i as f64 / 100.0).collect(),  // decimal text
            base.iter().map(|i| *i as f64 * 0.01).collect(),   // scaled
            vec![1.0; 300],                                    // constant
            base.iter().map(|i| (*i as f64).sqrt()).collect(), // plain floats
            base.iter().map(|i| if i % 2 == 0 { -0.0 } else { 1e300 }).collect(),
        ];
        for values in cases {
            let samples: Vec<Sample> = base.iter().zip(&values).map(|(t, v)| Sample::good(*t, *v)).collect();
            let decoded = decode_chunk(&encode_chunk(&samples).expect("encode")).expect("decode");
            assert_eq!(decoded.len(), samples.len());
            assert!(decoded.iter().zip(&samples).all(|(a, b)| a.same_as(b)));
        }
        // Long, perfectly regular, constant chunks are a few bytes: still decodable.
        let idle: Vec<Sample> = (0..100_000).map(|i| Sample::good(i * 1000, 0.0)).collect();
        let bytes = encode_chunk(&idle).expect("encode");
        assert!(bytes.len() < 32, "{} bytes", bytes.len());
        assert_eq!(decode_chunk(&bytes).expect("decode").len(), idle.len());
        let single = [Sample::good(5, 2.5)];
        assert!(decode_chunk(&encode_chunk(&single).expect("encode")).expect("decode")[0].same_as(&single[0]));
    }

    #[test]
    fn wal_records_round_trip_with_odd_values() {
        let odd = vec![
            Sample::good(-5, f64::NEG_INFINITY),
            Sample::good(i64::MAX, -0.0),
            Sample { ts: i64::MIN, value: f64::MIN_POSITIVE, quality: Quality::UNCERTAIN },
        ];
        let batch = WalBatch { scope: "token:gw-1".into(), id: "batch-1".into(), digest: Some([7; 32]) };
        let bytes = encode_wal_record(Some(&batch), true, &[(7, &odd), (9, &samples())]);
        let record = decode_wal_record(&bytes, WalFormat::Current).expect("decode");
        assert_eq!(record.batch.as_ref(), Some(&batch));
        assert!(record.historical);
        assert_eq!(record.series[0].0, 7);
        assert!(record.series[0].1.iter().zip(&odd).all(|(a, b)| a.same_as(b)));
        assert_eq!(record.series[1].1.len(), 5000);
        let plain = decode_wal_record(&encode_wal_record(None, false, &[(1, &odd)]), WalFormat::Current);
        assert_eq!(plain.map(|r| (r.batch, r.historical)).expect("decode"), (None, false));
    }

    #[test]
    fn records_of_the_first_format_are_still_read() {
        // `[len(id)+1]["b-1"][1 series][id 4][1 sample][ts 10 zigzagged][value][qualities: all good]`
        let mut bytes = vec![4];
        bytes.extend(b"b-1");
        bytes.extend([1, 4, 1, 20]);
        bytes.extend(2.5f64.to_bits().to_le_bytes());
        encode_quality(&[Sample::good(10, 2.5)], &mut bytes);
        let record = decode_wal_record(&bytes, WalFormat::First).expect("decode");
        let batch = record.batch.expect("batch");
        assert_eq!((batch.scope.as_str(), batch.id.as_str(), batch.digest), ("", "b-1", None));
        assert!(!record.historical);
        assert_eq!(record.series, vec![(4, vec![Sample::good(10, 2.5)])]);
    }

    #[test]
    fn regressions_found_by_the_fuzzer() {
        // A quality run length near u64::MAX once overflowed `len + run`.
        let mut record = vec![0, 1, 1, 1, 0];
        record.extend(1.5f64.to_bits().to_le_bytes());
        record.push(0);
        put_varint(&mut record, u64::MAX);
        assert!(decode_wal_record(&record, WalFormat::First).is_err());
        let mut current = vec![0];
        current.extend(&record[1..]);
        assert!(decode_wal_record(&current, WalFormat::Current).is_err());
    }

    #[test]
    fn truncated_or_garbage_bytes_are_errors_not_panics() {
        let batch = WalBatch { scope: "s".into(), id: "b".into(), digest: Some([1; 32]) };
        let bytes = encode_wal_record(Some(&batch), false, &[(1, &samples()[..10])]);
        for cut in 0..bytes.len() {
            assert!(decode_wal_record(&bytes[..cut], WalFormat::Current).is_err(), "cut at {cut}");
        }
        let chunk = encode_chunk(&samples()[..100]).expect("encode");
        for cut in 0..chunk.len() {
            assert!(decode_chunk(&chunk[..cut]).is_err(), "cut at {cut}");
        }
        let buckets = crate::query::aggregate(&samples(), 10_000);
        let rollups = encode_rollups(&buckets).expect("encode");
        assert_eq!(decode_rollups(&rollups).expect("decode"), buckets);
        for cut in 0..rollups.len() {
            assert!(decode_rollups(&rollups[..cut]).is_err(), "cut at {cut}");
        }
        let mut state = 1u64;
        for _ in 0..2000 {
            let garbage: Vec<u8> = (0..64)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            let _ = decode_wal_record(&garbage, WalFormat::First);
            let _ = decode_wal_record(&garbage, WalFormat::Current);
            let _ = decode_chunk(&garbage);
            let _ = decode_rollups(&garbage);
        }
    }
}
