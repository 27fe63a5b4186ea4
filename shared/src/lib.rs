//! What every sigma service shares.
//!
//! Each service is a thin layer of HTTP handlers over a core that speaks in domain types;
//! this crate holds the pieces that would otherwise be copied between them: the one JSON
//! error shape and its HTTP mapping, the parsed names of Cloud Storage objects, the server
//! (port, health check, graceful shutdown, one log line per request with trace correlation),
//! Cloud Storage access through the official client, and the classification of Google API
//! failures into "the caller's fault" and "try again".

pub mod attempt;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod google;
pub mod object;
pub mod openapi;
pub mod record;
pub mod redact;
pub mod server;
pub mod storage;
pub mod telemetry;

pub use attempt::{Attempt, Rerun};
pub use error::{ApiError, HttpError};
pub use object::{BucketName, Generation, GsUri, ObjectName, ObjectRef};
