//! Which runs a command is about: started in a window, in a state, of an entity, of objects
//! matching a glob. `sigma runs` shows them; `sigma replay --failed` re-runs them.
//!
//! What the API can filter (the state, the start time) is asked of it, so only those runs
//! travel; the rest (entity, object) is read from each run's argument here.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use regex::Regex;
use sigma_dataflow::naming::EntityName;
use sigma_dataflow::registry::Registry;

use crate::pipelines;
use crate::run::{Run, RunState, Upload};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration such as 30m, 24h, 7d or 1h30m (units s, m, h, d, w), nor a time such as 2024-01-15 or 2024-01-15T10:00:00Z"
)]
pub struct SinceError(String);

/// The start of a window: a duration back from now, or a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(DateTime<Utc>),
}

impl Since {
    pub const DEFAULT: Self = Self::Ago(Duration::from_secs(24 * 3600));

    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Ago(ago) => chrono::Duration::from_std(ago)
                .ok()
                .and_then(|ago| now.checked_sub_signed(ago))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            Self::At(at) => at,
        }
    }
}

impl FromStr for Since {
    type Err = SinceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SinceError(s.to_owned());
        if let Ok(at) = DateTime::parse_from_rfc3339(s) {
            return Ok(Self::At(at.to_utc()));
        }
        if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(Self::At(day.and_time(chrono::NaiveTime::MIN).and_utc()));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let count: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = match rest[digits..].chars().next() {
                Some('s') => 1,
                Some('m') => 60,
                Some('h') => 3600,
                Some('d') => 86_400,
                Some('w') => 7 * 86_400,
                _ => return Err(bad()),
            };
            let seconds = count.checked_mul(unit).ok_or_else(bad)?;
            total = total
                .checked_add(Duration::from_secs(seconds))
                .ok_or_else(bad)?;
            rest = &rest[digits + 1..];
        }
        if total.is_zero() {
            return Err(bad());
        }
        Ok(Self::Ago(total))
    }
}

/// `--state`: what an operator asks for, as the API's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateArg {
    Failed,
    Succeeded,
    /// Running or waiting for its turn (ACTIVE or QUEUED)
    Active,
    Cancelled,
}

impl StateArg {
    pub fn states(self) -> &'static [RunState] {
        match self {
            Self::Failed => &[RunState::Failed],
            Self::Succeeded => &[RunState::Succeeded],
            Self::Active => &[RunState::Active, RunState::Queued],
            Self::Cancelled => &[RunState::Cancelled],
        }
    }
}

/// `*` any run of characters (`/` too), `?` any one; matched against the whole object name,
/// or the whole `gs://bucket/name` when the glob starts with `gs://`.
#[derive(Debug, Clone)]
pub struct ObjectGlob {
    source: String,
    regex: Regex,
}

impl ObjectGlob {
    pub fn matches(&self, upload: &Upload) -> bool {
        if self.source.starts_with("gs://") {
            self.regex.is_match(&upload.object.to_string())
        } else {
            self.regex.is_match(upload.object.name.as_str())
        }
    }
}

impl FromStr for ObjectGlob {
    type Err = regex::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut pattern = String::from("^");
        for c in s.chars() {
            match c {
                '*' => pattern.push_str(".*"),
                '?' => pattern.push('.'),
                c => pattern.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        pattern.push('$');
        Ok(Self {
            source: s.to_owned(),
            regex: Regex::new(&pattern)?,
        })
    }
}

impl fmt::Display for ObjectGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The selection flags `sigma runs` and `sigma replay --failed` share.
#[derive(clap::Args)]
pub struct SelectionArgs {
    /// Runs started since: 30m, 24h, 7d, 1h30m, or a time (2024-01-15, 2024-01-15T10:00:00Z)
    /// [default: 24h]
    #[arg(long, value_name = "WHEN")]
    pub since: Option<Since>,
    /// Only uploads of this registry entity (needs --pipelines)
    #[arg(long, requires = "pipelines")]
    pub entity: Option<EntityName>,
    /// Only uploads whose object name matches (`*`, `?`; from gs:// on, the whole URI)
    #[arg(long, value_name = "GLOB")]
    pub object: Option<ObjectGlob>,
    /// The pipeline registry (YAML), as given to sigma-dataflow in PIPELINES: names entities
    #[arg(long, value_name = "FILE")]
    pub pipelines: Option<PathBuf>,
}

impl SelectionArgs {
    pub fn filter(
        &self,
        states: Option<&'static [RunState]>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Filter> {
        let registry = self.pipelines.as_deref().map(pipelines::load).transpose()?;
        Ok(Filter {
            since: self.since.unwrap_or(Since::DEFAULT).start(now),
            states,
            entity: self.entity.clone(),
            object: self.object.clone(),
            registry,
        })
    }
}

/// A compiled selection.
pub struct Filter {
    since: DateTime<Utc>,
    states: Option<&'static [RunState]>,
    entity: Option<EntityName>,
    object: Option<ObjectGlob>,
    registry: Option<Registry>,
}

impl Filter {
    /// The API filters whose runs, together, hold every run this selects. A queued execution
    /// has no start time yet, so queued ones are asked for on their own.
    pub fn queries(&self) -> Vec<String> {
        let since = format!(
            "startTime>=\"{}\"",
            self.since.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        let queued = "state=\"QUEUED\"".to_owned();
        match self.states {
            None => vec![since, queued],
            Some(states) => states
                .iter()
                .map(|state| match state {
                    RunState::Queued => queued.clone(),
                    state => format!("state=\"{state}\" AND {since}"),
                })
                .collect(),
        }
    }

    pub fn matches(&self, run: &Run) -> bool {
        let in_window = run.start.is_none_or(|start| start >= self.since);
        let in_state = self.states.is_none_or(|states| states.contains(&run.state));
        let of_object = self
            .object
            .as_ref()
            .is_none_or(|glob| run.upload().is_some_and(|upload| glob.matches(upload)));
        let of_entity = self
            .entity
            .as_ref()
            .is_none_or(|entity| self.entity_of(run).as_ref() == Some(entity));
        in_window && in_state && of_object && of_entity
    }

    /// The registry's entity for the run's upload, when a registry was given.
    pub fn entity_of(&self, run: &Run) -> Option<EntityName> {
        let registry = self.registry.as_ref()?;
        pipelines::entity_of(registry, run.upload()?).cloned()
    }

    /// The runs of several queries, each once, newest first (queued ones before all).
    pub fn select(&self, runs: Vec<Run>) -> Vec<Run> {
        let mut seen = HashSet::new();
        let mut selected: Vec<Run> = runs
            .into_iter()
            .filter(|run| self.matches(run) && seen.insert(run.name.clone()))
            .collect();
        selected.sort_by(|a, b| match (a.start, b.start) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => b.cmp(&a),
        });
        selected
    }
}

#[cfg(test)]
mod tests {
    use sigma_shared::GsUri;

    use super::*;
    use crate::run::{Argument, Outcome};

    fn upload(uri: &str) -> Upload {
        Upload {
            object: uri.parse::<GsUri>().unwrap().0,
            generation: "1".parse().unwrap(),
        }
    }

    fn run(id: &str, state: RunState, start: Option<&str>, uri: &str) -> Run {
        Run {
            name: format!("projects/p/locations/l/workflows/w/executions/{id}")
                .parse()
                .unwrap(),
            state,
            start: start.map(|s| DateTime::parse_from_rfc3339(s).unwrap().to_utc()),
            duration: None,
            argument: Argument::Event {
                upload: upload(uri),
                event_id: String::new(),
            },
            outcome: Outcome::Unavailable,
        }
    }

    fn filter(states: Option<&'static [RunState]>, object: Option<&str>) -> Filter {
        Filter {
            since: "2024-01-15T00:00:00Z".parse().unwrap(),
            states,
            entity: None,
            object: object.map(|o| o.parse().unwrap()),
            registry: None,
        }
    }

    #[test]
    fn since_takes_durations_and_moments() {
        let now: DateTime<Utc> = "2024-01-15T12:00:00Z".parse().unwrap();
        let start = |s: &str| s.parse::<Since>().unwrap().start(now).to_rfc3339();

        assert_eq!(start("24h"), "2024-01-14T12:00:00+00:00");
        assert_eq!(start("90m"), "2024-01-15T10:30:00+00:00");
        assert_eq!(start("1h30m"), "2024-01-15T10:30:00+00:00");
        assert_eq!(start("2d"), "2024-01-13T12:00:00+00:00");
        assert_eq!(start("1w"), "2024-01-08T12:00:00+00:00");
        assert_eq!(start("45s"), "2024-01-15T11:59:15+00:00");
        assert_eq!(start("2024-01-10"), "2024-01-10T00:00:00+00:00");
        assert_eq!(
            start("2024-01-10T08:00:00+02:00"),
            "2024-01-10T06:00:00+00:00"
        );
        assert_eq!(Since::DEFAULT.start(now).to_rfc3339(), start("24h"));
        for bad in [
            "",
            "24",
            "h",
            "0h",
            "24x",
            "1h30",
            "-1h",
            "1.5h",
            "99999999999999999999w",
        ] {
            assert!(bad.parse::<Since>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs_match_whole_names_or_whole_uris() {
        let upload = upload("gs://company_trigger_bucket/data/20240115/lkp_fechas.gz.encrypted");
        let matches = |glob: &str| glob.parse::<ObjectGlob>().unwrap().matches(&upload);

        assert!(matches("data/202401*/lkp_fechas.gz.encrypted"));
        assert!(matches("*lkp_fechas*"));
        assert!(matches("data/2024011?/*"));
        assert!(matches("gs://company_trigger_bucket/*"));
        assert!(!matches("lkp_fechas*"), "the whole name, not a part");
        assert!(!matches("gs://other_bucket/*"));
        assert!(!matches("data/20240115/lkp_fechas.gz"));
        assert!(!matches("data/2024011?/lkp.fechas*"), "`.` is literal");
    }

    #[test]
    fn the_api_is_asked_for_the_window_and_queued_runs_apart() {
        let since = "startTime>=\"2024-01-15T00:00:00.000000Z\"";

        assert_eq!(filter(None, None).queries(), [since, "state=\"QUEUED\""]);
        assert_eq!(
            filter(Some(StateArg::Failed.states()), None).queries(),
            [format!("state=\"FAILED\" AND {since}")]
        );
        assert_eq!(
            filter(Some(StateArg::Active.states()), None).queries(),
            [
                format!("state=\"ACTIVE\" AND {since}"),
                "state=\"QUEUED\"".into()
            ]
        );
    }

    #[test]
    fn selection_keeps_matching_runs_once_newest_first_queued_on_top() {
        let name = "gs://company_trigger_bucket/data/20240115/lkp_fechas.gz.encrypted";
        let runs = vec![
            run("old", RunState::Failed, Some("2024-01-14T23:59:59Z"), name),
            run("a", RunState::Failed, Some("2024-01-15T01:00:00Z"), name),
            run("b", RunState::Succeeded, Some("2024-01-15T02:00:00Z"), name),
            run("c", RunState::Failed, Some("2024-01-15T03:00:00Z"), name),
            run("q", RunState::Queued, None, name),
            run("a", RunState::Failed, Some("2024-01-15T01:00:00Z"), name),
            run(
                "x",
                RunState::Failed,
                Some("2024-01-15T04:00:00Z"),
                "gs://company_trigger_bucket/data/x.gz.encrypted",
            ),
        ];
        let ids = |runs: Vec<Run>| {
            runs.iter()
                .map(|r| r.name.id().to_owned())
                .collect::<Vec<_>>()
        };

        assert_eq!(
            ids(filter(None, None).select(runs.clone())),
            ["q", "x", "c", "b", "a"]
        );
        assert_eq!(
            ids(filter(Some(StateArg::Failed.states()), Some("*lkp_fechas*")).select(runs)),
            ["c", "a"]
        );
    }
}
