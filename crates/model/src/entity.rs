//! The closed set of record kinds and the `Entity` sum type that carries any of them.
//!
//! Everything generic about records lives here once: each kind's URL collection name and
//! file section name, which customer a record belongs to, which other records it refers
//! to, and its validation. Stores, the API and the fleet file all dispatch on `Kind`.

use crate::id::{check_path, check_slug, path_customer, path_parent};
use crate::{
    Asset, AssetModel, Component, Contract, Customer, FieldError, Line, Part, Pricing, Role, Site, Technician, User,
    Warehouse,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Customer,
    Site,
    Line,
    Asset,
    Component,
    AssetModel,
    Part,
    Warehouse,
    Technician,
    Contract,
    User,
}

impl Kind {
    /// In dependency order: a record only refers to kinds listed before it (imports
    /// create in this order and delete in the reverse).
    pub const ALL: [Kind; 11] = [
        Kind::Customer,
        Kind::Part,
        Kind::AssetModel,
        Kind::Site,
        Kind::Line,
        Kind::Asset,
        Kind::Component,
        Kind::Warehouse,
        Kind::Technician,
        Kind::Contract,
        Kind::User,
    ];

    /// Name in URLs: `/api/v1/<collection>`.
    pub fn collection(&self) -> &'static str {
        match self {
            Kind::Customer => "customers",
            Kind::Site => "sites",
            Kind::Line => "lines",
            Kind::Asset => "assets",
            Kind::Component => "components",
            Kind::AssetModel => "asset-models",
            Kind::Part => "parts",
            Kind::Warehouse => "warehouses",
            Kind::Technician => "technicians",
            Kind::Contract => "contracts",
            Kind::User => "users",
        }
    }

    /// Name in fleet files (`[[asset_model]]`) and in the store.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Site => "site",
            Kind::Line => "line",
            Kind::Asset => "asset",
            Kind::Component => "component",
            Kind::AssetModel => "asset_model",
            Kind::Part => "part",
            Kind::Warehouse => "warehouse",
            Kind::Technician => "technician",
            Kind::Contract => "contract",
            Kind::User => "user",
        }
    }

    pub fn from_collection(name: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.collection() == name)
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Records that belong to one customer (the tenant boundary).
    pub fn is_customer_owned(&self) -> bool {
        matches!(self, Kind::Customer | Kind::Site | Kind::Line | Kind::Asset | Kind::Component | Kind::Contract)
    }

    /// What a customer-viewer may see: their own records plus the shared catalogue.
    pub fn is_customer_visible(&self) -> bool {
        self.is_customer_owned() || matches!(self, Kind::AssetModel | Kind::Part)
    }

    /// For hierarchy kinds: the number of path segments and an example.
    pub fn path_shape(&self) -> Option<(usize, &'static str)> {
        match self {
            Kind::Customer => Some((1, "acme")),
            Kind::Site => Some((2, "acme/plant-1")),
            Kind::Line => Some((3, "acme/plant-1/line-2")),
            Kind::Asset => Some((4, "acme/plant-1/line-2/p-104")),
            Kind::Component => Some((5, "acme/plant-1/line-2/p-104/bearing-de")),
            _ => None,
        }
    }

    /// The kind of a hierarchy record's parent.
    pub fn parent_kind(&self) -> Option<Kind> {
        match self {
            Kind::Site => Some(Kind::Customer),
            Kind::Line => Some(Kind::Site),
            Kind::Asset => Some(Kind::Line),
            Kind::Component => Some(Kind::Asset),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of any kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Entity {
    Customer(Customer),
    Site(Site),
    Line(Line),
    Asset(Asset),
    Component(Component),
    AssetModel(AssetModel),
    Part(Part),
    Warehouse(Warehouse),
    Technician(Technician),
    Contract(Contract),
    User(User),
}

/// A record's pointer at another record, with the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub field: String,
    pub kind: Kind,
    pub id: String,
}

impl Reference {
    fn new(field: impl Into<String>, kind: Kind, id: &str) -> Self {
        Self { field: field.into(), kind, id: id.to_owned() }
    }
}

macro_rules! each_kind {
    ($value:expr, $binding:ident => $body:expr) => {
        match $value {
            Entity::Customer($binding) => $body,
            Entity::Site($binding) => $body,
            Entity::Line($binding) => $body,
            Entity::Asset($binding) => $body,
            Entity::Component($binding) => $body,
            Entity::AssetModel($binding) => $body,
            Entity::Part($binding) => $body,
            Entity::Warehouse($binding) => $body,
            Entity::Technician($binding) => $body,
            Entity::Contract($binding) => $body,
            Entity::User($binding) => $body,
        }
    };
}

impl Entity {
    pub fn kind(&self) -> Kind {
        match self {
            Entity::Customer(_) => Kind::Customer,
            Entity::Site(_) => Kind::Site,
            Entity::Line(_) => Kind::Line,
            Entity::Asset(_) => Kind::Asset,
            Entity::Component(_) => Kind::Component,
            Entity::AssetModel(_) => Kind::AssetModel,
            Entity::Part(_) => Kind::Part,
            Entity::Warehouse(_) => Kind::Warehouse,
            Entity::Technician(_) => Kind::Technician,
            Entity::Contract(_) => Kind::Contract,
            Entity::User(_) => Kind::User,
        }
    }

    pub fn id(&self) -> &str {
        each_kind!(self, e => e.id.as_str())
    }

    /// Decodes a record of `kind` from JSON, refusing unknown fields.
    pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize_kind(kind, value)
    }

    /// Decodes a record of `kind` from any serde format (JSON bodies, TOML fleet files).
    pub fn deserialize_kind<'de, D: serde::Deserializer<'de>>(kind: Kind, de: D) -> Result<Self, D::Error> {
        Ok(match kind {
            Kind::Customer => Entity::Customer(Deserialize::deserialize(de)?),
            Kind::Site => Entity::Site(Deserialize::deserialize(de)?),
            Kind::Line => Entity::Line(Deserialize::deserialize(de)?),
            Kind::Asset => Entity::Asset(Deserialize::deserialize(de)?),
            Kind::Component => Entity::Component(Deserialize::deserialize(de)?),
            Kind::AssetModel => Entity::AssetModel(Deserialize::deserialize(de)?),
            Kind::Part => Entity::Part(Deserialize::deserialize(de)?),
            Kind::Warehouse => Entity::Warehouse(Deserialize::deserialize(de)?),
            Kind::Technician => Entity::Technician(Deserialize::deserialize(de)?),
            Kind::Contract => Entity::Contract(Deserialize::deserialize(de)?),
            Kind::User => Entity::User(Deserialize::deserialize(de)?),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serialising these plain structs cannot fail: no maps with non-string keys.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The customer (tenant) the record belongs to, for customer-owned kinds.
    pub fn customer(&self) -> Option<&str> {
        match self {
            Entity::Customer(c) => Some(&c.id),
            Entity::Site(_) | Entity::Line(_) | Entity::Asset(_) | Entity::Component(_) => {
                Some(path_customer(self.id()))
            }
            Entity::Contract(c) => Some(&c.customer),
            _ => None,
        }
    }

    /// The hierarchy parent's id, for sites, lines, assets and components.
    pub fn parent(&self) -> Option<&str> {
        self.kind().parent_kind().and_then(|_| path_parent(self.id()))
    }

    /// Every other record this one points at. Stores keep these as foreign keys.
    pub fn references(&self) -> Vec<Reference> {
        let mut refs = Vec::new();
        if let (Some(kind), Some(parent)) = (self.kind().parent_kind(), self.parent()) {
            refs.push(Reference::new("id", kind, parent));
        }
        match self {
            Entity::Asset(a) => refs.push(Reference::new("model", Kind::AssetModel, &a.model)),
            Entity::AssetModel(m) => refs
                .extend(m.part_references().into_iter().map(|(field, part)| Reference::new(field, Kind::Part, part))),
            Entity::Technician(t) => refs.push(Reference::new("home_base", Kind::Warehouse, &t.home_base)),
            Entity::Contract(c) => {
                refs.push(Reference::new("customer", Kind::Customer, &c.customer));
                for (i, asset) in c.assets.iter().enumerate() {
                    refs.push(Reference::new(format!("assets[{i}]"), Kind::Asset, asset));
                }
            }
            Entity::User(u) => {
                if let Some(customer) = &u.customer {
                    refs.push(Reference::new("customer", Kind::Customer, customer));
                }
            }
            _ => {}
        }
        refs
    }

    /// Checks everything that can be checked from the record alone.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let kind = self.kind();
        match kind.path_shape() {
            Some((depth, example)) => {
                if let Err(e) = check_path(self.id(), depth, kind.as_str(), example) {
                    errors.push(FieldError::new("id", e.to_string()));
                }
            }
            None => slug("id", self.id(), &mut errors),
        }
        match self {
            Entity::Site(s) => coordinates(s.latitude, s.longitude, &mut errors),
            Entity::AssetModel(m) => m.validate(&mut errors),
            Entity::Asset(a) => slug("model", &a.model, &mut errors),
            Entity::Component(c) => slug("model_component", &c.model_component, &mut errors),
            Entity::Part(p) => {
                if !(p.weight_kg.is_finite() && p.weight_kg > 0.0) {
                    errors.push(FieldError::new("weight_kg", "weight must be a positive number of kilograms"));
                }
                if p.unit_cost.amount_minor < 0 {
                    errors.push(FieldError::new("unit_cost", "a unit cost cannot be negative"));
                }
            }
            Entity::Warehouse(w) => coordinates(Some(w.latitude), Some(w.longitude), &mut errors),
            Entity::Contract(c) => validate_contract(c, &mut errors),
            Entity::User(u) => match (u.role, &u.customer) {
                (Role::CustomerViewer, None) => {
                    errors.push(FieldError::new("customer", "a customer-viewer must name the customer they may see"))
                }
                (role, Some(_)) if role != Role::CustomerViewer => errors.push(FieldError::new(
                    "customer",
                    format!("only customer-viewer users are bound to a customer, not {role}"),
                )),
                _ => {}
            },
            _ => {}
        }
        errors
    }

    /// Checks that need other records: `lookup` finds a record by kind and id.
    pub fn cross_check(&self, lookup: &dyn Fn(Kind, &str) -> Option<Entity>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match self {
            Entity::Component(c) => {
                let asset = self.parent().and_then(|p| match lookup(Kind::Asset, p) {
                    Some(Entity::Asset(a)) => Some(a),
                    _ => None,
                });
                if let Some(Entity::AssetModel(model)) = asset.and_then(|a| lookup(Kind::AssetModel, &a.model))
                    && model.component(&c.model_component).is_none()
                {
                    let known: Vec<&str> = model.components.iter().map(|d| d.id.as_str()).collect();
                    errors.push(FieldError::new(
                        "model_component",
                        format!(
                            "`{}` is not a component of model `{}` (it has: {})",
                            c.model_component,
                            model.id,
                            known.join(", ")
                        ),
                    ));
                }
            }
            Entity::Contract(c) => {
                if let Pricing::OutcomeBased { counter, .. } = &c.pricing {
                    for (i, asset) in c.assets.iter().enumerate() {
                        let Some(Entity::Asset(a)) = lookup(Kind::Asset, asset) else { continue };
                        if let Some(Entity::AssetModel(m)) = lookup(Kind::AssetModel, &a.model)
                            && !m.counters.iter().any(|k| &k.name == counter)
                        {
                            errors.push(FieldError::new(
                                format!("assets[{i}]"),
                                format!("asset `{asset}` (model `{}`) has no counter `{counter}` to meter", m.id),
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        errors
    }
}

pub(crate) fn slug(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if let Err(e) = check_slug(value) {
        errors.push(FieldError::new(field, e.to_string()));
    }
}

fn coordinates(latitude: Option<f64>, longitude: Option<f64>, errors: &mut Vec<FieldError>) {
    if latitude.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
        errors.push(FieldError::new("latitude", "latitude must be between -90 and 90 degrees"));
    }
    if longitude.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        errors.push(FieldError::new("longitude", "longitude must be between -180 and 180 degrees"));
    }
    if latitude.is_some() != longitude.is_some() {
        errors.push(FieldError::new("latitude", "give both latitude and longitude, or neither"));
    }
}

fn validate_contract(c: &Contract, errors: &mut Vec<FieldError>) {
    if c.end < c.start {
        errors.push(FieldError::new("end", format!("the contract ends ({}) before it starts ({})", c.end, c.start)));
    }
    if c.assets.is_empty() {
        errors.push(FieldError::new("assets", "a contract must cover at least one asset"));
    }
    for (i, asset) in c.assets.iter().enumerate() {
        if path_customer(asset) != c.customer {
            errors.push(FieldError::new(
                format!("assets[{i}]"),
                format!(
                    "asset `{asset}` belongs to customer `{}`, not to the contract's customer `{}`",
                    path_customer(asset),
                    c.customer
                ),
            ));
        }
        if c.assets[..i].contains(asset) {
            errors.push(FieldError::new(format!("assets[{i}]"), format!("asset `{asset}` is listed twice")));
        }
    }
    if let Some(bp) = c.sla_availability_bp
        && (bp == 0 || bp > 10_000)
    {
        errors.push(FieldError::new(
            "sla_availability_bp",
            "availability target is in basis points: 1..=10000 (9950 = 99.50%)",
        ));
    }
    let amounts = c.pricing.amounts();
    if let Some((_, first)) = amounts.first() {
        for (field, money) in &amounts {
            if money.currency != first.currency {
                errors.push(FieldError::new(
                    *field,
                    format!(
                        "all amounts of a contract must be in one currency ({} here, {} before)",
                        money.currency, first.currency
                    ),
                ));
            }
            if money.amount_minor < 0 {
                errors.push(FieldError::new(*field, "prices cannot be negative"));
            }
        }
    }
    if let Pricing::ConditionBased { min_factor_bp, max_factor_bp, .. } = c.pricing
        && (min_factor_bp == 0 || min_factor_bp > max_factor_bp)
    {
        errors.push(FieldError::new(
            "pricing.max_factor_bp",
            "need 0 < min_factor_bp <= max_factor_bp (basis points, 10000 = 1.0x)",
        ));
    }
}

#[cfg(test)]
mod tests;
