//! Writes, reads, sealing, checkpoints, reopen, duplicates and batch ids.

use model::sample::{Quality, Sample, SeriesKey};
use tsdb::{Tsdb, TsdbOptions, WriteRequest};

fn key(signal: &str) -> SeriesKey {
    SeriesKey::new("acme/plant-1/line-1/p-1", signal)
}

fn ramp(from: i64, n: i64, step: i64) -> Vec<Sample> {
    (0..n).map(|i| Sample::good(from + i * step, (i as f64 * 0.1).round() / 10.0)).collect()
}

fn small() -> TsdbOptions {
    TsdbOptions {
        chunk_samples: 100,
        wal_checkpoint_bytes: 64 << 10,
        wal_segment_bytes: 8 << 10,
        ..TsdbOptions::default()
    }
}

fn write(db: &Tsdb, batch: Option<&str>, series: Vec<(SeriesKey, Vec<Sample>)>) -> tsdb::WriteOutcome {
    let batch = batch.map(|id| super::batch("test", id, &series));
    db.write(WriteRequest { batch, series, historical: false }).expect("write")
}

#[test]
fn written_samples_read_back_across_seals_checkpoints_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = ramp(1_000_000, 5_000, 1000);
    {
        let db = Tsdb::open(dir.path(), small()).expect("open");
        for part in expected.chunks(250) {
            let outcome = write(&db, None, vec![(key("temp"), part.to_vec())]);
            assert_eq!(outcome.stored, part.len());
        }
        db.wait_for_seals();
        assert!(
            db.stats().chunks >= 2 && db.stats().head_samples < 5000,
            "heads should have been sealed: {:?}",
            db.stats()
        );
        assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range"), expected);
    }
    let sealed_before = {
        let db = Tsdb::open(dir.path(), small()).expect("reopen");
        db.stats().head_samples
    };
    let db = Tsdb::open(dir.path(), small()).expect("reopen");
    // The WAL still holds the sealed samples (no checkpoint ran): replay must not put
    // them back into the head, or they would be held, and later sealed, twice.
    assert!(db.stats().head_samples < 5000, "sealed samples came back into the head: {:?}", db.stats());
    assert_eq!(db.stats().head_samples, sealed_before, "reopening twice changes nothing");
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range"), expected);
    let window = db.range(&key("temp"), 1_000_000 + 10_000, 1_000_000 + 20_000).expect("window");
    assert_eq!(window.len(), 10);
    assert_eq!(db.latest(&key("temp")).expect("latest"), expected.last().copied());
    assert_eq!(db.range(&key("nothing"), 0, i64::MAX).expect("range"), vec![]);
    // A sealed sample replaced afterwards keeps its newer value across a reopen.
    let mut replaced = expected[100];
    replaced.value += 0.5;
    write(&db, None, vec![(key("temp"), vec![replaced])]);
    drop(db);
    let db = Tsdb::open(dir.path(), small()).expect("reopen");
    let at = db.range(&key("temp"), replaced.ts, replaced.ts + 1).expect("range");
    assert_eq!(at, vec![replaced], "the newer write wins after the replay");
}

#[test]
fn unsealed_head_is_recovered_from_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = ramp(0, 50, 1000);
    {
        let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
        write(&db, Some("b1"), vec![(key("temp"), samples.clone()), (key("vib"), samples[..10].to_vec())]);
        assert_eq!(db.stats().chunks, 0);
    }
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen");
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range"), samples);
    assert_eq!(db.series_of_asset("acme/plant-1/line-1/p-1"), vec![key("temp"), key("vib")]);
    assert_eq!(
        db.asset_range("acme/plant-1/line-1/p-1", 0, samples[20].ts).expect("asset range"),
        vec![(key("temp"), samples[..20].to_vec()), (key("vib"), samples[..10].to_vec())]
    );
    // The batch id survived too: a retry after the crash writes nothing and answers
    // what the first write did; the same id with other content is refused.
    let first = vec![(key("temp"), samples.clone()), (key("vib"), samples[..10].to_vec())];
    let retry = write(&db, Some("b1"), first);
    assert!(retry.replayed_batch);
    assert_eq!(retry.stored, 60);
    let other = WriteRequest {
        batch: Some(super::batch("test", "b1", &[(key("temp"), ramp(999_000, 3, 1))])),
        series: vec![(key("temp"), ramp(999_000, 3, 1))],
        historical: false,
    };
    assert!(matches!(db.write(other), Err(tsdb::Error::BatchConflict { .. })));
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range").len(), 50);
}

#[test]
fn batch_ids_survive_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Tsdb::open(dir.path(), small()).expect("open");
        write(&db, Some("kept"), vec![(key("temp"), ramp(0, 10, 1000))]);
        db.checkpoint().expect("checkpoint");
    }
    let db = Tsdb::open(dir.path(), small()).expect("reopen");
    assert!(write(&db, Some("kept"), vec![(key("temp"), ramp(0, 10, 1000))]).replayed_batch);
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range").len(), 10);
}

#[test]
fn out_of_order_late_and_duplicate_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), small()).expect("open");
    write(&db, None, vec![(key("temp"), ramp(100_000, 200, 1000))]); // seals 2 chunks
    // Late samples older than sealed data, and an exact duplicate of sealed data.
    let late = vec![Sample::good(5_000, 1.0), Sample::good(1_000, 0.5), Sample::good(100_000, 0.0)];
    write(&db, None, vec![(key("temp"), late)]);
    let all = db.range(&key("temp"), 0, i64::MAX).expect("range");
    assert_eq!(all.len(), 202, "the duplicate must not be counted twice");
    assert_eq!(all[0], Sample::good(1_000, 0.5));
    assert!(all.windows(2).all(|w| w[0].ts < w[1].ts));
    // A replaced value wins over the sealed one.
    write(&db, None, vec![(key("temp"), vec![Sample { ts: 100_000, value: 42.0, quality: Quality::UNCERTAIN }])]);
    let replaced = db.range(&key("temp"), 100_000, 100_001).expect("range");
    assert_eq!(replaced, vec![Sample { ts: 100_000, value: 42.0, quality: Quality::UNCERTAIN }]);
    let dup =
        write(&db, None, vec![(key("temp"), vec![Sample { ts: 100_000, value: 42.0, quality: Quality::UNCERTAIN }])]);
    assert_eq!((dup.stored, dup.duplicates), (0, 1));
}

#[test]
fn torn_wal_tail_is_cut_and_earlier_records_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
        write(&db, None, vec![(key("temp"), ramp(0, 20, 1000))]);
    }
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .expect("wal dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .max()
        .expect("segment");
    let mut file = std::fs::OpenOptions::new().append(true).open(&wal).expect("open");
    std::io::Write::write_all(&mut file, &[200, 0, 0, 0, 1, 2, 3]).expect("tear");
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen after torn write");
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range").len(), 20);
}

#[test]
fn nab_quirks_backwards_time_and_repeated_timestamps() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nab/realKnownCause");
    assert!(root.is_dir(), "the NAB data is missing at {}: check out ../shared beside the repository", root.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), small()).expect("open");
    for (file, signal) in [
        ("machine_temperature_system_failure.csv", "temperature"),
        ("ec2_request_latency_system_failure.csv", "latency"),
    ] {
        let path = root.join(file);
        let path = if path.exists() { path } else { root.join("../realAWSCloudwatch").join(file) };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rows: Vec<Sample> = text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (ts, value) = line.split_once(',')?;
                Some(Sample::good(parse_nab_time(ts)?, value.trim().parse().ok()?))
            })
            .collect();
        assert!(rows.len() > 1000, "{file}");
        write(&db, Some(file), vec![(SeriesKey::new("nab/site/line/machine", signal), rows.clone())]);
        let stored = db.range(&SeriesKey::new("nab/site/line/machine", signal), 0, i64::MAX).expect("range");
        let mut expected = rows.clone();
        expected.sort_by_key(|s| s.ts);
        expected.dedup_by(|b, a| {
            if a.ts == b.ts {
                *a = *b;
                true
            } else {
                false
            }
        });
        assert_eq!(stored.len(), expected.len(), "{file}: one sample per timestamp");
        assert!(stored.windows(2).all(|w| w[0].ts < w[1].ts), "{file}");
        let backwards = rows.windows(2).filter(|w| w[1].ts < w[0].ts).count();
        let repeated = rows.len() - expected.len();
        match signal {
            "temperature" => assert!(backwards >= 1, "the backwards step must be in the data"),
            _ => assert!(repeated >= 11, "the DST repeats must be in the data: {repeated}"),
        }
    }
}

/// `2014-01-07 02:55:00` -> milliseconds (the NAB files are naive timestamps; read as UTC).
fn parse_nab_time(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ')?;
    let d = model::Date::parse(date).ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let days = days_from_civil(d.year() as i64, d.month() as i64, d.day() as i64);
    Some(((days * 24 + h) * 60 + m) * 60_000 + s * 1000)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("wal")).expect("wal").filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
}

#[test]
fn the_wal_stays_bounded_and_fast_series_are_never_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TsdbOptions {
        chunk_samples: 500,
        wal_checkpoint_bytes: 32 << 10,
        wal_segment_bytes: 4 << 10,
        ..TsdbOptions::default()
    };
    let expected = ramp(0, 6000, 1000);
    {
        let db = Tsdb::open(dir.path(), options.clone()).expect("open");
        for part in expected.chunks(100) {
            write(&db, None, vec![(key("temp"), part.to_vec())]);
        }
        db.wait_for_seals();
        // Sealing runs in the background, so a chunk may hold more than 500: never fewer.
        let chunks = db.stats().chunks;
        assert!((1..=12).contains(&chunks), "a series that fills its chunks is sealed only when full: {chunks}");
        assert!(wal_bytes(dir.path()) < (32 + 8) << 10, "the WAL was not truncated: {} bytes", wal_bytes(dir.path()));
    }
    let db = Tsdb::open(dir.path(), options).expect("reopen");
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range"), expected);
}

#[test]
fn slow_series_are_sealed_early_to_bound_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TsdbOptions {
        chunk_samples: 100_000,
        wal_checkpoint_bytes: 32 << 10,
        wal_segment_bytes: 4 << 10,
        ..TsdbOptions::default()
    };
    let expected = ramp(0, 6000, 1000);
    {
        let db = Tsdb::open(dir.path(), options.clone()).expect("open");
        for part in expected.chunks(100) {
            write(&db, None, vec![(key("temp"), part.to_vec())]);
        }
        assert!(db.stats().chunks >= 1, "the slow series pinned the WAL and must have been sealed early");
        assert!(wal_bytes(dir.path()) < (32 + 8) << 10, "the WAL was not truncated: {} bytes", wal_bytes(dir.path()));
    }
    let db = Tsdb::open(dir.path(), options).expect("reopen from chunks + WAL");
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range"), expected);
    db.seal_all().expect("seal");
    assert_eq!(db.stats().head_samples, 0);
    assert_eq!(wal_bytes(dir.path()), 0, "after sealing everything no WAL is needed");
    assert_eq!(db.range(&key("temp"), 0, i64::MAX).expect("range"), expected);
}
