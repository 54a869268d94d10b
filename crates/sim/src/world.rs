//! The simulated fleet: every machine of the fleet file, its clock (which may run
//! faster than the wall clock), the random failure schedule, commands (stop, start,
//! inject a fault, repair) and the ground-truth log of what really happened.

use crate::cmapss::Trajectory;
use crate::physics::{Cause, Degradation, Happening, Machine, Rng};
use model::{AssetModel, Entity};
use std::collections::BTreeMap;
use std::io::Write;

const DAY_S: f64 = 86_400.0;

/// How the world runs.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    pub seed: u64,
    /// Mean simulated days between occurrences of one failure mode on one machine.
    pub mtbf_days: f64,
    /// A failed machine is repaired after its failure mode's mean repair time.
    pub auto_repair: bool,
}

/// One line of the ground-truth log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Truth {
    /// Wall-clock time (the time stamps of the telemetry), Unix ms.
    pub at_ms: i64,
    /// Simulated time, Unix ms.
    pub sim_ms: i64,
    pub asset: String,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// For a developing failure: when the machine will fail, wall clock and simulated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_sim_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The fleet in simulation.
pub struct World {
    pub machines: Vec<Machine>,
    options: WorldOptions,
    rng: Rng,
    /// Wall-clock and simulated start, Unix ms (they coincide: simulated time starts now).
    start_ms: i64,
    /// Simulated now, Unix seconds.
    pub sim_s: f64,
    trajectories: Vec<Trajectory>,
    next_trajectory: usize,
    /// When each failed machine is repaired (simulated seconds), by machine index.
    repairs: BTreeMap<usize, f64>,
    truth: Option<std::io::BufWriter<std::fs::File>>,
    /// Everything logged, for tests and `status`.
    pub log: Vec<Truth>,
}

impl World {
    /// Every asset of `entities` whose id starts with one of `only` (all when empty).
    /// Turbofans need C-MAPSS `trajectories`.
    pub fn new(
        entities: &[Entity],
        only: &[String],
        trajectories: Vec<Trajectory>,
        options: WorldOptions,
        start_ms: i64,
    ) -> Result<Self, String> {
        let models: BTreeMap<&str, &AssetModel> = entities
            .iter()
            .filter_map(|e| match e {
                Entity::AssetModel(m) => Some((m.id.as_str(), m)),
                _ => None,
            })
            .collect();
        let rng = Rng::new(options.seed);
        let mut machines = Vec::new();
        for entity in entities {
            let Entity::Asset(asset) = entity else { continue };
            if !only.is_empty() && !only.iter().any(|p| asset.id.starts_with(p.as_str())) {
                continue;
            }
            let model = models
                .get(asset.model.as_str())
                .ok_or_else(|| format!("asset `{}`: unknown model `{}`", asset.id, asset.model))?;
            machines.push(Machine::new(&asset.id, model, &rng));
        }
        if machines.is_empty() {
            return Err(if only.is_empty() {
                "the fleet has no assets to simulate".into()
            } else {
                format!("no asset id starts with {only:?}")
            });
        }
        let mut world = Self {
            machines,
            options,
            rng: rng.fork("schedule"),
            start_ms,
            sim_s: start_ms as f64 / 1000.0,
            trajectories,
            next_trajectory: 0,
            repairs: BTreeMap::new(),
            truth: None,
            log: Vec::new(),
        };
        let turbofans = world.machines.iter().any(|m| m.category == crate::physics::Category::Turbofan);
        if turbofans && world.trajectories.is_empty() {
            return Err("turbofan assets replay C-MAPSS trajectories, but none were loaded".into());
        }
        for index in 0..world.machines.len() {
            world.plan(index, None);
            // One second of operation, so that every signal has a value from the start.
            let now = world.sim_s;
            world.machines[index].step(now, 1.0);
        }
        Ok(world)
    }

    /// Appends the ground truth to `path` (JSON lines) from now on, starting with what
    /// is already planned.
    pub fn log_to(&mut self, path: &std::path::Path) -> Result<(), String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("ground-truth log {}: {e}", path.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        for line in &self.log {
            let _ = writeln!(writer, "{}", serde_json::to_string(line).unwrap_or_default());
        }
        let _ = writer.flush();
        self.truth = Some(writer);
        Ok(())
    }

    /// Wall-clock Unix ms of a simulated instant.
    pub fn wall_ms(&self, sim_s: f64) -> i64 {
        self.start_ms + ((sim_s * 1000.0 - self.start_ms as f64) / self.options.speed) as i64
    }

    /// Simulated Unix seconds at a wall-clock instant.
    pub fn sim_at(&self, wall_ms: i64) -> f64 {
        (self.start_ms as f64 + (wall_ms - self.start_ms) as f64 * self.options.speed) / 1000.0
    }

    fn record(&mut self, index: usize, event: &'static str, mode: Option<&Degradation>, detail: Option<String>) {
        let line = Truth {
            at_ms: self.wall_ms(self.sim_s),
            sim_ms: (self.sim_s * 1000.0) as i64,
            asset: self.machines[index].asset.clone(),
            event,
            failure_mode: mode.map(|d| d.mode.clone()),
            cause: mode.map(|d| d.cause),
            failure_at_ms: mode.map(|d| self.wall_ms(d.failure)),
            failure_sim_ms: mode.map(|d| (d.failure * 1000.0) as i64),
            detail,
        };
        if let Some(writer) = &mut self.truth {
            let _ = writeln!(writer, "{}", serde_json::to_string(&line).unwrap_or_default());
            let _ = writer.flush();
        }
        self.log.push(line);
    }

    /// Schedules the random failures of machine `index` (all its modes, or one).
    fn plan(&mut self, index: usize, only_mode: Option<&str>) {
        let machine = &self.machines[index];
        if machine.category == crate::physics::Category::Turbofan {
            if only_mode.is_none() || machine.replay.is_some() {
                self.fit_trajectory(index);
            }
            return;
        }
        let modes: Vec<String> = machine
            .model
            .failure_modes
            .iter()
            .filter(|m| only_mode.is_none_or(|o| o == m.id))
            .map(|m| m.id.clone())
            .collect();
        for mode in modes {
            let onset = self.sim_s + self.rng.exponential(self.options.mtbf_days * DAY_S);
            let failure = onset + self.rng.range(3.0, 14.0) * DAY_S;
            let degradation = Degradation { mode, onset, failure, cause: Cause::Random };
            self.record(index, "failure_scheduled", Some(&degradation), None);
            self.machines[index].degradations.push(degradation);
        }
    }

    /// Gives a turbofan the next C-MAPSS engine, part-way through its life (a fresh
    /// engine after a shop visit starts at cycle 1).
    fn fit_trajectory(&mut self, index: usize) {
        let trajectory = self.trajectories[self.next_trajectory % self.trajectories.len()].clone();
        self.next_trajectory += 1;
        let fresh = self.machines[index].replay.is_some();
        let start = if fresh { 0 } else { (self.rng.range(0.0, 0.6) * trajectory.rows.len() as f64) as usize };
        let remaining = (trajectory.rows.len() - start) as f64 * crate::physics::FLIGHT_CYCLE_S;
        let mode =
            self.machines[index].model.failure_modes.first().map_or_else(|| "end-of-life".to_owned(), |m| m.id.clone());
        let degradation = Degradation {
            mode,
            onset: self.sim_s - start as f64 * crate::physics::FLIGHT_CYCLE_S,
            failure: self.sim_s + remaining,
            cause: Cause::Cmapss,
        };
        let detail =
            format!("C-MAPSS FD001 engine {} from cycle {} of {}", trajectory.unit, start + 1, trajectory.rows.len());
        self.record(index, "failure_scheduled", Some(&degradation), Some(detail));
        let machine = &mut self.machines[index];
        machine.degradations.retain(|d| d.cause != Cause::Cmapss);
        machine.degradations.push(degradation);
        machine.replay = Some((trajectory, start));
    }

    /// Advances every machine to wall-clock `wall_ms`.
    pub fn advance_to(&mut self, wall_ms: i64) {
        let target = self.sim_at(wall_ms);
        let dt = target - self.sim_s;
        if dt <= 0.0 {
            return;
        }
        self.sim_s = target;
        for index in 0..self.machines.len() {
            let happened = self.machines[index].step(target, dt);
            for happening in happened {
                match happening {
                    Happening::Failed { mode } => {
                        let degradation = self.machines[index].degradations.iter().find(|d| d.mode == mode).cloned();
                        self.record(index, "failed", degradation.as_ref(), None);
                        if self.options.auto_repair {
                            let hours = self.machines[index]
                                .model
                                .failure_modes
                                .iter()
                                .find(|m| m.id == mode)
                                .and_then(|m| m.mean_repair_hours)
                                .unwrap_or(8.0);
                            self.repairs.insert(index, target + hours * 3600.0);
                        }
                    }
                    Happening::Stopped => {
                        if self.machines[index].failed.is_none() {
                            self.record(index, "stopped", None, Some("run command off".into()));
                        }
                    }
                    Happening::Started => self.record(index, "started", None, None),
                }
            }
        }
        let due: Vec<usize> = self.repairs.iter().filter(|(_, at)| **at <= target).map(|(i, _)| *i).collect();
        for index in due {
            self.repairs.remove(&index);
            self.repair(index, "automatic repair after the mean repair time");
        }
    }

    /// Puts a failed machine back in service: the failed mode is renewed (and scheduled
    /// again); other developing modes keep their wear.
    pub fn repair(&mut self, index: usize, why: &str) {
        let Some(mode) = self.machines[index].failed.take() else {
            return;
        };
        self.machines[index].degradations.retain(|d| d.mode != mode);
        self.record(index, "repaired", None, Some(format!("{mode}: {why}")));
        self.plan(index, Some(&mode));
    }

    pub fn index_of(&self, asset: &str) -> Result<usize, String> {
        self.machines.iter().position(|m| m.asset == asset).ok_or_else(|| format!("unknown asset `{asset}`"))
    }

    /// Injects failure mode `mode` into `asset`: it develops from now and fails the
    /// machine after `days` simulated days.
    pub fn inject(&mut self, asset: &str, mode: &str, days: f64) -> Result<(), String> {
        let index = self.index_of(asset)?;
        let known: Vec<&str> = self.machines[index].model.failure_modes.iter().map(|m| m.id.as_str()).collect();
        if !known.contains(&mode) {
            return Err(format!("`{asset}` has no failure mode `{mode}` (it has: {})", known.join(", ")));
        }
        if !(days.is_finite() && days > 0.0) {
            return Err(format!("days to failure must be a positive number, not {days}"));
        }
        let degradation = Degradation {
            mode: mode.to_owned(),
            onset: self.sim_s,
            failure: self.sim_s + days * DAY_S,
            cause: Cause::Injected,
        };
        self.record(index, "fault_injected", Some(&degradation), None);
        self.machines[index].degradations.retain(|d| d.mode != mode);
        self.machines[index].degradations.push(degradation);
        Ok(())
    }

    /// Sets the run command of machine `index` (a coil write, an OPC UA write, a command).
    pub fn command(&mut self, index: usize, run: bool, by: &str) {
        if self.machines[index].run_command != run {
            self.machines[index].run_command = run;
            self.record(index, if run { "run_commanded" } else { "stop_commanded" }, None, Some(by.to_owned()));
        }
    }

    /// Applies one text command (`fault ASSET MODE [DAYS]`, `stop ASSET`, `start ASSET`,
    /// `repair ASSET`, `status`); returns what to print.
    pub fn apply(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => Ok(String::new()),
            ["fault", asset, mode] => self.inject(asset, mode, 2.0).map(|()| format!("{asset}: {mode} injected")),
            ["fault", asset, mode, days] => {
                let days = days.parse::<f64>().map_err(|_| format!("`{days}` is not a number of days"))?;
                self.inject(asset, mode, days).map(|()| format!("{asset}: {mode} injected"))
            }
            ["stop", asset] => {
                let index = self.index_of(asset)?;
                self.command(index, false, "command line");
                Ok(format!("{asset}: stop commanded"))
            }
            ["start", asset] => {
                let index = self.index_of(asset)?;
                self.command(index, true, "command line");
                Ok(format!("{asset}: run commanded"))
            }
            ["repair", asset] => {
                let index = self.index_of(asset)?;
                if self.machines[index].failed.is_none() {
                    return Err(format!("`{asset}` has not failed"));
                }
                self.repair(index, "repaired on command");
                Ok(format!("{asset}: repaired"))
            }
            ["status"] => Ok(self.status()),
            _ => Err(format!(
                "unknown command `{line}`; commands: fault ASSET MODE [DAYS], stop ASSET, start ASSET, repair ASSET, status"
            )),
        }
    }

    /// One line per machine: running, failed, and its most advanced degradation.
    pub fn status(&self) -> String {
        let mut out = String::new();
        for m in &self.machines {
            let worst = m
                .degradations
                .iter()
                .map(|d| (d.wear(self.sim_s), d))
                .filter(|(w, _)| *w > 0.0)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let state = match (&m.failed, m.running) {
                (Some(mode), _) => format!("FAILED ({mode})"),
                (None, true) => "running".into(),
                (None, false) => "stopped".into(),
            };
            let wear = worst.map_or_else(String::new, |(w, d)| format!(", {} at {:.0} % wear", d.mode, w * 100.0));
            out.push_str(&format!("{}: {state}{wear}\n", m.asset));
        }
        out
    }
}
