//! Fleet definition as code: a TOML file that declares the whole installed base
//! (customers, sites, lines, assets and their components, asset models, parts,
//! warehouses, technicians, contracts, users).
//!
//! `parse_fleet` reads the file and validates it completely, returning either the
//! resolved `Fleet` (plain model records, nothing TOML-specific) or every problem found,
//! each with file:line:column and the field. Nothing here touches the store: applying a
//! fleet is the importer's job.

mod diagnostic;
mod fleet;
mod locate;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use fleet::{Fleet, parse_fleet};
pub use locate::line_col;

/// Reads and validates a fleet file from disk.
pub fn load_fleet(path: &std::path::Path) -> Result<Fleet, Diagnostics> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(source) => parse_fleet(&name, &source),
        Err(e) => Err(Diagnostics(vec![Diagnostic {
            file: name,
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        }])),
    }
}
