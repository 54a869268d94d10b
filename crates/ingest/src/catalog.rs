//! Validating incoming samples against the installed base, with a precise report.
//!
//! A `Catalog` knows every asset's model, so it can say whether `asset#signal` is a
//! series at all, and what values are physically possible for it. `validate` splits a
//! batch into the samples to store and the rejected ones, each with its reason.

use model::sample::{Millis, Sample, SeriesKey};
use model::{AssetModel, Entity};
use std::collections::HashMap;
use std::sync::Arc;

/// Every asset's model, for validation.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// FxHash: looked up for every series of every batch.
    assets: model::fast_hash::FxHashMap<String, Arc<AssetModel>>,
}

/// What the catalogue says about one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesSpec {
    Signal { physical_min: Option<f64>, physical_max: Option<f64> },
    Counter { rollover: Option<f64> },
}

/// Why a sample was not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    UnknownAsset,
    UnknownSignal,
    NotFinite,
    OutOfRange {
        min: Option<f64>,
        max: Option<f64>,
    },
    InFuture {
        limit_ms: Millis,
    },
    /// A counter went below zero.
    NegativeCounter,
}

impl Reason {
    /// Stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::UnknownAsset => "unknown_asset",
            Reason::UnknownSignal => "unknown_series",
            Reason::NotFinite => "not_finite",
            Reason::OutOfRange { .. } => "out_of_range",
            Reason::InFuture { .. } => "timestamp_in_future",
            Reason::NegativeCounter => "negative_counter",
        }
    }

    /// A sentence a person can act on.
    pub fn message(&self, key: &SeriesKey) -> String {
        match self {
            Reason::UnknownAsset => format!("asset `{}` is not in the installed base; import it first", key.asset),
            Reason::UnknownSignal => {
                format!("`{}` is not a signal or counter of the model of asset `{}`", key.signal, key.asset)
            }
            Reason::NotFinite => "the value is NaN, infinite or missing; send a number".into(),
            Reason::OutOfRange { min, max } => format!(
                "the value is outside the physically possible range [{}, {}] declared by the asset model",
                min.map_or("-inf".into(), |v| v.to_string()),
                max.map_or("+inf".into(), |v| v.to_string())
            ),
            Reason::InFuture { limit_ms } => {
                format!("the timestamp is more than {} s in the future; check the sender's clock", limit_ms / 1000)
            }
            Reason::NegativeCounter => "a counter cannot be negative".into(),
        }
    }
}

/// One rejected sample: which series, its position in the request, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub key: SeriesKey,
    /// Index of the sample within its series in the request (or the line number for line protocol).
    pub index: usize,
    pub ts: Millis,
    pub reason: Reason,
}

impl Catalog {
    pub fn from_entities<'a>(entities: impl IntoIterator<Item = &'a Entity>) -> Self {
        let mut models: HashMap<&str, Arc<AssetModel>> = HashMap::new();
        let mut asset_models: Vec<(&str, &str)> = Vec::new();
        for entity in entities {
            match entity {
                Entity::AssetModel(m) => {
                    models.insert(&m.id, Arc::new(m.clone()));
                }
                Entity::Asset(a) => asset_models.push((&a.id, &a.model)),
                _ => {}
            }
        }
        let assets = asset_models
            .into_iter()
            .filter_map(|(asset, model)| Some((asset.to_owned(), models.get(model)?.clone())))
            .collect();
        Self { assets }
    }

    /// The retention class of every series the models declare.
    pub fn classes(&self) -> Vec<(SeriesKey, model::RetentionClass)> {
        let mut out = Vec::new();
        for (asset, model) in &self.assets {
            out.extend(model.signals.iter().map(|s| (SeriesKey::new(asset.clone(), s.name.clone()), s.retention)));
            out.extend(model.counters.iter().map(|c| (SeriesKey::new(asset.clone(), c.name.clone()), c.retention)));
        }
        out
    }

    pub fn has_asset(&self, asset: &str) -> bool {
        self.assets.contains_key(asset)
    }

    pub fn asset_count(&self) -> usize {
        self.assets.len()
    }

    pub fn spec(&self, key: &SeriesKey) -> Result<SeriesSpec, Reason> {
        let model = self.assets.get(&key.asset).ok_or(Reason::UnknownAsset)?;
        if let Some(s) = model.signal(&key.signal) {
            return Ok(SeriesSpec::Signal { physical_min: s.physical_min, physical_max: s.physical_max });
        }
        model
            .counters
            .iter()
            .find(|c| c.name == key.signal)
            .map(|c| SeriesSpec::Counter { rollover: c.rollover })
            .ok_or(Reason::UnknownSignal)
    }

    /// Splits samples into the storable ones and the rejected ones.
    pub fn validate(
        &self,
        series: Vec<(SeriesKey, Vec<Sample>)>,
        now: Millis,
        max_future_ms: Millis,
    ) -> (Vec<(SeriesKey, Vec<Sample>)>, Vec<Rejected>) {
        let mut accepted = Vec::with_capacity(series.len());
        let mut rejected = Vec::new();
        for (key, samples) in series {
            let spec = match self.spec(&key) {
                Ok(spec) => spec,
                Err(reason) => {
                    rejected.extend(samples.iter().enumerate().map(|(index, s)| Rejected {
                        key: key.clone(),
                        index,
                        ts: s.ts,
                        reason: reason.clone(),
                    }));
                    continue;
                }
            };
            let mut good = Vec::with_capacity(samples.len());
            for (index, sample) in samples.into_iter().enumerate() {
                match check(spec, &sample, now, max_future_ms) {
                    Ok(()) => good.push(sample),
                    Err(reason) => rejected.push(Rejected { key: key.clone(), index, ts: sample.ts, reason }),
                }
            }
            if !good.is_empty() {
                accepted.push((key, good));
            }
        }
        (accepted, rejected)
    }
}

fn check(spec: SeriesSpec, sample: &Sample, now: Millis, max_future_ms: Millis) -> Result<(), Reason> {
    if sample.ts > now.saturating_add(max_future_ms) {
        return Err(Reason::InFuture { limit_ms: max_future_ms });
    }
    // A sample that is not good records a status (sensor failure, lost connection): its
    // value may be missing and is not range-checked. A good sample must be a number.
    if !sample.quality.is_good() {
        return Ok(());
    }
    if !sample.value.is_finite() {
        return Err(Reason::NotFinite);
    }
    match spec {
        SeriesSpec::Signal { physical_min, physical_max } => {
            let below = physical_min.is_some_and(|min| sample.value < min);
            let above = physical_max.is_some_and(|max| sample.value > max);
            if below || above {
                return Err(Reason::OutOfRange { min: physical_min, max: physical_max });
            }
        }
        SeriesSpec::Counter { .. } if sample.value < 0.0 => return Err(Reason::NegativeCounter),
        SeriesSpec::Counter { .. } => {}
    }
    Ok(())
}
