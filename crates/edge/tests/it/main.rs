//! Edge gateway tests against real peers and real crashes: the Modbus adapter against
//! pymodbus, the MQTT adapter against Mosquitto, mosquitto_pub and pysparkplug, the
//! store-and-forward spool under SIGKILL.

mod modbus;
mod mqtt;
mod spool;
