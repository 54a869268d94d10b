//! The Modbus adapter against pymodbus's server (`tests/peers/modbus_server.py`): every
//! data type and order, merged reads, an exception, the server going away and coming back.

use edge::modbus::{DataType, Device, Order, Table, Tag};
use model::sample::Severity;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Starts the pymodbus server and waits until it accepts connections.
fn server(port: u16) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/modbus_server.py");
    let child = Command::new("python3").arg(script).arg(port.to_string()).spawn().expect("python3 must be installed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pymodbus did not start: run `pip install pymodbus==3.16.1` (.ci/run does)");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn tag(signal: &str, table: Table, address: u16, data_type: DataType) -> Tag {
    Tag {
        asset: "acme/plant-1/line-1/p-101".into(),
        signal: signal.into(),
        table,
        address,
        data_type,
        order: Order::Abcd,
        bit: None,
        scale: 1.0,
        offset: 0.0,
    }
}

#[tokio::test]
async fn reads_pymodbus_and_survives_its_restart() {
    let port = free_port();
    let mut peer = server(port);
    let mut cdab = tag("f32_cdab", Table::Holding, 4, DataType::F32);
    cdab.order = Order::Cdab;
    let mut temperature = tag("temperature", Table::Input, 0, DataType::I16);
    (temperature.scale, temperature.offset) = (0.1, -40.0);
    let tags = vec![
        tag("u16", Table::Holding, 0, DataType::U16),
        tag("i16", Table::Holding, 1, DataType::I16),
        tag("f32", Table::Holding, 2, DataType::F32),
        cdab,
        tag("f64", Table::Holding, 6, DataType::F64),
        tag("missing", Table::Holding, 100, DataType::U16),
        tag("coil0", Table::Coil, 0, DataType::Bool),
        tag("coil1", Table::Coil, 1, DataType::Bool),
        tag("coil2", Table::Coil, 2, DataType::Bool),
        temperature,
    ];
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut device = Device::new(address, 1, Duration::from_secs(2), tags);
    assert_eq!(device.reads().len(), 4, "holding 0-9, holding 100, coils 0-2, input 0: {:?}", device.reads());

    let samples = device.poll(1_000).await;
    let value = |signal: &str| samples.iter().find(|(k, _)| k.signal == signal).map(|(_, s)| *s).expect(signal);
    let good = ["u16", "i16", "f32", "f32_cdab", "f64", "coil0", "coil1", "coil2", "temperature"];
    for signal in good {
        assert!(value(signal).quality.is_good(), "{signal}: {:?}", value(signal));
    }
    let read: Vec<f64> = good.iter().map(|s| value(s).value).collect();
    assert_eq!(read[..8], [42.0, -2.0, 1234.5, 1234.5, -2.25, 1.0, 0.0, 1.0]);
    assert!((read[8] - 25.0).abs() < 1e-9, "{}", read[8]);
    let missing = value("missing");
    assert_eq!(missing.quality.severity(), Severity::Bad, "an illegal address is a bad sample, not an error");
    assert_eq!(device.counters.exceptions, 1);

    // The server goes away: every tag is a bad sample, the poller keeps going.
    peer.kill().expect("kill pymodbus");
    let _ = peer.wait();
    let samples = device.poll(2_000).await;
    assert_eq!(samples.len(), 10);
    assert!(samples.iter().all(|(_, s)| s.quality.severity() == Severity::Bad && s.ts == 2_000), "{samples:?}");
    let samples = device.poll(3_000).await;
    assert!(samples.iter().all(|(_, s)| s.quality.severity() == Severity::Bad));
    assert!(device.counters.transport_errors >= 1, "{:?}", device.counters);

    // It comes back on the same port: the next poll reconnects.
    let mut peer = server(port);
    let samples = device.poll(4_000).await;
    let u16_value = samples.iter().find(|(k, _)| k.signal == "u16").map(|(_, s)| *s).expect("u16");
    assert!(u16_value.quality.is_good() && u16_value.value == 42.0, "{u16_value:?}");
    assert!(device.counters.connects >= 2, "{:?}", device.counters);
    peer.kill().expect("kill pymodbus");
    let _ = peer.wait();
}

/// What the faulty server does with the next request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Correct,
    WrongTransactionId,
    Truncated,
    Garbage,
    Silent,
    ShortRead,
}

/// A Modbus TCP server that speaks the real wire format but misbehaves on demand: the
/// faults no real peer can be made to produce.
async fn faulty_server(listener: tokio::net::TcpListener, fault: std::sync::Arc<std::sync::Mutex<Fault>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut stream, _)) = listener.accept().await {
        let fault = fault.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 12];
            while stream.read_exact(&mut request).await.is_ok() {
                let tid = u16::from_be_bytes([request[0], request[1]]);
                let count = u16::from_be_bytes([request[10], request[11]]);
                let mode = *fault.lock().expect("fault");
                let words: Vec<u8> = (0..count).flat_map(|k| (100 + k).to_be_bytes()).collect();
                let frame = |tid: u16, words: &[u8]| {
                    let mut f = Vec::new();
                    f.extend(tid.to_be_bytes());
                    f.extend(0u16.to_be_bytes());
                    f.extend((3 + words.len() as u16).to_be_bytes());
                    f.push(request[6]);
                    f.push(0x03);
                    f.push(words.len() as u8);
                    f.extend(words);
                    f
                };
                let reply = match mode {
                    Fault::Correct => frame(tid, &words),
                    Fault::WrongTransactionId => frame(tid.wrapping_add(7), &words),
                    Fault::Truncated => frame(tid, &words)[..9].to_vec(),
                    Fault::Garbage => b"\x00\x01\xff\xff\x00\x03garbage!".to_vec(),
                    Fault::Silent => Vec::new(),
                    Fault::ShortRead => frame(tid, &words[..2]),
                };
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
                if mode == Fault::Truncated || mode == Fault::Garbage {
                    return; // and close the connection mid-frame
                }
            }
        });
    }
}

#[tokio::test]
async fn malformed_frames_wrong_ids_short_reads_and_silence_become_bad_samples() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let fault = std::sync::Arc::new(std::sync::Mutex::new(Fault::Correct));
    tokio::spawn(faulty_server(listener, fault.clone()));
    let tags = vec![tag("a", Table::Holding, 0, DataType::U16), tag("b", Table::Holding, 1, DataType::U16)];
    let mut device = Device::new(address, 1, Duration::from_millis(300), tags);
    let values = |samples: &[(model::sample::SeriesKey, model::sample::Sample)]| {
        samples.iter().map(|(_, s)| s.value).collect::<Vec<_>>()
    };

    let samples = device.poll(1).await;
    assert_eq!(values(&samples), [100.0, 101.0]);
    for (n, mode) in [Fault::WrongTransactionId, Fault::Truncated, Fault::Garbage, Fault::Silent, Fault::ShortRead]
        .into_iter()
        .enumerate()
    {
        *fault.lock().expect("fault") = mode;
        let started = Instant::now();
        let samples = device.poll(10 + n as i64).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{mode:?} must not hang the poller");
        assert_eq!(samples.len(), 2, "{mode:?}");
        assert!(
            samples.iter().all(|(_, s)| s.quality.severity() == Severity::Bad && s.value.is_nan()),
            "{mode:?}: {samples:?}"
        );
        // The device recovers as soon as the server behaves again.
        *fault.lock().expect("fault") = Fault::Correct;
        let samples = device.poll(100 + n as i64).await;
        assert_eq!(values(&samples), [100.0, 101.0], "after {mode:?}");
    }
    let c = device.counters;
    assert!(c.timeouts >= 1 && c.transport_errors >= 3 && c.connects >= 3, "{c:?}");
}
