//! Who may do what: roles, the principal behind a request, the data scope it sees, and
//! the one permission table every layer consults. Deny by default: an action missing
//! from the table is refused.

use crate::entity::Kind;
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// A role. Each API token carries exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    OtEngineer,
    ServiceManager,
    Dispatcher,
    Technician,
    PartsPlanner,
    Billing,
    /// A customer's own staff: read-only, and only their own customer's records.
    CustomerViewer,
    /// An edge gateway; writes telemetry for the assets it is bound to (later issues).
    Device,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Admin,
        Role::OtEngineer,
        Role::ServiceManager,
        Role::Dispatcher,
        Role::Technician,
        Role::PartsPlanner,
        Role::Billing,
        Role::CustomerViewer,
        Role::Device,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::OtEngineer => "ot-engineer",
            Role::ServiceManager => "service-manager",
            Role::Dispatcher => "dispatcher",
            Role::Technician => "technician",
            Role::PartsPlanner => "parts-planner",
            Role::Billing => "billing",
            Role::CustomerViewer => "customer-viewer",
            Role::Device => "device",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|r| r.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(Role::as_str).collect();
            format!("`{text}` is not a role; use one of {}", names.join(", "))
        })
    }

    /// Staff roles see every customer; the rest are scoped or have no record access.
    pub fn is_staff(&self) -> bool {
        !matches!(self, Role::CustomerViewer | Role::Device)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which records a principal may see. The store applies it inside its queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every customer's records.
    All,
    /// One customer's own sites, lines, assets, components and contracts, plus the
    /// shared catalogue (asset models, parts). Nothing internal (warehouses, staff).
    Customer(String),
}

/// The authenticated caller of a request or command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who, as written to the audit trail: `token:<id> (<name>)` or `cli:<user>`.
    pub actor: String,
    pub role: Role,
    /// Set exactly when `role` is `customer-viewer`.
    pub customer: Option<String>,
    /// For `device` tokens: the asset paths (or site/line prefixes) whose telemetry it
    /// may write. Empty for every other role.
    pub assets: Vec<String>,
}

impl Principal {
    /// The local operator running a CLI command against the data directory.
    pub fn local_admin(user: &str) -> Self {
        Self { actor: format!("cli:{user}"), role: Role::Admin, customer: None, assets: Vec::new() }
    }

    pub fn scope(&self) -> Scope {
        match (&self.role, &self.customer) {
            (Role::CustomerViewer, Some(c)) => Scope::Customer(c.clone()),
            // A viewer without a customer sees nothing: scope to an id no customer can have.
            (Role::CustomerViewer, None) => Scope::Customer(String::from("/")),
            _ => Scope::All,
        }
    }

    pub fn may(&self, action: Action) -> bool {
        permits(self.role, action)
    }

    /// Whether this principal may write telemetry of `asset`: staff roles with the
    /// permission may write any asset's; a device only the assets it is bound to.
    pub fn may_write_telemetry_of(&self, asset: &str) -> bool {
        if !self.may(Action::WriteTelemetry) {
            return false;
        }
        if self.role != Role::Device {
            return true;
        }
        self.assets
            .iter()
            .any(|bound| asset == bound || asset.strip_prefix(bound.as_str()).is_some_and(|rest| rest.starts_with('/')))
    }
}

/// Something a principal may attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read(Kind),
    Write(Kind),
    ManageTokens,
    ReadAudit,
    ReadMetrics,
    /// Send samples (devices only for their bound assets).
    WriteTelemetry,
    /// Query telemetry (customer-viewers only of their own assets).
    ReadTelemetry,
}

/// The permission table. One place, tested as a matrix.
pub fn permits(role: Role, action: Action) -> bool {
    use Kind as K;
    use Role as R;
    match action {
        Action::Read(kind) => match role {
            R::Admin | R::ServiceManager => true,
            R::OtEngineer | R::Dispatcher | R::Technician | R::PartsPlanner | R::Billing => kind != K::User,
            R::CustomerViewer => kind.is_customer_visible(),
            R::Device => false,
        },
        Action::Write(kind) => match role {
            R::Admin => true,
            R::OtEngineer => matches!(kind, K::Site | K::Line | K::Asset | K::Component | K::AssetModel),
            R::ServiceManager => {
                matches!(kind, K::Customer | K::Site | K::Line | K::Asset | K::Component | K::Technician | K::Contract)
            }
            R::Dispatcher => kind == K::Technician,
            R::PartsPlanner => matches!(kind, K::Part | K::Warehouse),
            R::Billing => kind == K::Contract,
            R::Technician | R::CustomerViewer | R::Device => false,
        },
        Action::ManageTokens | Action::ReadAudit => role == R::Admin,
        Action::ReadMetrics => matches!(role, R::Admin | R::OtEngineer),
        Action::WriteTelemetry => matches!(role, R::Admin | R::OtEngineer | R::Device),
        Action::ReadTelemetry => role != R::Device,
    }
}
