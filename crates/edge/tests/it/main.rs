//! Edge gateway tests against real peers and real crashes: the Modbus adapter against
//! pymodbus, the store-and-forward spool under SIGKILL.

mod modbus;
mod spool;
