//! sigma-decrypt: streaming, verified Fernet decryption of files landed in Cloud Storage.

pub mod app;
pub mod config;
pub mod error;
pub mod fernet;
pub mod gzip;
pub mod idempotency;
pub mod keys;
pub mod openapi;
pub mod pipeline;
pub mod request;
pub mod source;
pub mod upload;
