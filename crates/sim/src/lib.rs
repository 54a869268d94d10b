//! Treaty's fleet simulator (`treaty sim`): every asset of a fleet file becomes a
//! machine with plausible physics (`physics`; turbofans replay real C-MAPSS engines,
//! `cmapss`) whose failure modes degrade toward a recorded ground-truth failure time
//! (`world`), served over a real industrial protocol on loopback: Modbus TCP
//! (`modbus`), OPC UA (`opcua`), or MQTT as a JSON sensor or a Sparkplug B edge node
//! (`mqtt`). `edge_file` writes the gateway configuration that reads it all.

pub mod cmapss;
pub mod edge_file;
pub mod modbus;
pub mod mqtt;
pub mod opcua;
pub mod physics;
pub mod world;

use model::Entity;
use physics::Category;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use world::{World, WorldOptions};

/// The simulation, shared by the clock and the protocol servers.
pub type Shared = Arc<Mutex<World>>;

/// How a simulated machine is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Modbus,
    OpcUa,
    MqttJson,
    Sparkplug,
}

impl Protocol {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "modbus" => Ok(Self::Modbus),
            "opcua" => Ok(Self::OpcUa),
            "mqtt-json" => Ok(Self::MqttJson),
            "sparkplug" => Ok(Self::Sparkplug),
            _ => Err(format!("unknown protocol `{text}`: use modbus, opcua, mqtt-json or sparkplug")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Modbus => "modbus",
            Self::OpcUa => "opcua",
            Self::MqttJson => "mqtt-json",
            Self::Sparkplug => "sparkplug",
        }
    }

    /// What machines of a kind usually speak: pump and press PLCs Modbus TCP,
    /// machining centres an OPC UA server in the CNC, compressors a smart controller
    /// with JSON over MQTT, engines' monitoring units Sparkplug B.
    pub fn default_for(category: Category) -> Self {
        match category {
            Category::Pump | Category::Press | Category::Generic => Self::Modbus,
            Category::MachiningCentre => Self::OpcUa,
            Category::Compressor => Self::MqttJson,
            Category::Turbofan => Self::Sparkplug,
        }
    }
}

/// Where one simulated machine can be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub asset: String,
    /// A short name for the edge file (`p-101`).
    pub name: String,
    pub protocol: Protocol,
    /// `host:port` (Modbus), `opc.tcp://...` (OPC UA), the topic (JSON) or the
    /// Sparkplug device id.
    pub address: String,
    /// Each signal and where it is: a holding-register address, a node id, a JSON
    /// member or a Sparkplug metric.
    pub tags: Vec<(String, String)>,
}

/// What `start` needs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub world: WorldOptions,
    /// How often machines advance and servers refresh.
    pub tick: Duration,
    /// First Modbus port (one per machine, counting up); 0 picks free ports.
    pub modbus_port: u16,
    /// First OPC UA port; 0 picks free ports.
    pub opcua_port: u16,
    /// `mqtt://host:port` for JSON sensors and Sparkplug nodes.
    pub broker: String,
    /// Asset id prefixes to simulate (all when empty).
    pub only: Vec<String>,
    /// Protocol per model category, overriding the defaults.
    pub protocols: Vec<(String, Protocol)>,
    /// Where `cmapss/train_FD001.txt` is.
    pub data_dir: PathBuf,
    /// Ground-truth log (JSON lines).
    pub truth: Option<PathBuf>,
    /// Where the OPC UA servers keep their application certificate.
    pub pki_dir: PathBuf,
    /// Wall-clock time (samples are stamped with it; simulated time follows it at
    /// `world.speed`): the system clock, or a hub's when run beside one.
    pub clock: model::ClockRef,
}

/// A running simulation.
pub struct Running {
    pub world: Shared,
    pub endpoints: Vec<Endpoint>,
    pub broker: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    opcua: Vec<::opcua::server::ServerHandle>,
}

impl Running {
    /// The edge file that reads every simulated machine.
    pub fn edge_file(&self, gateway: &edge_file::GatewaySettings) -> String {
        edge_file::render(gateway, Some(&self.broker), &self.endpoints)
    }

    /// Stops every server and the clock.
    pub fn stop(self) {
        for handle in &self.opcua {
            handle.cancel();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Builds the fleet's machines and serves each over its protocol.
pub async fn start(entities: &[Entity], options: SimOptions) -> Result<Running, String> {
    let category_of = |model_id: &str| {
        entities.iter().find_map(|e| match e {
            Entity::AssetModel(m) if m.id == model_id => Some(m.category.clone()),
            _ => None,
        })
    };
    let selected = |id: &str| options.only.is_empty() || options.only.iter().any(|p| id.starts_with(p.as_str()));
    let needs_cmapss = entities.iter().any(|e| match e {
        Entity::Asset(a) => {
            selected(&a.id) && category_of(&a.model).is_some_and(|c| Category::of(&c) == Category::Turbofan)
        }
        _ => false,
    });
    let trajectories =
        if needs_cmapss { cmapss::load(&options.data_dir.join("cmapss/train_FD001.txt"))? } else { Vec::new() };
    let mut world = World::new(entities, &options.only, trajectories, options.world.clone(), options.clock.now_ms())?;
    if let Some(path) = &options.truth {
        world.log_to(path)?;
    }
    let world: Shared = Arc::new(Mutex::new(world));
    let machines: Vec<(String, Category, String)> = {
        let w = world.lock().map_err(|_| "poisoned")?;
        w.machines.iter().map(|m| (m.asset.clone(), m.category, m.model.category.clone())).collect()
    };
    let mut running = Running {
        world: world.clone(),
        endpoints: Vec::new(),
        broker: options.broker.clone(),
        tasks: Vec::new(),
        opcua: Vec::new(),
    };
    let mut json = Vec::new();
    let mut sparkplug: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    let (mut modbus_port, mut opcua_port) = (options.modbus_port, options.opcua_port);
    for (index, (asset, category, model_category)) in machines.iter().enumerate() {
        let protocol = options
            .protocols
            .iter()
            .find(|(c, _)| c == model_category)
            .map_or_else(|| Protocol::default_for(*category), |(_, p)| *p);
        let name = asset.rsplit('/').next().unwrap_or(asset).to_owned();
        let layout = {
            let w = world.lock().map_err(|_| "poisoned")?;
            modbus::layout(&w.machines[index])
        };
        let endpoint = match protocol {
            Protocol::Modbus => {
                let listener = bind(&mut modbus_port).await?;
                let address = listener.local_addr().map_err(|e| e.to_string())?.to_string();
                let served = modbus::serve(world.clone(), index, listener);
                running.tasks.push(tokio::spawn(async move {
                    if let Err(error) = served.await {
                        tracing::error!(%error, "simulated Modbus server stopped");
                    }
                }));
                let tags = layout.into_iter().map(|(signal, at)| (signal, at.to_string())).collect();
                Endpoint { asset: asset.clone(), name, protocol, address, tags }
            }
            Protocol::OpcUa => {
                let listener = bind(&mut opcua_port).await?;
                let served = opcua::serve(world.clone(), index, listener, options.tick, &options.pki_dir).await?;
                running.opcua.push(served.handle);
                Endpoint { asset: asset.clone(), name, protocol, address: served.endpoint, tags: served.tags }
            }
            Protocol::MqttJson => {
                json.push(index);
                let tags = layout.into_iter().map(|(signal, _)| (signal.clone(), signal)).collect();
                Endpoint {
                    asset: asset.clone(),
                    name,
                    protocol,
                    address: format!("{}/{asset}", mqtt::JSON_PREFIX),
                    tags,
                }
            }
            Protocol::Sparkplug => {
                sparkplug.entry(mqtt::site_of(asset)).or_default().push(index);
                let tags = layout.into_iter().map(|(signal, _)| (signal.clone(), signal)).collect();
                Endpoint { asset: asset.clone(), name, protocol, address: mqtt::sparkplug_id(asset), tags }
            }
        };
        running.endpoints.push(endpoint);
    }
    if !json.is_empty() || !sparkplug.is_empty() {
        let broker = mqtt::broker_address(&options.broker)?;
        if !json.is_empty() {
            running.tasks.push(tokio::spawn(mqtt::json(
                world.clone(),
                json,
                broker.clone(),
                options.tick,
                options.clock.clone(),
            )));
        }
        for (site, indices) in sparkplug {
            running.tasks.push(tokio::spawn(mqtt::sparkplug(
                world.clone(),
                site,
                indices,
                broker.clone(),
                options.tick,
                options.clock.clone(),
            )));
        }
    }
    let (shared, clock) = (world.clone(), options.clock.clone());
    let tick = options.tick;
    running.tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            let Ok(mut world) = shared.lock() else { return };
            world.advance_to(clock.now_ms());
        }
    }));
    Ok(running)
}

/// Binds the next loopback port (`*port`, then counts up), or any free one for 0.
async fn bind(port: &mut u16) -> Result<tokio::net::TcpListener, String> {
    let address = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e} (choose other ports with --modbus-port/--opcua-port)"))?;
    if *port != 0 {
        *port += 1;
    }
    Ok(listener)
}
