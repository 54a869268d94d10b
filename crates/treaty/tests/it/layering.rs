//! The crate map's rules, checked: what each crate must not depend on (ARCHITECTURE.md,
//! Invariants). A dependency that breaks a rule fails here, not in review.

use std::collections::BTreeMap;
use std::path::Path;

/// Each crate's normal dependencies, from its Cargo.toml.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).expect("crates dir") {
        let dir = entry.expect("entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = dir.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
        let mut in_dependencies = false;
        let mut deps = Vec::new();
        for line in manifest.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_dependencies = line == "[dependencies]";
                continue;
            }
            if in_dependencies && !line.is_empty() && !line.starts_with('#') {
                let dep = line.split(['.', '=', ' ']).next().expect("name").trim();
                deps.push(dep.to_owned());
            }
        }
        out.insert(name, deps);
    }
    out
}

#[test]
fn crates_depend_only_on_what_the_map_allows() {
    let deps = dependencies();
    let uses = |krate: &str, dep: &str| deps.get(krate).is_some_and(|d| d.iter().any(|x| x == dep));
    assert!(deps.len() >= 12, "found {:?}", deps.keys().collect::<Vec<_>>());
    // The vocabulary: plain data and pure rules.
    let model: Vec<&String> = deps["model"].iter().collect();
    assert_eq!(model, ["serde", "serde_json", "thiserror", "utoipa"], "model depends on more than data formats");
    let mut broken = Vec::new();
    for (krate, list) in &deps {
        for dep in list {
            let allowed = match dep.as_str() {
                // Only the API knows HTTP (the hub serves its router, the bench drives it).
                "axum" | "tower-http" => matches!(krate.as_str(), "api" | "hub"),
                "anyhow" => matches!(krate.as_str(), "hub" | "treaty" | "bench"),
                "rusqlite" => krate == "store",
                "pco" => krate == "tsdb",
                // The gateway and the simulator speak model's samples, not the engine's.
                "tsdb" => !matches!(krate.as_str(), "edge" | "sim" | "model" | "config" | "store" | "bus"),
                "api" | "hub" => matches!(krate.as_str(), "hub" | "treaty" | "bench") && dep != krate,
                "ingest" => matches!(krate.as_str(), "api" | "hub" | "treaty" | "bench"),
                _ => true,
            };
            if !allowed {
                broken.push(format!("{krate} -> {dep}"));
            }
        }
    }
    assert!(broken.is_empty(), "dependencies the crate map forbids: {broken:?}");
    assert!(!uses("tsdb", "store") && !uses("tsdb", "ingest"), "the engine knows nothing of the installed base");
    assert!(!uses("ingest", "api"), "the ingest service has no HTTP types");
}
