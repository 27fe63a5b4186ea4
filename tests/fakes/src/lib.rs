//! Local stand-ins for the Google services sigma talks to, for tests and `make demo`.
//!
//! Cloud Storage is the real emulator (fake-gcs-server), started here on its own loopback
//! address. The APIs with no emulator are fakes that speak Google's wire format and refuse
//! what Google would refuse, so the production clients run unchanged against them.

pub mod dataflow;
pub mod dataform;
pub mod faults;
pub mod gcs;
pub mod metadata;
pub mod pubsub;
pub mod secretmanager;
