//! The object-name pattern language: `{yyyymmdd}`, `{yyyy-mm-dd}`, `{entity}` and `*`.

use regex::Regex;

use crate::naming::EntityName;

/// An object-name pattern compiled to an anchored regular expression.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// `{yyyymmdd}` or `{yyyy-mm-dd}` (exactly one) captures the batch date, `{entity}` is
    /// the entry's name, `*` is any run of characters within one path segment.
    pub(super) fn compile(source: &str, entity: &EntityName) -> Result<Self, String> {
        let mut regex = String::from("^");
        let mut dates = 0;
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if c == '*' {
                regex.push_str("[^/]*");
                rest = &rest[1..];
            } else if c == '{' {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("unclosed {{ in {source:?}"))?;
                match &rest[1..end] {
                    "yyyymmdd" => {
                        regex.push_str("(?P<date>[0-9]{8})");
                        dates += 1;
                    }
                    "yyyy-mm-dd" => {
                        regex.push_str("(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})");
                        dates += 1;
                    }
                    "entity" => regex.push_str(&regex::escape(entity.as_str())),
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} (valid: {{yyyymmdd}}, {{yyyy-mm-dd}}, {{entity}}, *)"
                        ));
                    }
                }
                rest = &rest[end + 1..];
            } else {
                regex.push_str(&regex::escape(&c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
        if dates != 1 {
            return Err("must contain exactly one of {yyyymmdd} or {yyyy-mm-dd}".into());
        }
        regex.push('$');
        let regex = Regex::new(&regex).map_err(|e| e.to_string())?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The date text if the name matches.
    pub(super) fn date_in<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.regex
            .captures(name)
            .and_then(|c| c.name("date"))
            .map(|m| m.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}
