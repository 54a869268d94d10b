//! The ingest service against a real store and engine: validation with the example
//! fleet, time checked against the hub's clock (virtual here), atomic batches, batch ids
//! scoped to their sender, and the catalogue following record changes on the bus.

use bus::{BusRef, InProcessBus};
use ingest::{Batch, BatchRef, Ingest};
use model::sample::{Sample, SeriesKey};
use model::{ManualClock, Timestamp};
use std::sync::Arc;
use store::{Change, RecordStoreRef, SqliteStore, WriteBatch};

const PUMP: &str = "acme/plant-1/line-1/p-101";
const NOW: i64 = 1_790_000_000_000;

struct Setup {
    ingest: Arc<Ingest>,
    store: RecordStoreRef,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: RecordStoreRef = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let fleet = config::load_fleet(std::path::Path::new(path)).unwrap_or_else(|d| panic!("{d}")).entities;
    let changes = fleet.into_iter().map(Change::Create).collect();
    store.apply(WriteBatch { actor: "test".into(), changes, idempotency: None }).await.expect("seed");
    let clock = ManualClock::new(Timestamp(NOW));
    let options = tsdb::TsdbOptions { clock: clock.clone(), ..Default::default() };
    let tsdb = tsdb::Tsdb::open(&dir.path().join("telemetry"), options).expect("engine");
    let ingest = Ingest::open(tsdb, store.clone(), clock.clone(), 60_000).await.expect("ingest");
    Setup { ingest, store, clock, _dir: dir }
}

fn batch(sender: &str, id: Option<(&str, u8)>, series: Vec<(SeriesKey, Vec<Sample>)>) -> Batch {
    let id = id.map(|(id, d)| BatchRef { id: id.into(), digest: [d; 32] });
    Batch { sender: sender.into(), id, historical: false, series, atomic: false }
}

#[tokio::test]
async fn time_is_checked_against_the_hubs_clock() {
    let s = setup().await;
    let ahead = vec![(SeriesKey::new(PUMP, "flow"), vec![Sample::good(NOW + 90_000, 5.0)])];
    let report = s.ingest.ingest(batch("gw", None, ahead.clone())).await.expect("ingest");
    assert_eq!(report.rejected[0].reason.code(), "timestamp_in_future");
    assert!(report.written.is_none());
    // Half a minute later on the hub's clock, the same sample is within the tolerance.
    s.clock.advance(30_000);
    let report = s.ingest.ingest(batch("gw", None, ahead)).await.expect("ingest");
    assert_eq!(report.written.map(|w| w.stored), Some(1));
}

#[tokio::test]
async fn atomic_batches_write_all_or_nothing() {
    let s = setup().await;
    let series = vec![
        (SeriesKey::new(PUMP, "flow"), vec![Sample::good(NOW - 1000, 5.0)]),
        (SeriesKey::new(PUMP, "no_such_signal"), vec![Sample::good(NOW - 1000, 1.0)]),
    ];
    let mut atomic = batch("gw", None, series.clone());
    atomic.atomic = true;
    let report = s.ingest.ingest(atomic).await.expect("ingest");
    assert_eq!((report.written, report.rejected.len()), (None, 1));
    let stored = s.ingest.tsdb().range(&SeriesKey::new(PUMP, "flow"), 0, i64::MAX).expect("range");
    assert!(stored.is_empty(), "nothing of an atomic batch with a rejection");
    let report = s.ingest.ingest(batch("gw", None, series)).await.expect("ingest");
    assert_eq!((report.written.map(|w| w.stored), report.rejected.len()), (Some(1), 1));
}

#[tokio::test]
async fn batch_ids_are_the_senders_and_a_changed_batch_is_refused() {
    let s = setup().await;
    let one = vec![(SeriesKey::new(PUMP, "flow"), vec![Sample::good(NOW - 1000, 5.0)])];
    let two = vec![(SeriesKey::new(PUMP, "flow"), vec![Sample::good(NOW - 2000, 6.0)])];
    let first = s.ingest.ingest(batch("gw-a", Some(("7", 1)), one.clone())).await.expect("ingest");
    assert_eq!(first.written.map(|w| (w.stored, w.replayed_batch)), Some((1, false)));
    let other_sender = s.ingest.ingest(batch("gw-b", Some(("7", 2)), two.clone())).await.expect("ingest");
    assert_eq!(other_sender.written.map(|w| (w.stored, w.replayed_batch)), Some((1, false)));
    let retry = s.ingest.ingest(batch("gw-a", Some(("7", 1)), one)).await.expect("ingest");
    assert_eq!(retry.written.map(|w| (w.stored, w.replayed_batch)), Some((1, true)));
    let changed = s.ingest.ingest(batch("gw-a", Some(("7", 3)), two)).await;
    assert!(matches!(changed, Err(ingest::Error::BatchConflict { .. })), "{changed:?}");
}

#[tokio::test]
async fn the_catalogue_reloads_when_the_bus_says_an_asset_model_changed() {
    let s = setup().await;
    let bus: BusRef = Arc::new(InProcessBus::new());
    let changes = bus.subscribe(ingest::CATALOG_SUBJECTS).await.expect("subscribe");
    let watcher = tokio::spawn(s.ingest.clone().watch_records(changes));
    let loads = s.ingest.catalog_loads();
    // Changes that do not touch the catalogue cost nothing.
    bus.publish("records.site.update", "audit-1", Vec::new()).await.expect("publish");
    // A new signal in the pump's model, written straight to the store, then announced.
    let mut model =
        s.store.get(&model::Scope::All, model::Kind::AssetModel, "cp200").await.expect("get").expect("model");
    let model::Entity::AssetModel(m) = &mut model.entity else { panic!("not a model") };
    let mut extra = m.signals[0].clone();
    extra.name = "seal_leak_rate".into();
    m.signals.push(extra);
    let update = Change::Update { entity: model.entity.clone(), expected_version: Some(model.version) };
    s.store.apply(WriteBatch { actor: "test".into(), changes: vec![update], idempotency: None }).await.expect("update");
    let key = SeriesKey::new(PUMP, "seal_leak_rate");
    assert!(s.ingest.catalog().spec(&key).is_err(), "not yet known");
    bus.publish("records.asset_model.update", "audit-2", Vec::new()).await.expect("publish");
    while s.ingest.catalog_loads() == loads {
        tokio::task::yield_now().await;
    }
    assert_eq!(s.ingest.catalog_loads(), loads + 1, "one reload, for the model change only");
    assert!(s.ingest.catalog().spec(&key).is_ok(), "the new signal is known");
    drop(bus);
    watcher.await.expect("the watcher ends with the bus");
}
