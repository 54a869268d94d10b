//! The simulated machines against the example fleet: every failure mode moves its
//! declared symptoms, failures happen at their ground-truth time, a stop command stops
//! the machine, counters follow simulated time, temperatures lag, and turbofans replay
//! C-MAPSS exactly.

use sim::physics::{Category, Cause, Degradation, Machine, Rng};
use sim::{World, WorldOptions};

fn fleet() -> Vec<model::Entity> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    config::load_fleet(std::path::Path::new(path)).expect("example fleet").entities
}

fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
}

fn models() -> Vec<model::AssetModel> {
    fleet()
        .into_iter()
        .filter_map(|e| match e {
            model::Entity::AssetModel(m) => Some(m),
            _ => None,
        })
        .collect()
}

const T0: f64 = 1_790_000_000.0;

/// Mean of each signal over `hours` of operation, sampled every 7 s (not a multiple
/// of any duty cycle, so every phase of a cycle is seen).
fn run_hours(machine: &mut Machine, from: f64, hours: f64) -> std::collections::BTreeMap<String, f64> {
    let mut sums: std::collections::BTreeMap<String, f64> = Default::default();
    let steps = (hours * 3600.0 / 7.0) as usize;
    for k in 1..=steps {
        machine.step(from + k as f64 * 7.0, 7.0);
        for (name, value) in &machine.values {
            *sums.entry(name.clone()).or_default() += value / steps as f64;
        }
    }
    sums
}

#[test]
fn every_failure_mode_moves_at_least_one_of_its_declared_symptoms() {
    let rng = Rng::new(7);
    let mut checked = 0;
    for model in models().iter().filter(|m| Category::of(&m.category) != Category::Turbofan) {
        assert_ne!(Category::of(&model.category), Category::Generic, "{} has hand-written physics", model.id);
        for mode in &model.failure_modes {
            let mut healthy = Machine::new("twin", model, &rng);
            let mut worn = Machine::new("twin", model, &rng);
            // Far along (90 % wear) but not yet failed during the hour measured.
            worn.degradations.push(Degradation {
                mode: mode.id.clone(),
                onset: T0 - 9.0 * 86_400.0,
                failure: T0 + 86_400.0,
                cause: Cause::Injected,
            });
            let a = run_hours(&mut healthy, T0, 6.0);
            let b = run_hours(&mut worn, T0, 6.0);
            let moved: Vec<(&String, f64)> = mode
                .symptoms
                .iter()
                .filter_map(|s| {
                    let signal = model.signal(s)?;
                    let span = match (signal.expected_min, signal.expected_max) {
                        (Some(low), Some(high)) => high - low,
                        _ => 1.0,
                    };
                    Some((s, (b[s] - a[s]).abs() / span))
                })
                .collect();
            assert!(
                moved.iter().any(|(_, change)| *change > 0.1),
                "{}/{}: no symptom moved by more than 10 % of its expected span: {moved:?}",
                model.id,
                mode.id
            );
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} failure modes checked");
}

#[test]
fn a_developing_failure_trips_the_machine_at_its_ground_truth_time() {
    let start_ms = (T0 * 1000.0) as i64;
    let options = WorldOptions { speed: 1.0, seed: 3, mtbf_days: 1e9, auto_repair: false };
    let only = vec!["acme/plant-1/line-1/p-101".to_owned()];
    let mut world = World::new(&fleet(), &only, Vec::new(), options, start_ms).expect("world");
    world.inject("acme/plant-1/line-1/p-101", "bearing-wear", 0.5).expect("inject");
    let failure_ms = world.log.last().and_then(|t| t.failure_at_ms).expect("failure time logged");
    assert_eq!(failure_ms, start_ms + 43_200_000);
    world.advance_to(failure_ms - 10_000);
    assert!(world.machines[0].failed.is_none() && world.machines[0].running);
    let early = world.machines[0].values["bearing_vibration_rms"];
    world.advance_to(failure_ms + 10_000);
    assert_eq!(world.machines[0].failed.as_deref(), Some("bearing-wear"));
    assert!(!world.machines[0].running);
    let failed = world.log.iter().find(|t| t.event == "failed").expect("failure logged");
    assert!((failed.at_ms - failure_ms).abs() <= 10_000, "{failed:?}");
    assert!(early > 5.0, "vibration just before the bearing failure: {early} mm/s");
    assert_eq!(world.machines[0].values["flow"], 0.0, "a failed pump delivers nothing");
    // Bad commands say what is wrong and change nothing.
    let error = world.apply("fault acme/plant-1/line-1/p-101 warp-core").expect_err("unknown mode");
    assert!(error.contains("bearing-wear"), "{error}");
    assert!(world.apply("fault nowhere bearing-wear").expect_err("unknown asset").contains("nowhere"));
    assert!(world.apply("fly away").expect_err("unknown command").contains("commands:"));
    world.apply("repair acme/plant-1/line-1/p-101").expect("repair");
    world.advance_to(failure_ms + 20_000);
    assert!(world.machines[0].running, "repaired and running again");
    assert!(world.log.iter().any(|t| t.event == "repaired"));
}

#[test]
fn a_stop_command_stops_the_machine_and_counters_follow_accelerated_time() {
    let start_ms = (T0 * 1000.0) as i64;
    // One simulated day per wall-clock minute.
    let options = WorldOptions { speed: 1440.0, seed: 3, mtbf_days: 1e9, auto_repair: false };
    let only = vec!["acme/plant-1/line-1/p-101".to_owned()];
    let mut world = World::new(&fleet(), &only, Vec::new(), options, start_ms).expect("world");
    let hours = world.machines[0].counters["run_hours"];
    world.advance_to(start_ms + 60_000);
    let ran = world.machines[0].counters["run_hours"] - hours;
    assert!((ran - 24.0).abs() < 0.01, "one wall minute at 1440x is 24 run hours, got {ran}");
    let temperature = world.machines[0].values["bearing_temperature"];
    world.command(0, false, "test");
    world.advance_to(start_ms + 60_100);
    assert!(!world.machines[0].running);
    assert_eq!(world.machines[0].values["motor_current"], 0.0);
    assert_eq!(world.machines[0].values["running"], 0.0);
    // 100 ms wall = 144 s simulated: the bearing cools, but with a 30-minute lag.
    let cooled = world.machines[0].values["bearing_temperature"];
    assert!(cooled < temperature && cooled > temperature - 5.0, "{temperature} -> {cooled}");
    let starts = world.machines[0].counters["starts"];
    world.command(0, true, "test");
    world.advance_to(start_ms + 60_200);
    assert!(world.machines[0].running);
    assert_eq!(world.machines[0].counters["starts"], starts + 1.0, "a start is counted");
    let events: Vec<&str> = world.log.iter().map(|t| t.event).collect();
    assert!(events.contains(&"stop_commanded") && events.contains(&"run_commanded"), "{events:?}");
}

#[test]
fn turbofans_replay_cmapss_engines_to_their_end_of_life() {
    let trajectories = sim::cmapss::load(&data_dir().join("cmapss/train_FD001.txt")).expect("C-MAPSS");
    assert_eq!(trajectories.len(), 100);
    let start_ms = (T0 * 1000.0) as i64;
    let options = WorldOptions { speed: 1.0, seed: 5, mtbf_days: 1e9, auto_repair: false };
    let only = vec!["skyways/lhr-base/narrowbody/esn-894101".to_owned()];
    let mut world = World::new(&fleet(), &only, trajectories.clone(), options, start_ms).expect("world");
    let (trajectory, start) = world.machines[0].replay.clone().expect("an engine");
    let row = &trajectory.rows[start];
    for (name, value) in sim::cmapss::COLUMNS.iter().zip(row) {
        assert_eq!(world.machines[0].values[*name], *value, "{name} is replayed exactly");
    }
    let planned = world.log.iter().find(|t| t.event == "failure_scheduled").expect("planned");
    let cycles_left = (trajectory.rows.len() - start) as i64;
    assert_eq!(planned.failure_at_ms, Some(start_ms + cycles_left * 7_200_000));
    assert!(planned.detail.as_deref().is_some_and(|d| d.contains("C-MAPSS FD001 engine")), "{planned:?}");
    // Two flight cycles later the engine shows the row two cycles on.
    world.advance_to(start_ms + 2 * 7_200_000 + 1000);
    let row = &trajectory.rows[start + 2];
    assert_eq!(world.machines[0].values["T50"], row[6]);
    // At the end of its recorded life it fails.
    world.advance_to(start_ms + cycles_left * 7_200_000 + 1000);
    assert_eq!(world.machines[0].failed.as_deref(), Some("hpc-degradation"));
}

#[test]
fn the_same_seed_gives_the_same_failure_schedule() {
    let schedule = |seed| {
        let options = WorldOptions { speed: 1.0, seed, mtbf_days: 60.0, auto_repair: true };
        let only = vec!["acme".to_owned()];
        let world = World::new(&fleet(), &only, Vec::new(), options, 1_790_000_000_000).expect("world");
        world.log.iter().map(|t| (t.asset.clone(), t.failure_mode.clone(), t.failure_at_ms)).collect::<Vec<_>>()
    };
    assert_eq!(schedule(11), schedule(11));
    assert_ne!(schedule(11), schedule(12));
    assert!(!schedule(11).is_empty());
}
