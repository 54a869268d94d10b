//! Helpers over toml's spanned document tree: byte offsets to line:column, dotted field
//! paths to spans, removing a key found by its span, and turning TOML dates into strings.

use std::borrow::Cow;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// 1-based line and column of a byte offset (columns count characters).
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The span of `field` (e.g. `signal[2].expected_max`) inside `value`, or of the deepest
/// part of it that exists (a missing optional field points at its table).
pub(crate) fn field_span(value: &Spanned<DeValue<'_>>, field: &str) -> Range<usize> {
    let mut current = value;
    let mut span = value.span();
    for segment in field.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = split_indexes(segment);
        let Some(next) = current.get_ref().as_table().and_then(|t| t.get(name)) else { return span };
        current = next;
        span = current.span();
        for index in indexes {
            let Some(next) = current.get_ref().as_array().and_then(|a| a.get(index)) else { return span };
            current = next;
            span = current.span();
        }
    }
    span
}

/// `bom[0][1]` -> (`bom`, [0, 1]).
fn split_indexes(segment: &str) -> (&str, Vec<usize>) {
    let name_end = segment.find('[').unwrap_or(segment.len());
    let indexes =
        segment[name_end..].split(['[', ']']).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect();
    (&segment[..name_end], indexes)
}

/// Removes, anywhere under `value`, the table key whose *key* span is `span`. Returns
/// whether a key was removed. (An error spanning a whole value, as serde reports for
/// internally tagged enums, removes nothing: removing the value would invent a
/// "missing field" error.)
pub(crate) fn remove_key_at(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    match value.get_mut() {
        DeValue::Table(table) => remove_in_table(table, span),
        DeValue::Array(array) => array.iter_mut().any(|item| remove_key_at(item, span)),
        _ => false,
    }
}

fn remove_in_table(table: &mut DeTable<'_>, span: &Range<usize>) -> bool {
    let hit = table.iter().find(|(k, _)| &k.span() == span).map(|(k, _)| k.get_ref().clone());
    if let Some(key) = hit {
        table.remove(key.as_ref());
        return true;
    }
    table.iter_mut().any(|(_, v)| remove_key_at(v, span))
}

/// Replaces every TOML date/datetime with its text, so that model types (which take
/// `"2026-01-31"` strings, as JSON does) accept bare TOML dates.
pub(crate) fn dates_to_strings(value: &mut Spanned<DeValue<'_>>) {
    match value.get_mut() {
        DeValue::Datetime(dt) => {
            let text = dt.to_string();
            *value.get_mut() = DeValue::String(Cow::Owned(text));
        }
        DeValue::Table(table) => table.iter_mut().for_each(|(_, v)| dates_to_strings(v)),
        DeValue::Array(array) => array.iter_mut().for_each(dates_to_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 3));
    }

    #[test]
    fn index_segments() {
        assert_eq!(split_indexes("bom[0][12]"), ("bom", vec![0, 12]));
        assert_eq!(split_indexes("name"), ("name", vec![]));
    }
}
