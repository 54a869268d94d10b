//! The line-protocol parser must never panic, and every point it returns must come from a line it accepted.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for precision in [ingest::Precision::Nanoseconds, ingest::Precision::Seconds] {
            let (parsed, errors) = ingest::parse_line_protocol(text, precision, 0);
            for (_, samples, lines) in &parsed {
                assert_eq!(samples.len(), lines.len());
                assert!(lines.iter().all(|l| errors.iter().all(|e| e.line != *l)));
            }
        }
    }
});
