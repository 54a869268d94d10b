//! How each simulated machine behaves: duty cycles, thermal lag, counters, and failure
//! modes that degrade their declared symptoms toward a ground-truth failure time.
//!
//! One [`Machine`] per asset. `step` advances it by a span of simulated time in small
//! sub-steps (so load/unload cycles, press strokes and thermal lag integrate correctly
//! even when time runs 1,440 times faster than the wall clock) and leaves the current
//! value of every signal and counter of the asset's model in `values`.

use crate::cmapss::Trajectory;
use model::AssetModel;
use std::collections::BTreeMap;

/// Longest simulated sub-step, seconds.
const SUB_STEP_S: f64 = 5.0;

/// A small, seedable random source (SplitMix64): runs are reproducible from `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent stream for `name` (an asset id), so adding an asset does not
    /// change the others' behaviour.
    pub fn fork(&self, name: &str) -> Self {
        let mut h = self.0 ^ 0x9E37_79B9_7F4A_7C15;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        Self(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Exponentially distributed with this mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Why a degradation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Drawn from the failure mode's random schedule.
    Random,
    /// Asked for on the command line.
    Injected,
    /// The end of a real C-MAPSS run-to-failure trajectory.
    Cmapss,
}

/// A failure mode developing in a machine: nothing before `onset`, then wear grows to
/// 1 at `failure` (simulated epoch seconds), when the machine trips.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Degradation {
    pub mode: String,
    pub onset: f64,
    pub failure: f64,
    pub cause: Cause,
}

impl Degradation {
    /// 0 (healthy) to 1 (failed).
    pub fn wear(&self, t: f64) -> f64 {
        if t <= self.onset {
            0.0
        } else if self.failure <= self.onset {
            1.0
        } else {
            ((t - self.onset) / (self.failure - self.onset)).min(1.0)
        }
    }
}

/// What happened to a machine during a step (the simulator logs these as ground truth).
#[derive(Debug, Clone, PartialEq)]
pub enum Happening {
    Failed { mode: String },
    Started,
    Stopped,
}

/// The behaviour family of an asset model, by its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Pump,
    Compressor,
    MachiningCentre,
    Press,
    Turbofan,
    /// Any other category: analog signals wander inside their expected range and the
    /// declared symptoms of a developing failure drift toward the range's limit.
    Generic,
}

impl Category {
    pub fn of(category: &str) -> Self {
        match category {
            "centrifugal_pump" => Self::Pump,
            "screw_compressor" => Self::Compressor,
            "cnc_machining_centre" => Self::MachiningCentre,
            "hydraulic_press" => Self::Press,
            "turbofan" => Self::Turbofan,
            _ => Self::Generic,
        }
    }
}

/// One simulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub asset: String,
    pub model: AssetModel,
    pub category: Category,
    rng: Rng,
    /// What the controller was told (a coil, an OPC UA node, a command): run or stop.
    pub run_command: bool,
    pub running: bool,
    /// The failure mode that tripped the machine, until it is repaired.
    pub failed: Option<String>,
    /// Developing (and scheduled) failure modes.
    pub degradations: Vec<Degradation>,
    /// Sub-state of the duty cycle (compressor load/unload, press stroke, machining cycle).
    phase: Phase,
    /// Seconds left in the current phase.
    phase_left: f64,
    /// Compressor net pressure, bar.
    pressure: f64,
    /// Lagged values (temperatures) by signal name.
    lagged: BTreeMap<String, f64>,
    /// Counters by name.
    pub counters: BTreeMap<String, f64>,
    /// The current value of every signal and counter of the model.
    pub values: BTreeMap<String, f64>,
    /// A turbofan's run-to-failure trajectory and the cycle it is on.
    pub replay: Option<(Trajectory, usize)>,
    /// Simulated seconds since the current flight cycle began (turbofans).
    cycle_elapsed: f64,
    /// A per-machine offset so that machines of one model are not in lockstep.
    offset: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Steady,
    Load,
    Unload,
    Machining,
    PartChange,
    FeedHold,
    Pressing,
    Return,
    Dwell,
}

/// One simulated flight cycle of a turbofan, seconds.
pub const FLIGHT_CYCLE_S: f64 = 2.0 * 3600.0;

impl Machine {
    pub fn new(asset: &str, model: &AssetModel, rng: &Rng) -> Self {
        let mut rng = rng.fork(asset);
        let offset = rng.range(0.0, 86_400.0);
        let mut machine = Self {
            asset: asset.to_owned(),
            model: model.clone(),
            category: Category::of(&model.category),
            run_command: true,
            running: false,
            failed: None,
            degradations: Vec::new(),
            phase: Phase::Steady,
            phase_left: 0.0,
            pressure: 8.0,
            lagged: BTreeMap::new(),
            counters: model.counters.iter().map(|c| (c.name.clone(), 0.0)).collect(),
            values: BTreeMap::new(),
            replay: None,
            cycle_elapsed: 0.0,
            offset,
            rng,
        };
        // Machines in the field have history: counters start somewhere plausible.
        let years = machine.rng.range(0.5, 6.0);
        for counter in &model.counters {
            let start = match counter.kind {
                model::CounterKind::RunHours => years * 6000.0,
                model::CounterKind::Cycles => years * 2000.0,
                model::CounterKind::Energy => years * 6000.0 * 40.0,
                model::CounterKind::Volume | model::CounterKind::Other => 0.0,
            };
            machine.counters.insert(counter.name.clone(), start.round());
        }
        machine
    }

    /// The wear of failure mode `mode` at `t` (the worst of its degradations).
    pub fn wear(&self, mode: &str, t: f64) -> f64 {
        self.degradations.iter().filter(|d| d.mode == mode).map(|d| d.wear(t)).fold(0.0, f64::max)
    }

    /// Advances from `t - dt` to `t` (simulated epoch seconds) and refreshes `values`.
    pub fn step(&mut self, t: f64, dt: f64) -> Vec<Happening> {
        let mut happened = Vec::new();
        let steps = (dt / SUB_STEP_S).ceil().max(1.0) as usize;
        let h = dt / steps as f64;
        for k in 1..=steps {
            let now = t - dt + h * k as f64;
            if self.failed.is_none()
                && let Some(d) = self.degradations.iter().find(|d| now >= d.failure)
            {
                self.failed = Some(d.mode.clone());
                happened.push(Happening::Failed { mode: d.mode.clone() });
            }
            let should_run = self.run_command && self.failed.is_none();
            if should_run != self.running {
                self.running = should_run;
                happened.push(if should_run { Happening::Started } else { Happening::Stopped });
                if should_run {
                    self.bump_cycles_on_start();
                }
            }
            self.integrate(now, h);
        }
        happened
    }

    fn noise(&mut self, sigma: f64) -> f64 {
        self.rng.normal() * sigma
    }

    /// First-order lag of `name` toward `target` with time constant `tau` seconds.
    fn lag(&mut self, name: &str, target: f64, tau: f64, dt: f64) -> f64 {
        let value = self.lagged.entry(name.to_owned()).or_insert(target);
        *value += (target - *value) * (1.0 - (-dt / tau).exp());
        *value
    }

    /// Ambient temperature: a daily swing around 18 degC.
    fn ambient(&self, t: f64) -> f64 {
        18.0 + 6.0 * ((t + self.offset) / 86_400.0 * std::f64::consts::TAU).sin()
    }

    /// Demand between about 0.55 and 0.95 over the day.
    fn demand(&self, t: f64) -> f64 {
        0.75 + 0.2 * ((t + self.offset) / 86_400.0 * std::f64::consts::TAU - 1.2).sin()
    }

    fn set(&mut self, name: &str, value: f64) {
        if let Some(signal) = self.model.signals.iter().find(|s| s.name == name) {
            let low = signal.physical_min.unwrap_or(f64::MIN);
            let high = signal.physical_max.unwrap_or(f64::MAX);
            self.values.insert(name.to_owned(), value.clamp(low, high));
        } else if self.counters.contains_key(name) {
            self.values.insert(name.to_owned(), value);
        }
    }

    fn count(&mut self, kind: model::CounterKind, amount: f64) {
        let names: Vec<String> =
            self.model.counters.iter().filter(|c| c.kind == kind).map(|c| c.name.clone()).collect();
        for name in names {
            *self.counters.entry(name).or_default() += amount;
        }
    }

    fn count_named(&mut self, name: &str, amount: f64) {
        if let Some(c) = self.counters.get_mut(name) {
            *c += amount;
        }
    }

    /// Starts and strokes are cycles too: a pump's `starts` counts each start.
    fn bump_cycles_on_start(&mut self) {
        if self.category == Category::Pump {
            self.count(model::CounterKind::Cycles, 1.0);
        }
    }

    /// Enumerated state by its name in the model (`state = ["off", "load", ...]`).
    fn set_state(&mut self, state: &str) {
        let index = self
            .model
            .signals
            .iter()
            .find(|s| s.name == "state")
            .and_then(|s| s.states.iter().position(|x| x == state));
        if let Some(i) = index {
            self.values.insert("state".to_owned(), i as f64);
        }
    }

    fn integrate(&mut self, t: f64, dt: f64) {
        match self.category {
            Category::Pump => self.pump(t, dt),
            Category::Compressor => self.compressor(t, dt),
            Category::MachiningCentre => self.machining_centre(t, dt),
            Category::Press => self.press(t, dt),
            Category::Turbofan => self.turbofan(dt),
            Category::Generic => self.generic(t, dt),
        }
        let counters: Vec<(String, f64)> = self.counters.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (name, value) in counters {
            self.values.insert(name, value);
        }
    }

    /// CP-200 centrifugal pump: flow and head follow the daily demand; bearing wear
    /// raises vibration and (with lag) bearing temperature; seal leakage costs head and
    /// heats the bearing; impeller erosion costs flow, head and current; a worn coupling
    /// shakes and draws current.
    fn pump(&mut self, t: f64, dt: f64) {
        let (bearing, seal) = (self.wear("bearing-wear", t), self.wear("seal-leak", t));
        let (impeller, coupling) = (self.wear("impeller-wear", t), self.wear("coupling-wear", t));
        let d = self.demand(t);
        let ambient = self.ambient(t);
        if self.running {
            let flow = 380.0 * d * (1.0 - 0.3 * impeller) + self.noise(2.0);
            let pressure = 5.6 * (1.0 - 0.25 * impeller) - 1.2 * seal * seal + 0.8 * (d - 0.75) + self.noise(0.04);
            let current = 28.0 + 45.0 * d * (1.0 - 0.15 * impeller) + 9.0 * coupling + self.noise(0.4);
            let vibration = 1.5 + 0.5 * d + 5.8 * bearing * bearing + 3.2 * coupling.powf(1.5) + self.noise(0.06);
            self.set("flow", flow);
            self.set("discharge_pressure", pressure);
            self.set("motor_current", current);
            self.set("bearing_vibration_rms", vibration);
            let target = ambient + 24.0 + 10.0 * d + 40.0 * bearing * bearing + 12.0 * seal;
            let temperature = self.lag("bearing_temperature", target, 1800.0, dt);
            let value = temperature + self.noise(0.1);
            self.set("bearing_temperature", value);
            self.count(model::CounterKind::RunHours, dt / 3600.0);
            self.count(model::CounterKind::Energy, current / 75.0 * 45.0 * dt / 3600.0);
        } else {
            let pressure = 0.3 + self.noise(0.01);
            self.set("flow", 0.0);
            self.set("discharge_pressure", pressure);
            self.set("motor_current", 0.0);
            let vibration = 0.05 + self.noise(0.01).abs();
            self.set("bearing_vibration_rms", vibration);
            let temperature = self.lag("bearing_temperature", ambient, 1800.0, dt);
            self.set("bearing_temperature", temperature);
        }
        self.set("running", if self.running { 1.0 } else { 0.0 });
    }

    /// SC-75 screw compressor: loads until 9 bar and unloads down to 7.5 bar (the
    /// load/unload cycle follows demand); a clogging separator raises its differential
    /// pressure, lowers net pressure and raises current; a clogging oil filter lowers
    /// oil pressure and heats the air end; a stuck thermostat overheats it (and trips
    /// the controller: state fault); bearing wear in the air end or motor shakes.
    fn compressor(&mut self, t: f64, dt: f64) {
        let separator = self.wear("separator-clogging", t);
        let oil_filter = self.wear("oil-filter-clogging", t);
        let thermostat = self.wear("thermostat-failure", t);
        let airend = self.wear("airend-bearing-wear", t);
        let motor = self.wear("motor-bearing-wear", t);
        let d = self.demand(t);
        let ambient = self.ambient(t);
        if !self.running {
            self.pressure = (self.pressure - 0.01 * dt).max(0.0);
            let temperature = self.lag("discharge_temperature", ambient, 900.0, dt);
            self.set("discharge_temperature", temperature);
            self.set("discharge_pressure", self.pressure);
            self.set("oil_pressure", 0.0);
            self.set("separator_dp", 0.0);
            self.set("motor_current", 0.0);
            self.set("vibration", 0.1);
            self.set_state(if self.failed.is_some() { "fault" } else { "off" });
            return;
        }
        if self.phase != Phase::Load && self.phase != Phase::Unload {
            self.phase = Phase::Load;
        }
        // Net pressure: rises while loaded, falls with the plant's consumption.
        let supply = if self.phase == Phase::Load { 0.045 * (1.0 - 0.35 * separator) } else { 0.0 };
        self.pressure += (supply - 0.03 * d) * dt;
        if self.pressure >= 9.0 {
            self.phase = Phase::Unload;
        } else if self.pressure <= 7.5 {
            self.phase = Phase::Load;
        }
        let load = self.phase == Phase::Load;
        let dp = if load { 0.25 } else { 0.1 } + 0.95 * separator.powf(1.5) + self.noise(0.005);
        let oil = if load { 4.2 - 2.6 * oil_filter } else { 2.3 - 1.0 * oil_filter } + self.noise(0.03);
        let target = ambient + if load { 64.0 } else { 52.0 } + 30.0 * thermostat.powf(1.5) + 12.0 * oil_filter;
        let temperature = self.lag("discharge_temperature", target, 600.0, dt);
        let current = if load { 126.0 + 22.0 * separator + 8.0 * airend } else { 54.0 } + self.noise(0.6);
        let vibration = 2.1 + 4.2 * airend * airend + 3.6 * motor * motor + self.noise(0.05);
        let value = self.pressure - 0.4 * separator + self.noise(0.01);
        self.set("discharge_pressure", value);
        self.set("separator_dp", dp);
        self.set("oil_pressure", oil);
        let value = temperature + self.noise(0.1);
        self.set("discharge_temperature", value);
        self.set("motor_current", current);
        self.set("vibration", vibration);
        self.set_state(if load { "load" } else { "unload" });
        self.count_named("run_hours", dt / 3600.0);
        if load {
            self.count_named("load_hours", dt / 3600.0);
        }
        self.count(model::CounterKind::Energy, if load { 75.0 } else { 30.0 } * dt / 3600.0);
    }

    /// VX-850 machining centre: machining cycles (spindle speed and load per part) with
    /// part changes between them; spindle bearing wear raises vibration and spindle
    /// temperature; drawbar fatigue shows as vibration and load spikes; ball screw wear
    /// heats the X axis and ends in alarms; a failing coolant pump loses coolant level
    /// and heats the spindle; a worn tool changer gripper ends in alarms.
    fn machining_centre(&mut self, t: f64, dt: f64) {
        let spindle = self.wear("spindle-bearing-wear", t);
        let drawbar = self.wear("drawbar-spring-fatigue", t);
        let ballscrew = self.wear("ballscrew-wear-x", t);
        let coolant = self.wear("coolant-pump-failure", t);
        let gripper = self.wear("atc-gripper-wear", t);
        let ambient = self.ambient(t);
        if !self.running {
            self.phase = Phase::Steady;
            let spindle_temperature = self.lag("spindle_temperature", ambient, 1200.0, dt);
            let axis = self.lag("axis_x_temperature", ambient, 1800.0, dt);
            self.set("spindle_speed", 0.0);
            self.set("spindle_load", 0.0);
            self.set("spindle_vibration", 0.03);
            self.set("spindle_temperature", spindle_temperature);
            self.set("axis_x_temperature", axis);
            let level = self.values.get("coolant_level").copied().unwrap_or(90.0);
            self.set("coolant_level", level);
            self.set_state(if self.failed.is_some() { "alarm" } else { "off" });
            return;
        }
        self.phase_left -= dt;
        if self.phase_left <= 0.0 {
            self.phase = match self.phase {
                Phase::Machining => {
                    self.count(model::CounterKind::Cycles, 1.0);
                    Phase::PartChange
                }
                // Ball screw and gripper wear end cycles in alarms (feed hold) more often.
                _ if self.rng.unit() < 0.02 + 0.5 * ballscrew.max(gripper).powi(2) => Phase::FeedHold,
                _ => Phase::Machining,
            };
            self.phase_left = match self.phase {
                Phase::Machining => self.rng.range(240.0, 480.0),
                Phase::FeedHold => self.rng.range(60.0, 300.0),
                _ => self.rng.range(30.0, 90.0),
            };
            if self.phase == Phase::Machining {
                let speed = self.rng.range(7000.0, 11500.0).round();
                self.lagged.insert("speed_setpoint".into(), speed);
            }
        }
        let machining = self.phase == Phase::Machining;
        let speed = if machining { self.lagged.get("speed_setpoint").copied().unwrap_or(9000.0) } else { 0.0 };
        let load = if machining {
            38.0 + 12.0 * ((t + self.offset) / 40.0).sin() + 14.0 * drawbar * self.rng.unit() + 6.0 * spindle
        } else {
            0.0
        };
        let vibration = if machining {
            0.5 + 0.5 * speed / 12_000.0 + 2.4 * spindle * spindle + 1.6 * drawbar.powf(1.5) + self.noise(0.03)
        } else {
            0.04
        };
        let spindle_target = ambient
            + if machining { 9.0 + 8.0 * speed / 12_000.0 } else { 3.0 }
            + 18.0 * spindle * spindle
            + 10.0 * coolant;
        let spindle_temperature = self.lag("spindle_temperature", spindle_target, 900.0, dt);
        let axis_target = ambient + if machining { 6.0 } else { 2.0 } + 14.0 * ballscrew * ballscrew;
        let axis = self.lag("axis_x_temperature", axis_target, 1800.0, dt);
        // Coolant is used up while machining and topped up at 60 %; a failing pump leaks.
        let mut level = self.values.get("coolant_level").copied().unwrap_or(90.0);
        level -= if machining { 0.5 / 3600.0 * dt } else { 0.0 } + 25.0 * coolant / 3600.0 * dt;
        if level < 60.0 && coolant < 0.5 {
            level = 95.0;
        }
        self.set("spindle_speed", speed);
        self.set("spindle_load", load);
        self.set("spindle_vibration", vibration);
        let value = spindle_temperature + self.noise(0.05);
        self.set("spindle_temperature", value);
        let value = axis + self.noise(0.05);
        self.set("axis_x_temperature", value);
        self.set("coolant_level", level.max(0.0));
        self.set_state(match self.phase {
            Phase::Machining => "running",
            Phase::FeedHold => "feed_hold",
            _ => "idle",
        });
        self.count_named("run_hours", dt / 3600.0);
        if machining {
            self.count_named("spindle_hours", dt / 3600.0);
        }
    }

    /// HP-400 hydraulic press: 12-second strokes (press, return, dwell); pump wear
    /// costs pressure and adds vibration and heat; a clogging return filter raises its
    /// differential pressure and the oil temperature; a failing proportional valve makes
    /// pressure unstable and unable to reach its set point; a leaking cylinder seal lets
    /// the slide drift.
    fn press(&mut self, t: f64, dt: f64) {
        let pump = self.wear("pump-wear", t);
        let filter = self.wear("filter-clogging", t);
        let valve = self.wear("valve-failure", t);
        let seal = self.wear("cylinder-seal-leak", t);
        let ambient = self.ambient(t);
        if !self.running {
            self.phase = Phase::Steady;
            let oil = self.lag("oil_temperature", ambient, 2400.0, dt);
            self.set("oil_temperature", oil);
            self.set("main_pressure", 0.0);
            self.set("pump_vibration", 0.1);
            self.set("filter_dp", 0.0);
            self.set("ram_position", 0.0);
            self.set_state(if self.failed.is_some() { "fault" } else { "off" });
            return;
        }
        self.phase_left -= dt;
        if self.phase_left <= 0.0 {
            self.phase = match self.phase {
                Phase::Pressing => Phase::Return,
                Phase::Return => Phase::Dwell,
                // A failing valve cannot build pressure: the controller faults the stroke.
                Phase::Dwell if self.rng.unit() < 0.5 * valve * valve => Phase::FeedHold,
                _ => {
                    self.count(model::CounterKind::Cycles, 1.0);
                    Phase::Pressing
                }
            };
            self.phase_left = match self.phase {
                Phase::Pressing => 5.0,
                Phase::Return => 4.0,
                Phase::FeedHold => 20.0,
                _ => 3.0,
            };
        }
        let (pressure, position) = match self.phase {
            Phase::Pressing => (
                250.0 * (1.0 - 0.15 * pump - 0.25 * valve * valve - 0.4 * seal * seal)
                    + self.noise(2.0 + 35.0 * valve * valve),
                400.0 * (1.0 - self.phase_left / 5.0),
            ),
            Phase::Return => (40.0 + self.noise(1.0 + 8.0 * valve), 400.0 * self.phase_left / 4.0),
            Phase::FeedHold => (self.noise(0.5).abs(), 0.0),
            _ => (15.0 + self.noise(0.5), 25.0 * seal * seal + self.noise(0.2).abs()),
        };
        let oil_target = ambient + 28.0 + 16.0 * pump.powf(1.5) + 10.0 * filter;
        let oil = self.lag("oil_temperature", oil_target, 2400.0, dt);
        let vibration = 2.0 + 5.0 * pump * pump + 0.8 * valve + self.noise(0.05);
        let dp = 0.6 + 3.4 * filter.powf(1.5) + self.noise(0.02);
        self.set("main_pressure", pressure);
        self.set("ram_position", position);
        let value = oil + self.noise(0.05);
        self.set("oil_temperature", value);
        self.set("pump_vibration", vibration);
        self.set("filter_dp", dp);
        self.set_state(match self.phase {
            Phase::Pressing => "pressing",
            Phase::Return => "return",
            Phase::FeedHold => "fault",
            _ => "idle",
        });
        self.count(model::CounterKind::RunHours, dt / 3600.0);
        self.count(model::CounterKind::Energy, 55.0 * dt / 3600.0);
    }

    /// A turbofan replays a real C-MAPSS FD001 engine: one row per flight cycle, the
    /// values exactly as recorded; the engine fails after its last recorded cycle.
    fn turbofan(&mut self, dt: f64) {
        let Some((trajectory, cycle)) = &mut self.replay else { return };
        if self.running {
            self.cycle_elapsed += dt;
            if self.cycle_elapsed >= FLIGHT_CYCLE_S && *cycle + 1 < trajectory.rows.len() {
                self.cycle_elapsed -= FLIGHT_CYCLE_S;
                *cycle += 1;
                let names: Vec<String> = self
                    .model
                    .counters
                    .iter()
                    .filter(|c| c.kind == model::CounterKind::Cycles)
                    .map(|c| c.name.clone())
                    .collect();
                for name in names {
                    *self.counters.entry(name).or_default() += 1.0;
                }
            }
            self.count(model::CounterKind::RunHours, dt / 3600.0);
        }
        let Some((trajectory, cycle)) = &self.replay else { return };
        let row = trajectory.rows[*cycle].clone();
        for (name, value) in crate::cmapss::COLUMNS.iter().zip(row) {
            self.set(name, value);
        }
    }

    /// Any other model: analog signals wander inside their expected range with the
    /// day; the declared symptoms of a developing failure drift toward the limit.
    fn generic(&mut self, t: f64, dt: f64) {
        let signals = self.model.signals.clone();
        let modes = self.model.failure_modes.clone();
        for (k, signal) in signals.iter().enumerate() {
            let value = match signal.kind {
                model::SignalKind::Boolean => f64::from(u8::from(self.running)),
                model::SignalKind::Enumerated => f64::from(u8::from(self.running)),
                model::SignalKind::Analog => {
                    let low = signal.expected_min.unwrap_or(0.0);
                    let high = signal.expected_max.unwrap_or(low + 100.0);
                    let span = high - low;
                    let phase = (t + self.offset) / 86_400.0 * std::f64::consts::TAU + k as f64;
                    let drift: f64 = modes
                        .iter()
                        .filter(|m| m.symptoms.contains(&signal.name))
                        .map(|m| self.wear(&m.id, t).powi(2) * 0.5 * span)
                        .sum();
                    if self.running {
                        low + span * (0.45 + 0.15 * phase.sin()) + drift + self.noise(span * 0.005)
                    } else {
                        low
                    }
                }
            };
            self.set(&signal.name, value);
        }
        if self.running {
            self.count(model::CounterKind::RunHours, dt / 3600.0);
        }
    }
}
