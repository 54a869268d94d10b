//! The OPC UA adapter: one session per server (async-opcua client), one subscription
//! with a monitored item per node (node ids, or browse paths resolved from the Objects
//! folder), server-side sampling interval and deadband. Data changes become samples with
//! the value's status code as their quality (Treaty's quality has the same layout); a
//! lost connection makes every node bad (not connected) until the session is back; the
//! client reconnects with backoff and recreates the subscription after a server restart.

use crate::config::{NodeTag, OpcUaServer, SecurityMode, browse_path};
use crate::gateway::Pipeline;
use model::sample::{Quality, Sample, SeriesKey, Severity};
use opcua::client::{ClientBuilder, DataChangeCallback, IdentityToken, Session, SessionPollResult};
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    BrowsePath, DataChangeFilter, DataChangeTrigger, DataValue, ExtensionObject, MessageSecurityMode,
    MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeId, ObjectId, QualifiedName, ReadValueId,
    ReferenceTypeId, RelativePath, RelativePathElement, StatusCode, TimestampsToReturn, UserTokenPolicy,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Bad_NotConnected (top 16 bits).
const NOT_CONNECTED: u16 = 0x008A;

/// Counters of one server, for the health endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub connects: u64,
    pub connection_losses: u64,
    pub value_changes: u64,
    pub bad_values: u64,
    pub items_failed: u64,
    /// Changes dropped because the adapter fell behind the server by a whole queue.
    pub values_dropped: u64,
}

/// A node followed on the server.
#[derive(Debug, Clone)]
struct Item {
    key: SeriesKey,
    tag: NodeTag,
}

/// The quality of an OPC UA status code: the same severity and sub-code bits.
pub fn quality(status: StatusCode) -> Quality {
    let bits = status.bits();
    let severity = if status.is_bad() {
        Severity::Bad
    } else if status.is_uncertain() {
        Severity::Uncertain
    } else {
        Severity::Good
    };
    Quality::new(severity, ((bits >> 16) & 0x3fff) as u16)
}

/// A data value as a sample (value scaled; non-numeric values are bad, type mismatch).
fn sample(value: &DataValue, scale: f64, offset: f64, now: i64) -> Sample {
    let ts = value
        .source_timestamp
        .as_ref()
        .or(value.server_timestamp.as_ref())
        .map_or(now, |t| t.as_chrono().timestamp_millis());
    let status = value.status.unwrap_or(StatusCode::Good);
    let number = value.value.as_ref().and_then(|v| match v {
        opcua::types::Variant::Boolean(b) => Some(f64::from(u8::from(*b))),
        v => v.as_f64(),
    });
    match number {
        Some(v) if v.is_finite() => Sample { ts, value: v * scale + offset, quality: quality(status) },
        // Bad_TypeMismatch when the value is there but not a number.
        _ if status.is_good() && value.value.is_some() => {
            Sample { ts, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x0074) }
        }
        _ => Sample { ts, value: f64::NAN, quality: if status.is_good() { Quality::BAD } else { quality(status) } },
    }
}

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

/// Resolves `browse_path` nodes to node ids (one TranslateBrowsePathsToNodeIds call).
async fn resolve(session: &Session, items: &[Item]) -> Vec<Result<NodeId, String>> {
    let mut out: Vec<Result<NodeId, String>> = Vec::with_capacity(items.len());
    let mut paths = Vec::new();
    let mut at = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match (&item.tag.node_id, &item.tag.browse_path) {
            (Some(id), _) => out.push(id.parse::<NodeId>().map_err(|_| format!("bad node id `{id}`"))),
            (None, Some(path)) => {
                let elements = browse_path(path).unwrap_or_default();
                paths.push(BrowsePath {
                    starting_node: ObjectId::ObjectsFolder.into(),
                    relative_path: RelativePath {
                        elements: Some(
                            elements
                                .into_iter()
                                .map(|(ns, name)| RelativePathElement {
                                    reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                                    is_inverse: false,
                                    include_subtypes: true,
                                    target_name: QualifiedName::new(ns, name),
                                })
                                .collect(),
                        ),
                    },
                });
                at.push(i);
                out.push(Err(String::new()));
            }
            (None, None) => out.push(Err("no node id or browse path".into())),
        }
    }
    if paths.is_empty() {
        return out;
    }
    match session.translate_browse_paths_to_node_ids(&paths).await {
        Ok(results) => {
            for (result, i) in results.into_iter().zip(at) {
                let path = items[i].tag.browse_path.clone().unwrap_or_default();
                out[i] = match result.targets.and_then(|t| t.into_iter().next()) {
                    Some(target) if result.status_code.is_good() => Ok(target.target_id.node_id),
                    _ => Err(format!("browse path `{path}` not found ({})", result.status_code)),
                };
            }
        }
        Err(error) => {
            for i in at {
                out[i] = Err(format!("translating browse paths failed: {error}"));
            }
        }
    }
    out
}

/// Runs one server's session until `stop` turns true.
pub async fn run(
    server: OpcUaServer,
    gateway_id: String,
    default_pki: PathBuf,
    mut pipeline: Pipeline,
    samples: mpsc::Sender<Vec<(SeriesKey, Sample)>>,
    mut stop: watch::Receiver<bool>,
    health: Option<Arc<crate::health::Health>>,
) {
    let items: Vec<Item> = server
        .nodes
        .iter()
        .map(|t| {
            let tag = t.get_ref().clone();
            Item { key: SeriesKey::new(tag.asset.clone(), tag.signal.clone()), tag }
        })
        .collect();
    let mut counters = Counters::default();
    let report = |counters: &Counters| {
        if let Some(health) = &health
            && let Ok(mut map) = health.opcua.lock()
        {
            map.insert(server.name.clone(), *counters);
        }
    };
    report(&counters);
    let identity = match identity(&server) {
        Ok(identity) => identity,
        Err(error) => {
            tracing::error!(server = %server.name, %error, "OPC UA identity; this server is not read");
            return;
        }
    };
    let mut client = match ClientBuilder::new()
        .application_name("Treaty edge gateway")
        .application_uri(format!("urn:treaty:edge:{gateway_id}"))
        .product_uri("urn:treaty:edge")
        .pki_dir(server.pki_dir.clone().unwrap_or(default_pki))
        .create_sample_keypair(true)
        .trust_server_certs(server.trust_server_certs)
        .session_retry_limit(-1)
        .session_retry_initial(Duration::from_millis(500))
        .session_retry_max(Duration::from_secs(30))
        .keep_alive_interval(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10))
        .recreate_subscriptions(true)
        .session_name(format!("treaty-{gateway_id}-{}", server.name))
        .client()
    {
        Ok(client) => client,
        Err(errors) => {
            tracing::error!(server = %server.name, ?errors, "OPC UA client settings; this server is not read");
            return;
        }
    };
    let mode = match server.security_mode {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    };
    let policy = server.security_policy.parse::<SecurityPolicy>().unwrap_or(SecurityPolicy::Unknown);
    let endpoint = (server.endpoint.as_str(), policy.to_str(), mode, UserTokenPolicy::anonymous());
    // Connect (the first time: later reconnects are the session's own).
    let mut backoff = Duration::from_millis(500);
    let (session, event_loop) = loop {
        let attempt = client.connect_to_matching_endpoint(endpoint.clone(), identity.clone());
        let result = tokio::select! {
            result = attempt => result,
            _ = stop.changed() => return,
        };
        match result {
            Ok(connected) => break connected,
            Err(error) => {
                tracing::warn!(server = %server.name, endpoint = %server.endpoint, %error, "cannot open an OPC UA session; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    // Values from the subscription's callback, by item index (client handle - 1). The
    // callback cannot wait: a full queue drops the change and counts it.
    let (values, mut changes) = mpsc::channel::<(usize, DataValue)>(VALUE_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let (lost, mut losses) = mpsc::unbounded_channel::<bool>();
    let name = server.name.clone();
    let driver = tokio::spawn(async move {
        use futures_util::StreamExt;
        let events = event_loop.enter();
        futures_util::pin_mut!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(SessionPollResult::ConnectionLost(status)) => {
                    tracing::warn!(server = %name, %status, "lost the OPC UA server; its nodes get bad quality until it is back");
                    let _ = lost.send(true);
                }
                Ok(SessionPollResult::Reconnected(how)) => {
                    tracing::info!(server = %name, ?how, "OPC UA session re-established");
                    let _ = lost.send(false);
                }
                Ok(_) => {}
                Err(status) => {
                    tracing::error!(server = %name, %status, "the OPC UA session ended");
                    return;
                }
            }
        }
    });
    // (The session's first `Reconnected` event counts this connection.)
    session.wait_for_connection().await;
    tracing::info!(server = %server.name, endpoint = %server.endpoint, nodes = items.len(), "OPC UA session open");
    let mut followed = Followed { subscription: None, node_ids: vec![None; items.len()] };
    // Items that cannot be followed (yet), with the reason's status; retried periodically
    // (a PLC program loaded later, a node added by an engineer).
    let mut failed = followed.follow(&session, &server, &items, (0..items.len()).collect(), &values, &dropped).await;
    counters.items_failed = failed.len() as u64;
    report(&counters);
    // Nodes that cannot be followed are reported as bad (their status, or not connected).
    let now = now_ms();
    let refused: Vec<(SeriesKey, Sample)> = failed
        .iter()
        .map(|(i, status)| (items[*i].key.clone(), Sample { ts: now, value: f64::NAN, quality: quality(*status) }))
        .collect();
    if !refused.is_empty() && samples.send(refused).await.is_err() {
        return;
    }
    // When each item was last marked bad (not connected): the first value after the
    // connection is back must be newer, or the bad mark would stay the latest sample.
    let mut marked_bad: Vec<Option<i64>> = vec![None; items.len()];
    let mut connected = true;
    let mut report_every = tokio::time::interval(Duration::from_secs(1));
    let retry_every = Duration::from_millis(server.retry_refused_ms.max(100));
    let mut retry = tokio::time::interval_at(tokio::time::Instant::now() + retry_every, retry_every);
    let mut ended = false;
    while !ended {
        let mut batch = Vec::new();
        let mut values_in = Vec::new();
        tokio::select! {
            _ = report_every.tick() => {
                counters.values_dropped = dropped.load(Ordering::Relaxed);
                report(&counters);
            }
            _ = retry.tick(), if connected && !failed.is_empty() => {
                let before = failed.len();
                let indices = failed.iter().map(|(i, _)| *i).collect();
                failed = followed.follow(&session, &server, &items, indices, &values, &dropped).await;
                counters.items_failed = failed.len() as u64;
                if failed.len() < before {
                    tracing::info!(server = %server.name, followed = before - failed.len(), still_failing = failed.len(), "OPC UA items followed on retry");
                }
            }
            received = changes.recv() => {
                let Some(first) = received else { break };
                values_in.push(first);
                while values_in.len() < 4096 && let Ok(next) = changes.try_recv() {
                    values_in.push(next);
                }
            }
            loss = losses.recv() => {
                match loss {
                    Some(true) => {
                        counters.connection_losses += 1;
                        connected = false;
                        let now = now_ms();
                        marked_bad.iter_mut().for_each(|m| *m = Some(now));
                        batch.extend(items.iter().map(|i| (i.key.clone(), Sample { ts: now, value: f64::NAN, quality: Quality::new(Severity::Bad, NOT_CONNECTED) })));
                    }
                    Some(false) => {
                        counters.connects += 1;
                        connected = true;
                        // The client library recreates the subscription after a server
                        // restart but (0.19) does not restart publishing: nudge it.
                        session.trigger_publish_now();
                        // A resumed subscription only reports what changed: read every
                        // followed node once, so unchanged values replace the bad mark.
                        values_in.extend(followed.read_all(&session).await);
                    }
                    None => {
                        // The session's driver ended: nothing will arrive any more.
                        tracing::error!(server = %server.name, "the OPC UA session ended for good; its nodes stay bad until the gateway restarts");
                        let now = now_ms();
                        batch.extend(items.iter().map(|i| (i.key.clone(), Sample { ts: now, value: f64::NAN, quality: Quality::new(Severity::Bad, NOT_CONNECTED) })));
                        ended = true;
                    }
                }
            }
            _ = stop.changed() => break,
        }
        let now = now_ms();
        for (handle, value) in values_in {
            let Some(item) = items.get(handle) else { continue };
            let mut s = sample(&value, item.tag.scale, item.tag.offset, now);
            if let Some(bad_at) = marked_bad[handle].take() {
                s.ts = s.ts.max(bad_at + 1);
            }
            counters.value_changes += 1;
            if !s.quality.is_good() {
                counters.bad_values += 1;
            }
            batch.push((item.key.clone(), s));
        }
        if batch.is_empty() {
            continue;
        }
        let out = pipeline.process(batch, std::time::Instant::now()).await;
        if !out.is_empty() && samples.send(out).await.is_err() {
            break;
        }
    }
    counters.values_dropped = dropped.load(Ordering::Relaxed);
    report(&counters);
    pipeline.hand_over(&samples).await;
    let _ = session.disconnect().await;
    driver.abort();
}

/// Data changes queued between the subscription's callback and the adapter.
const VALUE_QUEUE: usize = 65_536;

/// The subscription and the node each item follows.
struct Followed {
    subscription: Option<u32>,
    node_ids: Vec<Option<NodeId>>,
}

impl Followed {
    /// Creates the subscription if there is none yet, then a monitored item for each of
    /// `indices`; returns the items that cannot be followed, with the reason's status.
    async fn follow(
        &mut self,
        session: &Session,
        server: &OpcUaServer,
        items: &[Item],
        indices: Vec<usize>,
        values: &mpsc::Sender<(usize, DataValue)>,
        dropped: &Arc<AtomicU64>,
    ) -> Vec<(usize, StatusCode)> {
        let subscription = match self.subscription {
            Some(id) => id,
            None => {
                let publishing = Duration::from_millis(server.publishing_interval_ms.max(10));
                let (values, dropped) = (values.clone(), dropped.clone());
                let callback = DataChangeCallback::new(move |value, item| {
                    tracing::trace!(handle = item.client_handle(), ?value, "OPC UA data change");
                    let handle = (item.client_handle() as usize).wrapping_sub(1);
                    if values.try_send((handle, value)).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                });
                match session.create_subscription(publishing, 60, 20, 0, 0, true, callback).await {
                    Ok(id) => *self.subscription.insert(id),
                    Err(error) => {
                        tracing::error!(server = %server.name, %error, "cannot create the OPC UA subscription");
                        return indices.into_iter().map(|i| (i, error.status())).collect();
                    }
                }
            }
        };
        let wanted: Vec<Item> = indices.iter().map(|i| items[*i].clone()).collect();
        let node_ids = resolve(session, &wanted).await;
        let mut failed = Vec::new();
        let mut requests = Vec::new();
        let mut handles = Vec::new();
        for ((i, item), node) in indices.iter().zip(&wanted).zip(node_ids) {
            let node = match node {
                Ok(node) => node,
                Err(error) => {
                    tracing::error!(server = %server.name, signal = %item.key, %error, "cannot follow this node");
                    failed.push((*i, StatusCode::BadNodeIdUnknown));
                    continue;
                }
            };
            let deadband = match (item.tag.deadband, item.tag.deadband_percent) {
                (Some(d), _) => Some((1, d)),
                (None, Some(p)) => Some((2, p)),
                (None, None) => None,
            };
            let filter = deadband.map_or_else(ExtensionObject::null, |(kind, value)| {
                ExtensionObject::from_message(DataChangeFilter {
                    trigger: DataChangeTrigger::StatusValue,
                    deadband_type: kind,
                    deadband_value: value,
                })
            });
            let sampling = item.tag.sampling_interval_ms.unwrap_or(server.publishing_interval_ms) as f64;
            requests.push(MonitoredItemCreateRequest::new(
                ReadValueId { node_id: node.clone(), attribute_id: 13, ..ReadValueId::default() },
                MonitoringMode::Reporting,
                MonitoringParameters {
                    // Handle 0 means "assign one" to the client library: start at 1.
                    client_handle: *i as u32 + 1,
                    sampling_interval: sampling,
                    filter,
                    queue_size: 10,
                    discard_oldest: true,
                },
            ));
            handles.push((*i, node));
        }
        if requests.is_empty() {
            return failed;
        }
        match session.create_monitored_items(subscription, TimestampsToReturn::Both, requests).await {
            Ok(results) => {
                for (result, (i, node)) in results.iter().zip(handles) {
                    let status = result.result.status_code;
                    if status.is_good() {
                        self.node_ids[i] = Some(node);
                    } else {
                        tracing::error!(server = %server.name, signal = %items[i].key, %status, "the server refused a monitored item");
                        failed.push((i, status));
                    }
                }
            }
            Err(error) => {
                tracing::error!(server = %server.name, %error, "cannot create monitored items");
                failed.extend(handles.into_iter().map(|(i, _)| (i, error.status())));
            }
        }
        failed
    }

    /// The current value of every followed node (one Read call), by item index.
    async fn read_all(&self, session: &Session) -> Vec<(usize, DataValue)> {
        let (indices, reads): (Vec<usize>, Vec<ReadValueId>) = self
            .node_ids
            .iter()
            .enumerate()
            .filter_map(|(i, node)| {
                Some((i, ReadValueId { node_id: node.clone()?, attribute_id: 13, ..ReadValueId::default() }))
            })
            .unzip();
        if reads.is_empty() {
            return Vec::new();
        }
        match session.read(&reads, TimestampsToReturn::Both, 0.0).await {
            Ok(values) => indices.into_iter().zip(values).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the current values after reconnecting");
                Vec::new()
            }
        }
    }
}

/// The user identity for the session.
fn identity(server: &OpcUaServer) -> Result<IdentityToken, String> {
    match (&server.username, &server.user_cert, &server.user_key) {
        (Some(user), _, _) => {
            let password = crate::config::password(server.password_env.as_deref(), server.password_file.as_deref())?;
            Ok(IdentityToken::new_user_name(user.clone(), password))
        }
        (None, Some(cert), Some(key)) => {
            let pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
            let cert = opcua::crypto::X509::from_pem(&pem).map_err(|e| format!("{}: {e}", cert.display()))?;
            let key = opcua::crypto::PrivateKey::read_pem_file(key).map_err(|e| format!("{}: {e:?}", key.display()))?;
            Ok(IdentityToken::X509(Box::new(cert), Box::new(key)))
        }
        _ => Ok(IdentityToken::Anonymous),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_keep_their_severity_and_sub_code() {
        assert_eq!(quality(StatusCode::Good), Quality::GOOD);
        let q = quality(StatusCode::BadSensorFailure);
        assert_eq!((q.severity(), q.sub_code()), (Severity::Bad, 0x008C));
        let q = quality(StatusCode::UncertainLastUsableValue);
        assert_eq!(q.severity(), Severity::Uncertain);
        let value = DataValue::new_now(opcua::types::Variant::from("text"));
        assert_eq!(sample(&value, 1.0, 0.0, 0).quality.sub_code(), 0x0074, "a string is a type mismatch");
        let value = DataValue::new_now(opcua::types::Variant::from(true));
        assert_eq!(sample(&value, 1.0, 0.0, 0).value, 1.0);
        let value = DataValue::new_now(opcua::types::Variant::from(21.5f32));
        assert_eq!(sample(&value, 2.0, 1.0, 0).value, 44.0);
    }
}
