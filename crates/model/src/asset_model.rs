//! Asset models (machine types): the signals, counters, components with their bills of
//! materials, and failure modes that every asset of the model shares.

use crate::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::ToSchema;

/// A machine type, e.g. a centrifugal pump CP-200. Assets point at one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetModel {
    pub id: String,
    pub name: String,
    /// Equipment family, e.g. `centrifugal_pump`, `screw_compressor`, `cnc_machining_centre`, `turbofan`.
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Measured values the machine exposes (vibration, temperature, pressure...).
    #[serde(default, rename = "signal")]
    pub signals: Vec<SignalDef>,
    /// Monotonic totals used for metering (run hours, cycles, energy).
    #[serde(default, rename = "counter")]
    pub counters: Vec<CounterDef>,
    /// Replaceable components and their bills of materials.
    #[serde(default, rename = "component")]
    pub components: Vec<ComponentDef>,
    /// How the machine fails, and what a repair needs.
    #[serde(default, rename = "failure_mode")]
    pub failure_modes: Vec<FailureMode>,
}

/// One signal of an asset model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalDef {
    pub name: String,
    /// Engineering unit, e.g. `mm/s`, `degC`, `bar`; empty for booleans and states.
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub kind: SignalKind,
    /// State names for `enumerated` signals; the value is the index into this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    /// Normal operating range; values outside it are plausible but noteworthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_max: Option<f64>,
    /// Physically possible range; values outside it are sensor faults and are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How long the hub keeps this signal's raw samples and rollups.
    #[serde(default, skip_serializing_if = "RetentionClass::is_standard")]
    pub retention: RetentionClass,
}

/// A retention class: the hub keeps raw samples, per-minute and per-hour rollups of each
/// class for durations set on the hub (`treaty serve --retention`). Signals default to
/// `standard`, counters to `counter` (kept long: they are billing evidence).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetentionClass {
    #[default]
    Standard,
    /// Fast or bulky signals (vibration features, currents) kept raw for a short time.
    HighRate,
    /// Diagnostics nobody needs after a few days.
    Diagnostic,
    /// Monotonic counters: metering and billing evidence.
    Counter,
}

impl RetentionClass {
    pub const ALL: [RetentionClass; 4] =
        [RetentionClass::Standard, RetentionClass::HighRate, RetentionClass::Diagnostic, RetentionClass::Counter];

    pub fn name(self) -> &'static str {
        match self {
            RetentionClass::Standard => "standard",
            RetentionClass::HighRate => "high_rate",
            RetentionClass::Diagnostic => "diagnostic",
            RetentionClass::Counter => "counter",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    fn is_standard(&self) -> bool {
        *self == RetentionClass::Standard
    }

    fn is_counter(&self) -> bool {
        *self == RetentionClass::Counter
    }
}

fn counter_class() -> RetentionClass {
    RetentionClass::Counter
}

/// How a signal's f64 value is to be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    #[default]
    Analog,
    /// 0 or 1.
    Boolean,
    /// An index into `states`.
    Enumerated,
}

/// A monotonic counter; metering computes deltas with resets handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterDef {
    pub name: String,
    pub unit: String,
    pub kind: CounterKind,
    /// Value at which the device's counter wraps to zero, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollover: Option<f64>,
    #[serde(default = "counter_class", skip_serializing_if = "RetentionClass::is_counter")]
    pub retention: RetentionClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CounterKind {
    RunHours,
    Cycles,
    Energy,
    Volume,
    Other,
}

/// A replaceable component of the model and the parts it is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentDef {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub bom: Vec<BomLine>,
}

/// A part number and a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BomLine {
    pub part: String,
    #[serde(default = "one")]
    pub quantity: u32,
}

fn one() -> u32 {
    1
}

/// A way the model fails: which component, the symptoms, and the parts a repair needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureMode {
    pub id: String,
    pub name: String,
    /// The component (of this model) that fails.
    pub component: String,
    /// Signals that show the failure developing.
    #[serde(default)]
    pub symptoms: Vec<String>,
    /// Parts consumed by the repair.
    #[serde(default)]
    pub parts: Vec<BomLine>,
    /// Skill a technician needs for the repair, e.g. `rotating-equipment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_repair_hours: Option<f64>,
}

impl AssetModel {
    pub fn component(&self, id: &str) -> Option<&ComponentDef> {
        self.components.iter().find(|c| c.id == id)
    }

    pub fn signal(&self, name: &str) -> Option<&SignalDef> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// Every part number the model mentions, with the field that mentions it.
    pub fn part_references(&self) -> Vec<(String, &str)> {
        let mut refs = Vec::new();
        for (i, c) in self.components.iter().enumerate() {
            for (j, line) in c.bom.iter().enumerate() {
                refs.push((format!("component[{i}].bom[{j}].part"), line.part.as_str()));
            }
        }
        for (i, f) in self.failure_modes.iter().enumerate() {
            for (j, line) in f.parts.iter().enumerate() {
                refs.push((format!("failure_mode[{i}].parts[{j}].part"), line.part.as_str()));
            }
        }
        refs
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        let mut names = HashSet::new();
        for (i, s) in self.signals.iter().enumerate() {
            let at = |f: &str| format!("signal[{i}].{f}");
            crate::entity::slug(&at("name"), &s.name, errors);
            if !names.insert(s.name.as_str()) {
                errors
                    .push(FieldError::new(at("name"), format!("signal `{}` is declared twice in this model", s.name)));
            }
            range(&at("expected"), s.expected_min, s.expected_max, errors);
            range(&at("physical"), s.physical_min, s.physical_max, errors);
            if let (Some(pmin), Some(emin)) = (s.physical_min, s.expected_min)
                && emin < pmin
            {
                errors.push(FieldError::new(
                    at("expected_min"),
                    format!("expected_min {emin} is below physical_min {pmin}"),
                ));
            }
            if let (Some(pmax), Some(emax)) = (s.physical_max, s.expected_max)
                && emax > pmax
            {
                errors.push(FieldError::new(
                    at("expected_max"),
                    format!("expected_max {emax} is above physical_max {pmax}"),
                ));
            }
            if s.kind == SignalKind::Enumerated && s.states.len() < 2 {
                errors.push(FieldError::new(at("states"), "an enumerated signal needs at least two states"));
            }
            if s.kind != SignalKind::Enumerated && !s.states.is_empty() {
                errors.push(FieldError::new(at("states"), "states are only allowed on kind = \"enumerated\""));
            }
        }
        for (i, c) in self.counters.iter().enumerate() {
            let at = |f: &str| format!("counter[{i}].{f}");
            crate::entity::slug(&at("name"), &c.name, errors);
            if !names.insert(c.name.as_str()) {
                errors.push(FieldError::new(
                    at("name"),
                    format!("`{}` is already a signal or counter of this model", c.name),
                ));
            }
            if c.rollover.is_some_and(|r| !r.is_finite() || r <= 0.0) {
                errors.push(FieldError::new(at("rollover"), "rollover must be a positive, finite number"));
            }
        }
        let mut component_ids = HashSet::new();
        for (i, c) in self.components.iter().enumerate() {
            crate::entity::slug(&format!("component[{i}].id"), &c.id, errors);
            if !component_ids.insert(c.id.as_str()) {
                errors.push(FieldError::new(
                    format!("component[{i}].id"),
                    format!("component `{}` is declared twice in this model", c.id),
                ));
            }
            quantities(&format!("component[{i}].bom"), &c.bom, errors);
        }
        let mut mode_ids = HashSet::new();
        for (i, f) in self.failure_modes.iter().enumerate() {
            let at = |field: &str| format!("failure_mode[{i}].{field}");
            crate::entity::slug(&at("id"), &f.id, errors);
            if !mode_ids.insert(f.id.as_str()) {
                errors.push(FieldError::new(
                    at("id"),
                    format!("failure mode `{}` is declared twice in this model", f.id),
                ));
            }
            if self.component(&f.component).is_none() {
                errors.push(FieldError::new(
                    at("component"),
                    format!("`{}` is not a component of model `{}`", f.component, self.id),
                ));
            }
            for (j, symptom) in f.symptoms.iter().enumerate() {
                if self.signal(symptom).is_none() && !self.counters.iter().any(|c| &c.name == symptom) {
                    errors.push(FieldError::new(
                        format!("failure_mode[{i}].symptoms[{j}]"),
                        format!("`{symptom}` is not a signal or counter of model `{}`", self.id),
                    ));
                }
            }
            quantities(&at("parts"), &f.parts, errors);
            if f.mean_repair_hours.is_some_and(|h| h.is_nan() || h <= 0.0) {
                errors.push(FieldError::new(at("mean_repair_hours"), "must be a positive number of hours"));
            }
        }
    }
}

/// Checks `<prefix>_min` and `<prefix>_max`.
fn range(prefix: &str, min: Option<f64>, max: Option<f64>, errors: &mut Vec<FieldError>) {
    for (end, v) in [("min", min), ("max", max)] {
        if v.is_some_and(|v| !v.is_finite()) {
            errors.push(FieldError::new(format!("{prefix}_{end}"), "range limits must be finite numbers"));
        }
    }
    if let (Some(min), Some(max)) = (min, max)
        && min >= max
    {
        errors.push(FieldError::new(
            format!("{prefix}_max"),
            format!("maximum {max} must be greater than minimum {min}"),
        ));
    }
}

fn quantities(field: &str, lines: &[BomLine], errors: &mut Vec<FieldError>) {
    for (j, line) in lines.iter().enumerate() {
        if line.quantity == 0 {
            errors.push(FieldError::new(format!("{field}[{j}].quantity"), "quantity must be at least 1"));
        }
    }
}
