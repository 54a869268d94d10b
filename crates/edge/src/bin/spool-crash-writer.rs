//! Test helper for the SIGKILL test: pushes batches into a spool in `argv[1]` forever and
//! prints each sequence number once `push` has returned (i.e. once it is durable).

use model::sample::{Sample, SeriesKey};
use std::io::Write;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: spool-crash-writer DIR");
        std::process::exit(2);
    };
    let options = edge::spool::SpoolOptions { segment_bytes: 8 << 10, ..Default::default() };
    let spool = match edge::spool::Spool::open(std::path::Path::new(&dir), options) {
        Ok(spool) => spool,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    for i in 0i64.. {
        let series = vec![(
            SeriesKey::new("acme/p/l/m-1", "temp"),
            (0..20).map(|k| Sample::good(i * 100 + k, i as f64)).collect(),
        )];
        match spool.push(&series) {
            Ok(Some(seq)) => {
                let _ = writeln!(out, "{seq}");
                let _ = out.flush();
            }
            Ok(None) => {}
            Err(error) => {
                eprintln!("{error}");
                std::process::exit(1);
            }
        }
    }
}
