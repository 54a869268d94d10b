//! Telemetry over HTTP: ingest reports, rejection reasons, batch ids, device binding,
//! line protocol, queries, tenant scoping and the SSE stream.

use crate::harness::{Harness, VIEWER_CUSTOMER};
use axum::http::{Method, StatusCode};
use model::Role;
use serde_json::{Value, json};

const PUMP: &str = "acme/plant-1/line-1/p-101";
const OTHER_SITE_PUMP: &str = "acme/plant-2/aeration/c-301";
const FOREIGN_PUMP: &str = "lakeshore/north-plant/high-lift/hl-1";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn series(asset: &str, signal: &str, timestamps: Vec<i64>, values: Vec<Value>) -> Value {
    json!({"asset": asset, "signal": signal, "timestamps": timestamps, "values": values})
}

async fn post_json(h: &Harness, role: Role, uri: &str, body: &Value) -> crate::harness::Reply {
    h.call(Method::POST, uri, Some(h.token(role)), Some(body)).await
}

#[tokio::test]
async fn json_batches_are_stored_and_read_back() {
    let h = Harness::new().await;
    let t0 = now_ms() - 60_000;
    let ts: Vec<i64> = (0..60).map(|i| t0 + i * 1000).collect();
    let values: Vec<Value> = (0..60).map(|i| json!(2.0 + f64::from(i) / 100.0)).collect();
    let body =
        json!({"batch_id": "gw-1-0001", "series": [series(PUMP, "bearing_vibration_rms", ts.clone(), values.clone())]});
    let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!((reply.body["stored"].as_u64(), reply.body["rejected"].as_array().map(Vec::len)), (Some(60), Some(0)));

    let range = h
        .call(
            Method::GET,
            &format!("/api/v1/telemetry/range?asset={PUMP}&signal=bearing_vibration_rms&from={t0}"),
            Some(h.token(Role::Technician)),
            None,
        )
        .await;
    assert_eq!(range.status, StatusCode::OK, "{}", range.body);
    assert_eq!(range.body["samples"]["timestamps"], json!(ts));
    assert_eq!(range.body["samples"]["values"], json!(values));

    let buckets = h
        .call(
            Method::GET,
            &format!("/api/v1/telemetry/range?asset={PUMP}&signal=bearing_vibration_rms&from={t0}&bucket_ms=60000"),
            Some(h.token(Role::Technician)),
            None,
        )
        .await;
    let total: u64 =
        buckets.body["buckets"].as_array().expect("buckets").iter().map(|b| b["count"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 60);

    let latest = h
        .call(Method::GET, &format!("/api/v1/telemetry/latest?asset={PUMP}"), Some(h.token(Role::Dispatcher)), None)
        .await;
    assert_eq!(latest.body["signals"]["bearing_vibration_rms"]["timestamp"], json!(ts[59]));
    let window = h
        .call(Method::GET, &format!("/api/v1/telemetry/asset?asset={PUMP}"), Some(h.token(Role::Technician)), None)
        .await;
    assert_eq!(window.body["signals"]["bearing_vibration_rms"]["values"].as_array().map(Vec::len), Some(60));

    // A retry of the same batch id stores nothing new.
    let retry = post_json(&h, Role::Device, "/api/v1/telemetry", &body).await;
    assert_eq!((retry.body["replayed_batch"].as_bool(), retry.body["stored"].as_u64()), (Some(true), Some(60)));
    // The same samples without a batch id are exact duplicates: no-ops.
    let again = json!({"series": [series(PUMP, "bearing_vibration_rms", ts.clone(), values)]});
    let duplicate = post_json(&h, Role::Device, "/api/v1/telemetry", &again).await;
    assert_eq!((duplicate.body["stored"].as_u64(), duplicate.body["duplicates"].as_u64()), (Some(0), Some(60)));
}

#[tokio::test]
async fn aggregates_come_from_rollups_and_counters_keep_their_retention_class() {
    let h = Harness::new().await;
    let hour = 3_600_000;
    let t0 = (now_ms() - 3 * hour).div_euclid(hour) * hour;
    let ts: Vec<i64> = (0..7200).map(|i| t0 + i * 1000).collect();
    let vibration: Vec<Value> = (0..7200).map(|i| json!(f64::from(i % 50) / 10.0)).collect();
    let hours: Vec<Value> = (0..7200).map(|i| json!(1000.0 + f64::from(i) / 3600.0)).collect();
    let body = json!({"series": [
        series(PUMP, "bearing_vibration_rms", ts.clone(), vibration),
        series(PUMP, "run_hours", ts, hours),
    ]});
    let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &body).await;
    assert_eq!(reply.body["stored"].as_u64(), Some(14_400), "{}", reply.body);
    let engine = h.tsdb.clone();
    tokio::task::spawn_blocking(move || engine.seal_all()).await.expect("join").expect("seal");

    let uri = format!(
        "/api/v1/telemetry/range?asset={PUMP}&signal=bearing_vibration_rms&from={t0}&to={}&bucket_ms={hour}",
        t0 + 2 * hour
    );
    let reply = h.call(Method::GET, &uri, Some(h.token(Role::Technician)), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["rollups"], json!("hour"));
    let buckets = reply.body["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 2);
    for bucket in buckets {
        assert_eq!(
            (bucket["count"].as_u64(), bucket["min"].as_f64(), bucket["max"].as_f64()),
            (Some(3600), Some(0.0), Some(4.9))
        );
    }
    let odd = format!("/api/v1/telemetry/range?asset={PUMP}&signal=bearing_vibration_rms&from={t0}&bucket_ms=90000");
    let reply = h.call(Method::GET, &odd, Some(h.token(Role::Technician)), None).await;
    assert_eq!(reply.body["rollups"], json!("none"), "90 s buckets are computed from samples");
    // Counters are sealed in the `counter` class, signals in `standard`.
    let class_bytes = |class: &str| -> u64 {
        let dir = h.data_dir().join("telemetry/chunks").join(class).join("raw");
        std::fs::read_dir(&dir).expect("class dir").filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
    };
    assert!(class_bytes("counter") > 0 && class_bytes("standard") > 0);
    assert_eq!(class_bytes("high_rate"), 0);
}

#[tokio::test]
async fn every_rejection_reason_is_reported_and_good_samples_are_kept() {
    let h = Harness::new().await;
    let t = now_ms();
    let body = json!({"series": [
        series(PUMP, "bearing_temperature", vec![t, t + 1, t + 2, t + 3_600_000], vec![json!(60.0), json!(null), json!(999.0), json!(61.0)]),
        series(PUMP, "no_such_signal", vec![t], vec![json!(1.0)]),
        series("acme/plant-1/line-1/nope", "flow", vec![t], vec![json!(1.0)]),
        series(PUMP, "run_hours", vec![t], vec![json!(-5.0)]),
    ]});
    let reply = post_json(&h, Role::Admin, "/api/v1/telemetry", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["stored"], 1);
    let codes: Vec<&str> =
        reply.body["rejected"].as_array().expect("rejected").iter().filter_map(|r| r["code"].as_str()).collect();
    assert_eq!(
        codes,
        ["not_finite", "out_of_range", "timestamp_in_future", "unknown_series", "unknown_asset", "negative_counter"]
    );
    for rejection in reply.body["rejected"].as_array().expect("rejected") {
        assert!(rejection["reason"].as_str().is_some_and(|r| r.len() > 10), "{rejection}");
        assert!(rejection["series"].as_str().is_some() && rejection["index"].is_u64());
    }
    let atomic = post_json(&h, Role::Admin, "/api/v1/telemetry?atomic=true", &body).await;
    assert_eq!((atomic.status, atomic.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "batch_rejected".into()));
    let stored = h
        .call(
            Method::GET,
            &format!("/api/v1/telemetry/range?asset={PUMP}&signal=bearing_temperature&from={}", t - 1000),
            Some(h.token(Role::Admin)),
            None,
        )
        .await;
    assert_eq!(stored.body["samples"]["values"], json!([60.0]), "the atomic batch must not have written");
    let mismatched = json!({"series": [{"asset": PUMP, "signal": "flow", "timestamps": [1, 2], "values": [1.0]}]});
    assert_eq!(
        post_json(&h, Role::Admin, "/api/v1/telemetry", &mismatched).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let garbage = h
        .call_with(Method::POST, "/api/v1/telemetry", Some(h.token(Role::Admin)), Some(b"{\"series\": [".to_vec()), &[])
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_asset_window_holds_every_signal_exactly_as_the_range_endpoint_does() {
    let h = Harness::new().await;
    let t0 = now_ms() - 300_000;
    let signals = ["bearing_vibration_rms", "bearing_temperature", "discharge_pressure", "flow", "motor_current"];
    let counters = ["run_hours", "energy_kwh", "starts"];
    // Sealed chunks for the first half, the head for the second, with values of every
    // kind the writer formats differently (short decimals, floats from f32 registers,
    // integers, a sample without a value).
    for (half, range) in [(0, 0..120), (1, 120..240)] {
        let mut series = Vec::new();
        for (k, signal) in signals.iter().chain(&counters).enumerate() {
            let ts: Vec<i64> = range.clone().map(|i| t0 + i * 1000 + k as i64).collect();
            let values: Vec<Value> = range
                .clone()
                .map(|i| match (k + i as usize) % 4 {
                    0 => json!(f64::from(i as u32 % 50) / 10.0),
                    1 => json!(f64::from(0.1f32 + i as f32 / 20.0)),
                    2 => json!(f64::from(i as u32 % 20)),
                    _ => json!(0.005 * f64::from(k as u32)),
                })
                .collect();
            let mut one = json!({"asset": PUMP, "signal": signal, "timestamps": ts, "values": values});
            if k == 1 {
                one["values"][7] = Value::Null;
                one["qualities"] = json!((0..120).map(|i| if i == 7 { 0x8031_0000u32 } else { 0 }).collect::<Vec<_>>());
            }
            series.push(one);
        }
        let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &json!({ "series": series })).await;
        assert_eq!(reply.body["stored"].as_u64(), Some(8 * 120), "{}", reply.body);
        if half == 0 {
            h.tsdb.seal_all().expect("seal");
        }
    }
    let (from, to) = (t0 + 30_000, t0 + 200_000);
    let get = |uri: String| {
        let h = &h;
        async move { h.call(Method::GET, &uri, Some(h.token(Role::Technician)), None).await }
    };
    let window = get(format!("/api/v1/telemetry/asset?asset={PUMP}&from={from}&to={to}")).await;
    assert_eq!(window.status, StatusCode::OK, "{}", window.body);
    assert_eq!((window.body["from"].as_i64(), window.body["to"].as_i64()), (Some(from), Some(to)));
    let names: Vec<&String> = window.body["signals"].as_object().expect("signals").keys().collect();
    let mut expected: Vec<&str> = signals.iter().chain(&counters).copied().collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "every series of the asset, by name");
    for signal in expected {
        let range = get(format!("/api/v1/telemetry/range?asset={PUMP}&signal={signal}&from={from}&to={to}")).await;
        assert_eq!(window.body["signals"][signal], range.body["samples"], "{signal}");
        assert_eq!(range.body["samples"]["timestamps"].as_array().map(Vec::len), Some(170), "{signal}");
    }
    // The sample without a value (index 7 of the second batch, at 127 s) reads back as null.
    assert_eq!(window.body["signals"]["bearing_temperature"]["values"][127 - 30], Value::Null, "{}", window.body);
    // An asset with nothing written yet has an empty window.
    let empty = get(format!("/api/v1/telemetry/asset?asset={OTHER_SITE_PUMP}")).await;
    assert_eq!((empty.status, &empty.body["signals"]), (StatusCode::OK, &json!({})), "{}", empty.body);
}

#[tokio::test]
async fn bad_quality_samples_record_a_status_without_a_value() {
    let h = Harness::new().await;
    let t0 = now_ms() - 5_000;
    let communication_error = 0x8005_0000u32;
    let body = json!({"series": [{"asset": PUMP, "signal": "bearing_vibration_rms",
        "timestamps": [t0, t0 + 1000, t0 + 2000], "values": [null, 999.0, null],
        "qualities": [communication_error, communication_error, 0]}]});
    let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &body).await;
    assert_eq!(reply.body["stored"].as_u64(), Some(2), "{}", reply.body);
    let rejected = reply.body["rejected"].as_array().expect("rejected");
    assert_eq!((rejected.len(), rejected[0]["code"].as_str()), (1, Some("not_finite")), "a good sample needs a value");
    let uri = format!("/api/v1/telemetry/range?asset={PUMP}&signal=bearing_vibration_rms&from={t0}");
    let range = h.call(Method::GET, &uri, Some(h.token(Role::Technician)), None).await;
    assert_eq!(range.body["samples"]["qualities"], json!([communication_error, communication_error]), "{}", range.body);
}

#[tokio::test]
async fn edge_events_reach_the_audit_trail_once_and_only_for_bound_assets() {
    let h = Harness::new().await;
    let event = json!({"event": "gw-1/interlock/17", "kind": "interlock", "asset": PUMP,
        "details": {"interlock": "stop on heat", "address": 5, "value": 1.0, "latency_ms": 0.4}});
    let first = post_json(&h, Role::Device, "/api/v1/events", &event).await;
    assert_eq!((first.status, first.body["recorded"].as_bool()), (StatusCode::OK, Some(true)), "{}", first.body);
    let again = post_json(&h, Role::Device, "/api/v1/events", &event).await;
    assert_eq!(again.body["recorded"].as_bool(), Some(false), "a retry is recorded once");
    let audit = h.call(Method::GET, "/api/v1/audit?limit=1000", Some(h.token(Role::Admin)), None).await;
    let entries = audit.body["items"].as_array().cloned().unwrap_or_default();
    let events: Vec<&Value> = entries.iter().filter(|e| e["action"] == "device.interlock").collect();
    assert_eq!(events.len(), 1, "{} audit entries", entries.len());
    assert_eq!(events[0]["after"]["address"], 5);
    let foreign = json!({"event": "gw-1/interlock/18", "kind": "interlock", "asset": FOREIGN_PUMP});
    assert_eq!(post_json(&h, Role::Device, "/api/v1/events", &foreign).await.status, StatusCode::FORBIDDEN);
    for bad in [
        json!({"event": "", "kind": "interlock", "asset": PUMP}),
        json!({"event": "x", "kind": "Drop Table", "asset": PUMP}),
    ] {
        assert_eq!(post_json(&h, Role::Device, "/api/v1/events", &bad).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(post_json(&h, Role::Technician, "/api/v1/events", &event).await.status, StatusCode::FORBIDDEN);
    // An event of the gateway itself (dropped data) is recorded on the reporting token.
    let overflow =
        json!({"event": "gw-1/spool_overflow/3", "kind": "spool_overflow", "details": {"dropped_samples": 1200}});
    let reply = post_json(&h, Role::Device, "/api/v1/events", &overflow).await;
    assert_eq!(reply.body["recorded"].as_bool(), Some(true), "{}", reply.body);
}

#[tokio::test]
async fn devices_write_only_their_bound_assets() {
    let h = Harness::new().await;
    let t = now_ms();
    let mixed = json!({"series": [
        series(PUMP, "flow", vec![t], vec![json!(100.0)]),
        series(OTHER_SITE_PUMP, "flow", vec![t], vec![json!(100.0)]),
    ]});
    let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &mixed).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert!(reply.body["error"]["message"].as_str().is_some_and(|m| m.contains(OTHER_SITE_PUMP)));
    let latest =
        h.call(Method::GET, &format!("/api/v1/telemetry/latest?asset={PUMP}"), Some(h.token(Role::Admin)), None).await;
    assert_eq!(latest.body["signals"], json!({}), "nothing of a refused batch is written");
    for role in [Role::Technician, Role::CustomerViewer, Role::Billing] {
        assert_eq!(post_json(&h, role, "/api/v1/telemetry", &mixed).await.status, StatusCode::FORBIDDEN, "{role}");
    }
    // Devices cannot read telemetry.
    let read =
        h.call(Method::GET, &format!("/api/v1/telemetry/latest?asset={PUMP}"), Some(h.token(Role::Device)), None).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn line_protocol_with_line_numbers() {
    let h = Harness::new().await;
    let t = now_ms() * 1_000_000;
    let body = format!(
        "bearing_temperature,asset={PUMP},host=gw value=55.5 {t}\n\
         pump,asset={PUMP} flow=120i,running=t {t}\n\
         this is not a line\n\
         pump,asset={PUMP} flow=9999 {t}\n"
    );
    let reply =
        h.call_with(Method::POST, "/api/v1/write", Some(h.token(Role::Device)), Some(body.into_bytes()), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["stored"], 3);
    let rejected = reply.body["rejected"].as_array().expect("rejected");
    let lines: Vec<u64> = rejected.iter().filter_map(|r| r["line"].as_u64()).collect();
    assert_eq!(lines, [3, 4], "{}", reply.body);
    assert_eq!(rejected[0]["code"], "malformed_line");
    assert_eq!(rejected[1]["code"], "out_of_range");

    let garbage = h
        .call_with(
            Method::POST,
            "/api/v1/write",
            Some(h.token(Role::Device)),
            Some(b"\xff\xfe garbage\n\x00\x01".to_vec()),
            &[],
        )
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert!(garbage.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("line 1:")), "{}", garbage.body);
    let nonsense = h
        .call_with(Method::POST, "/api/v1/write", Some(h.token(Role::Device)), Some(b"ok\nstill nothing".to_vec()), &[])
        .await;
    assert_eq!(nonsense.status, StatusCode::BAD_REQUEST);
    assert_eq!(nonsense.body["error"]["details"]["errors"][1]["line"], 2);
    let seconds = format!("pump,asset={PUMP} flow=1 {}\n", now_ms() / 1000);
    let reply = h
        .call_with(
            Method::POST,
            "/api/v1/write?precision=s",
            Some(h.token(Role::Device)),
            Some(seconds.into_bytes()),
            &[],
        )
        .await;
    assert_eq!(reply.body["stored"], 1, "{}", reply.body);
    let bad_precision = h
        .call_with(Method::POST, "/api/v1/write?precision=weeks", Some(h.token(Role::Device)), Some(b"x".to_vec()), &[])
        .await;
    assert_eq!(bad_precision.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oversized_telemetry_gets_413() {
    let h = Harness::with_options(api::AppOptions { telemetry_body_limit: 10_000, ..Default::default() }).await;
    let ts: Vec<i64> = (0..2000).collect();
    let values: Vec<Value> = (0..2000).map(|_| json!(1.0)).collect();
    let body = json!({"series": [series(PUMP, "flow", ts, values)]});
    let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &body).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn viewers_read_only_their_own_assets_telemetry() {
    let h = Harness::new().await;
    let t = now_ms() - 1000;
    let body = json!({"series": [series(PUMP, "flow", vec![t], vec![json!(1.0)]), series(FOREIGN_PUMP, "flow", vec![t], vec![json!(2.0)])]});
    assert_eq!(post_json(&h, Role::Admin, "/api/v1/telemetry", &body).await.body["stored"], 2);
    assert!(PUMP.starts_with(VIEWER_CUSTOMER));
    let viewer = Some(h.token(Role::CustomerViewer));
    for endpoint in ["range", "latest", "asset", "counter", "stream"] {
        let uri = format!("/api/v1/telemetry/{endpoint}?asset={FOREIGN_PUMP}&signal=flow");
        assert_eq!(h.call(Method::GET, &uri, viewer, None).await.status, StatusCode::NOT_FOUND, "{endpoint}");
    }
    let own = h.call(Method::GET, &format!("/api/v1/telemetry/range?asset={PUMP}&signal=flow"), viewer, None).await;
    assert_eq!(own.body["samples"]["values"], json!([1.0]));
}

#[tokio::test]
async fn counters_meter_across_resets() {
    let h = Harness::new().await;
    let t = now_ms() - 10_000;
    let body = json!({"series": [series(PUMP, "run_hours", vec![t, t + 1000, t + 2000, t + 3000], vec![json!(100.0), json!(100.5), json!(0.25), json!(1.25)])]});
    assert_eq!(post_json(&h, Role::Device, "/api/v1/telemetry", &body).await.body["stored"], 4);
    let delta = h
        .call(
            Method::GET,
            &format!("/api/v1/telemetry/counter?asset={PUMP}&signal=run_hours&from={t}"),
            Some(h.token(Role::Billing)),
            None,
        )
        .await;
    assert_eq!((delta.body["delta"].as_f64(), delta.body["resets"].as_u64()), (Some(1.75), Some(1)), "{}", delta.body);
    let not_counter = h
        .call(
            Method::GET,
            &format!("/api/v1/telemetry/counter?asset={PUMP}&signal=flow&from={t}"),
            Some(h.token(Role::Billing)),
            None,
        )
        .await;
    assert_eq!(not_counter.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_live_stream_pushes_new_samples() {
    use futures_util::StreamExt;
    use tower::ServiceExt;
    let h = Harness::new().await;
    let request = axum::http::Request::builder()
        .uri(format!("/api/v1/telemetry/stream?asset={PUMP}"))
        .header("authorization", format!("Bearer {}", h.token(Role::Technician)))
        .body(axum::body::Body::empty())
        .expect("request");
    let response = h.app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let t = now_ms();
    let write = json!({"series": [series("acme/plant-1/line-1/p-102", "flow", vec![t], vec![json!(5.0)]), series(PUMP, "flow", vec![t], vec![json!(7.5)])]});
    assert_eq!(post_json(&h, Role::Admin, "/api/v1/telemetry", &write).await.body["stored"], 2);
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("bytes");
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: samples"), "{text}");
    assert!(
        text.contains("\"flow\"") && text.contains("7.5") && !text.contains("5.0,"),
        "only this asset's samples: {text}"
    );
    // Data an edge gateway replays after an outage is stored, and streamed as historical.
    let old = t - 3_600_000;
    let replay = json!({"batch_id": "gw-1-7", "historical": true, "series": [series(PUMP, "flow", vec![old], vec![json!(6.25)])]});
    assert_eq!(post_json(&h, Role::Admin, "/api/v1/telemetry", &replay).await.body["stored"], 1);
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("bytes");
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: historical") && text.contains("6.25"), "{text}");
}

/// A device token of another tenant, bound to `asset`.
async fn device_token_for(h: &Harness, asset: &str) -> String {
    let issued =
        api::auth::issue_bound_token("other gateway", Role::Device, None, vec![asset.to_owned()]).expect("issue");
    h.store.create_token("test", issued.record).await.expect("store token");
    issued.secret
}

#[tokio::test]
async fn batch_ids_belong_to_their_sender_and_a_reused_id_with_other_content_is_refused() {
    let h = Harness::new().await;
    let t = now_ms() - 10_000;
    let other = device_token_for(&h, FOREIGN_PUMP).await;
    let mine = json!({"batch_id": "gw-1", "series": [series(PUMP, "flow", vec![t], vec![json!(1.5)])]});
    let theirs = json!({"batch_id": "gw-1", "series": [series(FOREIGN_PUMP, "flow", vec![t], vec![json!(2.5)])]});
    assert_eq!(post_json(&h, Role::Device, "/api/v1/telemetry", &mine).await.body["stored"], 1);
    // Another tenant's gateway using the same id is another batch: stored, not "replayed".
    let reply = h.call(Method::POST, "/api/v1/telemetry", Some(&other), Some(&theirs)).await;
    assert_eq!((reply.body["stored"].as_u64(), reply.body["replayed_batch"].as_bool()), (Some(1), Some(false)));
    // The first sender reusing its id for other data is told so, and nothing is written.
    let changed = json!({"batch_id": "gw-1", "series": [series(PUMP, "flow", vec![t + 1000], vec![json!(9.0)])]});
    let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &changed).await;
    assert_eq!((reply.status, reply.error_code().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "batch_id_reused"));
    assert!(reply.body["error"]["message"].as_str().is_some_and(|m| m.contains("nothing was written")));
    // A true retry is still a retry.
    let retry = post_json(&h, Role::Device, "/api/v1/telemetry", &mine).await;
    assert_eq!((retry.body["replayed_batch"].as_bool(), retry.body["stored"].as_u64()), (Some(true), Some(1)));
    let stored = h
        .call(
            Method::GET,
            &format!("/api/v1/telemetry/range?asset={PUMP}&signal=flow&from={t}&to={}", t + 5000),
            Some(h.token(Role::Admin)),
            None,
        )
        .await;
    assert_eq!(stored.body["samples"]["values"], json!([1.5]));
    // Two line-protocol clients both numbering their batches `1` both keep their data.
    for (token, asset) in [(h.token(Role::Device).to_owned(), PUMP), (other.clone(), FOREIGN_PUMP)] {
        let body = format!("flow,asset={asset} value=3.25 {}\n", (t + 2000) * 1_000_000);
        let reply =
            h.call_with(Method::POST, "/api/v1/write?batch_id=1", Some(&token), Some(body.into_bytes()), &[]).await;
        assert_eq!((reply.body["stored"].as_u64(), reply.body["replayed_batch"].as_bool()), (Some(1), Some(false)));
    }
}

/// Posts one sample until the hub answers with `want` stored (the catalogue follows
/// record changes over the bus, within milliseconds); panics after 10 s.
async fn eventually_stored(h: &Harness, body: &Value, want: u64) -> crate::harness::Reply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = post_json(h, Role::Device, "/api/v1/telemetry", body).await;
        if reply.body["stored"].as_u64() == Some(want) || std::time::Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_catalogue_follows_new_signals_changed_ranges_and_deleted_assets() {
    let h = Harness::new().await;
    let admin = Some(h.token(Role::Admin));
    let t = now_ms() - 10_000;
    let new_pump = "acme/plant-1/line-1/p-999";
    let asset = json!({"id": new_pump, "name": "P-999", "model": "cp200"});
    let body = Some(asset.to_string().into_bytes());
    let created = h.call_with(Method::POST, "/api/v1/assets", admin, body, &[("idempotency-key", "p-999")]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let on_new_pump = json!({"series": [series(new_pump, "flow", vec![t], vec![json!(4.0)])]});
    assert_eq!(eventually_stored(&h, &on_new_pump, 1).await.body["stored"], 1, "a new asset is accepted");

    // A new signal in the model, and a narrower physical range for an existing one.
    let model = h.call(Method::GET, "/api/v1/asset-models/cp200", admin, None).await;
    let version = model.body["version"].as_i64().expect("version").to_string();
    let mut record = model.body["data"].clone();
    let signals = record["signal"].as_array_mut().expect("signals");
    signals.push(json!({"name": "seal_leak_rate", "unit": "ml/h", "kind": "analog", "physical_min": 0.0}));
    for signal in signals.iter_mut().filter(|s| s["name"] == "bearing_vibration_rms") {
        signal["physical_max"] = json!(20.0);
    }
    let put = h
        .call_with(
            Method::PUT,
            "/api/v1/asset-models/cp200",
            admin,
            Some(record.to_string().into_bytes()),
            &[("if-match", &format!("\"{version}\""))],
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let new_signal = json!({"series": [series(PUMP, "seal_leak_rate", vec![t], vec![json!(0.5)])]});
    assert_eq!(eventually_stored(&h, &new_signal, 1).await.body["stored"], 1, "the new signal is accepted");
    let too_high = json!({"series": [series(PUMP, "bearing_vibration_rms", vec![t], vec![json!(25.0)])]});
    let reply = post_json(&h, Role::Device, "/api/v1/telemetry", &too_high).await;
    assert_eq!(reply.body["rejected"][0]["code"], "out_of_range", "the new range applies: {}", reply.body);

    // A deleted asset accepts nothing more.
    let deleted = h.call(Method::DELETE, &format!("/api/v1/assets/{new_pump}"), admin, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let later = json!({"series": [series(new_pump, "flow", vec![t + 1000], vec![json!(4.5)])]});
    let reply = eventually_stored(&h, &later, 0).await;
    assert_eq!(reply.body["rejected"][0]["code"], "unknown_asset", "{}", reply.body);
}

#[tokio::test]
async fn raw_windows_are_bounded_and_times_are_checked() {
    let h = Harness::new().await;
    let viewer = Some(h.token(Role::CustomerViewer));
    let everything = format!("/api/v1/telemetry/asset?asset={PUMP}&from=0&to=9223372036854775807");
    let reply = h.call(Method::GET, &everything, viewer, None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 24 hours") && message.contains("bucket_ms"), "{message}");
    assert_eq!(reply.body["error"]["details"]["max_window_ms"], 86_400_000);
    let raw = format!("/api/v1/telemetry/range?asset={PUMP}&signal=flow&from=0&to=9223372036854775807");
    assert_eq!(h.call(Method::GET, &raw, viewer, None).await.status, StatusCode::BAD_REQUEST);
    // Aggregated, a long range is fine (as long as the buckets are not absurdly many).
    let day = 86_400_000i64;
    let aggregated =
        format!("/api/v1/telemetry/range?asset={PUMP}&signal=flow&from={}&bucket_ms={day}", now_ms() - 365 * day);
    assert_eq!(h.call(Method::GET, &aggregated, viewer, None).await.status, StatusCode::OK);
    let tiny = format!("/api/v1/telemetry/range?asset={PUMP}&signal=flow&from=0&to=9223372036854775807&bucket_ms=1");
    assert_eq!(h.call(Method::GET, &tiny, viewer, None).await.status, StatusCode::BAD_REQUEST);
    // Arithmetic on the caller's numbers never overflows.
    for query in ["to=-9223372036854775808", "from=-9223372036854775808&to=9223372036854775807"] {
        let uri = format!("/api/v1/telemetry/asset?asset={PUMP}&{query}");
        assert_eq!(h.call(Method::GET, &uri, viewer, None).await.status, StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn the_live_stream_ends_when_the_hub_shuts_down() {
    use futures_util::StreamExt;
    use tower::ServiceExt;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let h = Harness::with_options(api::AppOptions { shutdown: shutdown.clone(), ..Default::default() }).await;
    let request = axum::http::Request::builder()
        .uri(format!("/api/v1/telemetry/stream?asset={PUMP}"))
        .header("authorization", format!("Bearer {}", h.token(Role::Technician)))
        .body(axum::body::Body::empty())
        .expect("request");
    let response = h.app.clone().oneshot(request).await.expect("response");
    let mut body = response.into_body().into_data_stream();
    shutdown.cancel();
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), body.next()).await.expect("ends in time");
    assert!(end.is_none(), "the stream ended");
}
