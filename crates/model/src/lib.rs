//! Treaty's vocabulary: the words every other crate speaks.
//!
//! This crate does no I/O and knows nothing of HTTP, SQL or TOML. It defines ids and
//! readable asset paths, the installed base (customers, sites, lines, assets, components),
//! asset models, parts, warehouses, technicians, service contracts, money, dates, roles,
//! the permission table, and samples (what machines say). Everything here is plain data plus pure validation.

pub mod access;
pub mod asset_model;
pub mod clock;
pub mod contract;
pub mod date;
pub mod entity;
pub mod fast_hash;
pub mod id;
pub mod installed_base;
pub mod logistics;
pub mod money;
pub mod sample;
pub mod stream;

pub use access::{Action, Principal, Role, Scope};
pub use asset_model::{
    AssetModel, BomLine, ComponentDef, CounterDef, CounterKind, FailureMode, RetentionClass, SignalDef, SignalKind,
};
pub use clock::{Clock, ClockRef, ManualClock, SystemClock};
pub use contract::{BillingPeriod, Contract, Pricing};
pub use date::{Date, Timestamp};
pub use entity::{Entity, Kind, Reference};
pub use id::{IdError, check_path, check_slug, path_parent};
pub use installed_base::{Asset, Component, Customer, Line, Site, User};
pub use logistics::{Part, Technician, Warehouse};
pub use money::{Currency, Money};
pub use sample::{Millis, Quality, Sample, SeriesKey};
pub use stream::{AcceptedSeries, AcceptedWrite, Change, Position};

/// Declares the OpenAPI schema of a type that travels as a string.
#[macro_export]
macro_rules! string_schema {
    ($ty:ty, $description:expr, $example:expr) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($description))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

/// A problem with one field of one record, found by pure validation.
///
/// `field` is a dotted path inside the record (`signals[2].expected_max`) so that the
/// config layer can map it back to a file position and the API can put it in `details`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
