//! The series registry: series keys and their dense ids, in `series.log`
//! (`<id>\t<asset>\t<signal>` lines, appended and fsync'd before any sample of a new
//! series is acknowledged).

use crate::SeriesId;
use crate::{Error, Result};
use model::SeriesKey;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

pub(crate) struct Registry {
    path: PathBuf,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    by_key: HashMap<SeriesKey, SeriesId>,
    /// Ordered keys, so that "every series of an asset" is a range scan.
    ordered: BTreeMap<SeriesKey, SeriesId>,
    keys: Vec<SeriesKey>,
    file: Option<File>,
}

impl Registry {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("series.log");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::Io(format!("reading {}: {e}", path.display()))),
        };
        let mut state = State::default();
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        for line in complete.lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(id), Some(asset), Some(signal)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(Error::Corrupt(format!("{}: bad line `{line}`", path.display())));
            };
            let id: SeriesId =
                id.parse().map_err(|_| Error::Corrupt(format!("{}: bad id in `{line}`", path.display())))?;
            if id as usize != state.keys.len() {
                return Err(Error::Corrupt(format!("{}: ids out of order at `{line}`", path.display())));
            }
            let key = SeriesKey::new(asset, signal);
            state.keys.push(key.clone());
            state.ordered.insert(key.clone(), id);
            state.by_key.insert(key, id);
        }
        if complete.len() != text.len() {
            // A torn last line: the series was never acknowledged. Cut it off.
            let file = OpenOptions::new().write(true).open(&path).map_err(|e| Error::Io(e.to_string()))?;
            file.set_len(complete.len() as u64).map_err(|e| Error::Io(e.to_string()))?;
        }
        Ok(Self { path, state: RwLock::new(state) })
    }

    pub fn get(&self, key: &SeriesKey) -> Option<SeriesId> {
        self.state.read().ok()?.by_key.get(key).copied()
    }

    pub fn key(&self, id: SeriesId) -> Option<SeriesKey> {
        self.state.read().ok()?.keys.get(id as usize).cloned()
    }

    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.keys.len()).unwrap_or(0)
    }

    /// Every series of one asset, by signal name.
    pub fn of_asset(&self, asset: &str) -> Vec<(SeriesKey, SeriesId)> {
        let Ok(state) = self.state.read() else { return Vec::new() };
        let start = SeriesKey::new(asset, "");
        state.ordered.range(start..).take_while(|(k, _)| k.asset == asset).map(|(k, id)| (k.clone(), *id)).collect()
    }

    /// Ids for `keys`, registering (durably) the ones not seen before.
    pub fn resolve(&self, keys: &[&SeriesKey]) -> Result<Vec<SeriesId>> {
        if let Ok(state) = self.state.read() {
            let known: Option<Vec<SeriesId>> = keys.iter().map(|k| state.by_key.get(*k).copied()).collect();
            if let Some(ids) = known {
                return Ok(ids);
            }
        }
        let mut state = self.state.write().map_err(|_| Error::Poisoned)?;
        let mut appended = String::new();
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(id) = state.by_key.get(*key) {
                ids.push(*id);
                continue;
            }
            if key.asset.contains(['\t', '\n']) || key.signal.contains(['\t', '\n']) {
                return Err(Error::Invalid(format!("series `{key}` contains a tab or newline")));
            }
            let id = SeriesId::try_from(state.keys.len()).map_err(|_| Error::Invalid("too many series".into()))?;
            appended.push_str(&format!("{id}\t{}\t{}\n", key.asset, key.signal));
            state.keys.push((*key).clone());
            state.ordered.insert((*key).clone(), id);
            state.by_key.insert((*key).clone(), id);
            ids.push(id);
        }
        if !appended.is_empty() {
            if state.file.is_none() {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| Error::Io(e.to_string()))?;
                state.file = Some(file);
            }
            if let Some(file) = state.file.as_mut() {
                file.write_all(appended.as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(|e| Error::Io(format!("writing {}: {e}", self.path.display())))?;
            }
        }
        Ok(ids)
    }
}
