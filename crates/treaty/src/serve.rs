//! `treaty serve`: open the data directory, optionally import a fleet file, make sure an
//! admin can get in (first start only), and serve the API until SIGINT or SIGTERM.

use crate::DataDir;
use anyhow::Context;
use api::auth::{issue_token, token_from_secret};
use model::Role;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use store::RecordStoreRef;

/// Environment variable that supplies the first admin token instead of generating one.
pub const ADMIN_TOKEN_ENV: &str = "TREATY_ADMIN_TOKEN";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// Address to listen on. The default keeps the API on this machine.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TREATY_BIND")]
    pub bind: SocketAddr,
    /// Import this fleet file before serving (same as `treaty import FILE`).
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
    /// Largest accepted request body in bytes; larger requests get 413.
    #[arg(long, default_value_t = api::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Largest accepted telemetry write (JSON batch or line protocol) in bytes.
    #[arg(long, default_value_t = api::DEFAULT_TELEMETRY_BODY_LIMIT)]
    pub telemetry_body_limit: usize,
    /// Samples timestamped further than this many seconds ahead of the hub's clock are rejected.
    #[arg(long, default_value_t = 600)]
    pub max_future_secs: i64,
    /// How long a retention class keeps raw samples, per-minute and per-hour rollups,
    /// e.g. `--retention high_rate=14d/1y/10y` (units h, d, y; repeatable). Defaults:
    /// standard 90d/2y/10y, high_rate 14d/1y/10y, diagnostic 7d/90d/1y, counter 3y/3y/10y.
    #[arg(long, value_name = "CLASS=RAW/MINUTE/HOUR")]
    pub retention: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`).
    #[arg(long, value_name = "FILE", requires = "tls_key", env = "TREATY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert", env = "TREATY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Also act as a Sparkplug B host application on this broker (`mqtt://host:port` or
    /// `mqtts://host:port`): device metrics are stored as telemetry.
    #[arg(long, value_name = "URL", env = "TREATY_SPARKPLUG_BROKER")]
    pub sparkplug_broker: Option<String>,
    /// The host id in `spBv1.0/STATE/<id>`.
    #[arg(long, default_value = "treaty-hub", requires = "sparkplug_broker")]
    pub sparkplug_host_id: String,
    /// Follow only these Sparkplug groups (repeatable; all by default).
    #[arg(long = "sparkplug-group", value_name = "GROUP", requires = "sparkplug_broker")]
    pub sparkplug_groups: Vec<String>,
    /// Which assets an edge node may write: `GROUP/NODE=PREFIX[,PREFIX...]` (asset ids or
    /// site/line prefixes; repeatable). A device of an unbound node, or outside its
    /// prefixes, is refused: the broker's clients are not trusted with every asset.
    #[arg(long = "sparkplug-node", value_name = "GROUP/NODE=PREFIXES", requires = "sparkplug_broker")]
    pub sparkplug_nodes: Vec<String>,
    /// Broker user name; the password comes from TREATY_SPARKPLUG_PASSWORD.
    #[arg(long, requires = "sparkplug_broker")]
    pub sparkplug_username: Option<String>,
    /// PEM authorities for an `mqtts://` broker (the system's store when absent).
    #[arg(long, value_name = "FILE", requires = "sparkplug_broker")]
    pub sparkplug_ca_file: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = crate::open_store(&args.data_dir)?;
    if let Some(file) = &args.import {
        let code = crate::import::import(&store, file, false).await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    bootstrap_admin(&store).await?;
    let mut options = hub::HubOptions::new(args.data_dir.data_dir.clone());
    for spec in &args.retention {
        options.tsdb.retention.apply(spec).map_err(|e| anyhow::anyhow!("--retention: {e}"))?;
    }
    options.bind = args.bind;
    options.body_limit = args.body_limit;
    options.telemetry_body_limit = args.telemetry_body_limit;
    options.max_future_ms = args.max_future_secs.saturating_mul(1000);
    options.metrics = Some(install_metrics()?);
    options.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(hub::tls::server_config(cert, key)?),
        _ => None,
    };
    if let Some(broker) = &args.sparkplug_broker {
        options.sparkplug = Some(hub::sparkplug_host::HostOptions {
            bindings: hub::sparkplug_host::parse_bindings(&args.sparkplug_nodes)?,
            broker: broker.clone(),
            host_id: args.sparkplug_host_id.clone(),
            groups: args.sparkplug_groups.clone(),
            username: args.sparkplug_username.clone(),
            password: std::env::var("TREATY_SPARKPLUG_PASSWORD").ok(),
            ca_file: args.sparkplug_ca_file.clone(),
        });
    }
    let hub = hub::Hub::start(options, store).await?;
    let url = hub.url();
    eprintln!("Treaty is serving on {url} (OpenAPI: {url}/api/v1/openapi.json); Ctrl-C stops it");
    crate::signal::stop_requested("the hub").await;
    hub.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// On a data directory without tokens, creates the first admin token: from
/// `TREATY_ADMIN_TOKEN` if set, otherwise random and printed once on stdout.
async fn bootstrap_admin(store: &RecordStoreRef) -> anyhow::Result<()> {
    if !store.tokens().await.context("reading tokens")?.is_empty() {
        return Ok(());
    }
    let actor = "system:bootstrap";
    match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(secret) => {
            let issued = token_from_secret(secret, "bootstrap admin", Role::Admin, None)
                .map_err(|e| anyhow::anyhow!("{ADMIN_TOKEN_ENV}: {e}"))?;
            let id = issued.record.id.clone();
            store.create_token(actor, issued.record).await?;
            eprintln!("created the first admin token (id {id}) from {ADMIN_TOKEN_ENV}");
        }
        Err(_) => {
            let issued = issue_token("bootstrap admin", Role::Admin, None).map_err(anyhow::Error::msg)?;
            store.create_token(actor, issued.record).await?;
            eprintln!("First start: created an admin token. It is shown only this once; keep it safe:");
            println!("{}", issued.secret);
            eprintln!("Use it as `Authorization: Bearer <token>`; create more with `treaty token create --role ...`.");
        }
    }
    Ok(())
}

/// Installs the process's Prometheus recorder and describes every metric.
fn install_metrics() -> anyhow::Result<hub::Metrics> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    api::describe_metrics();
    ingest::describe_metrics();
    hub::describe_metrics();
    metrics::describe_gauge!("treaty_build_info", "The running version of Treaty (label `version`), always 1");
    metrics::gauge!("treaty_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let upkeep = handle.clone();
    Ok(hub::Metrics { render: Arc::new(move || handle.render()), upkeep: Arc::new(move || upkeep.run_upkeep()) })
}
