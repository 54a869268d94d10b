//! API tests through the real router (`oneshot`), on a store seeded with the example fleet.

mod authz;
mod harness;
mod idempotency;
mod records;
mod telemetry;
mod tenancy;
