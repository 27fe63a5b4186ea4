//! sigma-dataflow: launches the Dataflow Flex Template an upload's registry entry names,
//! after writing the self-contained job config it runs from, exactly once per upload; and
//! reports the job's state exactly.

pub mod config;
pub mod dataflow;
pub mod error;
pub mod labels;
pub mod launch;
pub mod live_registry;
pub mod naming;
pub mod plan;
pub mod records;
pub mod registry;
pub mod routes;
pub mod state;
pub mod template;
pub mod wire;

pub use launch::Launcher;
pub use routes::app;
