//! Bytes read back from disk (WAL records, chunks, rollups) must decode or fail, never panic;
//! whatever decodes must re-encode to something that decodes to the same samples, and a
//! span of a chunk must decode to the chunk's samples in that span.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = tsdb::decode_chunk(data) {
        // Any span of a chunk decodes to exactly the chunk's samples in that span.
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let (from, to) = (first.ts / 2 + last.ts / 2, last.ts);
            let mut span = Vec::new();
            tsdb::decode_chunk_range(data, from, to, &mut span).expect("the whole chunk decodes, so a span does");
            let expected: Vec<&model::sample::Sample> = samples.iter().filter(|s| s.ts >= from && s.ts < to).collect();
            assert_eq!(span.len(), expected.len());
            assert!(span.iter().zip(expected).all(|(a, b)| a.same_as(b)));
        }
        if samples.windows(2).all(|w| w[0].ts < w[1].ts) {
            let again = tsdb::decode_chunk(&tsdb::encode_chunk(&samples).expect("re-encode")).expect("decode");
            assert!(again.iter().zip(&samples).all(|(a, b)| a.same_as(b)));
        }
    }
    if let Ok(buckets) = tsdb::decode_rollups(data) {
        let again = tsdb::decode_rollups(&tsdb::encode_rollups(&buckets).expect("re-encode")).expect("decode");
        assert_eq!(again.len(), buckets.len());
        assert!(again.iter().zip(&buckets).all(|(a, b)| a.start == b.start && a.count == b.count));
    }
    for format in [tsdb::WalFormat::First, tsdb::WalFormat::Current] {
        if let Ok(record) = tsdb::decode_wal_record(data, format) {
            let columns: Vec<(tsdb::SeriesId, &[model::sample::Sample])> =
                record.series.iter().map(|(id, s)| (*id, s.as_slice())).collect();
            let bytes = tsdb::encode_wal_record(record.batch.as_ref(), record.historical, &columns);
            let again = tsdb::decode_wal_record(&bytes, tsdb::WalFormat::Current).expect("decode");
            assert_eq!(again.series.len(), record.series.len());
            assert_eq!(again.historical, record.historical);
        }
    }
});
