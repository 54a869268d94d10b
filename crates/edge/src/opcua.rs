//! The OPC UA adapter: one session per server (async-opcua client), one subscription
//! with a monitored item per node (node ids, or browse paths resolved from the Objects
//! folder), server-side sampling interval and deadband. Data changes become samples with
//! the value's status code as their quality (Treaty's quality has the same layout); a
//! lost connection makes every node bad (not connected) until the session is back; the
//! client reconnects with backoff and recreates the subscription after a server restart.
//!
//! `values` turns data values into samples (no I/O); `follow` owns the subscription and
//! its monitored items; `run` here owns the session.

mod follow;
mod values;

pub use values::quality;

use crate::config::{OpcUaServer, PasswordError, SecurityMode};
use crate::health::SourceState;
use crate::source::{Samples, SourceContext};
use follow::{Followed, Item, VALUE_QUEUE};
use futures_util::Stream;
use model::sample::{Quality, Sample, SeriesKey, Severity};
use opcua::client::{ClientBuilder, IdentityToken, SessionPollResult};
use opcua::crypto::SecurityPolicy;
use opcua::types::{DataValue, MessageSecurityMode, StatusCode, UserTokenPolicy};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

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

/// Why the session's user identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("{}: {error}", path.display())]
    ReadCertificate { path: PathBuf, error: std::io::Error },
    #[error("{}: {error}", path.display())]
    Certificate { path: PathBuf, error: opcua::crypto::X509Error },
    #[error("{}: {error}", path.display())]
    Key { path: PathBuf, error: Box<dyn std::error::Error + Send + Sync> },
}

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

/// Every item as a bad sample (not connected), stamped `now`.
fn all_bad(items: &[Item], now: i64) -> impl Iterator<Item = (SeriesKey, Sample)> + '_ {
    let quality = Quality::new(Severity::Bad, NOT_CONNECTED);
    items.iter().map(move |i| (i.key.clone(), Sample { ts: now, value: f64::NAN, quality }))
}

/// Runs one server's session until the gateway stops. Without a usable identity or
/// client settings the server is not read (logged), and the gateway runs on.
pub async fn run(server: OpcUaServer, mut ctx: SourceContext) {
    let items: Vec<Item> = server
        .nodes
        .iter()
        .map(|t| {
            let tag = t.get_ref().clone();
            Item { key: SeriesKey::new(tag.asset.clone(), tag.signal.clone()), tag }
        })
        .collect();
    let mut counters = Counters::default();
    ctx.health.report(SourceState::Degraded, &counters);
    let identity = match identity(&server) {
        Ok(identity) => identity,
        Err(error) => {
            tracing::error!(server = %server.name, %error, "OPC UA identity; this server is not read");
            return;
        }
    };
    let Some(mut client) = client(&server, &ctx.gateway) else { return };
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
            _ = ctx.stop.changed() => return,
        };
        match result {
            Ok(connected) => break connected,
            Err(error) => {
                tracing::warn!(server = %server.name, endpoint = %server.endpoint, %error, "cannot open an OPC UA session; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = ctx.stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    // Values from the subscription's callback, by item index (client handle - 1). The
    // callback cannot wait: a full queue drops the change and counts it.
    let (values, mut changes) = mpsc::channel::<(usize, DataValue)>(VALUE_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let (driver, mut losses) = drive(event_loop.enter(), server.name.clone());
    // (The session's first `Reconnected` event counts this connection.)
    session.wait_for_connection().await;
    tracing::info!(server = %server.name, endpoint = %server.endpoint, nodes = items.len(), "OPC UA session open");
    let mut followed = Followed { subscription: None, node_ids: vec![None; items.len()] };
    // Items that cannot be followed (yet), with the reason's status; retried periodically
    // (a PLC program loaded later, a node added by an engineer).
    let mut failed = followed.follow(&session, &server, &items, (0..items.len()).collect(), &values, &dropped).await;
    counters.items_failed = failed.len() as u64;
    let mut connected = true;
    ctx.health.report(SourceState::Ok, &counters);
    // Nodes that cannot be followed are reported as bad (their status, or not connected).
    let now = now_ms();
    let refused: Samples = failed
        .iter()
        .map(|(i, status)| (items[*i].key.clone(), Sample { ts: now, value: f64::NAN, quality: quality(*status) }))
        .collect();
    if !ctx.send_unfiltered(refused).await {
        return;
    }
    // When each item was last marked bad (not connected): the first value after the
    // connection is back must be newer, or the bad mark would stay the latest sample.
    let mut marked_bad: Vec<Option<i64>> = vec![None; items.len()];
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
                ctx.health.report(state(connected), &counters);
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
                        batch.extend(all_bad(&items, now));
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
                        batch.extend(all_bad(&items, now_ms()));
                        connected = false;
                        ended = true;
                    }
                }
            }
            _ = ctx.stop.changed() => break,
        }
        let now = now_ms();
        for (handle, value) in values_in {
            let Some(item) = items.get(handle) else { continue };
            let mut s = values::sample(&value, item.tag.scale, item.tag.offset, now);
            if let Some(bad_at) = marked_bad[handle].take() {
                s.ts = s.ts.max(bad_at + 1);
            }
            counters.value_changes += 1;
            if !s.quality.is_good() {
                counters.bad_values += 1;
            }
            batch.push((item.key.clone(), s));
        }
        if !batch.is_empty() && !ctx.send(batch).await {
            break;
        }
    }
    counters.values_dropped = dropped.load(Ordering::Relaxed);
    ctx.health.report(state(connected), &counters);
    ctx.hand_over().await;
    let _ = session.disconnect().await;
    driver.abort();
}

fn state(connected: bool) -> SourceState {
    if connected { SourceState::Ok } else { SourceState::Degraded }
}

/// The client for one server, named after the gateway; `None` (logged) when the
/// settings are unusable. Without `pki_dir` the library's default applies (the gateway
/// sets `<spool_dir>/pki`).
fn client(server: &OpcUaServer, gateway: &str) -> Option<opcua::client::Client> {
    let mut builder = ClientBuilder::new()
        .application_name("Treaty edge gateway")
        .application_uri(format!("urn:treaty:edge:{gateway}"))
        .product_uri("urn:treaty:edge");
    if let Some(pki_dir) = &server.pki_dir {
        builder = builder.pki_dir(pki_dir.clone());
    }
    let built = builder
        .create_sample_keypair(true)
        .trust_server_certs(server.trust_server_certs)
        .session_retry_limit(-1)
        .session_retry_initial(Duration::from_millis(500))
        .session_retry_max(Duration::from_secs(30))
        .keep_alive_interval(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10))
        .recreate_subscriptions(true)
        .session_name(format!("treaty-{gateway}-{}", server.name))
        .client();
    match built {
        Ok(client) => Some(client),
        Err(errors) => {
            tracing::error!(server = %server.name, ?errors, "OPC UA client settings; this server is not read");
            None
        }
    }
}

/// Drives the session's event loop in its own task; the receiver says `true` when the
/// connection is lost, `false` when it is back, and closes when the session ended.
fn drive(
    events: impl Stream<Item = Result<SessionPollResult, StatusCode>> + Send + 'static,
    name: String,
) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<bool>) {
    let (lost, losses) = mpsc::unbounded_channel::<bool>();
    let driver = tokio::spawn(async move {
        use futures_util::StreamExt;
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
    (driver, losses)
}

/// The user identity for the session.
fn identity(server: &OpcUaServer) -> Result<IdentityToken, IdentityError> {
    match (&server.username, &server.user_cert, &server.user_key) {
        (Some(user), _, _) => {
            let password = crate::config::password(server.password_env.as_deref(), server.password_file.as_deref())?;
            Ok(IdentityToken::new_user_name(user.clone(), password))
        }
        (None, Some(cert), Some(key)) => {
            let pem =
                std::fs::read(cert).map_err(|error| IdentityError::ReadCertificate { path: cert.clone(), error })?;
            let certificate = opcua::crypto::X509::from_pem(&pem)
                .map_err(|error| IdentityError::Certificate { path: cert.clone(), error })?;
            let private_key = opcua::crypto::PrivateKey::read_pem_file(key)
                .map_err(|error| IdentityError::Key { path: key.clone(), error: Box::new(error) })?;
            Ok(IdentityToken::X509(Box::new(certificate), Box::new(private_key)))
        }
        _ => Ok(IdentityToken::Anonymous),
    }
}
