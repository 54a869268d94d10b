//! The bus conformance suite: what every `Bus` implementation must do, written once.
//! The in-process bus runs it here; the NATS JetStream implementation will run the same
//! functions against a real server.

use bus::{Bus, BusRef, InProcessBus};
use std::sync::Arc;

/// Runs every conformance check against a fresh bus from `make`.
async fn conformance(make: impl Fn() -> BusRef) {
    subscribers_see_matching_subjects_in_order(make()).await;
    republished_ids_are_delivered_once(make()).await;
    bad_subjects_and_filters_are_refused(make()).await;
    a_slow_subscriber_is_waited_for_not_dropped(make()).await;
}

async fn subscribers_see_matching_subjects_in_order(bus: BusRef) {
    let mut assets = bus.subscribe("records.asset.*").await.expect("subscribe");
    let mut all = bus.subscribe("records.>").await.expect("subscribe");
    for (i, subject) in ["records.asset.update", "records.site.create", "records.asset.delete"].iter().enumerate() {
        bus.publish(subject, &format!("audit-{i}"), format!("{{\"n\":{i}}}").into_bytes()).await.expect("publish");
    }
    let first = assets.next().await.expect("event");
    let second = assets.next().await.expect("event");
    assert_eq!((first.subject.as_str(), second.subject.as_str()), ("records.asset.update", "records.asset.delete"));
    assert!(first.sequence < second.sequence);
    assert!(assets.try_next().is_none());
    let ids: Vec<String> = (0..3).map(|_| all.try_next().expect("event").id).collect();
    assert_eq!(ids, ["audit-0", "audit-1", "audit-2"]);
}

async fn republished_ids_are_delivered_once(bus: BusRef) {
    let mut events = bus.subscribe("a.>").await.expect("subscribe");
    let first = bus.publish("a.b", "event-1", b"x".to_vec()).await.expect("publish");
    let again = bus.publish("a.b", "event-1", b"x".to_vec()).await.expect("publish again");
    assert_eq!(first, again, "the same event");
    bus.publish("a.b", "event-2", b"y".to_vec()).await.expect("publish");
    assert_eq!(events.next().await.expect("event").id, "event-1");
    assert_eq!(events.next().await.expect("event").id, "event-2");
    assert!(events.try_next().is_none());
}

async fn bad_subjects_and_filters_are_refused(bus: BusRef) {
    assert!(bus.publish("a..b", "x", Vec::new()).await.is_err());
    assert!(bus.publish("a.*", "x", Vec::new()).await.is_err());
    assert!(bus.subscribe("a.>.b").await.is_err());
}

async fn a_slow_subscriber_is_waited_for_not_dropped(bus: BusRef) {
    let mut slow = bus.subscribe("load").await.expect("subscribe");
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..10_000 {
                bus.publish("load", &format!("load-{i}"), Vec::new()).await.expect("publish");
            }
        })
    };
    for i in 0..10_000 {
        assert_eq!(slow.next().await.expect("event").id, format!("load-{i}"), "nothing skipped");
    }
    publisher.await.expect("publisher");
}

#[tokio::test]
async fn the_in_process_bus_conforms() {
    conformance(|| Arc::new(InProcessBus::new())).await;
}

#[tokio::test]
async fn closing_the_in_process_bus_ends_subscriptions() {
    let bus = InProcessBus::new();
    let mut events = bus.subscribe("x").await.expect("subscribe");
    bus.close();
    assert!(events.next().await.is_none());
    assert!(bus.publish("x", "1", Vec::new()).await.is_err());
}
