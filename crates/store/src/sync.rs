//! Planning a fleet import: the exact difference between the records a fleet file
//! declares (the desired state) and what the store holds.

use crate::{Change, Stored};
use model::{Entity, Kind};
use std::collections::HashMap;

/// The changes that turn `current` into `desired`, with per-kind counts.
#[derive(Debug, Clone, Default)]
pub struct SyncPlan {
    /// Creates and updates in dependency order, then deletes in reverse order.
    pub changes: Vec<Change>,
    pub unchanged: usize,
}

impl SyncPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// (kind, created, updated, deleted) for every kind with a change.
    pub fn summary(&self) -> Vec<(Kind, usize, usize, usize)> {
        Kind::ALL
            .into_iter()
            .map(|kind| {
                let count = |f: fn(&Change) -> Option<Kind>| self.changes.iter().filter(|c| f(c) == Some(kind)).count();
                let created = count(|c| if let Change::Create(e) = c { Some(e.kind()) } else { None });
                let updated = count(|c| if let Change::Update { entity, .. } = c { Some(entity.kind()) } else { None });
                let deleted = count(|c| if let Change::Delete { kind, .. } = c { Some(*kind) } else { None });
                (kind, created, updated, deleted)
            })
            .filter(|(_, c, u, d)| c + u + d > 0)
            .collect()
    }
}

/// Compares by JSON, so field order and representation do not matter. Updates and
/// deletes carry the version that was read, so a concurrent change makes the import
/// fail instead of being overwritten.
pub fn plan_sync(desired: &[Entity], current: &[Stored]) -> SyncPlan {
    let existing: HashMap<(Kind, &str), &Stored> =
        current.iter().map(|s| ((s.entity.kind(), s.entity.id()), s)).collect();
    let mut plan = SyncPlan::default();
    let order = |kind: Kind| Kind::ALL.iter().position(|k| *k == kind).unwrap_or(usize::MAX);
    let mut desired: Vec<&Entity> = desired.iter().collect();
    desired.sort_by_key(|e| (order(e.kind()), e.id().to_owned()));
    for entity in &desired {
        match existing.get(&(entity.kind(), entity.id())) {
            None => plan.changes.push(Change::Create((*entity).clone())),
            Some(stored) if stored.entity.to_json() == entity.to_json() => plan.unchanged += 1,
            Some(stored) => {
                plan.changes.push(Change::Update { entity: (*entity).clone(), expected_version: Some(stored.version) })
            }
        }
    }
    let wanted: std::collections::HashSet<(Kind, &str)> = desired.iter().map(|e| (e.kind(), e.id())).collect();
    let mut gone: Vec<&Stored> =
        current.iter().filter(|s| !wanted.contains(&(s.entity.kind(), s.entity.id()))).collect();
    gone.sort_by_key(|s| (std::cmp::Reverse(order(s.entity.kind())), s.entity.id().to_owned()));
    for stored in gone {
        plan.changes.push(Change::Delete {
            kind: stored.entity.kind(),
            id: stored.entity.id().to_owned(),
            expected_version: Some(stored.version),
        });
    }
    plan
}
