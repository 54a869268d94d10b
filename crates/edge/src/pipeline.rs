//! What every source does with what it read: interlock rules see each sample first
//! (they act on raw values, not filtered ones), then the series' filter decides what
//! goes to the hub. Historical samples (replayed by a device) skip both — the adapter
//! sends them past the pipeline.

use crate::config::{Interlock, Mapped};
use crate::filter::{Filter, FilterError};
use crate::interlock::{Armed, Writers};
use model::sample::{Sample, SeriesKey};
use std::collections::HashMap;
use toml::Spanned;

/// One source's interlocks and filters.
pub struct Pipeline {
    filters: HashMap<SeriesKey, Filter>,
    /// The rules on series this source reads whose device has a writer.
    rules: Vec<Armed>,
}

impl Pipeline {
    /// A filter per mapped series, and every interlock that watches one of them.
    pub fn new<'a>(
        tags: impl Iterator<Item = Mapped<'a>>,
        interlocks: &[Spanned<Interlock>],
        writers: &Writers,
    ) -> Result<Self, FilterError> {
        let mut filters = HashMap::new();
        for (key, spec) in tags {
            // `check` turned percentages into absolute thresholds from the models.
            filters.insert(key, Filter::new(spec, None)?);
        }
        let rules = interlocks
            .iter()
            .map(|r| r.get_ref())
            .filter(|r| filters.contains_key(&r.key()))
            .filter_map(|r| writers.arm(r))
            .collect();
        Ok(Self { filters, rules })
    }

    /// Everything passes unchanged (no interlocks, no filters): for adapters under test.
    pub fn passthrough() -> Self {
        Self { filters: HashMap::new(), rules: Vec::new() }
    }

    /// What the filters still hold back (a swinging door's last point, an open
    /// window), for a source that stops: nothing read is lost at shutdown.
    pub(crate) fn finish(&mut self) -> Vec<(SeriesKey, Sample)> {
        let mut out = Vec::new();
        let mut held = Vec::new();
        for (key, filter) in &mut self.filters {
            filter.flush(&mut held);
            out.extend(held.drain(..).map(|s| (key.clone(), s)));
        }
        out
    }

    /// Interlocks, then filters; returns what is to be sent.
    pub(crate) async fn process(
        &mut self,
        read: Vec<(SeriesKey, Sample)>,
        observed: std::time::Instant,
    ) -> Vec<(SeriesKey, Sample)> {
        for armed in &mut self.rules {
            armed.check(&read, observed).await;
        }
        let mut out = Vec::with_capacity(read.len());
        let mut sent = Vec::new();
        for (key, sample) in read {
            match self.filters.get_mut(&key) {
                Some(filter) => filter.push(sample, &mut sent),
                None => sent.push(sample),
            }
            out.extend(sent.drain(..).map(|s| (key.clone(), s)));
        }
        out
    }
}
