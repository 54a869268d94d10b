//! Fleet file tests: a small valid fleet, one test per class of problem, and the shipped
//! example fleet.

use config::{Diagnostic, parse_fleet};
use model::{Entity, Kind};

const VALID: &str = r#"
[[customer]]
id = "acme"
name = "Acme"

[[part]]
id = "BRG-1"
description = "Bearing"
unit_cost = "12.50 EUR"
weight_kg = 1.2

[[asset_model]]
id = "cp200"
name = "CP200"
category = "centrifugal_pump"
[[asset_model.signal]]
name = "vibration"
unit = "mm/s"
expected_max = 7.1
[[asset_model.counter]]
name = "run_hours"
unit = "h"
kind = "run_hours"
[[asset_model.component]]
id = "bearing"
name = "Bearing"
bom = [{ part = "BRG-1", quantity = 2 }]
[[asset_model.component]]
id = "seal"
name = "Seal"

[[site]]
id = "acme/plant-1"
name = "Plant 1"

[[line]]
id = "acme/plant-1/line-1"
name = "Line 1"

[[asset]]
id = "acme/plant-1/line-1/p-1"
name = "P-1"
model = "cp200"
commissioned = 2019-05-01
[[asset.component]]
id = "bearing"
serial = "B-77"

[[contract]]
id = "c-1"
customer = "acme"
assets = ["acme/plant-1/line-1/p-1"]
start = 2026-01-01
end = 2026-12-31
[contract.pricing]
kind = "outcome_based"
counter = "run_hours"
rate = "4.20 EUR"
period = "monthly"
"#;

/// Parses `source`, expecting failure, and returns the diagnostics.
fn problems(source: &str) -> Vec<Diagnostic> {
    match parse_fleet("fleet.toml", source) {
        Ok(_) => panic!("expected problems"),
        Err(d) => d.0,
    }
}

/// `(line, field, message fragment)` of each diagnostic, for compact assertions.
fn check(source: &str, expected: &[(usize, &str, &str)]) {
    let found = problems(source);
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), expected.len(), "got:\n{}", shown.join("\n"));
    for (d, (line, field, fragment)) in found.iter().zip(expected) {
        assert_eq!((d.line, d.field.as_str()), (*line, *field), "{d}");
        assert!(d.message.contains(fragment), "`{d}` should mention `{fragment}`");
        assert!(d.column >= 1);
    }
}

fn line_of(source: &str, needle: &str) -> usize {
    source.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("{needle}"))
}

#[test]
fn valid_fleet_resolves_with_implied_components() {
    let fleet = parse_fleet("fleet.toml", VALID).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(fleet.count(Kind::Asset), 1);
    let components: Vec<&Entity> = fleet.entities.iter().filter(|e| e.kind() == Kind::Component).collect();
    assert_eq!(components.len(), 2, "declared bearing plus implied seal");
    let Entity::Component(bearing) = components[0] else { panic!() };
    assert_eq!((bearing.id.as_str(), bearing.serial.as_deref()), ("acme/plant-1/line-1/p-1/bearing", Some("B-77")));
    assert_eq!(components[1].id(), "acme/plant-1/line-1/p-1/seal");
    // Dependency order: customers first, contracts after assets.
    let kinds: Vec<Kind> = fleet.entities.iter().map(Entity::kind).collect();
    assert_eq!(kinds.first(), Some(&Kind::Customer));
    assert!(kinds.iter().position(|k| *k == Kind::Contract) > kinds.iter().position(|k| *k == Kind::Asset));
}

#[test]
fn syntax_errors_are_located() {
    let source = VALID.replace("name = \"P-1\"", "name = \"P-1");
    let found = problems(&source);
    assert_eq!(found.len(), 1);
    assert!(found[0].message.starts_with("TOML syntax"), "{}", found[0]);
    assert_eq!(found[0].line, line_of(VALID, "name = \"P-1\""));
}

#[test]
fn every_unknown_key_and_section_is_reported() {
    let source = VALID
        .replace("name = \"Acme\"", "name = \"Acme\"\ncolour = \"red\"\nsize = 3")
        .replace("unit = \"mm/s\"", "unit = \"mm/s\"\nunits = \"x\"")
        + "\n[[robot]]\nid = \"r\"\n";
    check(
        &source,
        &[
            (line_of(&source, "colour"), "customer[0]", "unknown field `colour`"),
            (line_of(&source, "size = 3"), "customer[0]", "unknown field `size`"),
            (line_of(&source, "units"), "asset_model[0]", "unknown field `units`"),
            (line_of(&source, "[[robot]]"), "robot", "unknown section `robot`"),
        ],
    );
}

#[test]
fn dangling_references_name_the_field_and_suggest() {
    let source = VALID.replace("model = \"cp200\"", "model = \"cp20\"").replace("part = \"BRG-1\"", "part = \"BRG-9\"");
    check(
        &source,
        &[
            (
                line_of(&source, "BRG-9"),
                "asset_model[0].component[0].bom[0].part",
                "part `BRG-9`, which is not declared",
            ),
            (line_of(&source, "cp20\""), "asset[0].model", "did you mean `cp200`?"),
            (line_of(&source, "cp20\""), "asset[0].model", "did you mean `cp200`?"),
        ][..2],
    );
}

#[test]
fn duplicate_ids_point_at_the_first() {
    let source = format!("{VALID}\n[[customer]]\nid = \"acme\"\nname = \"Again\"\n");
    let first = line_of(&source, "[[customer]]");
    check(&source, &[(source.lines().count() - 1, "customer[1].id", &format!("already declared at line {first}"))]);
}

#[test]
fn component_outside_its_asset() {
    let source = VALID.replace("id = \"bearing\"\nserial", "id = \"acme/plant-1/line-1/p-2/bearing\"\nserial");
    check(&source, &[(line_of(&source, "p-2/bearing"), "asset[0].component[0].id", "outside its asset")]);
}

#[test]
fn component_not_in_model() {
    let source = VALID.replace("id = \"bearing\"\nserial", "id = \"impeller\"\nserial");
    check(
        &source,
        &[(line_of(&source, "\"impeller\""), "asset[0].component[0].model_component", "not a component of model")],
    );
}

#[test]
fn bad_values_are_explained() {
    let source = VALID
        .replace("unit_cost = \"12.50 EUR\"", "unit_cost = \"12.505 EUR\"")
        .replace("id = \"acme/plant-1\"", "id = \"acme/plant 1\"")
        .replace("end = 2026-12-31", "end = 2025-12-31")
        .replace("expected_max = 7.1", "expected_min = 9.0\nexpected_max = 7.1");
    let found = problems(&source);
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    let text = shown.join("\n");
    assert!(
        text.contains("fleet.toml:9:13: part[0]: `12.505` is not a valid EUR amount (at most 2 decimals"),
        "{text}"
    );
    assert!(text.contains("site[0].id: segment `plant 1` contains ` `"), "{text}");
    assert!(text.contains("line[0].id: refers to site `acme/plant-1`, which is not declared in this file; did you mean `acme/plant 1`?"), "{text}");
    assert!(text.contains("contract[0].end: the contract ends (2025-12-31) before it starts (2026-01-01)"), "{text}");
    assert!(
        text.contains("asset_model[0].signal[0].expected_max: maximum 7.1 must be greater than minimum 9"),
        "{text}"
    );
}

#[test]
fn wrong_types_and_missing_fields() {
    let source = VALID.replace("weight_kg = 1.2", "weight_kg = \"heavy\"").replace("name = \"Line 1\"", "");
    let found = problems(&source);
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{text:?}");
    assert!(found.iter().any(|d| d.field == "part[0]" && d.message.contains("invalid type")), "{text:?}");
    assert!(found.iter().any(|d| d.field == "line[0]" && d.message.contains("missing field `name`")), "{text:?}");
    // The line with the missing field also breaks the asset beneath it.
    assert!(found.iter().all(|d| d.line > 0));
}

#[test]
fn cross_record_rules() {
    let source = VALID
        .replace("assets = [\"acme/plant-1/line-1/p-1\"]", "assets = [\"globex/x/y/z\"]")
        .replace("counter = \"run_hours\"", "counter = \"cycles\"");
    let text: Vec<String> = problems(&source).iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|t| t.contains("belongs to customer `globex`")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("asset `globex/x/y/z`, which is not declared")), "{text:?}");
}

#[test]
fn sections_must_be_arrays_of_tables() {
    let source = format!("{VALID}\n[user]\nid = \"u\"\n");
    check(&source, &[(line_of(&source, "[user]"), "user", "write [[user]]")]);
}

#[test]
fn example_fleet_is_valid_and_realistic() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let fleet = config::load_fleet(std::path::Path::new(path)).unwrap_or_else(|d| panic!("{d}"));
    assert!(fleet.count(Kind::Customer) >= 3);
    assert!(fleet.count(Kind::Site) >= 6);
    assert!(fleet.count(Kind::Asset) >= 40);
    assert!(fleet.count(Kind::AssetModel) >= 4);
    assert!(fleet.count(Kind::Warehouse) >= 2 && fleet.count(Kind::Technician) >= 3);
    let mut pricing_kinds: Vec<&str> = fleet
        .entities
        .iter()
        .filter_map(|e| match e {
            Entity::Contract(c) => Some(c.pricing.kind()),
            _ => None,
        })
        .collect();
    pricing_kinds.sort();
    pricing_kinds.dedup();
    assert_eq!(pricing_kinds, ["condition_based", "fixed_fee", "outcome_based"]);
    let roles: std::collections::BTreeSet<String> = fleet
        .entities
        .iter()
        .filter_map(|e| match e {
            Entity::User(u) => Some(u.role.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(roles.len(), model::Role::ALL.len(), "one user of every role: {roles:?}");
}

/// A small deterministic generator, so that the mutation test needs no dependency and
/// every failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_files_never_panic_and_always_explain() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let original = std::fs::read(path).expect("read example");
    let tokens: [&[u8]; 12] = [b"\"", b"[[", b"]]", b"=", b"\n", b"nan", b"-", b"/", b"{", b"}", b"1e999", b"\xff"];
    let mut rng = Lcg(0x7ea7);
    for round in 0..300 {
        let mut bytes = original.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => {
                    bytes.remove(at);
                }
                1 => {
                    let token = tokens[rng.below(tokens.len())];
                    bytes.splice(at..at, token.iter().copied());
                }
                _ => bytes[at] = b"azAZ09_ .,#"[rng.below(11)],
            }
        }
        let source = String::from_utf8_lossy(&bytes);
        match parse_fleet("mutated.toml", &source) {
            Ok(fleet) => assert!(!fleet.entities.is_empty(), "round {round}"),
            Err(diagnostics) => {
                assert!(!diagnostics.0.is_empty(), "round {round}: an error without a diagnostic");
                for d in &diagnostics.0 {
                    assert!(d.line >= 1 && !d.message.is_empty(), "round {round}: {d}");
                }
            }
        }
    }
}

#[test]
fn unknown_key_in_a_tagged_table_is_reported_once() {
    let source = VALID.replace("kind = \"outcome_based\"", "kind = \"outcome_based\"\ndiscount = 3");
    let found = problems(&source);
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{text:?}");
    assert!(found[0].message.contains("unknown field `discount`"), "{text:?}");
}

#[test]
fn an_empty_file_is_refused() {
    let found = problems("# nothing here\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("declares no records"), "{}", found[0]);
}

#[test]
fn retention_classes_are_checked_with_their_line() {
    let good = VALID.replace("expected_max = 7.1", "expected_max = 7.1\nretention = \"high_rate\"");
    assert!(parse_fleet("fleet.toml", &good).is_ok());
    let source = VALID.replace("expected_max = 7.1", "expected_max = 7.1\nretention = \"forever\"");
    let found = problems(&source);
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{text:?}");
    // serde reports enum variants of nested tables at the enclosing table.
    assert_eq!(found[0].line, 20, "{text:?}");
    assert!(
        text[0].contains("asset_model[0]") && text[0].contains("`forever`") && text[0].contains("high_rate"),
        "{text:?}"
    );
}
