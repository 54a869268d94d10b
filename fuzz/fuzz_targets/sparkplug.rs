//! Arbitrary bytes as Sparkplug B payloads on every kind of topic, in one host session:
//! births, data, deaths and garbage in any order never panic, and no reading is NaN or
//! infinite (those become bad quality). The MQTT source's decoding (JSON pointers, Sparkplug tag map) gets
//! the same bytes.
#![no_main]

use edge::sparkplug::Host;

const TOPICS: [&str; 7] = [
    "spBv1.0/g/NBIRTH/n",
    "spBv1.0/g/NDATA/n",
    "spBv1.0/g/NDEATH/n",
    "spBv1.0/g/DBIRTH/n/d",
    "spBv1.0/g/DDATA/n/d",
    "spBv1.0/g/DDEATH/n/d",
    "sensors/p-1/json",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut host = Host::new();
    let broker: edge::config::MqttBroker = toml::from_str(
        "name = \"f\"\nbroker = \"mqtt://127.0.0.1\"\n[[json]]\ntopic = \"sensors/+/json\"\nasset = \"a\"\ntimestamp = \"/t\"\n[[json.tag]]\npointer = \"/v\"\nsignal = \"s\"\n[[sparkplug]]\ngroup = \"g\"\nnode = \"n\"\ndevice = \"d\"\nasset = \"a\"\n[[sparkplug.tag]]\nmetric = \"m\"\nsignal = \"s\"\n",
    )
    .expect("fixed config");
    let Ok(mut source) = edge::mqtt::Source::new(&broker) else { return };
    // The first byte of each chunk picks the topic; chunks are separated by 0xA5.
    for (i, chunk) in data.split(|b| *b == 0xA5).enumerate() {
        let Some((&pick, payload)) = chunk.split_first() else { continue };
        let topic = TOPICS[usize::from(pick) % TOPICS.len()];
        let handled = host.handle(topic, payload, i as i64);
        assert!(handled.readings.iter().all(|r| r.value.is_none_or(f64::is_finite)), "non-finite reading");
        let _ = source.handle(topic, payload, i as i64);
    }
});
