//! A tiny installed base shared by the store tests.

use model::{Entity, Kind};
use serde_json::json;
use store::{Change, WriteBatch};

pub fn entity(kind: Kind, value: serde_json::Value) -> Entity {
    Entity::from_json(kind, value).unwrap_or_else(|e| panic!("fixture {kind}: {e}"))
}

/// Two customers with a site, line and asset each, one model, one part, a warehouse,
/// a technician, a contract and a user.
pub fn base() -> Vec<Entity> {
    vec![
        entity(Kind::Customer, json!({"id": "acme", "name": "Acme"})),
        entity(Kind::Customer, json!({"id": "globex", "name": "Globex"})),
        entity(
            Kind::Part,
            json!({"id": "BRG-1", "description": "Bearing", "unit_cost": "12.50 EUR", "weight_kg": 1.0}),
        ),
        entity(
            Kind::AssetModel,
            json!({"id": "cp200", "name": "CP200", "category": "centrifugal_pump",
                   "signal": [{"name": "vibration", "unit": "mm/s"}],
                   "counter": [{"name": "run_hours", "unit": "h", "kind": "run_hours"}],
                   "component": [{"id": "bearing", "name": "Bearing", "bom": [{"part": "BRG-1", "quantity": 2}]}]}),
        ),
        entity(Kind::Site, json!({"id": "acme/plant-1", "name": "Plant 1"})),
        entity(Kind::Site, json!({"id": "globex/works", "name": "Works"})),
        entity(Kind::Line, json!({"id": "acme/plant-1/line-1", "name": "Line 1"})),
        entity(Kind::Line, json!({"id": "globex/works/l1", "name": "L1"})),
        entity(Kind::Asset, json!({"id": "acme/plant-1/line-1/p-1", "name": "P-1", "model": "cp200"})),
        entity(Kind::Asset, json!({"id": "acme/plant-1/line-1/p-2", "name": "P-2", "model": "cp200"})),
        entity(Kind::Asset, json!({"id": "globex/works/l1/g-1", "name": "G-1", "model": "cp200"})),
        entity(Kind::Component, json!({"id": "acme/plant-1/line-1/p-1/bearing", "model_component": "bearing"})),
        entity(Kind::Warehouse, json!({"id": "wh-1", "name": "WH", "latitude": 53.5, "longitude": 10.0})),
        entity(Kind::Technician, json!({"id": "t-1", "name": "Tess", "home_base": "wh-1", "skills": ["pumps"]})),
        entity(
            Kind::Contract,
            json!({"id": "c-acme", "customer": "acme", "assets": ["acme/plant-1/line-1/p-1"],
                   "start": "2026-01-01", "end": "2026-12-31",
                   "pricing": {"kind": "fixed_fee", "fee": "100.00 EUR", "period": "monthly"}}),
        ),
        entity(Kind::User, json!({"id": "u-1", "name": "Ursula", "role": "dispatcher"})),
    ]
}

pub fn creates(entities: Vec<Entity>) -> WriteBatch {
    WriteBatch { actor: "test".into(), changes: entities.into_iter().map(Change::Create).collect(), idempotency: None }
}
