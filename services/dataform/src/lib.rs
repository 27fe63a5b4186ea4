//! sigma-dataform: given the table a file just loaded, run every Dataform action that
//! depends on it, directly or transitively, and nothing else.
//!
//! Neither Dataform's API nor its CLI selects a declaration's dependents, and an invocation
//! with no targets runs the whole project; so the graph is read here (from a compiled graph
//! file or from an API compilation), the closure computed here, and the invocation lists
//! exactly that closure.

pub mod api;
pub mod closure;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod graph;
pub mod idempotency;
pub mod invoke;
pub mod name;
pub mod openapi;
pub mod queue;
pub mod request;
pub mod routes;
pub mod schedule;
pub mod source;

pub use invoke::Invoker;
pub use routes::app;
