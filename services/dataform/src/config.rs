//! Configuration from the environment, checked at start-up.
//!
//! | Variable | Meaning |
//! |---|---|
//! | `DATAFORM_COMPILED_GRAPH` | `dataform compile --json` output, a local path or `gs://bucket/object` (offline source) |
//! | `DATAFORM_REPOSITORY` | `projects/P/locations/L/repositories/R` (API source; excludes the above) |
//! | `DATAFORM_RELEASE_CONFIG` / `DATAFORM_GIT_COMMITISH` / `DATAFORM_WORKSPACE` | exactly one with the repository: what to compile (a release config or workspace id or full name) |
//! | `DATAFORM_ENDPOINT` | overrides `https://dataform.googleapis.com`; an `http://` endpoint uses anonymous credentials (fakes) |
//! | `DATAFORM_SERVICE_ACCOUNT` | optional `invocationConfig.serviceAccount` |
//! | `DATAFORM_GRAPH_TTL_SECONDS` | how long a compilation (or graph file) is reused, default 300 |
//! | `DATAFORM_GRAPH_STALE_SECONDS` | how long past its TTL the last good graph still serves while refreshes fail, default 1800 |
//! | `DATAFORM_GRAPH_RETRY_SECONDS` | the first wait after a failed load before the next one, doubling up to 60 s; default 1 |
//! | `DATAFORM_STATE_BUCKET` | bucket for idempotency records and the schedule; without it they live in the instance's memory (coalescing is then per instance) |
//! | `DATAFORM_SETTLE_SECONDS` | how long a load with nothing running in its way waits for siblings before its batch starts, default 30, at most 3600 |
//! | `DATAFORM_LEDGER_CAPACITY` | most keys the in-memory records keep (least recently written go first), default 10000 |

use std::path::PathBuf;
use std::time::Duration;

use sigma_shared::config::{self, ConfigError};
use sigma_shared::{BucketName, GsUri, ObjectRef};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileFrom {
    ReleaseConfig(String),
    GitCommitish(String),
    Workspace(String),
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub repository: String,
    pub compile_from: CompileFrom,
    pub endpoint: Option<String>,
    pub service_account: Option<String>,
}

#[derive(Debug, Clone)]
pub enum GraphOrigin {
    File(PathBuf),
    Gcs(ObjectRef),
    Api(ApiSettings),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub origin: GraphOrigin,
    pub ttl: Duration,
    /// How long past `ttl` the last good graph may serve while loading a new one fails.
    pub stale: Duration,
    /// The first wait after a failed load; each further failure doubles it, up to a minute.
    pub retry: Duration,
    pub state_bucket: Option<BucketName>,
    /// The most keys the in-memory ledger keeps (used without `state_bucket`).
    pub ledger_capacity: usize,
    /// How long a load waits for siblings before its batch may start.
    pub settle: Duration,
}

const DEFAULT_TTL_SECONDS: u64 = 300;
const DEFAULT_STALE_SECONDS: u64 = 1800;
const DEFAULT_RETRY_SECONDS: u64 = 1;
const DEFAULT_LEDGER_CAPACITY: usize = 10_000;
/// A nightly extract's files land within a minute, and their Dataflow jobs end within
/// seconds to a minute of each other: 30 s lets most of them share one invocation (see the
/// README's coalescing simulation) for a delay small next to a Dataflow job's minutes.
const DEFAULT_SETTLE_SECONDS: u64 = 30;
const MAX_SETTLE_SECONDS: u64 = 3600;

impl Config {
    /// The defaults around `origin`; tests and examples change what they need.
    pub fn new(origin: GraphOrigin) -> Self {
        Self {
            origin,
            ttl: Duration::from_secs(DEFAULT_TTL_SECONDS),
            stale: Duration::from_secs(DEFAULT_STALE_SECONDS),
            retry: Duration::from_secs(DEFAULT_RETRY_SECONDS),
            state_bucket: None,
            ledger_capacity: DEFAULT_LEDGER_CAPACITY,
            settle: Duration::from_secs(DEFAULT_SETTLE_SECONDS),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let graph = config::optional("DATAFORM_COMPILED_GRAPH");
        let repository = config::optional("DATAFORM_REPOSITORY");
        let origin = match (graph, repository) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "DATAFORM_COMPILED_GRAPH",
                    "set either DATAFORM_COMPILED_GRAPH or DATAFORM_REPOSITORY, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "DATAFORM_COMPILED_GRAPH",
                    "set DATAFORM_COMPILED_GRAPH (a compiled graph) or DATAFORM_REPOSITORY (the Dataform API)",
                ));
            }
            (Some(graph), None) => graph_origin(&graph)?,
            (None, Some(repository)) => GraphOrigin::Api(api_settings(repository)?),
        };
        let seconds = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(config::parsed(var)?.unwrap_or(default)))
        };
        let ledger_capacity =
            config::parsed("DATAFORM_LEDGER_CAPACITY")?.unwrap_or(DEFAULT_LEDGER_CAPACITY);
        if ledger_capacity == 0 {
            return Err(ConfigError::new(
                "DATAFORM_LEDGER_CAPACITY",
                "must be at least 1",
            ));
        }
        let settle = seconds("DATAFORM_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS)?;
        if settle > Duration::from_secs(MAX_SETTLE_SECONDS) {
            return Err(ConfigError::new(
                "DATAFORM_SETTLE_SECONDS",
                format!(
                    "must be at most {MAX_SETTLE_SECONDS}: a load waits that long before anything runs"
                ),
            ));
        }
        Ok(Self {
            origin,
            ttl: seconds("DATAFORM_GRAPH_TTL_SECONDS", DEFAULT_TTL_SECONDS)?,
            stale: seconds("DATAFORM_GRAPH_STALE_SECONDS", DEFAULT_STALE_SECONDS)?,
            retry: seconds("DATAFORM_GRAPH_RETRY_SECONDS", DEFAULT_RETRY_SECONDS)?,
            state_bucket: config::parsed("DATAFORM_STATE_BUCKET")?,
            ledger_capacity,
            settle,
        })
    }
}

fn graph_origin(value: &str) -> Result<GraphOrigin, ConfigError> {
    if value.starts_with("gs://") {
        let uri: GsUri = value
            .parse()
            .map_err(|e| ConfigError::new("DATAFORM_COMPILED_GRAPH", e))?;
        Ok(GraphOrigin::Gcs(uri.0))
    } else {
        Ok(GraphOrigin::File(PathBuf::from(value)))
    }
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// `projects/P/locations/L/repositories/R`, as the API's resource names are written.
pub fn repository(value: &str) -> Result<String, ConfigError> {
    let parts: Vec<&str> = value.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "locations", l, "repositories", r]
            if [p, l, r].iter().all(|s| segment_ok(s)) =>
        {
            Ok(value.to_owned())
        }
        _ => Err(ConfigError::new(
            "DATAFORM_REPOSITORY",
            "must look like projects/PROJECT/locations/LOCATION/repositories/REPOSITORY",
        )),
    }
}

/// A release config or workspace given by id or by full name (which must be in the repository).
fn child(
    var: &str,
    repository: &str,
    collection: &str,
    value: &str,
) -> Result<String, ConfigError> {
    let prefix = format!("{repository}/{collection}/");
    let name = if value.contains('/') {
        value.to_owned()
    } else {
        format!("{prefix}{value}")
    };
    match name.strip_prefix(&prefix) {
        Some(id) if segment_ok(id) => Ok(name),
        _ => Err(ConfigError::new(
            var,
            format!("must be an id or a name under {prefix}"),
        )),
    }
}

fn api_settings(repository_value: String) -> Result<ApiSettings, ConfigError> {
    let repository = repository(&repository_value)?;
    let release = config::optional("DATAFORM_RELEASE_CONFIG");
    let commitish = config::optional("DATAFORM_GIT_COMMITISH");
    let workspace = config::optional("DATAFORM_WORKSPACE");
    let compile_from = match (release, commitish, workspace) {
        (Some(r), None, None) => CompileFrom::ReleaseConfig(child(
            "DATAFORM_RELEASE_CONFIG",
            &repository,
            "releaseConfigs",
            &r,
        )?),
        (None, Some(c), None) => CompileFrom::GitCommitish(c),
        (None, None, Some(w)) => {
            CompileFrom::Workspace(child("DATAFORM_WORKSPACE", &repository, "workspaces", &w)?)
        }
        _ => {
            return Err(ConfigError::new(
                "DATAFORM_RELEASE_CONFIG",
                "set exactly one of DATAFORM_RELEASE_CONFIG, DATAFORM_GIT_COMMITISH, DATAFORM_WORKSPACE",
            ));
        }
    };
    let endpoint =
        config::optional("DATAFORM_ENDPOINT").map(|e| e.trim_end_matches('/').to_owned());
    if let Some(endpoint) = &endpoint
        && !endpoint.starts_with("http://")
        && !endpoint.starts_with("https://")
    {
        return Err(ConfigError::new(
            "DATAFORM_ENDPOINT",
            "must be an http:// or https:// URL",
        ));
    }
    Ok(ApiSettings {
        repository,
        compile_from,
        endpoint,
        service_account: config::optional("DATAFORM_SERVICE_ACCOUNT"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_checked_and_children_are_expanded() {
        let repo = repository("projects/acme/locations/us-central1/repositories/dwh").unwrap();
        assert!(repository("projects/acme/repositories/dwh").is_err());
        assert_eq!(
            child("V", &repo, "releaseConfigs", "production").unwrap(),
            "projects/acme/locations/us-central1/repositories/dwh/releaseConfigs/production"
        );
        assert!(
            child(
                "V",
                &repo,
                "workspaces",
                "projects/other/locations/x/repositories/y/workspaces/w"
            )
            .is_err()
        );
    }
}
