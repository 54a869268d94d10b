//! Store integration tests: one conformance suite (`conformance.rs`) run against every
//! `RecordStore` implementation, plus implementation-specific checks.

mod conformance;
mod fixtures;
mod sqlite;
