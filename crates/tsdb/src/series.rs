//! The series registry: series keys and their dense ids, in `series.log`
//! (`<id>\t<asset>\t<signal>` lines, appended and fsync'd before any sample of a new
//! series is acknowledged).

use crate::SeriesId;
use crate::{Error, Result};
use model::SeriesKey;
use std::collections::BTreeMap;
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
    /// FxHash: looked up for every series of every write.
    by_key: model::fast_hash::FxHashMap<SeriesKey, SeriesId>,
    /// Ordered keys, so that "every series of an asset" is a range scan.
    ordered: BTreeMap<SeriesKey, SeriesId>,
    keys: Vec<SeriesKey>,
    file: Option<File>,
    /// A failed append could not be cut off again: nothing more is appended.
    broken: Option<String>,
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
        let mut new: Vec<(SeriesKey, SeriesId)> = Vec::new();
        for key in keys {
            if let Some(id) = state.by_key.get(*key).or_else(|| new.iter().find(|(k, _)| k == *key).map(|(_, id)| id)) {
                ids.push(*id);
                continue;
            }
            if key.asset.contains(['\t', '\n']) || key.signal.contains(['\t', '\n']) {
                return Err(Error::Invalid(format!("series `{key}` contains a tab or newline")));
            }
            let id = SeriesId::try_from(state.keys.len() + new.len())
                .map_err(|_| Error::Invalid("too many series".into()))?;
            appended.push_str(&format!("{id}\t{}\t{}\n", key.asset, key.signal));
            new.push(((*key).clone(), id));
            ids.push(id);
        }
        if new.is_empty() {
            return Ok(ids);
        }
        self.append(&mut state, appended.as_bytes())?;
        // Known only once durable: a failed append leaves no id behind that a later
        // write could use without its line in the file.
        for (key, id) in new {
            state.keys.push(key.clone());
            state.ordered.insert(key.clone(), id);
            state.by_key.insert(key, id);
        }
        Ok(ids)
    }

    /// Appends lines and syncs them; on failure cuts the file back to where it was, so
    /// that no later line lands behind a torn one.
    fn append(&self, state: &mut State, lines: &[u8]) -> Result<()> {
        if let Some(broken) = &state.broken {
            return Err(Error::Io(format!("the series registry failed earlier ({broken}); restart the hub")));
        }
        if state.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| crate::wal::io_error("opening", &self.path, &e))?;
            state.file = Some(file);
        }
        let Some(file) = state.file.as_mut() else { return Err(Error::Poisoned) };
        let before = file.metadata().map_err(|e| crate::wal::io_error("reading the size of", &self.path, &e))?.len();
        if let Err(error) = file.write_all(lines).and_then(|()| file.sync_data()) {
            if let Err(cut) = file.set_len(before).and_then(|()| file.sync_all()) {
                tracing::error!(path = %self.path.display(), error = %cut, "cannot cut a failed append off the series registry");
                state.broken = Some(cut.to_string());
            }
            return Err(crate::wal::io_error("writing", &self.path, &error));
        }
        Ok(())
    }
}
