//! The crate's integration tests in one binary: each `tests/*.rs` would be its own
//! binary, linked and optimised on its own, which made test builds most of CI's time.
//! Tests that change process-wide environment variables stay in their own binaries.

mod closures;
mod coalescing;
#[path = "../common/mod.rs"]
mod common;
mod faults;
mod graph_loading;
mod http_api;
mod http_file;
