//! The JSON telemetry batch decoder must never panic on any body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((_, series)) = api::telemetry::decode_batch(data) {
        for (key, samples) in series {
            assert!(!key.asset.is_empty() || samples.len() < usize::MAX);
        }
    }
});
