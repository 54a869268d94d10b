//! The JSON telemetry batch decoder must never panic on any body, and its fast path must
//! agree with the serde decoder on every body it accepts (bit for bit).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(fast) = api::telemetry::decode_batch(data) else { return };
    let slow = api::telemetry::decode_with_serde(data).expect("the fast path accepted what serde refuses");
    assert_eq!((&fast.batch_id, fast.historical), (&slow.batch_id, slow.historical));
    assert_eq!(fast.series.len(), slow.series.len());
    for ((fk, fs), (sk, ss)) in fast.series.iter().zip(&slow.series) {
        assert_eq!(fk, sk);
        assert!(fs.len() == ss.len() && fs.iter().zip(ss).all(|(a, b)| a.same_as(b)));
    }
});
