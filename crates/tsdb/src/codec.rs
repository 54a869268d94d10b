//! Byte formats, sans I/O: varints, the compressed chunk format and the WAL record
//! format. Every decoder takes `&[u8]` from disk and returns an error, never panics.
//!
//! Chunk = `[n u32][ts_len u32][val_len u32] ts(pco i64) values(pco f64) quality(RLE)`.
//! Pcodec picks delta orders and modes per chunk: regular 1 Hz timestamps cost almost
//! nothing and quantised sensor values compress to a few bits each.

use crate::sample::{Quality, Sample, SeriesId};
use crate::{Error, Result};

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

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
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

fn decode_quality(reader: &mut Reader<'_>, n: usize) -> Result<Vec<Quality>> {
    // `n` comes from disk: never trust it for an allocation.
    let mut out = Vec::with_capacity(n.min(1 << 20));
    while out.len() < n {
        let q = u32::try_from(reader.varint()?).map_err(|_| corrupt("quality out of range"))?;
        let run = reader.varint()? as usize;
        if run == 0 || out.len() + run > n {
            return Err(corrupt("quality run length"));
        }
        out.extend(std::iter::repeat_n(Quality(q), run));
    }
    Ok(out)
}

/// Compresses samples (sorted by time, unique timestamps) into one chunk.
pub fn encode_chunk(samples: &[Sample]) -> Result<Vec<u8>> {
    let config = pco::ChunkConfig::default();
    let ts: Vec<i64> = samples.iter().map(|s| s.ts).collect();
    let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
    let ts_bytes = pco::standalone::simple_compress(&ts, &config).map_err(|e| Error::Codec(e.to_string()))?;
    let value_bytes = pco::standalone::simple_compress(&values, &config).map_err(|e| Error::Codec(e.to_string()))?;
    let mut out = Vec::with_capacity(12 + ts_bytes.len() + value_bytes.len() + 4);
    out.extend((samples.len() as u32).to_le_bytes());
    out.extend((ts_bytes.len() as u32).to_le_bytes());
    out.extend((value_bytes.len() as u32).to_le_bytes());
    out.extend(ts_bytes);
    out.extend(value_bytes);
    encode_quality(samples, &mut out);
    Ok(out)
}

pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<Sample>> {
    let mut reader = Reader::new(bytes);
    let n = reader.u32()? as usize;
    let ts_len = reader.u32()? as usize;
    let value_len = reader.u32()? as usize;
    let ts: Vec<i64> =
        pco::standalone::simple_decompress(reader.take(ts_len)?).map_err(|e| Error::Corrupt(e.to_string()))?;
    let values: Vec<f64> =
        pco::standalone::simple_decompress(reader.take(value_len)?).map_err(|e| Error::Corrupt(e.to_string()))?;
    let qualities = decode_quality(&mut reader, n)?;
    if ts.len() != n || values.len() != n || !reader.is_done() {
        return Err(corrupt("chunk column lengths disagree"));
    }
    Ok(ts.into_iter().zip(values).zip(qualities).map(|((ts, value), quality)| Sample { ts, value, quality }).collect())
}

/// One durable write: an optional batch id and samples per series.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub batch_id: Option<String>,
    pub series: Vec<(SeriesId, Vec<Sample>)>,
}

/// Payload of a WAL record (framing and checksum are the WAL's business).
pub fn encode_wal_record(batch_id: Option<&str>, series: &[(SeriesId, &[Sample])]) -> Vec<u8> {
    let total: usize = series.iter().map(|(_, s)| s.len()).sum();
    let mut out = Vec::with_capacity(16 + total * 11);
    match batch_id {
        Some(id) => {
            put_varint(&mut out, id.len() as u64 + 1);
            out.extend(id.as_bytes());
        }
        None => put_varint(&mut out, 0),
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

pub fn decode_wal_record(bytes: &[u8]) -> Result<WalRecord> {
    let mut reader = Reader::new(bytes);
    let batch_id = match reader.varint()? as usize {
        0 => None,
        n => Some(String::from_utf8(reader.take(n - 1)?.to_vec()).map_err(|_| corrupt("batch id is not UTF-8"))?),
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
    Ok(WalRecord { batch_id, series })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn wal_records_round_trip_with_odd_values() {
        let odd = vec![
            Sample::good(-5, f64::NEG_INFINITY),
            Sample::good(i64::MAX, -0.0),
            Sample { ts: i64::MIN, value: f64::MIN_POSITIVE, quality: Quality::UNCERTAIN },
        ];
        let bytes = encode_wal_record(Some("batch-1"), &[(7, &odd), (9, &samples())]);
        let record = decode_wal_record(&bytes).expect("decode");
        assert_eq!(record.batch_id.as_deref(), Some("batch-1"));
        assert_eq!(record.series[0].0, 7);
        assert!(record.series[0].1.iter().zip(&odd).all(|(a, b)| a.same_as(b)));
        assert_eq!(record.series[1].1.len(), 5000);
    }

    #[test]
    fn truncated_or_garbage_bytes_are_errors_not_panics() {
        let bytes = encode_wal_record(None, &[(1, &samples()[..10])]);
        for cut in 0..bytes.len() {
            assert!(decode_wal_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let chunk = encode_chunk(&samples()[..100]).expect("encode");
        for cut in 0..chunk.len() {
            assert!(decode_chunk(&chunk[..cut]).is_err(), "cut at {cut}");
        }
        let mut state = 1u64;
        for _ in 0..2000 {
            let garbage: Vec<u8> = (0..64)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            let _ = decode_wal_record(&garbage);
            let _ = decode_chunk(&garbage);
        }
    }
}
