//! Acknowledged means durable: a child process (`tsdb-crash-writer`) writes batches and
//! reports each acknowledged one on stdout; the test kills it with SIGKILL at a random
//! moment, reopens the data directory and checks that every acknowledged sample is
//! there, with the right values. Repeated many times per run; crashes also land inside
//! chunk sealing and WAL checkpoints because the writer uses small limits.

use model::sample::SeriesKey;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tsdb::{Tsdb, TsdbOptions};

const SERIES: usize = 4;
const PER_BATCH: i64 = 500;

/// Runs the crash writer (with `extra` arguments) from the batch after `acknowledged`,
/// kills it with SIGKILL after `wanted` acknowledgements (somewhere inside its next
/// write) and returns the last batch it acknowledged.
fn write_until_killed(dir: &std::path::Path, acknowledged: i64, extra: &[&std::ffi::OsStr], seed: u64) -> i64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsdb-crash-writer"))
        .arg(dir)
        .arg((acknowledged + 1).to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let wanted = 5 + (seed >> 33) % 40;
    let (mut last, mut acked) = (acknowledged, 0);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.parse::<i64>().ok()) else { continue };
        (last, acked) = (n, acked + 1);
        if acked == wanted {
            std::thread::sleep(Duration::from_micros((seed >> 40) % 3000));
            child.kill().expect("SIGKILL");
            break;
        }
    }
    child.wait().expect("reap");
    assert!(acked > 0, "the writer acknowledged nothing");
    last
}

fn next_seed(seed: u64) -> u64 {
    seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407)
}

#[test]
fn acknowledged_samples_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acknowledged: i64 = -1;
    let mut seed = 0x5eed_u64;
    for round in 0..20 {
        seed = next_seed(seed);
        acknowledged = write_until_killed(dir.path(), acknowledged, &[], seed);
        let options = TsdbOptions {
            chunk_samples: 700,
            wal_checkpoint_bytes: 48 << 10,
            wal_segment_bytes: 8 << 10,
            ..TsdbOptions::default()
        };
        let db = Tsdb::open(dir.path(), options).expect("reopen after SIGKILL");
        for i in 0..SERIES {
            let key = SeriesKey::new("crash/site/line/asset", format!("s{i}"));
            let stored = db.range(&key, 0, (acknowledged + 1) * PER_BATCH).expect("range");
            assert_eq!(
                stored.len() as i64,
                (acknowledged + 1) * PER_BATCH,
                "round {round}, series {i}: acknowledged samples lost"
            );
            let exact = stored.iter().enumerate().all(|(t, s)| s.ts == t as i64 && s.value == t as f64 + i as f64);
            assert!(exact, "round {round}, series {i}: wrong values after recovery");
        }
    }
}

/// A durable consumer beside the writer, slower than it, persisting what it saw with
/// its position (`--consumer`). Kills land between acknowledgement and processing; after
/// each restart the consumer resumes after its last persisted position. In the end every
/// acknowledged sample was processed exactly once, and nothing twice.
#[test]
fn a_durable_consumer_processes_each_acknowledged_sample_exactly_once_across_sigkills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("consumer.log");
    let data = dir.path().join("telemetry");
    let mut acknowledged: i64 = -1;
    let mut seed = 0xc0ffee_u64;
    for _ in 0..12 {
        seed = next_seed(seed);
        let extra = [std::ffi::OsStr::new("--consumer"), log.as_os_str()];
        acknowledged = write_until_killed(&data, acknowledged, &extra, seed);
    }
    // Let the consumer finish what the engine still holds for it.
    let drained = Command::new(env!("CARGO_BIN_EXE_tsdb-crash-writer"))
        .arg(&data)
        .arg("0")
        .arg("--consumer")
        .arg(&log)
        .arg("--drain")
        .output()
        .expect("drain");
    assert!(String::from_utf8_lossy(&drained.stdout).contains("DRAINED"), "{drained:?}");
    let text = std::fs::read_to_string(&log).expect("consumer log");
    let mut seen: std::collections::HashMap<(String, i64), usize> = std::collections::HashMap::new();
    let mut positions = Vec::new();
    for line in text.lines() {
        if let Some(position) = line.strip_prefix("END ") {
            positions.push(position.parse::<u64>().expect("position"));
            continue;
        }
        let (signal, ts) = line.split_once(' ').expect("sample line");
        *seen.entry((signal.to_owned(), ts.parse().expect("ts"))).or_default() += 1;
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "records processed in order, none twice");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "processed twice: {twice:?}");
    for i in 0..SERIES {
        for ts in 0..(acknowledged + 1) * PER_BATCH {
            assert!(seen.contains_key(&(format!("s{i}"), ts)), "acknowledged sample s{i}@{ts} never processed");
        }
    }
}
