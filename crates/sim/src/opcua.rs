//! A simulated machine as an OPC UA server (async-opcua; one server and port per
//! machine, like a machine controller with an embedded server). Address space, in the
//! simulator's namespace (`urn:treaty:sim`): an object named after the asset's last
//! path segment under Objects, holding a Double variable per signal and counter
//! (string node ids `s=<signal>`) and a writable Boolean `Run` (false stops the
//! machine). Values are pushed to subscriptions as the machine changes; security mode
//! None, anonymous, for loopback use.

use crate::Shared;
use opcua::server::address_space::{ObjectBuilder, VariableBuilder};
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::server::{ServerBuilder, ServerHandle};
use opcua::types::{DataTypeId, DataValue, DateTime, NodeId, ObjectId, QualifiedName, StatusCode, Variant};
use std::time::Duration;

pub const NAMESPACE: &str = "urn:treaty:sim";

/// The node id text of a variable (`ns=<index>;s=<name>`).
pub fn node_id(namespace: u16, name: &str) -> String {
    format!("ns={namespace};s={name}")
}

/// A running OPC UA server for one machine.
pub struct Served {
    pub handle: ServerHandle,
    pub endpoint: String,
    /// Signal and its node id text.
    pub tags: Vec<(String, String)>,
}

/// Builds and starts the server of machine `index` on `listener` (already bound, so
/// its port is known); values are refreshed every `tick`.
pub async fn serve(
    world: Shared,
    index: usize,
    listener: tokio::net::TcpListener,
    tick: Duration,
    pki_dir: &std::path::Path,
) -> Result<Served, String> {
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (asset, names) = {
        let world = world.lock().map_err(|_| "the simulation lock was poisoned".to_owned())?;
        let machine = &world.machines[index];
        (machine.asset.clone(), crate::modbus::layout(machine).into_iter().map(|(name, _)| name).collect::<Vec<_>>())
    };
    let short = asset.rsplit('/').next().unwrap_or(&asset).to_owned();
    let (server, handle) = ServerBuilder::new_anonymous(format!("Treaty simulator: {asset}"))
        .application_uri(format!("urn:treaty:sim:{asset}"))
        .product_uri("urn:treaty:sim")
        .host("127.0.0.1")
        .port(port)
        // One self-signed application certificate, made on first use, for every server.
        .pki_dir(pki_dir)
        .create_sample_keypair(true)
        .diagnostics_enabled(false)
        .with_node_manager(simple_node_manager(
            NamespaceMetadata { namespace_uri: NAMESPACE.into(), ..Default::default() },
            "treaty-sim",
        ))
        .build()?;
    let namespace = handle.get_namespace_index(NAMESPACE).ok_or("the simulator namespace is missing")?;
    let manager =
        handle.node_managers().get_of_type::<SimpleNodeManager>().ok_or("the simulator's node manager is missing")?;
    let machine_node = NodeId::new(namespace, short.clone());
    let run_node = NodeId::new(namespace, "Run");
    let ids: Vec<NodeId> = names.iter().map(|name| NodeId::new(namespace, name.clone())).collect();
    {
        let space = manager.address_space();
        let mut space = space.write();
        // Browse names in the simulator's namespace (`<ns>:vmc-01/<ns>:spindle_speed`).
        ObjectBuilder::new(&machine_node, QualifiedName::new(namespace, short.as_str()), short.as_str())
            .organized_by(ObjectId::ObjectsFolder)
            .insert(&mut *space);
        for (id, name) in ids.iter().zip(&names) {
            VariableBuilder::new(id, QualifiedName::new(namespace, name.as_str()), name.as_str())
                .data_type(DataTypeId::Double)
                .value(0.0f64)
                .organized_by(machine_node.clone())
                .insert(&mut *space);
        }
        VariableBuilder::new(&run_node, QualifiedName::new(namespace, "Run"), "Run")
            .data_type(DataTypeId::Boolean)
            .value(true)
            .writable()
            .organized_by(machine_node.clone())
            .insert(&mut *space);
    }
    let commands = world.clone();
    manager.inner().add_write_callback(run_node.clone(), move |value, _range| match value.value {
        Some(Variant::Boolean(run)) => match commands.lock() {
            Ok(mut world) => {
                world.command(index, run, "OPC UA node Run");
                StatusCode::Good
            }
            Err(_) => StatusCode::BadInternalError,
        },
        _ => StatusCode::BadTypeMismatch,
    });
    let tags = names.iter().map(|name| (name.clone(), node_id(namespace, name))).collect();
    let subscriptions = handle.subscriptions().clone();
    let updater = manager.clone();
    let cancel = handle.token().clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tick);
        let mut last: Vec<Option<f64>> = vec![None; ids.len()];
        let mut last_run = None;
        while !cancel.is_cancelled() {
            every.tick().await;
            let (values, run): (Vec<Option<f64>>, bool) = {
                let Ok(world) = world.lock() else { return };
                let machine = &world.machines[index];
                (names.iter().map(|n| machine.values.get(n).copied()).collect(), machine.run_command)
            };
            let now = DateTime::now();
            let mut changed: Vec<(&NodeId, Option<&opcua::types::NumericRange>, DataValue)> = Vec::new();
            for ((id, value), seen) in ids.iter().zip(values).zip(last.iter_mut()) {
                if let Some(v) = value
                    && *seen != Some(v)
                {
                    *seen = Some(v);
                    changed.push((id, None, DataValue::new_at(v, now)));
                }
            }
            if last_run != Some(run) {
                last_run = Some(run);
                changed.push((&run_node, None, DataValue::new_at(run, now)));
            }
            if let Err(status) = updater.set_values(&subscriptions, changed.into_iter()) {
                tracing::warn!(%status, "simulated OPC UA server: cannot update values");
            }
        }
    });
    tokio::spawn(async move {
        if let Err(error) = server.run_with(listener).await {
            tracing::error!(%error, "simulated OPC UA server stopped");
        }
    });
    Ok(Served { handle, endpoint: format!("opc.tcp://127.0.0.1:{port}/"), tags })
}
