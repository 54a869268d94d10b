//! A full disk: appends fail with `DiskFull` and leave the WAL as it was, so that once
//! there is room again the next acknowledged write is not cut off with a torn record at
//! the next start. Runs on a small tmpfs mounted for the test (`tests/support`).

use crate::small_disk::SmallDisk;
use model::sample::{Sample, SeriesKey};
use tsdb::{Tsdb, TsdbOptions, WriteRequest};

fn batch(n: i64) -> WriteRequest {
    let samples = (0..400).map(|k| Sample::good(n * 1000 + k, (n * 1000 + k) as f64 + 0.25)).collect();
    WriteRequest { batch: None, series: vec![(SeriesKey::new("acme/p/l/a", "temp"), samples)], historical: false }
}

#[test]
fn a_full_disk_refuses_writes_without_tearing_the_wal_and_acknowledged_samples_survive() {
    let root = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&root.path().join("disk"), "2m");
    let dir = disk.0.join("telemetry");
    let options = || TsdbOptions { wal_segment_bytes: 256 << 10, ..TsdbOptions::default() };
    let mut acknowledged = Vec::new();
    {
        let db = Tsdb::open(&dir, options()).expect("open");
        db.write(batch(0)).expect("first write");
        acknowledged.push(0);
        // Room for part of a record: the append tears, and must be cut off again.
        let filler = disk.fill(1500);
        let mut refused = 0;
        for n in 1..6 {
            match db.write(batch(n)) {
                Err(tsdb::Error::DiskFull(message)) => {
                    assert!(message.contains("No space left"), "{message}");
                    refused += 1;
                }
                Ok(_) => acknowledged.push(n),
                Err(other) => panic!("expected a full disk, got {other}"),
            }
        }
        assert!(refused >= 4, "the disk should have been full");
        std::fs::remove_file(filler).expect("free the disk");
        for n in 6..9 {
            db.write(batch(n)).expect("a write once there is room again");
            acknowledged.push(n);
        }
        // Dropped without a checkpoint, as after a kill.
    }
    let db = Tsdb::open(&dir, options()).expect("reopen");
    let stored = db.range(&SeriesKey::new("acme/p/l/a", "temp"), i64::MIN, i64::MAX).expect("range");
    let expected: Vec<Sample> = acknowledged
        .iter()
        .flat_map(|n| (0..400).map(move |k| Sample::good(n * 1000 + k, (n * 1000 + k) as f64 + 0.25)))
        .collect();
    let stored_batches: Vec<i64> =
        stored.iter().map(|s| s.ts / 1000).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    assert_eq!(stored_batches, acknowledged, "every acknowledged batch, and only those");
    assert_eq!(stored, expected);
}
