//! Parsing and validating a fleet file into a resolved `Fleet`.
//!
//! The file is a set of arrays of tables, one per record kind (`[[customer]]`,
//! `[[asset_model]]`, `[[asset]]`...), whose fields are exactly the model's (and the
//! API's) field names. Components are declared inside their asset as
//! `[[asset.component]]`; every component of an asset's model exists anyway, so a
//! component entry is only needed to record a serial number or install date.
//!
//! Validation runs to the end and reports every problem: syntax, unknown sections and
//! keys, wrong types, duplicate ids, bad values, dangling references, components
//! outside their asset and rules that span records.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::locate::{dates_to_strings, field_span, line_col, remove_key_at};
use model::{Entity, Kind, Reference};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A validated fleet: every record the file declares (plus the components implied by
/// asset models), in dependency order (`Kind::ALL`) and by id within a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub entities: Vec<Entity>,
}

impl Fleet {
    pub fn count(&self, kind: Kind) -> usize {
        self.entities.iter().filter(|e| e.kind() == kind).count()
    }
}

/// One table of the file, kept with its spanned source for locating problems.
struct Item<'a> {
    kind: Kind,
    /// Where it is, as a field path: `asset[3]`, `asset[3].component[0]`.
    at: String,
    value: Spanned<DeValue<'a>>,
    entity: Option<Entity>,
}

struct Checker<'a> {
    file: &'a str,
    source: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn report(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.source, span.start);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    fn report_at(&mut self, item: &Item<'_>, field: &str, message: impl Into<String>) {
        let span = field_span(&item.value, field);
        let path = if field.is_empty() { item.at.clone() } else { format!("{}.{field}", item.at) };
        self.report(span, path, message);
    }

    /// Deserialises one table into a record. On an unknown key it reports it, removes
    /// it and tries again, so that every unknown key of the table is reported.
    fn decode(&mut self, kind: Kind, at: &str, value: &mut Spanned<DeValue<'_>>) -> Option<Entity> {
        for _ in 0..64 {
            let error = match Entity::deserialize_kind(kind, ValueDeserializer::from(value.clone())) {
                Ok(entity) => return Some(entity),
                Err(error) => error,
            };
            let span = error.span().unwrap_or_else(|| value.span());
            let message = error.message().trim().to_owned();
            let unknown = message.starts_with("unknown field");
            self.report(span.clone(), at, message);
            if !(unknown && remove_key_at(value, &span)) {
                return None;
            }
        }
        None
    }
}

/// Parses and validates fleet file `source`, named `file` in diagnostics.
pub fn parse_fleet(file: &str, source: &str) -> Result<Fleet, Diagnostics> {
    let mut checker = Checker { file, source, diagnostics: Vec::new() };
    let document = match DeTable::parse(source) {
        Ok(document) => document,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            checker.report(span, "", format!("TOML syntax: {}", error.message().trim()));
            return Err(Diagnostics(checker.diagnostics));
        }
    };
    let mut items = collect_items(&mut checker, document.into_inner());
    if items.is_empty() && checker.diagnostics.is_empty() {
        checker.report(0..0, "", "the file declares no records; importing it would delete the whole installed base");
    }
    check_duplicates(&mut checker, &items);
    let index: HashMap<(Kind, String), usize> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.entity.as_ref().map(|e| ((e.kind(), e.id().to_owned()), i)))
        .collect();
    add_implied_components(&mut items, &index);
    let index: HashMap<(Kind, String), &Entity> =
        items.iter().filter_map(|item| item.entity.as_ref().map(|e| ((e.kind(), e.id().to_owned()), e))).collect();
    // Records that failed to decode still declare their id: references to them are not
    // reported again as dangling.
    let broken: std::collections::HashSet<(Kind, String)> = items
        .iter()
        .filter(|item| item.entity.is_none())
        .filter_map(|item| {
            let id = item.value.get_ref().get("id")?.get_ref().as_str()?.to_owned();
            Some((item.kind, id))
        })
        .collect();
    for item in &items {
        let Some(entity) = &item.entity else { continue };
        for error in entity.validate() {
            checker.report_at(item, &error.field, error.message);
        }
        for reference in entity.references() {
            let key = (reference.kind, reference.id.clone());
            if !index.contains_key(&key) && !broken.contains(&key) {
                let message = dangling_message(&reference, &index);
                checker.report_at(item, &reference.field, message);
            }
        }
        let lookup = |kind: Kind, id: &str| index.get(&(kind, id.to_owned())).map(|e| (*e).clone());
        for error in entity.cross_check(&lookup) {
            checker.report_at(item, &error.field, error.message);
        }
    }
    if !checker.diagnostics.is_empty() {
        let mut diagnostics = checker.diagnostics;
        diagnostics.sort();
        diagnostics.dedup();
        return Err(Diagnostics(diagnostics));
    }
    let mut entities: Vec<Entity> = items.into_iter().filter_map(|item| item.entity).collect();
    let order = |kind: Kind| Kind::ALL.iter().position(|k| *k == kind).unwrap_or(usize::MAX);
    entities.sort_by(|a, b| (order(a.kind()), a.id()).cmp(&(order(b.kind()), b.id())));
    Ok(Fleet { entities })
}

fn collect_items<'a>(checker: &mut Checker<'_>, document: DeTable<'a>) -> Vec<Item<'a>> {
    let mut items = Vec::new();
    for (key, value) in document {
        let section = key.get_ref().as_ref();
        let kind = match Kind::parse(section) {
            Some(Kind::Component) => {
                checker.report(key.span(), section, "declare components inside their asset, as [[asset.component]]");
                continue;
            }
            Some(kind) => kind,
            None => {
                let known: Vec<&str> = Kind::ALL.iter().filter(|k| **k != Kind::Component).map(Kind::as_str).collect();
                checker.report(
                    key.span(),
                    section,
                    format!("unknown section `{section}`; expected one of {}", known.join(", ")),
                );
                continue;
            }
        };
        let span = value.span();
        let DeValue::Array(array) = value.into_inner() else {
            checker.report(span, section, format!("`{section}` must be an array of tables: write [[{section}]]"));
            continue;
        };
        for (i, mut value) in array.into_iter().enumerate() {
            let at = format!("{section}[{i}]");
            dates_to_strings(&mut value);
            let components = if kind == Kind::Asset { take_components(&mut value) } else { None };
            let entity = checker.decode(kind, &at, &mut value);
            if let (Some(components), Some(asset)) = (components, &entity) {
                collect_components(checker, &mut items, &at, asset.id(), components);
            }
            items.push(Item { kind, at, value, entity });
        }
    }
    items
}

fn take_components<'a>(asset: &mut Spanned<DeValue<'a>>) -> Option<Spanned<DeValue<'a>>> {
    match asset.get_mut() {
        DeValue::Table(table) => table.remove("component"),
        _ => None,
    }
}

/// Resolves `[[asset.component]]` entries: a relative id (`spindle`) is placed under the
/// asset; a full path must lie directly under it; `model_component` defaults to the id.
fn collect_components<'a>(
    checker: &mut Checker<'_>,
    items: &mut Vec<Item<'a>>,
    asset_at: &str,
    asset_id: &str,
    components: Spanned<DeValue<'a>>,
) {
    let span = components.span();
    let DeValue::Array(array) = components.into_inner() else {
        checker.report(span, format!("{asset_at}.component"), "write components as [[asset.component]] tables");
        return;
    };
    for (j, mut value) in array.into_iter().enumerate() {
        let at = format!("{asset_at}.component[{j}]");
        let Some(table) = value.get_mut().as_table_mut_opt() else {
            checker.report(value.span(), at, "a component must be a table");
            continue;
        };
        let Some(id_value) = table.get("id").map(|v| (v.get_ref().as_str().map(str::to_owned), v.span())) else {
            checker.report(
                value.span(),
                at,
                "missing field `id`: the component's id within its asset, e.g. \"spindle\"",
            );
            continue;
        };
        let (Some(id), id_span) = id_value else {
            checker.report(id_value.1, format!("{at}.id"), "the id must be a string");
            continue;
        };
        let full = if id.contains('/') {
            let inside = id.strip_prefix(asset_id).and_then(|rest| rest.strip_prefix('/'));
            match inside {
                Some(rest) if !rest.is_empty() && !rest.contains('/') => id.clone(),
                _ => {
                    checker.report(
                        id_span,
                        format!("{at}.id"),
                        format!("component path `{id}` is outside its asset `{asset_id}`; use `{asset_id}/<component>` or just `<component>`"),
                    );
                    continue;
                }
            }
        } else {
            format!("{asset_id}/{id}")
        };
        let last = full.rsplit('/').next().unwrap_or_default().to_owned();
        set_string(table, "id", full, id_span.clone());
        if !table.contains_key("model_component") {
            set_string(table, "model_component", last, id_span);
        }
        let entity = checker.decode(Kind::Component, &at, &mut value);
        items.push(Item { kind: Kind::Component, at, value, entity });
    }
}

trait AsTableMut<'a> {
    fn as_table_mut_opt(&mut self) -> Option<&mut DeTable<'a>>;
}

impl<'a> AsTableMut<'a> for DeValue<'a> {
    fn as_table_mut_opt(&mut self) -> Option<&mut DeTable<'a>> {
        match self {
            DeValue::Table(table) => Some(table),
            _ => None,
        }
    }
}

fn set_string<'a>(table: &mut DeTable<'a>, key: &'static str, value: String, span: Range<usize>) {
    table.remove(key);
    table
        .insert(Spanned::new(span.clone(), Cow::Borrowed(key)), Spanned::new(span, DeValue::String(Cow::Owned(value))));
}

fn check_duplicates(checker: &mut Checker<'_>, items: &[Item<'_>]) {
    let mut seen: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    for item in items {
        let Some(entity) = &item.entity else { continue };
        let line = line_col(checker.source, item.value.span().start).0;
        if let Some(first) = seen.insert((entity.kind(), entity.id()), line) {
            seen.insert((entity.kind(), entity.id()), first);
            let message =
                format!("duplicate {} id `{}`; it is already declared at line {first}", item.kind, entity.id());
            checker.report_at(item, "id", message);
        }
    }
}

/// Every asset has every component its model declares; entries in the file only add data.
fn add_implied_components(items: &mut Vec<Item<'_>>, index: &HashMap<(Kind, String), usize>) {
    let mut implied = Vec::new();
    for item in items.iter() {
        let Some(entity @ Entity::Asset(asset)) = &item.entity else { continue };
        // An asset whose id is already wrong would only repeat that error per component.
        if !entity.validate().is_empty() {
            continue;
        }
        let Some(Entity::AssetModel(model)) =
            index.get(&(Kind::AssetModel, asset.model.clone())).and_then(|i| items[*i].entity.as_ref())
        else {
            continue;
        };
        for def in &model.components {
            let id = format!("{}/{}", asset.id, def.id);
            if !index.contains_key(&(Kind::Component, id.clone())) {
                let component = model::Component { id, model_component: def.id.clone(), serial: None, installed: None };
                implied.push(Item {
                    kind: Kind::Component,
                    at: item.at.clone(),
                    value: item.value.clone(),
                    entity: Some(Entity::Component(component)),
                });
            }
        }
    }
    items.extend(implied);
}

fn dangling_message(reference: &Reference, index: &HashMap<(Kind, String), &Entity>) -> String {
    let mut message = format!("refers to {} `{}`, which is not declared in this file", reference.kind, reference.id);
    let closest = index
        .keys()
        .filter(|(kind, _)| *kind == reference.kind)
        .map(|(_, id)| (edit_distance(id, &reference.id), id))
        .min();
    if let Some((distance, id)) = closest
        && distance <= 3.max(reference.id.len() / 4)
    {
        message.push_str(&format!("; did you mean `{id}`?"));
    }
    message
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}
