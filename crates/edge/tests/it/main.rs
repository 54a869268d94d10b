//! Edge gateway tests against real peers and real crashes: the Modbus adapter against
//! pymodbus, the MQTT adapter against Mosquitto, mosquitto_pub and pysparkplug, the
//! store-and-forward spool under SIGKILL.

mod modbus;
mod mqtt;
mod opcua;
#[path = "../../../../tests/support/small_disk.rs"]
mod small_disk;
mod spool;

/// Logs of the code under test on stderr when `TREATY_TEST_LOG` is set (e.g. `debug`).
pub fn logs() {
    if let Ok(filter) = std::env::var("TREATY_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}
