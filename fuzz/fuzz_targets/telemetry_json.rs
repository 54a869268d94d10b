//! The JSON telemetry batch decoder must never panic on any body, and a decoded series
//! can always be named.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = api::telemetry::decode_batch(data) {
        for (key, _) in batch.series {
            let _ = key.to_string();
        }
    }
});
