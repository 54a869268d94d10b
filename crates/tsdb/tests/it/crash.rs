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

#[test]
fn acknowledged_samples_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acknowledged: i64 = -1;
    let mut seed = 0x5eed_u64;
    for round in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tsdb-crash-writer"))
            .arg(dir.path())
            .arg((acknowledged + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let wanted = 5 + (seed >> 33) % 40;
        let mut acked_this_round = 0;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.parse::<i64>().ok()) else { continue };
            acknowledged = n;
            acked_this_round += 1;
            if acked_this_round == wanted {
                // Kill while the writer is somewhere inside its next write.
                std::thread::sleep(Duration::from_micros((seed >> 40) % 3000));
                child.kill().expect("SIGKILL");
                break;
            }
        }
        child.wait().expect("reap");
        assert!(acked_this_round > 0, "round {round}: the writer acknowledged nothing");
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
