//! The Modbus TCP adapter: a source per poll group of a device, each with its own
//! connection, polling its tags at its interval.
//!
//! `codec` is the data model and decoding without I/O (tags, read planning, register
//! decoding, exception qualities); `device` owns a connection and turns every failure
//! into bad-quality samples and counters; `run` is the poll loop.

mod codec;
mod device;

pub use codec::{DataType, Order, Read, Table, Tag, decode_registers, exception_quality, plan};
pub use device::{Counters, Device};

use crate::config::{ModbusDevice, PollGroup};
use crate::health::SourceState;
use crate::source::SourceContext;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a poll group cannot become a source.
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("bad device address {0}")]
    DeviceAddress(String),
}

/// One poll group of a device: its connection and tags, and how often it is read.
pub struct Poll {
    pub device: Device,
    pub interval: Duration,
}

impl Poll {
    /// The poll group `group` of `device` (entries of a checked edge file).
    pub fn new(device: &ModbusDevice, group: &PollGroup) -> Result<Self, ModbusError> {
        let address: SocketAddr =
            device.address.parse().map_err(|_| ModbusError::DeviceAddress(device.address.clone()))?;
        let tags = group.tags.iter().map(|t| t.get_ref().tag()).collect();
        Ok(Self {
            device: Device::new(address, device.unit, Duration::from_millis(device.timeout_ms), tags),
            interval: Duration::from_millis(group.interval_ms.max(1)),
        })
    }
}

/// Polls until the gateway stops. A poll that takes longer than the interval delays
/// the next one rather than bunching them up.
pub async fn run(poll: Poll, mut ctx: SourceContext) {
    let Poll { mut device, interval } = poll;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.stop.changed() => break,
        }
        let polled = device.poll(model::Timestamp::now().0).await;
        let state = if device.connected() { SourceState::Ok } else { SourceState::Degraded };
        ctx.health.report(state, &device.counters);
        if !ctx.send(polled).await {
            return;
        }
    }
    ctx.hand_over().await;
}
