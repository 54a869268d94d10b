//! A spool segment full of arbitrary bytes (a disk gone bad, a torn write) opens with an
//! error or as a queue, and reading it never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::write(dir.path().join("0000000001.seg"), data).is_err() {
        return;
    }
    if let Ok(spool) = edge::spool::Spool::open(dir.path(), edge::spool::SpoolOptions::default()) {
        let _ = spool.peek(1000);
        let _ = spool.ack(u64::MAX);
    }
});
