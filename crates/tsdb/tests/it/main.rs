//! Telemetry engine tests through its public API, including crash recovery by SIGKILL
//! of a child process that writes.

mod crash;
mod engine;
mod rollups;
