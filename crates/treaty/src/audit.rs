//! `treaty audit verify`: recompute the audit hash chain and report every break.

use crate::DataDir;
use std::process::ExitCode;

/// Exit code when the audit chain is broken.
pub const CHAIN_BROKEN: u8 = 3;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check that no audit entry was edited, removed or reordered (exit code 3 if any was).
    Verify {
        #[command(flatten)]
        data_dir: DataDir,
    },
}

pub async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify { data_dir } = command;
    let store = crate::open_store(&data_dir)?;
    let report = store.verify_audit().await?;
    if report.is_intact() {
        println!("audit chain intact: {} entries, head {}", report.entries, report.head);
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        eprintln!("audit: {problem}");
    }
    eprintln!("audit chain BROKEN: {} problem(s) in {} entries", report.problems.len(), report.entries);
    Ok(ExitCode::from(CHAIN_BROKEN))
}
