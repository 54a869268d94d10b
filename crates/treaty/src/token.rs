//! `treaty token create|list|revoke`: manage API tokens directly in the data directory
//! (also while the hub serves). Secrets are printed once, to stdout, and never stored.

use crate::DataDir;
use anyhow::{Context, bail};
use model::{Kind, Role, Scope};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once.
    Create {
        /// admin, ot-engineer, service-manager, dispatcher, technician, parts-planner,
        /// billing, customer-viewer or device.
        #[arg(long, value_parser = Role::parse)]
        role: Role,
        /// The customer a customer-viewer token may see (required for that role only).
        #[arg(long)]
        customer: Option<String>,
        /// Who or what uses the token, e.g. "gateway plant-1" (shown in the audit trail).
        #[arg(long)]
        name: Option<String>,
        /// For device tokens: an asset path, or a site or line prefix, whose telemetry the
        /// device may write (repeat for several).
        #[arg(long = "asset", value_name = "PATH")]
        assets: Vec<String>,
        #[command(flatten)]
        data_dir: DataDir,
    },
    /// List tokens (ids, roles, names; never secrets).
    List {
        #[command(flatten)]
        data_dir: DataDir,
    },
    /// Revoke a token by id; it stops working immediately.
    Revoke {
        id: String,
        #[command(flatten)]
        data_dir: DataDir,
    },
}

pub async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let actor = crate::local_actor().actor;
    match command {
        TokenCommand::Create { role, customer, name, assets, data_dir } => {
            let store = crate::open_store(&data_dir)?;
            if let Some(customer) = &customer
                && store.get(&Scope::All, Kind::Customer, customer).await?.is_none()
            {
                bail!("customer `{customer}` does not exist; import the fleet first or check the id");
            }
            let name = name.unwrap_or_else(|| format!("{role} token"));
            let issued = api::auth::issue_bound_token(&name, role, customer, assets).map_err(anyhow::Error::msg)?;
            let id = issued.record.id.clone();
            store.create_token(&actor, issued.record).await.context("storing the token")?;
            eprintln!("created {role} token {id} ({name}); it is shown once, below:");
            println!("{}", issued.secret);
        }
        TokenCommand::List { data_dir } => {
            let store = crate::open_store(&data_dir)?;
            println!("{:<16}  {:<15}  {:<10}  {:<24}  name", "id", "role", "customer", "state");
            for token in store.tokens().await? {
                let state = match token.revoked_at {
                    Some(at) => format!("revoked {}", &at.to_rfc3339()[..10]),
                    None => format!("since {}", &token.created_at.to_rfc3339()[..10]),
                };
                let customer = token.customer.as_deref().unwrap_or("-");
                println!("{:<16}  {:<15}  {customer:<10}  {state:<24}  {}", token.id, token.role.as_str(), token.name);
            }
        }
        TokenCommand::Revoke { id, data_dir } => {
            let store = crate::open_store(&data_dir)?;
            if !store.revoke_token(&actor, &id).await? {
                bail!("no active token with id `{id}` (see `treaty token list`)");
            }
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
