//! Strings with `{placeholders}` from the registry, parsed once at start-up.
//!
//! A misspelt placeholder in a template parameter would otherwise reach Dataflow as a
//! literal `{imput_uri}` and fail a job minutes later; parsing at load turns it into a
//! start-up error that names the field and the valid placeholders.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The values a placeholder can take; one per launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `gs://bucket/name` of the uploaded object.
    InputUri,
    Bucket,
    Name,
    /// The object's generation (empty only in an offline `sigma plan` without one).
    Generation,
    /// `gs://CONFIG_BUCKET/configs/{entity}/{fecha_lote}/{job_name}.config`: this upload's
    /// own config.
    ConfigUri,
    Entity,
    /// `YYYY-MM-DD`.
    FechaLote,
    /// `YYYYMMDD`.
    Yyyymmdd,
    Project,
    Region,
    JobName,
    DataformTable,
}

impl Placeholder {
    const ALL: [(&'static str, Placeholder); 12] = [
        ("input_uri", Self::InputUri),
        ("bucket", Self::Bucket),
        ("name", Self::Name),
        ("generation", Self::Generation),
        ("config_uri", Self::ConfigUri),
        ("entity", Self::Entity),
        ("fecha_lote", Self::FechaLote),
        ("yyyymmdd", Self::Yyyymmdd),
        ("project", Self::Project),
        ("region", Self::Region),
        ("job_name", Self::JobName),
        ("dataform_table", Self::DataformTable),
    ];

    fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .expect("every placeholder is listed")
    }

    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|(n, _)| format!("{{{n}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// A registry string: literal text and placeholders; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}} (valid: {names})", names = Placeholder::names())]
    Unknown(String),
    #[error("unbalanced brace in {0:?} (write {{{{ or }}}} for a literal brace)")]
    Unbalanced(String),
}

impl Template {
    /// The text with every placeholder replaced by `value(placeholder)`.
    pub fn expand(&self, value: impl Fn(Placeholder) -> String) -> String {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.clone(),
                Piece::Value(p) => value(*p),
            })
            .collect()
    }

    pub fn is_literal(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.0.iter().filter_map(|p| match p {
            Piece::Value(p) => Some(*p),
            Piece::Text(_) => None,
        })
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(TemplateError::Unbalanced(s.to_owned()));
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    let placeholder =
                        Placeholder::named(&name).ok_or(TemplateError::Unknown(name))?;
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Value(placeholder));
                }
                '}' => return Err(TemplateError::Unbalanced(s.to_owned())),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self(pieces))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => f.write_str(&text.replace('{', "{{").replace('}', "}}"))?,
                Piece::Value(p) => write!(f, "{{{}}}", p.name())?,
            }
        }
        Ok(())
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_double_braces_are_literal() {
        let t: Template = "{input_uri}|{{x}}|{fecha_lote}".parse().unwrap();
        let out = t.expand(|p| match p {
            Placeholder::InputUri => "gs://b/n".into(),
            Placeholder::FechaLote => "2024-01-15".into(),
            _ => unreachable!(),
        });
        assert_eq!(out, "gs://b/n|{x}|2024-01-15");
        assert_eq!(t.to_string(), "{input_uri}|{{x}}|{fecha_lote}");
        assert!(!t.is_literal());
        assert!("plain".parse::<Template>().unwrap().is_literal());
    }

    #[test]
    fn unknown_placeholders_and_stray_braces_are_rejected_with_the_valid_names() {
        let err = "{imput_uri}".parse::<Template>().unwrap_err();
        assert!(err.to_string().contains("{input_uri}"), "{err}");
        assert!(matches!(
            "a}b".parse::<Template>(),
            Err(TemplateError::Unbalanced(_))
        ));
        assert!("{entity".parse::<Template>().is_err());
    }
}
