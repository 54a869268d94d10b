use super::*;
use crate::access::{Action, permits};
use serde_json::json;

fn entity(kind: Kind, value: serde_json::Value) -> Entity {
    Entity::from_json(kind, value).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn hierarchy_paths_give_parent_and_customer() {
    let asset = entity(Kind::Asset, json!({"id": "acme/plant-1/line-2/p-104", "name": "P-104", "model": "cp200"}));
    assert_eq!(asset.parent(), Some("acme/plant-1/line-2"));
    assert_eq!(asset.customer(), Some("acme"));
    let refs = asset.references();
    assert_eq!(refs[0], Reference::new("id", Kind::Line, "acme/plant-1/line-2"));
    assert_eq!(refs[1], Reference::new("model", Kind::AssetModel, "cp200"));
    assert!(asset.validate().is_empty());
}

#[test]
fn wrong_depth_is_explained() {
    let asset = entity(Kind::Asset, json!({"id": "acme/p-104", "name": "P-104", "model": "cp200"}));
    let errors = asset.validate();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("exactly 4"), "{}", errors[0].message);
}

#[test]
fn unknown_fields_are_refused() {
    let err = Entity::from_json(Kind::Customer, json!({"id": "acme", "name": "A", "colour": "red"}));
    assert!(err.is_err_and(|e| e.to_string().contains("unknown field `colour`")));
}

#[test]
fn contract_rules() {
    let contract = entity(
        Kind::Contract,
        json!({"id": "c1", "customer": "acme", "assets": ["globex/s/l/a", "acme/s/l/a", "acme/s/l/a"],
               "start": "2026-01-01", "end": "2025-12-31", "sla_availability_bp": 10001,
               "pricing": {"kind": "outcome_based", "counter": "run_hours", "rate": "10.00 EUR",
                           "minimum_fee": "5 USD", "period": "monthly"}}),
    );
    let fields: Vec<String> = contract.validate().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["end", "assets[0]", "assets[2]", "sla_availability_bp", "pricing.minimum_fee"]);
}

#[test]
fn viewer_users_need_a_customer() {
    let viewer = entity(Kind::User, json!({"id": "u", "name": "U", "role": "customer-viewer"}));
    assert_eq!(viewer.validate()[0].field, "customer");
    let admin = entity(Kind::User, json!({"id": "u", "name": "U", "role": "admin", "customer": "acme"}));
    assert_eq!(admin.validate()[0].field, "customer");
}

#[test]
fn model_validation_finds_each_problem() {
    let model = entity(
        Kind::AssetModel,
        json!({"id": "m", "name": "M", "category": "pump",
               "signal": [{"name": "t", "unit": "degC", "expected_min": 10.0, "expected_max": 5.0},
                          {"name": "t", "unit": "degC"},
                          {"name": "mode", "kind": "enumerated", "states": ["off"]}],
               "component": [{"id": "bearing", "name": "B", "bom": [{"part": "P1", "quantity": 0}]}],
               "failure_mode": [{"id": "wear", "name": "W", "component": "seal", "symptoms": ["vib"]}]}),
    );
    let fields: Vec<String> = model.validate().into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "signal[0].expected_max",
            "signal[1].name",
            "signal[2].states",
            "component[0].bom[0].quantity",
            "failure_mode[0].component",
            "failure_mode[0].symptoms[0]"
        ]
    );
}

#[test]
fn permission_table_denies_by_default() {
    for role in Role::ALL {
        let expected_tokens = role == Role::Admin;
        assert_eq!(permits(role, Action::ManageTokens), expected_tokens, "{role}");
        assert_eq!(permits(role, Action::ReadAudit), expected_tokens, "{role}");
    }
    for kind in Kind::ALL {
        assert!(!permits(Role::Device, Action::Read(kind)));
        assert!(!permits(Role::CustomerViewer, Action::Write(kind)));
        assert!(!permits(Role::Technician, Action::Write(kind)));
        assert_eq!(permits(Role::CustomerViewer, Action::Read(kind)), kind.is_customer_visible());
        assert!(permits(Role::Admin, Action::Write(kind)));
    }
    assert!(!permits(Role::Dispatcher, Action::Read(Kind::User)));
}
