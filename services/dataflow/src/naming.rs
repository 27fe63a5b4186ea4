//! The names sigma derives from an upload: entity, batch date and Dataflow job name.
//!
//! Dataflow refuses a second active job with the same name, which is the lock that keeps
//! duplicate deliveries from launching twice; so the job name must be a pure function of
//! the upload (entity, date, generation, attempt) and always valid, never truncated into a collision.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sigma_shared::{Attempt, Generation};

/// Longest entity name accepted, so that every derived job name stays short and readable.
pub const MAX_ENTITY_LEN: usize = 48;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error(
        "entity name {0:?} must be 1-{MAX_ENTITY_LEN} characters of lower-case letters, digits and \"_\", starting with a letter"
    )]
    Entity(String),
    #[error("{0:?} is not a valid date (expected YYYY-MM-DD or YYYYMMDD)")]
    Date(String),
    #[error("job name {0:?} is not a valid Dataflow job name")]
    JobName(String),
    #[error("{0:?} is not a Dataflow job id")]
    JobId(String),
    #[error("{0:?} is not a region name such as europe-west1")]
    Region(String),
    #[error("{0:?} is not a Google Cloud project id")]
    Project(String),
    #[error(
        "{0:?} is not a Dataform table: use name, schema.name or database.schema.name (schema and name: letters, digits, '_'; database: a project id)"
    )]
    DataformTable(String),
}

/// An entity (the seed material's *modelo*): `poliza_detalle`. Lower-case snake case, so
/// that its hyphenated form is a valid job name and distinct entities never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityName(String);

impl EntityName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EntityName {
    type Err = NamingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (1..=MAX_ENTITY_LEN).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NamingError::Entity(s.to_owned()))
        }
    }
}

/// A Google Cloud region such as `europe-west1`. It is put in Dataflow URL paths and job
/// labels, so anything else is refused where it enters (registry, env var, query).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Region(String);

impl Region {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Region {
    type Err = NamingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() <= 63
            && s.split('-').count() >= 2
            && s.ends_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.contains("--");
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NamingError::Region(s.to_owned()))
        }
    }
}

/// A Google Cloud project id (`company-data-prod`), optionally domain-scoped
/// (`example.com:my-project`), as Dataflow's URL paths take it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectId(String);

impl ProjectId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProjectId {
    type Err = NamingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = s.rsplit(':').next().unwrap_or(s);
        let valid = (6..=30).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && !id.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NamingError::Project(s.to_owned()))
        }
    }
}

/// The Dataform table a load feeds, as the `/invoke` step of sigma-dataform takes it:
/// `name`, `schema.name` or `database.schema.name`. A bare name is ambiguous when several
/// schemas hold a table of that name (the sample graph has `clientes` in four), so the
/// registry may qualify it and the qualification is passed through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataformTable(String);

impl DataformTable {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&EntityName> for DataformTable {
    /// The default: the entity's name, unqualified.
    fn from(entity: &EntityName) -> Self {
        Self(entity.as_str().to_owned())
    }
}

/// A BigQuery dataset or table name as sigma accepts it: letters, digits and `_`, not
/// starting with a digit.
fn identifier(part: &str) -> bool {
    part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && part.len() <= 300
        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl FromStr for DataformTable {
    type Err = NamingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        let valid = match parts.as_slice() {
            [name] => identifier(name),
            [schema, name] => identifier(schema) && identifier(name),
            [database, schema, name] => {
                !database.contains(':')
                    && database.parse::<ProjectId>().is_ok()
                    && identifier(schema)
                    && identifier(name)
            }
            _ => false,
        };
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NamingError::DataformTable(s.to_owned()))
        }
    }
}

/// The batch date (`fecha_lote`) an upload belongs to, written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FechaLote(NaiveDate);

impl FechaLote {
    pub fn compact(self) -> String {
        self.0.format("%Y%m%d").to_string()
    }
}

impl FromStr for FechaLote {
    type Err = NamingError;

    /// Accepts `YYYYMMDD` (as in object names) and `YYYY-MM-DD`; rejects impossible dates
    /// such as `20241345`, so a malformed name never becomes a job.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let format = if s.len() == 8 { "%Y%m%d" } else { "%Y-%m-%d" };
        let ascii_digits = s.chars().all(|c| c.is_ascii_digit() || c == '-');
        NaiveDate::parse_from_str(s, format)
            .ok()
            .filter(|_| ascii_digits && (s.len() == 8 || s.len() == 10))
            .map(Self)
            .ok_or_else(|| NamingError::Date(s.to_owned()))
    }
}

/// A Dataflow job id (`2024-01-15_04_05_06-1234567890`), checked before it is put in a URL
/// path it could otherwise escape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JobId {
    type Err = NamingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (1..=128).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NamingError::JobId(s.to_owned()))
        }
    }
}

/// A Dataflow job name: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 1024 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobName(String);

impl JobName {
    /// `{entity}-{yyyy-mm-dd}-{generation in base 36}`: underscores become hyphens; the
    /// suffix is a lossless encoding of the generation, so duplicate deliveries of one upload
    /// share a name and distinct uploads never do. Without a generation (only `sigma plan`
    /// previews that) the suffix is absent. A re-run's job adds `-a{attempt}` (attempt 1
    /// keeps the plain name), so each attempt's job, config and launch record are its own
    /// and a re-run never collides with the job it replaces.
    pub fn derive(
        entity: &EntityName,
        fecha_lote: FechaLote,
        generation: Option<Generation>,
        attempt: Attempt,
    ) -> Self {
        let mut name = format!("{}-{}", entity.as_str().replace('_', "-"), fecha_lote);
        if let Some(generation) = generation {
            name.push('-');
            name.push_str(&base36(generation.get().unsigned_abs()));
        }
        if !attempt.is_first() {
            name.push_str(&format!("-a{attempt}"));
        }
        name.parse()
            .expect("names derived from valid parts are valid job names")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JobName {
    type Err = NamingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = (1..=1024).contains(&s.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && !s.ends_with('-');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NamingError::JobName(s.to_owned()))
        }
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base 36 digits are ASCII")
}

impl fmt::Display for FechaLote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

macro_rules! string_serde {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

string_serde!(EntityName, JobName, JobId, Region, ProjectId, DataformTable);

macro_rules! display_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

display_serde!(
    EntityName,
    JobName,
    JobId,
    FechaLote,
    Region,
    ProjectId,
    DataformTable
);

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(s: &str) -> EntityName {
        s.parse().unwrap()
    }

    fn day(s: &str) -> FechaLote {
        s.parse().unwrap()
    }

    #[test]
    fn job_names_are_entity_date_and_generation_with_hyphens() {
        let name = JobName::derive(
            &entity("poliza_detalle"),
            day("20240115"),
            Some(Generation::new(1705312800123456).unwrap()),
            Attempt::FIRST,
        );
        assert_eq!(name.as_str(), "poliza-detalle-2024-01-15-gshdvvbl1c");
        assert!(name.as_str().parse::<JobName>().is_ok());
    }

    #[test]
    fn a_rerun_gets_its_own_job_name_and_the_first_attempt_keeps_the_plain_one() {
        let e = entity("lkp_fechas");
        let g = Some(Generation::new(1705312800123456).unwrap());
        let named = |n| JobName::derive(&e, day("20240115"), g, Attempt::new(n).unwrap());
        assert_eq!(named(1).as_str(), "lkp-fechas-2024-01-15-gshdvvbl1c");
        assert_eq!(named(2).as_str(), "lkp-fechas-2024-01-15-gshdvvbl1c-a2");
        assert_eq!(named(999).as_str(), "lkp-fechas-2024-01-15-gshdvvbl1c-a999");
        assert!(named(999).as_str().parse::<JobName>().is_ok());
    }

    #[test]
    fn duplicate_deliveries_share_a_name_and_distinct_uploads_do_not() {
        let e = entity("lkp_fechas");
        let g1 = Some(Generation::new(1705312800123456).unwrap());
        let g2 = Some(Generation::new(1705312800123457).unwrap());
        assert_eq!(
            JobName::derive(&e, day("20240115"), g1, Attempt::FIRST),
            JobName::derive(&e, day("20240115"), g1, Attempt::FIRST)
        );
        assert_ne!(
            JobName::derive(&e, day("20240115"), g1, Attempt::FIRST),
            JobName::derive(&e, day("20240115"), g2, Attempt::FIRST)
        );
        assert_eq!(
            JobName::derive(&e, day("20240115"), None, Attempt::FIRST).as_str(),
            "lkp-fechas-2024-01-15"
        );
    }

    #[test]
    fn longest_entity_still_gives_a_valid_job_name() {
        let e = entity(&format!("a{}", "_9".repeat((MAX_ENTITY_LEN - 1) / 2)));
        let name = JobName::derive(
            &e,
            day("2024-12-31"),
            Some(Generation::new(i64::MAX).unwrap()),
            Attempt::new(sigma_shared::attempt::MAX_ATTEMPT).unwrap(),
        );
        assert!(name.as_str().parse::<JobName>().is_ok());
        assert!(name.as_str().len() < 80);
    }

    #[test]
    fn dataflow_job_name_rule_is_enforced() {
        for bad in [
            "",
            "Upper",
            "1abc",
            "a_b",
            "ends-",
            "sp ace",
            &"a".repeat(1025),
        ] {
            assert!(bad.parse::<JobName>().is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a-1", "poliza-detalle-2024-01-15-abc"] {
            assert!(good.parse::<JobName>().is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn entity_names_are_lower_snake_case() {
        for bad in [
            "",
            "Poliza",
            "1x",
            "poliza-detalle",
            "a.b",
            &"a".repeat(MAX_ENTITY_LEN + 1),
        ] {
            assert!(bad.parse::<EntityName>().is_err(), "{bad:?} accepted");
        }
        assert!("poliza_detalle".parse::<EntityName>().is_ok());
    }

    #[test]
    fn dataform_tables_may_be_qualified_by_schema_and_database() {
        for good in [
            "clientes",
            "raw.clientes",
            "company-data-prod.raw.clientes",
            "_tmp.t_1",
        ] {
            let table: DataformTable = good.parse().unwrap();
            assert_eq!(table.as_str(), good);
        }
        for bad in [
            "",
            "raw.",
            ".clientes",
            "raw..clientes",
            "a.b.c.d",
            "raw.clien-tes",
            "Bad_Project.raw.t",
            "example.com:p.raw.t",
            "raw.cli entes",
        ] {
            assert!(bad.parse::<DataformTable>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn impossible_dates_are_rejected() {
        for bad in [
            "20241345",
            "20240230",
            "2024-1-15",
            "+2024011",
            "2024/01/15",
            "abcdefgh",
        ] {
            assert!(bad.parse::<FechaLote>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(day("20240229").to_string(), "2024-02-29");
        assert_eq!(day("2024-01-15").compact(), "20240115");
    }
}
