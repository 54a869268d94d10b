//! What a session follows: the subscription, a monitored item per node (node ids as
//! given, browse paths resolved once from the Objects folder), with server-side
//! sampling interval and deadband; and reading every followed node at once, after a
//! reconnect.

use crate::config::{NodeTag, OpcUaServer, browse_path};
use model::sample::SeriesKey;
use opcua::client::{DataChangeCallback, Session};
use opcua::types::{
    BrowsePath, DataChangeFilter, DataChangeTrigger, DataValue, ExtensionObject, MonitoredItemCreateRequest,
    MonitoringMode, MonitoringParameters, NodeId, ObjectId, QualifiedName, ReadValueId, ReferenceTypeId, RelativePath,
    RelativePathElement, StatusCode, TimestampsToReturn,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a node cannot be followed.
#[derive(Debug, thiserror::Error)]
enum NodeError {
    #[error("bad node id `{0}`")]
    BadNodeId(String),
    #[error("browse path `{path}` not found ({status})")]
    NotFound { path: String, status: StatusCode },
    #[error("translating browse paths failed: {0}")]
    Translate(Arc<opcua::types::Error>),
    #[error("the server gave no result for this browse path")]
    NoResult,
    #[error("no node id or browse path")]
    Missing,
}

/// A node followed on the server.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) key: SeriesKey,
    pub(super) tag: NodeTag,
}

/// Resolves `browse_path` nodes to node ids (one TranslateBrowsePathsToNodeIds call).
async fn resolve(session: &Session, items: &[Item]) -> Vec<Result<NodeId, NodeError>> {
    let mut out: Vec<Result<NodeId, NodeError>> = Vec::with_capacity(items.len());
    let mut paths = Vec::new();
    let mut at = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match (&item.tag.node_id, &item.tag.browse_path) {
            (Some(id), _) => out.push(id.parse::<NodeId>().map_err(|_| NodeError::BadNodeId(id.clone()))),
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
                out.push(Err(NodeError::NoResult));
            }
            (None, None) => out.push(Err(NodeError::Missing)),
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
                    _ => Err(NodeError::NotFound { path, status: result.status_code }),
                };
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for i in at {
                out[i] = Err(NodeError::Translate(error.clone()));
            }
        }
    }
    out
}

/// Data changes queued between the subscription's callback and the adapter.
pub(super) const VALUE_QUEUE: usize = 65_536;

/// The subscription and the node each item follows.
pub(super) struct Followed {
    pub(super) subscription: Option<u32>,
    pub(super) node_ids: Vec<Option<NodeId>>,
}

impl Followed {
    /// Creates the subscription if there is none yet, then a monitored item for each of
    /// `indices`; returns the items that cannot be followed, with the reason's status.
    pub(super) async fn follow(
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
    pub(super) async fn read_all(&self, session: &Session) -> Vec<(usize, DataValue)> {
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
