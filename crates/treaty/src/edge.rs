//! `treaty edge`: run the edge gateway described by an edge file, checked against the
//! fleet first; and the edge-file branch of `treaty check-config`.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EdgeArgs {
    /// The edge file (gateway, hub, devices and tag map), e.g. examples/edge.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// The fleet file the tag map is checked against (assets, signals, units, spans).
    #[arg(long)]
    pub fleet: PathBuf,
}

/// Whether a TOML file is an edge file (it has a `[gateway]` table).
pub fn is_edge_file(source: &str) -> bool {
    source.lines().any(|line| line.trim() == "[gateway]")
}

/// Checks an edge file against a fleet file; prints every problem.
pub fn check(file: &Path, fleet: Option<&Path>) -> anyhow::Result<Result<edge::config::EdgeFile, ExitCode>> {
    let invalid = ExitCode::from(crate::import::INVALID_CONFIG);
    let Some(fleet) = fleet else {
        eprintln!("{}: an edge file is checked against the installed base: add --fleet FLEET.toml", file.display());
        return Ok(Err(invalid));
    };
    let fleet = match config::load_fleet(fleet) {
        Ok(fleet) => fleet,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(Err(invalid));
        }
    };
    let source = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match edge::config::check(&file.display().to_string(), &source, &fleet.entities) {
        Ok(edge) => Ok(Ok(edge)),
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            Ok(Err(invalid))
        }
    }
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    let edge = match check(&args.config, Some(&args.fleet))? {
        Ok(edge) => edge,
        Err(code) => return Ok(code),
    };
    let token = std::env::var(&edge.gateway.token_env).with_context(|| {
        format!(
            "the device token must be in ${} (create one with `treaty token create --role device --asset ...`)",
            edge.gateway.token_env
        )
    })?;
    let reads = edge.summary();
    tracing::info!(gateway = %edge.gateway.id, hub = %edge.gateway.hub, %reads, "edge gateway starting");
    eprintln!(
        "Treaty edge gateway `{}` is running ({reads} -> {}); Ctrl-C stops it",
        edge.gateway.id, edge.gateway.hub
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::signal::stop_requested("the gateway").await;
        let _ = stop.send(true);
    });
    edge::gateway::run(edge, token, stopped).await?;
    tracing::info!("edge gateway stopped");
    Ok(ExitCode::SUCCESS)
}
