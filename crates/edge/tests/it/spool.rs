//! The store-and-forward queue under SIGKILL: every batch whose push returned is still
//! queued, in order, after the process is killed at a random moment — many times.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn every_acknowledged_batch_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut total = 0;
    for round in 0..12u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spool-crash-writer"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.parse::<u64>().ok())
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(50 + (round * 37) % 200));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let written = reader.join().expect("reader");
        total += written.len();
        acknowledged.extend(written);
        let spool = edge::spool::Spool::open(dir.path(), edge::spool::SpoolOptions::default()).expect("reopen");
        let queued: Vec<u64> = spool.peek(usize::MAX).expect("peek").iter().map(|e| e.seq).collect();
        assert!(queued.windows(2).all(|w| w[1] == w[0] + 1), "round {round}: out of order or with gaps");
        for seq in &acknowledged {
            assert!(queued.binary_search(seq).is_ok(), "round {round}: acknowledged batch {seq} is missing");
        }
        // Deliver some of it, as an uplink would, so later rounds also cross acks.
        if let Some(&last) = queued.get(queued.len() / 2) {
            spool.ack(last).expect("ack");
            acknowledged.retain(|s| *s > last);
        }
    }
    assert!(total > 100, "the writer must have been killed mid-stream many times, wrote {total}");
}

/// A full disk: a push fails and leaves the segment as it was, so that batches pushed
/// once there is room again are not lost behind a torn record at the next open.
#[test]
fn a_full_disk_refuses_a_push_without_losing_later_batches() {
    use model::sample::{Sample, SeriesKey};
    let root = tempfile::tempdir().expect("tempdir");
    let disk = crate::small_disk::SmallDisk::mount(&root.path().join("disk"), "1m");
    let dir = disk.0.join("spool");
    let batch = |n: i64| {
        vec![(SeriesKey::new("acme/p/l/a", "temp"), (0..300).map(|k| Sample::good(n * 1000 + k, 0.5)).collect())]
    };
    let mut pushed = Vec::new();
    {
        let spool = edge::spool::Spool::open(&dir, edge::spool::SpoolOptions::default()).expect("open");
        pushed.push(spool.push(&batch(0)).expect("push").expect("queued"));
        let filler = disk.fill(1500);
        let refused = (1..5).filter(|n| spool.push(&batch(*n)).is_err()).count();
        assert!(refused >= 3, "the disk should have been full");
        std::fs::remove_file(filler).expect("free the disk");
        for n in 5..8 {
            pushed.push(spool.push(&batch(n)).expect("push once there is room").expect("queued"));
        }
    }
    let spool = edge::spool::Spool::open(&dir, edge::spool::SpoolOptions::default()).expect("reopen");
    let queued: Vec<u64> = spool.peek(usize::MAX).expect("peek").iter().map(|e| e.seq).collect();
    assert_eq!(queued, pushed, "every acknowledged push, in order, and nothing torn");
}
