//! Rollups answer bucketed queries exactly as raw samples would, survive reopen, and
//! outlive raw retention; retention deletes each class on its own schedule.

use model::sample::{Quality, Sample, SeriesKey};
use tsdb::{Bucket, Resolution, RetentionClass, Tsdb, TsdbOptions, WriteRequest};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn key(signal: &str) -> SeriesKey {
    SeriesKey::new("acme/plant-1/line-1/p-1", signal)
}

fn options() -> TsdbOptions {
    TsdbOptions {
        chunk_samples: 500,
        wal_checkpoint_bytes: 256 << 10,
        wal_segment_bytes: 32 << 10,
        ..TsdbOptions::default()
    }
}

fn write(db: &Tsdb, series: Vec<(SeriesKey, Vec<Sample>)>) {
    db.write(WriteRequest { batch: None, series, historical: false }).expect("write");
}

/// A small deterministic generator (no test may depend on luck).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Buckets equal up to the rounding of sums taken in a different order.
fn assert_same(got: &[Bucket], want: &[Bucket], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: bucket count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (g.start, g.count, g.min, g.max, g.first, g.last),
            (w.start, w.count, w.min, w.max, w.first, w.last),
            "{what}"
        );
        assert!((g.sum - w.sum).abs() <= 1e-9 * w.sum.abs().max(1.0), "{what}: sum {} vs {}", g.sum, w.sum);
    }
}

#[test]
fn rollups_match_raw_aggregation_with_late_replaced_and_bad_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), options()).expect("open");
    let start = 1_767_225_600_000; // 2026-01-01, on an hour boundary
    let mut rng = Lcg(7);
    // Six hours at 1 Hz, sent in order with a 7 s phase so chunks straddle hours.
    let samples: Vec<Sample> =
        (0..6 * 3600).map(|i| Sample::good(start + 7_000 + i * 1000, (rng.next(1000) as f64) / 10.0)).collect();
    for part in samples.chunks(1000) {
        write(&db, vec![(key("temp"), part.to_vec())]);
    }
    // Late samples, replacements of sealed ones and bad-quality ones, then more seals.
    let mut late = Vec::new();
    for _ in 0..300 {
        let ts = start + rng.next(6 * 3600) as i64 * 1000 + 500 * rng.next(2) as i64;
        let quality = if rng.next(10) == 0 { Quality::BAD } else { Quality::GOOD };
        late.push(Sample { ts, value: rng.next(5000) as f64 / 10.0, quality });
    }
    write(&db, vec![(key("temp"), late)]);
    db.seal_all().expect("seal");
    write(&db, vec![(key("temp"), vec![Sample::good(start + 6 * HOUR + 30_000, 1.5)])]);

    let raw = db.range(&key("temp"), 0, i64::MAX).expect("range");
    for (from, to, width, resolution) in [
        (start, start + 7 * HOUR, MINUTE, Some(Resolution::Minute)),
        (start + 17_000, start + 5 * HOUR + 1_234, 5 * MINUTE, Some(Resolution::Minute)),
        (start - HOUR, start + 8 * HOUR, HOUR, Some(Resolution::Hour)),
        (start + 1, start + 7 * HOUR - 1, 2 * HOUR, Some(Resolution::Hour)),
        (start, start + 7 * HOUR, 45_000, None),
    ] {
        let got = db.aggregate(&key("temp"), from, to, width).expect("aggregate");
        let inside: Vec<Sample> = raw.iter().filter(|s| s.ts >= from && s.ts < to).copied().collect();
        let want = tsdb::aggregate(&inside, width);
        assert_same(&got.buckets, &want, &format!("[{from}, {to}) by {width}"));
        assert_eq!(got.resolution, resolution);
    }
    // The same answers from disk after a restart.
    let want = db.aggregate(&key("temp"), start, start + 7 * HOUR, MINUTE).expect("aggregate").buckets;
    drop(db);
    let db = Tsdb::open(dir.path(), options()).expect("reopen");
    let again = db.aggregate(&key("temp"), start, start + 7 * HOUR, MINUTE).expect("aggregate");
    assert_same(&again.buckets, &want, "after reopen");
    // A write after reopen still wins over what was sealed before it.
    write(&db, vec![(key("temp"), vec![Sample::good(start + 7_000, 999.0)])]);
    db.seal_all().expect("seal");
    let first = db.aggregate(&key("temp"), start, start + MINUTE, MINUTE).expect("aggregate");
    assert_eq!(first.buckets[0].max, 999.0);
    assert!(db.stats().rollup_bytes > 0);
}

#[test]
fn retention_deletes_each_class_on_its_schedule_and_rollups_outlive_raw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = tsdb_now();
    let old = (now - 40 * DAY).div_euclid(HOUR) * HOUR;
    let hour_of =
        |from: i64| -> Vec<Sample> { (0..3600).map(|i| Sample::good(from + i * 1000, (i % 97) as f64)).collect() };
    let mut options = options();
    options.retention.apply("standard=30d/60d/1y").expect("policy");
    options.retention.apply("diagnostic=1d/30d/1y").expect("policy");
    {
        let db = Tsdb::open(dir.path(), options.clone()).expect("open");
        db.set_classes([(key("diag"), RetentionClass::Diagnostic), (key("hours"), RetentionClass::Counter)]);
        write(&db, vec![(key("temp"), hour_of(old)), (key("diag"), hour_of(old)), (key("hours"), hour_of(old))]);
        db.seal_all().expect("seal");
    }
    // Reopening starts a new segment, so old and recent data live in different files.
    let db = Tsdb::open(dir.path(), options.clone()).expect("reopen");
    db.set_classes([(key("diag"), RetentionClass::Diagnostic), (key("hours"), RetentionClass::Counter)]);
    let recent = (now - 2 * HOUR).div_euclid(HOUR) * HOUR;
    write(&db, vec![(key("temp"), hour_of(recent)), (key("diag"), hour_of(recent)), (key("hours"), hour_of(recent))]);
    db.seal_all().expect("seal");
    let before = db.stats();
    let deleted = db.enforce_retention(now).expect("retention");
    // standard raw (40 d > 30 d) and diagnostic raw and minute (40 d > 30 d) go; counters stay.
    assert_eq!(deleted, 3, "segments deleted");
    assert!(db.stats().chunk_bytes < before.chunk_bytes);
    let raw_left = |signal: &str| db.range(&key(signal), old, old + HOUR).expect("range").len();
    assert_eq!((raw_left("temp"), raw_left("diag"), raw_left("hours")), (0, 0, 3600));
    let by_minute = |signal: &str| db.aggregate(&key(signal), old, old + HOUR, MINUTE).expect("aggregate").buckets;
    assert_eq!(by_minute("temp").len(), 60, "minute rollups outlive raw samples");
    assert_eq!(by_minute("temp").iter().map(|b| b.count).sum::<u64>(), 3600);
    assert!(by_minute("diag").is_empty(), "diagnostic minute rollups are gone after 30 d");
    let by_hour = db.aggregate(&key("diag"), old, old + HOUR, HOUR).expect("aggregate").buckets;
    assert_eq!(by_hour.len(), 1, "hour rollups are kept a year");
    assert_eq!(by_hour[0].count, 3600);
    assert_eq!(db.range(&key("temp"), recent, recent + HOUR).expect("range").len(), 3600, "recent data stays");
    // The deletion is durable, and a second pass deletes nothing more.
    drop(db);
    let db = Tsdb::open(dir.path(), options).expect("reopen");
    assert_eq!(db.range(&key("temp"), old, old + HOUR).expect("range").len(), 0);
    assert_eq!(db.enforce_retention(now).expect("retention"), 0);
}

fn tsdb_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[test]
fn sparse_series_are_not_rolled_up_per_minute_but_still_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), options()).expect("open");
    let start = 1_767_225_600_000;
    // NAB-like: one reading every five minutes for three days.
    let samples: Vec<Sample> =
        (0..864).map(|i| Sample::good(start + i * 300_000, 70.0 + (i % 13) as f64 / 4.0)).collect();
    write(&db, vec![(key("slow"), samples.clone())]);
    db.seal_all().expect("seal");
    for (width, resolution) in
        [(MINUTE, Resolution::Minute), (10 * MINUTE, Resolution::Minute), (HOUR, Resolution::Hour)]
    {
        let got = db.aggregate(&key("slow"), start, start + 3 * DAY, width).expect("aggregate");
        assert_eq!(got.resolution, Some(resolution));
        assert_same(&got.buckets, &tsdb::aggregate(&samples, width), &format!("by {width}"));
    }
    // Hour rollups are written; minute ones are a one-byte marker per record.
    assert!(db.stats().rollup_bytes < 864 * 4, "{:?}", db.stats());
}

#[test]
fn backfilled_history_reads_like_written_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), options()).expect("open");
    let start = 1_767_225_600_000;
    let history: Vec<Sample> = (0..3 * 3600).map(|i| Sample::good(start + i * 1000, (i % 113) as f64 / 4.0)).collect();
    assert_eq!(db.backfill(vec![(key("temp"), history.clone())]).expect("backfill"), history.len());
    assert_eq!(db.stats().head_samples, 0, "backfill bypasses the head");
    // A live write over the same time wins, as any later write does.
    write(&db, vec![(key("temp"), vec![Sample::good(start, 99.0)])]);
    let mut expected = history.clone();
    expected[0].value = 99.0;
    assert_eq!(db.range(&key("temp"), start, start + 3 * HOUR).expect("range"), expected);
    let hourly = db.aggregate(&key("temp"), start + HOUR, start + 3 * HOUR, HOUR).expect("aggregate");
    assert_eq!(hourly.resolution, Some(Resolution::Hour));
    assert_same(&hourly.buckets, &tsdb::aggregate(&expected[3600..], HOUR), "hour rollups of backfilled data");
    drop(db);
    let db = Tsdb::open(dir.path(), options()).expect("reopen");
    assert_eq!(db.range(&key("temp"), start, start + 3 * HOUR).expect("range"), expected);
    let unsorted = vec![Sample::good(2, 1.0), Sample::good(1, 1.0)];
    let error = db.backfill(vec![(key("other"), unsorted)]).expect_err("unsorted").to_string();
    assert!(error.contains("sorted"), "{error}");
}
