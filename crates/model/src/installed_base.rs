//! The installed base: customers (the tenants), their sites, lines and assets, the
//! components inside each asset, and the people who use Treaty.

use crate::access::Role;
use crate::date::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A customer of the manufacturer: the tenant boundary. Id is one segment, e.g. `acme`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// ISO 3166 country code of the customer's headquarters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A customer's plant. Id is `customer/site`, e.g. `acme/plant-1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// IANA time zone, e.g. `Europe/Berlin`: shifts and SLA windows are local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// WGS84 position, used to find the nearest warehouse and technician.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

/// A production line or area of a site. Id is `customer/site/line`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub id: String,
    pub name: String,
}

/// A machine. Id is `customer/site/line/asset`, e.g. `acme/plant-1/line-2/p-104`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub id: String,
    pub name: String,
    /// The asset model (machine type) id.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commissioned: Option<Date>,
}

/// One component inside an asset. Id is the asset path plus one segment
/// (`acme/plant-1/line-2/press-7/spindle`); `model_component` names the component
/// definition in the asset's model that it instantiates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub id: String,
    pub model_component: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<Date>,
}

/// A person known to Treaty, with the role their tokens get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub role: Role,
    /// The only customer a `customer-viewer` may see; required for that role, refused for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}
