//! Treaty's side of the benchmark: a hub with a benchmark installed base, driven
//! in-process (validation + engine), over HTTP JSON, and over the line protocol.

use crate::datasets::{SIGNALS_PER_ASSET, asset_path, signal_name};
use crate::http::Client;
use anyhow::Context;
use ingest::Catalog;
use model::sample::{Sample, SeriesKey};
use model::{Entity, Kind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsdb::{BatchId, Tsdb, WriteRequest};

/// A running hub on a fresh data directory, started as `treaty serve` starts one.
pub struct Hub {
    pub dir: PathBuf,
    pub tsdb: Tsdb,
    pub catalog: Arc<Catalog>,
    pub address: String,
    pub token: String,
    /// Calls of `ingest_in_process`, to keep batch ids unique.
    rounds: std::sync::atomic::AtomicUsize,
    running: Option<::hub::RunningHub>,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(running) = self.running.take()
            && let Err(error) = self.runtime.block_on(running.shutdown())
        {
            tracing::warn!(error = %format!("{error:#}"), "the benchmark hub did not stop cleanly");
        }
    }
}

fn entities(assets: usize) -> anyhow::Result<Vec<Entity>> {
    let signals: Vec<serde_json::Value> =
        (0..SIGNALS_PER_ASSET).map(|k| serde_json::json!({"name": signal_name(k), "unit": "u"})).collect();
    let mut out = vec![
        Entity::from_json(Kind::Customer, serde_json::json!({"id": "bench", "name": "Benchmark"}))?,
        Entity::from_json(Kind::Site, serde_json::json!({"id": "bench/site", "name": "Site"}))?,
        Entity::from_json(Kind::Line, serde_json::json!({"id": "bench/site/line", "name": "Line"}))?,
        Entity::from_json(
            Kind::AssetModel,
            serde_json::json!({"id": "bench-model", "name": "Bench", "category": "bench", "signal": signals}),
        )?,
    ];
    for n in 0..assets {
        out.push(Entity::from_json(
            Kind::Asset,
            serde_json::json!({"id": asset_path(n), "name": format!("A{n}"), "model": "bench-model"}),
        )?);
    }
    Ok(out)
}

impl Hub {
    pub fn start(dir: &Path, assets: usize) -> anyhow::Result<Hub> {
        Self::open(dir, assets, false)
    }

    /// `reuse`: open what an earlier run left in `dir` (its records are already there)
    /// instead of starting from an empty directory.
    pub fn open(dir: &Path, assets: usize, reuse: bool) -> anyhow::Result<Hub> {
        if !reuse {
            let _ = std::fs::remove_dir_all(dir);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let entities = entities(assets)?;
        let catalog = Arc::new(Catalog::from_entities(&entities));
        let (running, token) = runtime.block_on(async {
            let store = ::hub::open_store(dir)?;
            if !reuse {
                let batch = store::WriteBatch {
                    actor: "bench".into(),
                    changes: entities.into_iter().map(store::Change::Create).collect(),
                    idempotency: None,
                };
                store.apply(batch).await?;
            }
            let issued = api::auth::issue_token("bench", model::Role::Admin, None).map_err(anyhow::Error::msg)?;
            store.create_token("bench", issued.record).await?;
            let running = ::hub::Hub::start(::hub::HubOptions::new(dir.to_owned()), store).await?;
            anyhow::Ok((running, issued.secret))
        })?;
        let tsdb = running.ingest.tsdb().clone();
        let address = running.address.to_string();
        Ok(Hub {
            dir: dir.to_owned(),
            tsdb,
            catalog,
            address,
            token,
            rounds: Default::default(),
            running: Some(running),
            runtime,
        })
    }

    /// In-process ingest: validation against the catalogue plus a durable engine write,
    /// from `threads` writers.
    pub fn ingest_in_process(
        &self,
        batches: &[Vec<(SeriesKey, Vec<Sample>)>],
        threads: usize,
    ) -> anyhow::Result<Duration> {
        let round = self.rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let start = Instant::now();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || -> anyhow::Result<()> {
                        for (i, batch) in batches.iter().enumerate().filter(|(i, _)| i % threads == t) {
                            let (accepted, rejected) = self.catalog.validate(batch.clone(), i64::MAX / 2, 0);
                            anyhow::ensure!(rejected.is_empty(), "{} samples rejected", rejected.len());
                            // Batch ids must be unique across calls, or later calls would be replays.
                            let mut digest = [0u8; 32];
                            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
                            let id = format!("r{round}-b{i}");
                            let batch = Some(BatchId { scope: "bench".into(), id, digest });
                            self.tsdb.write(WriteRequest { batch, series: accepted, historical: false })?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("writer panicked"))?)
        })?;
        // Sealing runs behind the acknowledgements; the clock stops when it has caught up.
        self.tsdb.wait_for_seals();
        Ok(start.elapsed())
    }

    /// Posts pre-encoded bodies to `path` from `threads` keep-alive connections.
    pub fn ingest_http(
        &self,
        path: &str,
        content_type: &str,
        bodies: &[Vec<u8>],
        threads: usize,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        post_all(
            &self.address,
            path,
            &[("Authorization", &format!("Bearer {}", self.token)), ("Content-Type", content_type)],
            bodies,
            threads,
            |status, body| status == 200 && !String::from_utf8_lossy(body).contains("\"code\""),
        )?;
        // Sealing runs behind the acknowledgements; the clock stops when it has caught up.
        self.tsdb.wait_for_seals();
        Ok(start.elapsed())
    }

    /// Seals everything and returns the bytes the telemetry directory holds, and how
    /// many of them are rollups (which the peers do not keep).
    pub fn disk_bytes(&self) -> anyhow::Result<(u64, u64)> {
        self.tsdb.seal_all()?;
        Ok((crate::dir_bytes(&self.dir.join("telemetry")), self.tsdb.stats().rollup_bytes))
    }
}

/// Sends every body once, spread over `threads` connections; `ok` judges each reply.
pub fn post_all(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    bodies: &[Vec<u8>],
    threads: usize,
    ok: fn(u16, &[u8]) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut client = Client::connect(address)?;
                    for body in bodies.iter().skip(t).step_by(threads) {
                        let (status, reply) = client.request("POST", path, headers, body)?;
                        anyhow::ensure!(
                            ok(status, &reply),
                            "{path} answered {status}: {}",
                            String::from_utf8_lossy(&reply[..reply.len().min(300)])
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("client panicked"))?)
    })
    .context("posting batches")?;
    Ok(start.elapsed())
}

/// Treaty's JSON batch for one write.
pub fn json_body(batch: &[(SeriesKey, Vec<Sample>)], id: usize) -> Vec<u8> {
    let mut out = format!("{{\"batch_id\":\"b{id}\",\"series\":[");
    for (i, (key, samples)) in batch.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"asset\":\"{}\",\"signal\":\"{}\",\"timestamps\":[", key.asset, key.signal));
        join(&mut out, samples.iter().map(|s| s.ts.to_string()));
        out.push_str("],\"values\":[");
        join(&mut out, samples.iter().map(|s| s.value.to_string()));
        out.push_str("]}");
    }
    out.push_str("]}");
    out.into_bytes()
}

/// Line protocol with millisecond timestamps; measurement = signal, tag asset, field value.
pub fn line_protocol_body(batch: &[(SeriesKey, Vec<Sample>)]) -> Vec<u8> {
    let mut out = String::new();
    for (key, samples) in batch {
        for s in samples {
            out.push_str(&format!("{},asset={} value={} {}\n", key.signal, key.asset, s.value, s.ts));
        }
    }
    out.into_bytes()
}

pub(crate) fn join(out: &mut String, items: impl Iterator<Item = String>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
}
