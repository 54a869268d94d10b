//! The stream of accepted writes: durable consumers (order, positions, resume after a
//! restart, WAL pinning, backpressure) and live readers (explicit skips).

use model::sample::{Sample, SeriesKey};
use model::{AcceptedWrite, Change, Position};
use std::collections::BTreeMap;
use std::sync::Arc;
use tsdb::{Live, Tsdb, TsdbOptions, WriteRequest};

fn key(signal: &str) -> SeriesKey {
    SeriesKey::new("acme/plant-1/line-1/p-1", signal)
}

fn small() -> TsdbOptions {
    TsdbOptions { chunk_samples: 100, wal_checkpoint_bytes: 16 << 10, wal_segment_bytes: 4 << 10, ..Default::default() }
}

fn write(db: &Tsdb, samples: Vec<Sample>, historical: bool) -> tsdb::WriteOutcome {
    db.write(WriteRequest { batch: None, series: vec![(key("temp"), samples)], historical }).expect("write")
}

fn ramp(from: i64, n: i64) -> Vec<Sample> {
    (0..n).map(|i| Sample::good(from + i, (from + i) as f64)).collect()
}

fn drain(consumer: &mut tsdb::Consumer) -> Vec<Arc<AcceptedWrite>> {
    std::iter::from_fn(|| consumer.try_next()).collect()
}

#[test]
fn a_durable_consumer_resumes_after_what_it_committed_even_when_the_samples_were_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let committed;
    {
        let db = Tsdb::open(dir.path(), small()).expect("open");
        let mut consumer = db.consume("alarms", None).expect("attach");
        let first = write(&db, ramp(0, 50), false);
        let records = drain(&mut consumer);
        assert_eq!(records.len(), 1);
        assert_eq!(Some(records[0].position), first.position);
        assert_eq!(records[0].series[0].samples, ramp(0, 50));
        committed = records[0].position;
        consumer.commit(committed);
        // Not processed: 40 writes, sealed into chunks, with checkpoints that would delete
        // their WAL segments if the consumer's slot did not pin them.
        for i in 0..40 {
            write(&db, ramp(50 + i * 50, 50), i % 2 == 1);
        }
        db.wait_for_seals();
        db.checkpoint().expect("checkpoint");
        assert!(db.stats().chunks >= 2 && db.stats().head_samples < 2050, "sealed: {:?}", db.stats());
        assert_eq!(db.consumers()[0].2, 40, "forty records not committed");
    }
    let db = Tsdb::open(dir.path(), small()).expect("reopen");
    let mut consumer = db.consume("alarms", Some(committed)).expect("resume");
    let records = drain(&mut consumer);
    assert_eq!(records.len(), 40, "every record after the committed one, none before");
    assert!(records.windows(2).all(|w| w[0].position < w[1].position));
    assert!(records[0].position > committed);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.series[0].samples, ramp(50 + i as i64 * 50, 50));
        assert_eq!(record.historical, i % 2 == 1, "the historical mark survives the replay");
    }
    drop(consumer);
    // A consumer without a saved position resumes after its slot.
    let mut again = db.consume("alarms", None).expect("attach without a position");
    assert_eq!(drain(&mut again).len(), 40);
}

#[test]
fn replacements_are_marked_and_exact_duplicates_are_not_delivered_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
    let mut consumer = db.consume("metering", None).expect("attach");
    write(&db, ramp(1, 3), false);
    // t=2 again (duplicate), t=3 with another value (replacement), t=4 new; out of order.
    let outcome = write(&db, vec![Sample::good(4, 4.0), Sample::good(2, 2.0), Sample::good(3, 30.0)], false);
    assert_eq!((outcome.stored, outcome.duplicates, outcome.replaced), (1, 1, 1));
    let records = drain(&mut consumer);
    let changes: Vec<(i64, f64, Change)> = records[1].series[0].changes().map(|(s, c)| (s.ts, s.value, c)).collect();
    assert_eq!(changes, [(3, 30.0, Change::Replacement), (4, 4.0, Change::New)]);
    // A write of nothing but duplicates still has a position, and delivers no samples.
    write(&db, ramp(1, 2), false);
    assert_eq!(drain(&mut consumer)[0].sample_count(), 0);
}

#[test]
fn two_concurrent_writers_are_seen_in_storage_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
    let mut consumer = db.consume("order", None).expect("attach");
    std::thread::scope(|scope| {
        for writer in 0..2 {
            let db = db.clone();
            scope.spawn(move || {
                for round in 0..200i64 {
                    // Both writers write the same time stamps with their own values: what
                    // storage keeps depends on the order the writes were committed in.
                    let samples = (0..20).map(|k| Sample::good(round * 10 + k, (writer * 1000 + round) as f64));
                    write(&db, samples.collect(), false);
                }
            });
        }
    });
    let records = drain(&mut consumer);
    assert_eq!(records.len(), 400);
    assert!(records.windows(2).all(|w| w[0].position < w[1].position), "positions only grow");
    let mut replayed: BTreeMap<i64, Sample> = BTreeMap::new();
    for record in &records {
        for series in &record.series {
            for (sample, change) in series.changes() {
                let before = replayed.insert(sample.ts, sample);
                assert_eq!(before.is_some(), change == Change::Replacement, "at {}", sample.ts);
            }
        }
    }
    let stored = db.range(&key("temp"), i64::MIN, i64::MAX).expect("range");
    assert_eq!(replayed.into_values().collect::<Vec<_>>(), stored, "applying the stream in order gives storage");
}

#[test]
fn a_stalled_consumer_holds_ingest_back_within_its_limit_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TsdbOptions { stream_lag_samples: 1000, ..TsdbOptions::default() };
    let db = Tsdb::open(dir.path(), options).expect("open");
    let mut consumer = db.consume("stalled", None).expect("attach");
    let (acks, acked) = std::sync::mpsc::channel();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for n in 0..20 {
                write(&db, ramp(n * 300, 300), false);
                let _ = acks.send(n);
            }
        })
    };
    // 4 x 300 samples pass the 1,000-sample limit: the fifth write waits for the consumer.
    for expected in 0..4 {
        assert_eq!(acked.recv().expect("ack"), expected);
    }
    assert!(
        acked.recv_timeout(std::time::Duration::from_millis(300)).is_err(),
        "ingest went on past the limit of a consumer that committed nothing"
    );
    let mut seen = 0;
    while seen < 20 {
        match consumer.try_next() {
            Some(record) => {
                seen += 1;
                assert_eq!(record.series[0].samples.len(), 300);
                consumer.commit(record.position);
            }
            None => std::thread::yield_now(),
        }
    }
    writer.join().expect("writer");
    assert_eq!(acked.try_iter().count(), 16, "the other writes went through once the consumer caught up");
}

#[tokio::test]
async fn a_live_reader_is_told_how_many_writes_it_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
    let mut live = db.live();
    for n in 0..1100 {
        write(&db, vec![Sample::good(n, 1.0)], false);
    }
    // 1,024 writes are kept for live readers: the first 76 are gone.
    match live.next().await {
        Some(Live::Skipped(n)) => assert_eq!(n, 76),
        other => panic!("expected a skip, got {other:?}"),
    }
    match live.next().await {
        Some(Live::Write(record)) => assert_eq!(record.series[0].samples[0].ts, 76),
        other => panic!("expected a write, got {other:?}"),
    }
    // A waiting reader wakes for the next write.
    let mut live = db.live();
    let waiter = tokio::spawn(async move { live.next().await });
    tokio::task::yield_now().await;
    write(&db, vec![Sample::good(5000, 1.0)], false);
    assert!(matches!(waiter.await.expect("join"), Some(Live::Write(r)) if r.series[0].samples[0].ts == 5000));
}

#[test]
fn a_consumer_asking_for_records_that_are_gone_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
        write(&db, ramp(0, 10), false);
    }
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen");
    // No slot kept the first write for this consumer: resuming before it would skip it.
    let refused = db.consume("late", Some(Position::START));
    assert!(matches!(refused, Err(tsdb::Error::ConsumerBehind { .. })), "{:?}", refused.err());
    // Slots nobody attached to are released once the hub has attached its consumers.
    drop(db.consume("gone", None).expect("attach"));
    drop(db);
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("reopen");
    assert_eq!(db.release_unclaimed_consumers(), vec!["gone".to_owned()]);
    assert!(db.consumers().is_empty());
}

#[tokio::test]
async fn closing_the_engine_ends_readers_and_refuses_later_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Tsdb::open(dir.path(), TsdbOptions::default()).expect("open");
    let mut live = db.live();
    let mut consumer = db.consume("c", None).expect("attach");
    let waiting = tokio::spawn(async move { (live.next().await.is_none(), consumer.next().await.is_none()) });
    tokio::task::yield_now().await;
    let closer = db.clone();
    tokio::task::spawn_blocking(move || closer.close()).await.expect("join").expect("close");
    assert_eq!(waiting.await.expect("join"), (true, true), "both readers end");
    let refused = db.write(WriteRequest { batch: None, series: vec![(key("temp"), ramp(0, 1))], historical: false });
    assert!(matches!(refused, Err(tsdb::Error::Closed)), "{refused:?}");
}
