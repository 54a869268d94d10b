//! A connection to one Modbus TCP device and its read plan: each poll reads every tag
//! once and turns exceptions, timeouts, malformed responses and lost connections into
//! bad-quality samples and counters — never a crash. The next poll reconnects.

use super::codec::{Read, Table, Tag, decode_registers, exception_quality, plan, scaled, status};
use model::sample::{Quality, Sample, SeriesKey, Severity};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_modbus::Slave;
use tokio_modbus::client::{Context, Reader};

/// Counters per device, for `/metrics` and the health endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub requests: u64,
    pub exceptions: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    pub connects: u64,
}

/// A connection to one Modbus TCP device (one unit id) with its read plan.
pub struct Device {
    address: SocketAddr,
    unit: u8,
    timeout: Duration,
    tags: Vec<Tag>,
    reads: Vec<Read>,
    context: Option<Context>,
    pub counters: Counters,
}

impl Device {
    pub fn new(address: SocketAddr, unit: u8, timeout: Duration, tags: Vec<Tag>) -> Self {
        let reads = plan(&tags, 8);
        Self { address, unit, timeout, tags, reads, context: None, counters: Counters::default() }
    }

    pub fn reads(&self) -> &[Read] {
        &self.reads
    }

    /// Whether the last poll left a connection open (the device answered, if only
    /// with exceptions).
    pub fn connected(&self) -> bool {
        self.context.is_some()
    }

    /// Reads every tag once. Each tag yields one sample stamped `now`: its value, or a
    /// bad-quality sample saying why it could not be read. A transport failure or a
    /// timeout drops the connection; the next poll reconnects.
    pub async fn poll(&mut self, now: i64) -> Vec<(SeriesKey, Sample)> {
        let mut out = Vec::with_capacity(self.tags.len());
        if self.context.is_none() {
            match tokio::time::timeout(
                self.timeout,
                tokio_modbus::client::tcp::connect_slave(self.address, Slave(self.unit)),
            )
            .await
            {
                Ok(Ok(context)) => {
                    self.counters.connects += 1;
                    self.context = Some(context);
                }
                Ok(Err(error)) => {
                    self.counters.transport_errors += 1;
                    tracing::warn!(device = %self.address, %error, "cannot connect to the Modbus device");
                    return self.all_bad(now, status::COMMUNICATION);
                }
                Err(_) => {
                    self.counters.timeouts += 1;
                    tracing::warn!(device = %self.address, "connecting to the Modbus device timed out");
                    return self.all_bad(now, status::TIMEOUT);
                }
            }
        }
        for r in 0..self.reads.len() {
            let read = self.reads[r].clone();
            let Some(mut context) = self.context.take() else {
                out.extend(self.bad(&read, now, Quality::new(Severity::Bad, status::COMMUNICATION)));
                continue;
            };
            self.counters.requests += 1;
            let (table, start, count) = (read.table, read.start, read.count);
            // The request runs in its own task: a panic inside the protocol stack (e.g.
            // tokio-modbus's debug assertion on a short response) ends that request with
            // bad samples instead of taking the gateway down.
            let request = tokio::spawn(async move {
                let result = match table {
                    Table::Holding => context.read_holding_registers(start, count).await.map(|r| r.map(Items::Words)),
                    Table::Input => context.read_input_registers(start, count).await.map(|r| r.map(Items::Words)),
                    Table::Coil => context.read_coils(start, count).await.map(|r| r.map(Items::Bits)),
                    Table::Discrete => context.read_discrete_inputs(start, count).await.map(|r| r.map(Items::Bits)),
                };
                (context, result)
            });
            let abort = request.abort_handle();
            let result = match tokio::time::timeout(self.timeout, request).await {
                Ok(Ok((context, result))) => {
                    self.context = Some(context);
                    Ok(result)
                }
                Ok(Err(panicked)) => {
                    self.counters.transport_errors += 1;
                    tracing::warn!(device = %self.address, start = read.start, error = %panicked, "malformed Modbus response; reconnecting");
                    out.extend(self.bad(&read, now, Quality::new(Severity::Bad, status::COMMUNICATION)));
                    continue;
                }
                Err(elapsed) => {
                    abort.abort();
                    Err(elapsed)
                }
            };
            match result {
                Ok(Ok(Ok(items))) if items.len() >= usize::from(read.count) => {
                    for &i in &read.tags {
                        let tag = &self.tags[i];
                        let at = usize::from(tag.address - read.start);
                        let value = match &items {
                            Items::Words(words) => words.get(at..).and_then(|w| decode_registers(tag, w)),
                            Items::Bits(bits) => bits.get(at).map(|b| scaled(tag, if *b { 1.0 } else { 0.0 })),
                        };
                        let sample = match value {
                            Some(value) => Sample { ts: now, value, quality: Quality::GOOD },
                            None => Sample {
                                ts: now,
                                value: f64::NAN,
                                quality: Quality::new(Severity::Bad, status::COMMUNICATION),
                            },
                        };
                        out.push((tag.key(), sample));
                    }
                }
                Ok(Ok(Ok(_))) => {
                    // Fewer items than asked for: a short read is a malformed response.
                    self.counters.transport_errors += 1;
                    tracing::warn!(device = %self.address, start = read.start, "short Modbus response");
                    out.extend(self.bad(&read, now, Quality::new(Severity::Bad, status::COMMUNICATION)));
                }
                Ok(Ok(Err(code))) => {
                    self.counters.exceptions += 1;
                    tracing::warn!(device = %self.address, start = read.start, ?code, "Modbus exception");
                    out.extend(self.bad(&read, now, exception_quality(code)));
                }
                Ok(Err(error)) => {
                    self.counters.transport_errors += 1;
                    tracing::warn!(device = %self.address, %error, "Modbus request failed; reconnecting");
                    self.context = None;
                    out.extend(self.bad(&read, now, Quality::new(Severity::Bad, status::COMMUNICATION)));
                }
                Err(_) => {
                    self.counters.timeouts += 1;
                    tracing::warn!(device = %self.address, start = read.start, "Modbus request timed out; reconnecting");
                    self.context = None;
                    out.extend(self.bad(&read, now, Quality::new(Severity::Bad, status::TIMEOUT)));
                }
            }
        }
        out
    }

    fn bad(&self, read: &Read, now: i64, quality: Quality) -> Vec<(SeriesKey, Sample)> {
        read.tags.iter().map(|&i| (self.tags[i].key(), Sample { ts: now, value: f64::NAN, quality })).collect()
    }

    fn all_bad(&self, now: i64, sub: u16) -> Vec<(SeriesKey, Sample)> {
        let quality = Quality::new(Severity::Bad, sub);
        self.tags.iter().map(|t| (t.key(), Sample { ts: now, value: f64::NAN, quality })).collect()
    }
}

enum Items {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Words(w) => w.len(),
            Items::Bits(b) => b.len(),
        }
    }
}
