//! NASA C-MAPSS FD001 run-to-failure trajectories (`train_FD001.txt`), replayed by the
//! simulated turbofans: 100 engines, one row per flight cycle, each engine run until
//! its HPC degradation ends its life after the last recorded cycle.

use std::path::Path;

/// The values of a row, in file order after `unit` and `cycle`: three operating
/// settings and the 21 sensors, by the names the TF-27 asset model uses.
pub const COLUMNS: [&str; 24] = [
    "op_setting_1",
    "op_setting_2",
    "op_setting_3",
    "T2",
    "T24",
    "T30",
    "T50",
    "P2",
    "P15",
    "P30",
    "Nf",
    "Nc",
    "epr",
    "Ps30",
    "phi",
    "NRf",
    "NRc",
    "BPR",
    "farB",
    "htBleed",
    "Nf_dmd",
    "PCNfR_dmd",
    "W31",
    "W32",
];

/// One engine's life: row `i` is flight cycle `i + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub unit: u32,
    pub rows: Vec<Vec<f64>>,
}

/// Reads every engine of a C-MAPSS file (space-separated: unit, cycle, 3 settings,
/// 21 sensors). Errors name the file and line.
pub fn load(path: &Path) -> Result<Vec<Trajectory>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (turbofan assets replay NASA C-MAPSS FD001; pass --data-dir with the folder \
             holding cmapss/train_FD001.txt, e.g. ../shared/data)",
            path.display()
        )
    })?;
    parse(&text).map_err(|(line, what)| format!("{}:{line}: {what}", path.display()))
}

/// Parses the text of a C-MAPSS file; an error carries the line number.
pub fn parse(text: &str) -> Result<Vec<Trajectory>, (usize, String)> {
    let mut out: Vec<Trajectory> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<f64> = line
            .split_whitespace()
            .map(|f| f.parse::<f64>().map_err(|_| (i + 1, format!("`{f}` is not a number"))))
            .collect::<Result<_, _>>()?;
        if fields.len() != 2 + COLUMNS.len() {
            return Err((i + 1, format!("expected {} columns, found {}", 2 + COLUMNS.len(), fields.len())));
        }
        let (unit, cycle) = (fields[0] as u32, fields[1] as usize);
        match out.last_mut() {
            Some(t) if t.unit == unit => {
                if cycle != t.rows.len() + 1 {
                    return Err((i + 1, format!("engine {unit}: cycle {cycle} follows {}", t.rows.len())));
                }
                t.rows.push(fields[2..].to_vec());
            }
            _ => {
                if cycle != 1 {
                    return Err((i + 1, format!("engine {unit} starts at cycle {cycle}, not 1")));
                }
                out.push(Trajectory { unit, rows: vec![fields[2..].to_vec()] });
            }
        }
    }
    if out.is_empty() {
        return Err((0, "no rows".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_group_by_engine_and_bad_lines_are_named() {
        let row = |unit: u32, cycle: u32| {
            let mut fields = vec![unit.to_string(), cycle.to_string()];
            fields.extend((0..24).map(|k| format!("{}.5", k)));
            fields.join(" ")
        };
        let text = [row(1, 1), row(1, 2), row(2, 1)].join("\n");
        let engines = parse(&text).expect("parse");
        assert_eq!(engines.len(), 2);
        assert_eq!(engines[0].rows.len(), 2);
        assert_eq!(engines[1].rows[0][3], 3.5, "T2 is the fourth value");
        let error = parse(&[row(1, 1), row(1, 3)].join("\n")).expect_err("gap");
        assert_eq!(error.0, 2, "{error:?}");
        let error = parse("1 1 x").expect_err("garbage");
        assert!(error.1.contains("`x`"), "{error:?}");
    }
}
