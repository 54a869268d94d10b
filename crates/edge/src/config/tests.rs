//! The edge file check's tests: a good file resolved, and every kind of problem reported
//! at its line (section by section, in file order).

use super::*;
use crate::filter::Threshold;
use crate::modbus::DataType;
use model::Entity;

fn fleet() -> Vec<Entity> {
    let source = r#"
[[customer]]
id = "acme"
name = "Acme"
[[site]]
id = "acme/p"
name = "P"
[[line]]
id = "acme/p/l"
name = "L"
[[asset_model]]
id = "pump"
name = "Pump"
category = "centrifugal_pump"
[[asset_model.signal]]
name = "temperature"
unit = "degC"
physical_min = -20.0
physical_max = 150.0
[[asset_model.signal]]
name = "running"
kind = "boolean"
[[asset]]
id = "acme/p/l/p-1"
name = "P-1"
model = "pump"
"#;
    config::parse_fleet("fleet.toml", source).unwrap_or_else(|d| panic!("{d}")).entities
}

const GOOD: &str = r#"[gateway]
id = "gw-1"
hub = "http://127.0.0.1:8080"
spool_dir = "spool"

[[modbus]]
name = "plc"
address = "127.0.0.1:5020"

[[modbus.poll]]
interval_ms = 1000

[[modbus.poll.tag]]
asset = "acme/p/l/p-1"
signal = "temperature"
table = "holding"
address = 0
data_type = "i16"
scale = 0.1
unit = "degC"
filter = { kind = "swinging_door", threshold = "1%" }

[[modbus.poll.tag]]
asset = "acme/p/l/p-1"
signal = "running"
table = "coil"
address = 0
"#;

#[test]
fn a_good_file_passes() {
    let edge = check("edge.toml", GOOD, &fleet()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(edge.modbus[0].polls[0].tags.len(), 2);
    assert_eq!(edge.modbus[0].polls[0].tags[1].get_ref().tag().data_type, DataType::Bool);
    // 1% of the model's physical span (-20..150 degC) is 1.7 degC.
    let FilterSpec::SwingingDoor { threshold: Threshold::Absolute(t), .. } =
        edge.modbus[0].polls[0].tags[0].get_ref().filter
    else {
        panic!("threshold not resolved")
    };
    assert!((t - 1.7).abs() < 1e-9, "{t}");
}

#[test]
fn interlocks_need_field_writes_an_allow_list_and_a_value_in_range() {
    let rule = "\n[[interlock]]\nname = \"stop on overheat\"\nasset = \"acme/p/l/p-1\"\nsignal = \"temperature\"\nabove = 90.0\ndevice = \"plc\"\ntable = \"coil\"\naddress = 5\nvalue = 1\n";
    let off = format!("{GOOD}{rule}");
    let found = check("edge.toml", &off, &fleet()).expect_err("writes are off").0;
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|t| t.contains("field writes are off")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("coil 5 of `plc` is not allow-listed")), "{text:?}");
    let allowed = off.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nfield_writes = true").replace(
        "address = \"127.0.0.1:5020\"",
        "address = \"127.0.0.1:5020\"\n\n[[modbus.writable]]\ntable = \"coil\"\naddress = 5\nmin = 0\nmax = 1",
    );
    let edge = check("edge.toml", &allowed, &fleet()).unwrap_or_else(|d| panic!("{d}"));
    assert!(edge.interlocks[0].get_ref().tripped(91.0) && !edge.interlocks[0].get_ref().tripped(90.0));
    let too_big = allowed.replace("value = 1\n", "value = 7\n");
    let found = check("edge.toml", &too_big, &fleet()).expect_err("out of range").0;
    assert!(found[0].message.contains("outside the allowed range [0, 1]"), "{}", found[0]);
}

const MQTT: &str = r#"
[[mqtt]]
name = "sensors"
broker = "mqtt://127.0.0.1:1883"

[[mqtt.json]]
topic = "acme/+/p-1"
asset = "acme/p/l/p-1"
timestamp = "/ts"

[[mqtt.json.tag]]
pointer = "/temp"
signal = "temperature"
unit = "degC"
filter = { kind = "deadband", threshold = "10%" }

[[mqtt.sparkplug]]
group = "plant"
node = "edge-1"
device = "p-1"
asset = "acme/p/l/p-1"

[[mqtt.sparkplug.tag]]
metric = "Running"
signal = "running"
"#;

#[test]
fn opcua_servers_are_checked() {
    let server = r#"
[[opcua]]
name = "plc"
endpoint = "opc.tcp://127.0.0.1:4840"
security_mode = "none"
security_policy = "None"
allow_insecure = true

[[opcua.node]]
node_id = "ns=2;s=Pump.Temperature"
asset = "acme/p/l/p-1"
signal = "temperature"
deadband = 0.5

[[opcua.node]]
browse_path = "2:Pump/2:Running"
asset = "acme/p/l/p-1"
signal = "running"
"#;
    let good = format!("{GOOD}{server}");
    let edge = check("edge.toml", &good, &fleet()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(edge.opcua[0].get_ref().nodes.len(), 2);
    assert!(edge.summary().contains("1 OPC UA server(s) with 2 node(s)"), "{}", edge.summary());
    let bad = good
        .replace("allow_insecure = true\n", "")
        .replace("node_id = \"ns=2;s=Pump.Temperature\"", "node_id = \"Pump.Temperature\"")
        .replace("browse_path = \"2:Pump/2:Running\"", "browse_path = \"x:Pump\"\nnode_id = \"i=85\"");
    let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 3, "{text:?}");
    assert!(text[0].contains("edge.toml:32:") && text[0].contains("set `allow_insecure = true`"), "{text:?}");
    assert!(text[1].contains("edge.toml:36:") && text[1].contains("is not a node id"), "{text:?}");
    assert!(
        text[2].contains("edge.toml:41:") && text[2].contains("exactly one of `node_id` or `browse_path`"),
        "{text:?}"
    );
    let encrypted = good
        .replace("security_mode = \"none\"\nsecurity_policy = \"None\"\nallow_insecure = true\n", "")
        .replace("name = \"plc\"\nendpoint", "name = \"plc\"\nsecurity_policy = \"Basic128\"\nendpoint");
    let found = check("edge.toml", &encrypted, &fleet()).expect_err("unknown policy").0;
    assert!(found[0].message.contains("unknown security policy `Basic128`"), "{}", found[0]);
    assert_eq!(browse_path("/2:Pump/Motor"), Some(vec![(2, "Pump".into()), (0, "Motor".into())]));
    assert_eq!(browse_path("2:"), None);
}

#[test]
fn mqtt_sources_are_checked_like_tags() {
    let good = format!("{GOOD}{MQTT}");
    let edge = check("edge.toml", &good, &fleet()).unwrap_or_else(|d| panic!("{d}"));
    let json = edge.mqtt[0].get_ref().json[0].get_ref();
    let FilterSpec::Deadband { threshold: Threshold::Absolute(t), .. } = json.tags[0].get_ref().filter else {
        panic!("threshold not resolved")
    };
    assert!((t - 17.0).abs() < 1e-9, "{t}");
    let bad = good
        .replace("mqtt://127.0.0.1:1883\"", "mqtts://127.0.0.1\"\nclient_cert = \"client.pem\"")
        .replace("acme/+/p-1", "acme/#/p-1")
        .replace("pointer = \"/temp\"", "pointer = \"temp\"")
        .replace("metric = \"Running\"\nsignal = \"running\"", "metric = \"Running\"\nsignal = \"runing\"")
        .replace("device = \"p-1\"", "device = \"p/1\"");
    let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 5, "{text:?}");
    assert!(text[0].contains("edge.toml:32:") && text[0].contains("both `client_cert` and `client_key`"), "{text:?}");
    assert!(text[1].contains("edge.toml:35:") && text[1].contains("not an MQTT topic filter"), "{text:?}");
    assert!(text[2].contains("edge.toml:40:") && text[2].contains("`temp` is not a JSON pointer"), "{text:?}");
    assert!(text[3].contains("edge.toml:48:") && text[3].contains("`p/1` is not a Sparkplug id"), "{text:?}");
    assert!(text[4].contains("edge.toml:53:") && text[4].contains("`runing` is not a signal"), "{text:?}");
    assert_eq!(
        hub_url("https://hub.example.com/"),
        Some(HubUrl { address: "hub.example.com:443".into(), host: "hub.example.com".into(), tls: true })
    );
    assert_eq!(hub_url("http://127.0.0.1:8080").map(|h| h.address), Some("127.0.0.1:8080".into()));
    assert_eq!(hub_url("ftp://x"), None);
    let public_health = GOOD.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nhealth = \"0.0.0.0:9181\"");
    let found = check("edge.toml", &public_health, &fleet()).expect_err("health on all interfaces").0;
    assert!(found[0].message.contains("not a loopback address"), "{}", found[0]);
    let local_health = GOOD.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nhealth = \"127.0.0.1:9181\"");
    assert!(check("edge.toml", &local_health, &fleet()).is_ok());
    let plain_with_ca = GOOD.replace("spool_dir = \"spool\"", "spool_dir = \"spool\"\nhub_ca_file = \"ca.pem\"");
    let found = check("edge.toml", &plain_with_ca, &fleet()).expect_err("ca on http").0;
    assert!(
        found[0].to_string().starts_with("edge.toml:5:") && found[0].message.contains("use https://"),
        "{}",
        found[0]
    );
    assert_eq!(broker_address("mqtt://broker.local"), Some(("broker.local".into(), 1883, false)));
    assert_eq!(broker_address("mqtts://10.0.0.1:8884/"), Some(("10.0.0.1".into(), 8884, true)));
    assert_eq!(broker_address("tcp://x:1"), None);
}

#[test]
fn a_sparkplug_uplink_is_checked() {
    let good = format!(
        "{GOOD}\n[uplink]\nbroker = \"mqtt://127.0.0.1:1883\"\ngroup = \"plant-1\"\nprimary_host = \"treaty-hub\"\n"
    );
    let edge = check("edge.toml", &good, &fleet()).unwrap_or_else(|d| panic!("{d}"));
    let uplink = edge.uplink.as_ref().expect("uplink").get_ref();
    assert_eq!(uplink.node_id(&edge.gateway), edge.gateway.id, "the node id defaults to the gateway id");
    let bad = good
        .replace("group = \"plant-1\"", "group = \"plant/1\"\npassword_env = \"PW\"")
        .replace("mqtt://127.0.0.1:1883\"\ngroup", "tcp://127.0.0.1\"\ngroup");
    let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 3, "{text:?}");
    assert!(text.iter().any(|t| t.contains("uplink.broker") && t.contains("not mqtt://")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("uplink.username") && t.contains("needs a `username`")), "{text:?}");
    assert!(
        text.iter().any(|t| t.contains("uplink.group") && t.contains("`plant/1` is not a Sparkplug id")),
        "{text:?}"
    );
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let bad = GOOD
        .replace("signal = \"temperature\"", "signal = \"temprature\"")
        .replace("signal = \"running\"", "signal = \"running\"\nunit = \"rpm\"")
        .replace("table = \"coil\"\naddress = 0", "table = \"holding\"\naddress = 0");
    let found = check("edge.toml", &bad, &fleet()).expect_err("problems").0;
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{text:?}");
    assert!(text[0].contains("edge.toml:15:") && text[0].contains("`temprature` is not a signal"), "{text:?}");
    assert!(text[1].contains("edge.toml:26:") && text[1].contains("unit `rpm`"), "{text:?}");
    let overlap = GOOD.replace("signal = \"running\"\ntable = \"coil\"", "signal = \"running\"\ntable = \"holding\"");
    let found = check("edge.toml", &overlap, &fleet()).expect_err("overlap").0;
    assert!(found[0].message.contains("register 0 is already read by modbus[0].poll[0].tag[0]"), "{}", found[0]);
    let syntax = check("edge.toml", "[gateway]\nid = 1\n", &fleet()).expect_err("syntax").0;
    assert_eq!(syntax[0].line, 2, "{}", syntax[0]);
    let unknown = GOOD.replace("[[modbus]]\nname", "[[modbus]]\ncolour = \"red\"\nname");
    let found = check("edge.toml", &unknown, &fleet()).expect_err("unknown key").0;
    assert!(found[0].message.contains("colour"), "{}", found[0]);
    let no_span = GOOD.replace(
        "signal = \"running\"\ntable = \"coil\"\naddress = 0",
        "signal = \"running\"\ntable = \"coil\"\naddress = 0\nfilter = { kind = \"deadband\", threshold = \"5%\" }",
    );
    let found = check("edge.toml", &no_span, &fleet()).expect_err("no span").0;
    assert!(found.iter().any(|d| d.message.contains("span")), "{found:?}");
}
