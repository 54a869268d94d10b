//! Test helper for the SIGKILL tests (`tests/it/crash.rs`): opens the engine in the
//! directory given as the first argument and writes batch after batch, starting at the
//! batch number given second, printing `ACK <n>` after each acknowledged write, until it
//! is killed. Not part of Treaty's user-facing tools.
//!
//! With `--consumer LOG` a durable consumer of the stream runs beside the writer, a
//! little slower than it: for every accepted write it appends the samples it saw and an
//! `END <position>` line to LOG, syncs, and only then commits the position — its state
//! and its position are persisted together. At start it cuts LOG back to its last
//! complete record and resumes after that position. With `--drain` it writes nothing:
//! the consumer processes what the engine still holds for it, prints `DRAINED`, exits.

use model::Position;
use model::sample::{Sample, SeriesKey};
use std::io::{Read, Seek, Write};
use tsdb::{BatchId, Tsdb, TsdbOptions, WriteRequest};

const SERIES: usize = 4;
const PER_BATCH: i64 = 500;
const CONSUMER: &str = "crash-consumer";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(start)) = (args.first(), args.get(1).and_then(|s| s.parse::<i64>().ok())) else {
        eprintln!("usage: tsdb-crash-writer DIR START_BATCH [--consumer LOG [--drain]]");
        std::process::exit(2);
    };
    let consumer_log = args.iter().position(|a| a == "--consumer").and_then(|i| args.get(i + 1));
    let drain = args.iter().any(|a| a == "--drain");
    let options = TsdbOptions {
        chunk_samples: 700,
        wal_checkpoint_bytes: 48 << 10,
        wal_segment_bytes: 8 << 10,
        ..TsdbOptions::default()
    };
    let db = Tsdb::open(std::path::Path::new(dir), options).unwrap_or_else(|error| fail("open", error));
    let consumer = consumer_log.map(|log| {
        let (file, after) = resume(log);
        let consumer = db.consume(CONSUMER, after).unwrap_or_else(|error| fail("attach", error));
        (file, consumer)
    });
    if drain {
        let Some((mut file, mut consumer)) = consumer else { fail("--drain", "needs --consumer") };
        while let Some(record) = consumer.try_next() {
            process(&mut file, &consumer, &record, false);
        }
        println!("DRAINED");
        return;
    }
    if let Some((mut file, mut consumer)) = consumer {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| fail("runtime", e));
            runtime.block_on(async {
                while let Some(record) = consumer.next().await {
                    process(&mut file, &consumer, &record, true);
                }
            });
        });
    }
    let mut stdout = std::io::stdout().lock();
    for n in start.. {
        let series: Vec<(SeriesKey, Vec<Sample>)> = (0..SERIES)
            .map(|i| {
                let key = SeriesKey::new("crash/site/line/asset", format!("s{i}"));
                let samples =
                    (0..PER_BATCH).map(|k| Sample::good(n * PER_BATCH + k, (n * PER_BATCH + k) as f64 + i as f64));
                (key, samples.collect())
            })
            .collect();
        // The content of batch `n` is fixed, so its digest may be too.
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&n.to_le_bytes());
        let batch = Some(BatchId { scope: "crash".into(), id: format!("batch-{n}"), digest });
        if let Err(error) = db.write(WriteRequest { batch, series, historical: false }) {
            fail("write", error);
        }
        if writeln!(stdout, "ACK {n}").and_then(|()| stdout.flush()).is_err() {
            return;
        }
    }
}

/// Persists what the consumer saw of one record with its position, then commits.
fn process(file: &mut std::fs::File, consumer: &tsdb::Consumer, record: &model::AcceptedWrite, slow: bool) {
    let mut text = String::new();
    for series in &record.series {
        for sample in &series.samples {
            text.push_str(&format!("{} {}\n", series.key.signal, sample.ts));
        }
    }
    text.push_str(&format!("END {}\n", record.position.0));
    file.write_all(text.as_bytes()).and_then(|()| file.sync_data()).unwrap_or_else(|e| fail("consumer log", e));
    consumer.commit(record.position);
    if slow {
        // Behind the writer on purpose, so that kills land between acknowledgement and processing.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Opens the consumer's log, cuts off a record torn by a kill, and returns the position
/// of the last complete one.
fn resume(path: &str) -> (std::fs::File, Option<Position>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| fail("consumer log", e));
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap_or_else(|e| fail("consumer log", e));
    let mut keep = 0;
    let mut after = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        at += line.len();
        if let Some(position) = line.strip_prefix("END ").and_then(|p| p.trim_end().parse::<u64>().ok())
            && line.ends_with('\n')
        {
            keep = at;
            after = Some(Position(position));
        }
    }
    file.set_len(keep as u64).and_then(|()| file.sync_all()).unwrap_or_else(|e| fail("consumer log", e));
    file.seek(std::io::SeekFrom::End(0)).unwrap_or_else(|e| fail("consumer log", e));
    (file, after)
}

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {error}");
    std::process::exit(1);
}
