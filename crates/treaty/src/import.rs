//! `treaty check-config` and `treaty import`: validate a fleet file, then apply exactly
//! the difference to the store in one transaction.

use crate::DataDir;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use store::{RecordStoreRef, WriteBatch, plan_sync};

/// Exit code for an invalid configuration file.
pub const INVALID_CONFIG: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The fleet file, e.g. examples/fleet.toml.
    pub file: PathBuf,
    #[command(flatten)]
    pub data_dir: DataDir,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    match config::load_fleet(file) {
        Ok(fleet) => {
            println!("{}: ok ({} records)", file.display(), fleet.entities.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            Ok(ExitCode::from(INVALID_CONFIG))
        }
    }
}

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = crate::open_store(&args.data_dir)?;
    import(&store, &args.file, args.dry_run).await
}

/// Validates `file` and applies it; prints the plan. Shared with `serve --import`.
pub async fn import(store: &RecordStoreRef, file: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let fleet = match config::load_fleet(file) {
        Ok(fleet) => fleet,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(INVALID_CONFIG));
        }
    };
    let current = store.snapshot().await.context("reading the current records")?;
    let plan = plan_sync(&fleet.entities, &current);
    for (kind, created, updated, deleted) in plan.summary() {
        println!("  {:<12} {created:>4} to create  {updated:>4} to update  {deleted:>4} to delete", kind.as_str());
    }
    let (created, updated, deleted) =
        plan.summary().iter().fold((0, 0, 0), |(c, u, d), (_, c2, u2, d2)| (c + c2, u + u2, d + d2));
    let name = file.display();
    if plan.is_empty() {
        println!("{name}: already up to date ({} records unchanged)", plan.unchanged);
        return Ok(ExitCode::SUCCESS);
    }
    if dry_run {
        println!(
            "{name}: dry run: would create {created}, update {updated}, delete {deleted}; {} unchanged",
            plan.unchanged
        );
        return Ok(ExitCode::SUCCESS);
    }
    let batch = WriteBatch { actor: crate::local_actor().actor, changes: plan.changes, idempotency: None };
    store.apply(batch).await.map_err(|e| match e {
        store::Error::VersionConflict { .. } => {
            anyhow::anyhow!("{e}: the records changed while importing; nothing was applied, run the import again")
        }
        other => anyhow::anyhow!("{other}; nothing was applied"),
    })?;
    println!("{name}: applied: created {created}, updated {updated}, deleted {deleted}; {} unchanged", plan.unchanged);
    Ok(ExitCode::SUCCESS)
}
