//! A simulated machine as a Modbus TCP server (one listening port per machine, as
//! each PLC has its own address). Register map, documented in the generated edge
//! file too:
//!
//! - holding registers: every signal and counter of the model, in model order
//!   (signals, then counters), as 32-bit floats, big-endian word order (ABCD) at
//!   addresses 0, 2, 4, ...;
//! - coil 0: the run command (write 0 to stop the machine, 1 to start it);
//! - discrete input 0: running.
//!
//! Anything else is answered with the Modbus exception a PLC would send.

use crate::Shared;
use std::future::Future;
use tokio_modbus::{ExceptionCode, Request, Response};

/// The tags a Modbus server exposes: name and holding-register address.
pub fn layout(machine: &crate::physics::Machine) -> Vec<(String, u16)> {
    machine
        .model
        .signals
        .iter()
        .map(|s| s.name.clone())
        .chain(machine.model.counters.iter().map(|c| c.name.clone()))
        .enumerate()
        .map(|(i, name)| (name, (i * 2) as u16))
        .collect()
}

#[derive(Clone)]
struct Registers {
    world: Shared,
    index: usize,
    names: Vec<String>,
}

impl Registers {
    fn registers(&self) -> Vec<u16> {
        let Ok(world) = self.world.lock() else { return Vec::new() };
        let values = &world.machines[self.index].values;
        self.names
            .iter()
            .flat_map(|name| {
                let bits = (values.get(name).copied().unwrap_or(0.0) as f32).to_bits();
                [(bits >> 16) as u16, bits as u16]
            })
            .collect()
    }

    fn answer(&self, request: Request<'static>) -> Result<Response, ExceptionCode> {
        let slice = |all: Vec<u16>, address: u16, count: u16| {
            let (from, to) = (usize::from(address), usize::from(address) + usize::from(count));
            if count == 0 || to > all.len() {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            Ok(all[from..to].to_vec())
        };
        match request {
            Request::ReadHoldingRegisters(address, count) => {
                slice(self.registers(), address, count).map(Response::ReadHoldingRegisters)
            }
            Request::ReadCoils(0, 1) => {
                let run = self.world.lock().map(|w| w.machines[self.index].run_command).unwrap_or(false);
                Ok(Response::ReadCoils(vec![run]))
            }
            Request::ReadDiscreteInputs(0, 1) => {
                let running = self.world.lock().map(|w| w.machines[self.index].running).unwrap_or(false);
                Ok(Response::ReadDiscreteInputs(vec![running]))
            }
            Request::WriteSingleCoil(0, run) => {
                let mut world = self.world.lock().map_err(|_| ExceptionCode::ServerDeviceFailure)?;
                world.command(self.index, run, "Modbus coil 0");
                Ok(Response::WriteSingleCoil(0, run))
            }
            Request::ReadCoils(..)
            | Request::ReadDiscreteInputs(..)
            | Request::WriteSingleCoil(..)
            | Request::WriteMultipleCoils(..)
            | Request::ReadInputRegisters(..)
            | Request::WriteSingleRegister(..)
            | Request::WriteMultipleRegisters(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

impl tokio_modbus::server::Service for Registers {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        std::future::ready(self.answer(request))
    }
}

/// Serves machine `index` on `listener` until the task is dropped.
pub fn serve(
    world: Shared,
    index: usize,
    listener: tokio::net::TcpListener,
) -> impl Future<Output = std::io::Result<()>> + Send {
    let names = world
        .lock()
        .map(|w| layout(&w.machines[index]).into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default();
    let registers = Registers { world, index, names };
    async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = move |stream, _address| {
            let registers = registers.clone();
            async move { Ok(Some((registers, stream))) }
        };
        server.serve(&on_connected, |error| tracing::debug!(%error, "Modbus client connection ended")).await
    }
}
