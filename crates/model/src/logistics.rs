//! Parts, warehouses and technicians: what a repair consumes, where it is stocked, and
//! who does the work.

use crate::money::Money;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A catalogue part. Its id is the part number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Part number, e.g. `SKF-6310-2RS`.
    pub id: String,
    pub description: String,
    /// In files: `"184.50 EUR"`; in the API: `{ "amount_minor": 18450, "currency": "EUR" }`.
    pub unit_cost: Money,
    pub weight_kg: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// Supplier lead time in days, for replenishment planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time_days: Option<u32>,
}

/// A stocking point for parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Warehouse {
    pub id: String,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Storage bin codes, e.g. `A-01-03`.
    #[serde(default)]
    pub locations: Vec<String>,
}

/// A field service technician.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Technician {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Skills matched against failure modes, e.g. `rotating-equipment`, `hydraulics`.
    #[serde(default)]
    pub skills: Vec<String>,
    /// The warehouse the technician starts from.
    pub home_base: String,
}
