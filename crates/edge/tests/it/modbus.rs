//! The Modbus adapter against pymodbus's server (`tests/peers/modbus_server.py`): every
//! data type and order, merged reads, an exception, the server going away and coming back.

use edge::modbus::{DataType, Device, Order, Table, Tag};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tsdb::Severity;

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
