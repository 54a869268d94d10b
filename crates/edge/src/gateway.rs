//! The running gateway (`treaty edge`): process wiring only. It opens the spool, starts
//! the health endpoint and the interlock writers, a task per source (Modbus poll group,
//! OPC UA server, MQTT broker) each with its pipeline, the batcher into the spool and
//! the uplink; and on stop lets the sources hand over what their filters hold before
//! the batcher queues the rest. The gateway opens no listening port but the optional
//! loopback health endpoint.

use crate::config::{EdgeFile, Gateway, Mapped, hub_url};
use crate::filter::FilterError;
use crate::health::{Health, SourceKind};
use crate::http::Target;
use crate::interlock::{InterlockError, Writers};
use crate::modbus::ModbusError;
use crate::mqtt::MqttError;
use crate::pipeline::Pipeline;
use crate::report::Report;
use crate::source::{Samples, SourceContext};
use crate::spool::{Entry, Spool, SpoolError, SpoolOptions};
use crate::tls::TlsError;
use crate::uplink;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("store-and-forward queue: {0}")]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    SpoolTask(tokio::task::JoinError),
    #[error("bad hub URL `{0}`")]
    HubUrl(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("health endpoint {address}: {error}")]
    Health { address: String, error: std::io::Error },
    #[error(transparent)]
    Interlock(#[from] InterlockError),
    #[error(transparent)]
    Modbus(#[from] ModbusError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
}

/// Runs the gateway (an edge file that passed `config::check`) until `stop` turns true.
pub async fn run(edge: EdgeFile, token: String, mut stop: watch::Receiver<bool>) -> Result<(), GatewayError> {
    let spool = open_spool(&edge.gateway).await?;
    let hub = hub(&edge.gateway)?;
    let health = Arc::new(Health::new(&edge.gateway.id, spool.clone()));
    if let Some(address) = &edge.gateway.health {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| GatewayError::Health { address: address.clone(), error })?;
        tracing::info!(%address, "health endpoint: GET /health, /metrics");
        tokio::spawn(crate::health::serve(listener, health.clone(), stop.clone()));
    }
    let report = Report::new(hub.clone(), &edge.gateway.id, &token);
    let writers = Writers::start(&edge, &report)?;
    let (samples, incoming) = mpsc::channel::<Samples>(1024);
    let wiring = Wiring { edge: &edge, writers: &writers, health: &health, output: &samples, stop: &stop };
    wiring.start_sources()?;
    drop(samples);
    // Fresh batches also go straight to the uplink, so that live data keeps flowing
    // while a backlog is replayed (they are sent again, harmlessly, in their turn).
    let (live, live_batches) = mpsc::channel::<Entry>(4);
    let (dropped_now, dropped_seen) = watch::channel(spool.stats());
    tokio::spawn(crate::report::overflow(report, dropped_seen));
    let every = Duration::from_millis(edge.gateway.batch_ms.max(10));
    let mut batcher = tokio::spawn(crate::batcher::run(incoming, spool.clone(), every, live, dropped_now));
    let uplink = match &edge.uplink {
        Some(sparkplug) => {
            let sparkplug = sparkplug.get_ref().clone();
            let settings = uplink::sparkplug::Settings {
                client_id: sparkplug.client_id.clone().unwrap_or_else(|| format!("{}-uplink", edge.gateway.id)),
                node: sparkplug.node_id(&edge.gateway).to_owned(),
                uplink: sparkplug,
                spool_dir: edge.gateway.spool_dir.clone(),
            };
            tokio::spawn(uplink::sparkplug::run(settings, edge.mapped_series(), spool, health, stop.clone()))
        }
        None => {
            // Batch ids are `<gateway>-<spool id>-<seq>`: unique even if the spool is wiped.
            let batch_prefix = format!("{}-{:016x}", edge.gateway.id, spool.id());
            let lane = uplink::http::Lane { hub, batch_prefix, token, health };
            tokio::spawn(uplink::http::run(lane, spool, live_batches, stop.clone()))
        }
    };
    let _ = stop.changed().await;
    // The sources stop, hand over what their filters held and drop their senders; the
    // batcher then queues the rest durably and ends (delivered at the next start).
    if tokio::time::timeout(Duration::from_secs(10), &mut batcher).await.is_err() {
        tracing::error!("the gateway's sources did not stop within 10 s; samples not yet queued are lost");
        batcher.abort();
    }
    let _ = uplink.await;
    Ok(())
}

/// Opens (or creates) the spool, bounded as the edge file says.
async fn open_spool(gateway: &Gateway) -> Result<Arc<Spool>, GatewayError> {
    let dir = gateway.spool_dir.clone();
    let options = SpoolOptions {
        max_bytes: gateway.spool_max_mb.saturating_mul(1 << 20),
        overflow: gateway.overflow,
        ..SpoolOptions::default()
    };
    let spool =
        tokio::task::spawn_blocking(move || Spool::open(&dir, options)).await.map_err(GatewayError::SpoolTask)??;
    Ok(Arc::new(spool))
}

/// The hub: where it is and, for `https://`, how to talk TLS to it.
fn hub(gateway: &Gateway) -> Result<Target, GatewayError> {
    let url = hub_url(&gateway.hub).ok_or_else(|| GatewayError::HubUrl(gateway.hub.clone()))?;
    let tls = if url.tls { Some(crate::tls::client_config(gateway.hub_ca_file.as_deref(), None)?) } else { None };
    Ok(Target::new(&url.address, &url.host, tls))
}

/// What every source's context is made from.
struct Wiring<'a> {
    edge: &'a EdgeFile,
    writers: &'a Writers,
    health: &'a Arc<Health>,
    output: &'a mpsc::Sender<Samples>,
    stop: &'a watch::Receiver<bool>,
}

impl Wiring<'_> {
    /// A task per Modbus poll group, OPC UA server and MQTT broker.
    fn start_sources(&self) -> Result<(), GatewayError> {
        let edge = self.edge;
        for device in &edge.modbus {
            for (p, group) in device.polls.iter().enumerate() {
                let name = if device.polls.len() == 1 { device.name.clone() } else { format!("{}[{p}]", device.name) };
                let ctx = self.context(group.mapped(), SourceKind::Modbus, &name)?;
                tokio::spawn(crate::modbus::run(crate::modbus::Poll::new(device, group)?, ctx));
            }
        }
        for server in &edge.opcua {
            let mut server = server.get_ref().clone();
            server.pki_dir.get_or_insert_with(|| edge.gateway.spool_dir.join("pki"));
            let ctx = self.context(server.mapped(), SourceKind::OpcUa, &server.name)?;
            tokio::spawn(crate::opcua::run(server, ctx));
        }
        for broker in &edge.mqtt {
            let broker = broker.get_ref();
            let ctx = self.context(broker.mapped(), SourceKind::Mqtt, &broker.name)?;
            tokio::spawn(crate::mqtt::run(crate::mqtt::Source::new(broker)?, ctx));
        }
        Ok(())
    }

    /// The context of the source `name` of `kind`, whose tags map to `mapped`.
    fn context<'m>(
        &self,
        mapped: impl Iterator<Item = Mapped<'m>>,
        kind: SourceKind,
        name: &str,
    ) -> Result<SourceContext, FilterError> {
        Ok(SourceContext {
            gateway: self.edge.gateway.id.clone(),
            pipeline: Pipeline::new(mapped, &self.edge.interlocks, self.writers)?,
            output: self.output.clone(),
            stop: self.stop.clone(),
            health: self.health.source(kind, name),
        })
    }
}
