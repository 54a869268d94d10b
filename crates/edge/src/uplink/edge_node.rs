//! The Sparkplug B edge node's state and encoding, without I/O: births (NBIRTH with
//! `bdSeq` and `Node Control/Rebirth`, a DBIRTH per device with every metric's name,
//! alias and current value), data by alias (DDATA, one metric per sample with its time
//! stamp; samples that are not good, or not a number, are sent as null), the death,
//! and `seq` counting 0..255 over them. Also decodes a rebirth request. The simulator
//! uses it to play Sparkplug nodes.

use crate::sparkplug::{Metric, NAMESPACE, Payload, REBIRTH, Value, datatype};
use crate::spool::Entry;
use model::sample::{Sample, SeriesKey};
use prost::Message;
use std::collections::{BTreeMap, HashMap};

fn now_ms() -> i64 {
    model::Timestamp::now().0
}

/// The Sparkplug edge node's state and encoding (no I/O).
pub struct EdgeNode {
    pub group: String,
    pub node: String,
    pub bd_seq: u64,
    seq: u64,
    /// Device ids and their metrics (alias = position).
    devices: Vec<(String, Vec<SeriesKey>)>,
    index: HashMap<SeriesKey, (usize, u64)>,
    /// The newest sample sent per series (a birth carries current values).
    latest: HashMap<SeriesKey, Sample>,
}

impl EdgeNode {
    /// A node for every asset and signal the edge file maps.
    pub fn new(group: &str, node: &str, series: impl IntoIterator<Item = SeriesKey>) -> Self {
        let mut by_asset: BTreeMap<String, Vec<SeriesKey>> = BTreeMap::new();
        for key in series {
            let list = by_asset.entry(key.asset.clone()).or_default();
            if !list.contains(&key) {
                list.push(key);
            }
        }
        let devices: Vec<(String, Vec<SeriesKey>)> =
            by_asset.into_iter().map(|(asset, keys)| (asset.replace('/', ":"), keys)).collect();
        let index = devices
            .iter()
            .enumerate()
            .flat_map(|(d, (_, keys))| keys.iter().enumerate().map(move |(a, k)| (k.clone(), (d, a as u64))))
            .collect();
        Self { group: group.into(), node: node.into(), bd_seq: 0, seq: 0, devices, index, latest: HashMap::new() }
    }

    pub fn topic(&self, kind: &str, device: Option<&str>) -> String {
        match device {
            Some(d) => format!("{NAMESPACE}/{}/{kind}/{}/{d}", self.group, self.node),
            None => format!("{NAMESPACE}/{}/{kind}/{}", self.group, self.node),
        }
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq = (self.seq + 1) % 256;
        seq
    }

    fn bd_seq_metric(&self) -> Metric {
        Metric {
            name: Some("bdSeq".into()),
            datatype: Some(datatype::UINT64),
            value: Some(Value::Long(self.bd_seq)),
            ..Metric::default()
        }
    }

    /// The NDEATH payload (also the will).
    pub fn death(&self) -> Vec<u8> {
        Payload { timestamp: Some(now_ms() as u64), metrics: vec![self.bd_seq_metric()], ..Payload::default() }
            .encode_to_vec()
    }

    fn metric(alias: u64, sample: Option<&Sample>, historical: bool) -> Metric {
        let value = sample.filter(|s| s.quality.is_good() && s.value.is_finite()).map(|s| Value::Double(s.value));
        Metric {
            alias: Some(alias),
            // Sparkplug 3.0 says data messages SHOULD NOT repeat the type; decoders that
            // read messages on their own (pysparkplug) need it, so it is sent.
            datatype: Some(datatype::DOUBLE),
            timestamp: sample.map(|s| s.ts.max(0) as u64),
            is_null: value.is_none().then_some(true),
            is_historical: historical.then_some(true),
            value,
            ..Metric::default()
        }
    }

    /// Records `sample` as the series' current value without publishing it (what the
    /// next births carry), unless a newer one is known.
    pub fn remember(&mut self, key: &SeriesKey, sample: Sample) {
        if self.index.contains_key(key) && self.latest.get(key).is_none_or(|l| l.ts <= sample.ts) {
            self.latest.insert(key.clone(), sample);
        }
    }

    /// The newest sample sent (or remembered) for a series.
    pub fn latest(&self, key: &SeriesKey) -> Option<&Sample> {
        self.latest.get(key)
    }

    /// NBIRTH and a DBIRTH per device, `seq` from 0.
    pub fn births(&mut self) -> Vec<(String, Vec<u8>)> {
        self.seq = 0;
        let now = now_ms() as u64;
        let node_metrics = vec![
            self.bd_seq_metric(),
            Metric {
                name: Some(REBIRTH.into()),
                datatype: Some(datatype::BOOLEAN),
                value: Some(Value::Boolean(false)),
                ..Metric::default()
            },
        ];
        let seq = self.next_seq();
        let mut out = vec![(
            self.topic("NBIRTH", None),
            Payload { timestamp: Some(now), metrics: node_metrics, seq: Some(seq), ..Payload::default() }
                .encode_to_vec(),
        )];
        for d in 0..self.devices.len() {
            let metrics = self.devices[d]
                .1
                .iter()
                .enumerate()
                .map(|(alias, key)| Metric {
                    name: Some(key.signal.clone()),
                    ..Self::metric(alias as u64, self.latest.get(key), false)
                })
                .collect();
            let seq = self.next_seq();
            out.push((
                self.topic("DBIRTH", Some(&self.devices[d].0)),
                Payload { timestamp: Some(now), metrics, seq: Some(seq), ..Payload::default() }.encode_to_vec(),
            ));
        }
        out
    }

    /// DDATA for one spool entry: a message per device, a metric per sample.
    pub fn data(&mut self, entry: &Entry, historical: bool) -> Vec<(String, Vec<u8>)> {
        let mut per_device: BTreeMap<usize, Vec<Metric>> = BTreeMap::new();
        for (key, samples) in &entry.series {
            let Some(&(device, alias)) = self.index.get(key) else { continue };
            let metrics = per_device.entry(device).or_default();
            metrics.extend(samples.iter().map(|s| Self::metric(alias, Some(s), historical)));
            if let Some(last) = samples.iter().max_by_key(|s| s.ts)
                && self.latest.get(key).is_none_or(|l| l.ts <= last.ts)
            {
                self.latest.insert(key.clone(), *last);
            }
        }
        let now = now_ms() as u64;
        per_device
            .into_iter()
            .map(|(device, metrics)| {
                let seq = self.next_seq();
                (
                    self.topic("DDATA", Some(&self.devices[device].0)),
                    Payload { timestamp: Some(now), metrics, seq: Some(seq), ..Payload::default() }.encode_to_vec(),
                )
            })
            .collect()
    }
}

/// Whether an NCMD payload asks for `Node Control/Rebirth`.
pub fn asks_rebirth(payload: &[u8]) -> bool {
    Payload::decode(payload).is_ok_and(|p| {
        p.metrics.iter().any(|m| m.name.as_deref() == Some(REBIRTH) && matches!(m.value, Some(Value::Boolean(true))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparkplug::Host;

    fn key(asset: &str, signal: &str) -> SeriesKey {
        SeriesKey::new(asset, signal)
    }

    #[test]
    fn a_host_reads_back_what_the_node_publishes() {
        let series = vec![key("acme/p/l/m-1", "temp"), key("acme/p/l/m-1", "flow"), key("acme/p/l/m-2", "temp")];
        let mut node = EdgeNode::new("plant", "gw-1", series);
        node.bd_seq = 7;
        let mut host = Host::new();
        let now = 1_800_000_000_000;
        for (topic, payload) in node.births() {
            let handled = host.handle(&topic, &payload, now);
            assert!(handled.problems.is_empty(), "{topic}: {:?}", handled.problems);
        }
        let entry = Entry {
            seq: 1,
            series: vec![
                (key("acme/p/l/m-1", "temp"), vec![Sample::good(now - 2000, 20.5), Sample::good(now - 1000, 21.0)]),
                (
                    key("acme/p/l/m-2", "temp"),
                    vec![Sample { ts: now - 1000, value: f64::NAN, quality: model::sample::Quality::BAD }],
                ),
            ],
        };
        let mut readings = Vec::new();
        for (topic, payload) in node.data(&entry, true) {
            assert!(topic.starts_with("spBv1.0/plant/DDATA/gw-1/acme:p:l:m-"), "{topic}");
            let handled = host.handle(&topic, &payload, now);
            assert!(handled.problems.is_empty() && handled.rebirth.is_none(), "{:?}", handled.problems);
            readings.extend(handled.readings);
        }
        let values: Vec<(String, String, i64, Option<f64>, bool)> = readings
            .iter()
            .map(|r| (r.device.clone().unwrap_or_default(), r.metric.clone(), r.ts, r.value, r.historical))
            .collect();
        assert_eq!(
            values,
            vec![
                ("acme:p:l:m-1".into(), "temp".into(), now - 2000, Some(20.5), true),
                ("acme:p:l:m-1".into(), "temp".into(), now - 1000, Some(21.0), true),
                ("acme:p:l:m-2".into(), "temp".into(), now - 1000, None, true),
            ]
        );
        // 300 more messages: seq wraps at 256 and the host sees no gap.
        for n in 0..300 {
            let entry = Entry {
                seq: 2 + n,
                series: vec![(key("acme/p/l/m-1", "flow"), vec![Sample::good(now + n as i64, 1.0)])],
            };
            for (topic, payload) in node.data(&entry, false) {
                assert!(host.handle(&topic, &payload, now).problems.is_empty());
            }
        }
        // A rebirth carries the newest values.
        let births = node.births();
        let birth = Payload::decode(births[1].1.as_slice()).expect("DBIRTH");
        let temp = birth.metrics.iter().find(|m| m.name.as_deref() == Some("temp")).expect("temp");
        assert_eq!(temp.value, Some(Value::Double(21.0)));
        // The death names the session.
        let death = Payload::decode(node.death().as_slice()).expect("NDEATH");
        assert_eq!(death.metrics[0].value, Some(Value::Long(7)));
    }
}
