//! Test helper for the SIGKILL durability test (`tests/it/crash.rs`): opens the engine in
//! the directory given as the first argument and writes batch after batch, starting at
//! the batch number given second, printing `ACK <n>` after each acknowledged write,
//! until it is killed. Not part of Treaty's user-facing tools.

use model::sample::{Sample, SeriesKey};
use std::io::Write;
use tsdb::{Tsdb, TsdbOptions, WriteRequest};

const SERIES: usize = 4;
const PER_BATCH: i64 = 500;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(start)) = (args.next(), args.next().and_then(|s| s.parse::<i64>().ok())) else {
        eprintln!("usage: tsdb-crash-writer DIR START_BATCH");
        std::process::exit(2);
    };
    let options = TsdbOptions {
        chunk_samples: 700,
        wal_checkpoint_bytes: 48 << 10,
        wal_segment_bytes: 8 << 10,
        ..TsdbOptions::default()
    };
    let db = match Tsdb::open(std::path::Path::new(&dir), options) {
        Ok(db) => db,
        Err(error) => {
            eprintln!("open: {error}");
            std::process::exit(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    for n in start.. {
        let series = (0..SERIES)
            .map(|i| {
                let key = SeriesKey::new("crash/site/line/asset", format!("s{i}"));
                (
                    key,
                    (0..PER_BATCH)
                        .map(|k| Sample::good(n * PER_BATCH + k, (n * PER_BATCH + k) as f64 + i as f64))
                        .collect(),
                )
            })
            .collect();
        if let Err(error) = db.write(WriteRequest { batch_id: Some(format!("batch-{n}")), series, historical: false }) {
            eprintln!("write: {error}");
            std::process::exit(1);
        }
        if writeln!(stdout, "ACK {n}").and_then(|()| stdout.flush()).is_err() {
            return;
        }
    }
}
