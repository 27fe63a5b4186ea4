//! Keeps credentials that travel inside URLs out of every message sigma writes.
//!
//! A resumable upload's session URL (`...&upload_id=...`) works as a bearer credential for
//! that upload, and transport errors quote the URL they failed on. Error answers, log lines
//! and events all reach people and systems that must not hold it, so every message that can
//! carry a Google error passes through [`redact`] before it leaves the process.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// What stands in for a removed query string or credential.
pub const REDACTED: &str = "[redacted]";

/// A URL's query string: everything after `?` up to the end of the URL.
static URL_QUERY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(https?://[^\s"'<>?#\\]*)\?[^\s"'<>#\\]*"#).expect("valid pattern")
});

/// Credential-like parameters wherever they appear, quoted or not, with or without a URL.
static CREDENTIAL_PARAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(upload_id|access_token|x-goog-signature|x-goog-credential)(=|"?\s*:\s*"?)([^\s&"',;)\\]+)"#)
        .expect("valid pattern")
});

/// `message` with query strings of URLs and credential-like parameters replaced by
/// [`REDACTED`]; borrowed when there was nothing to remove, which is the common case.
pub fn redact(message: &str) -> Cow<'_, str> {
    let without_queries = URL_QUERY.replace_all(message, format!("${{1}}?{REDACTED}"));
    match CREDENTIAL_PARAM.replace_all(&without_queries, format!("${{1}}${{2}}{REDACTED}")) {
        Cow::Borrowed(_) => without_queries,
        Cow::Owned(cleaned) => Cow::Owned(cleaned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_urls_lose_their_query_string() {
        let message = "error sending request for url (http://127.0.0.2/upload/storage/v1/b/out/o?uploadType=resumable&name=x&upload_id=ABCsecret123): connection closed";
        let cleaned = redact(message);
        assert!(!cleaned.contains("ABCsecret123"), "{cleaned}");
        assert!(!cleaned.contains("upload_id"), "{cleaned}");
        assert!(
            cleaned.contains("http://127.0.0.2/upload/storage/v1/b/out/o?[redacted]"),
            "{cleaned}"
        );
        assert!(cleaned.ends_with("connection closed"));
    }

    #[test]
    fn credentials_outside_urls_are_removed() {
        for message in [
            "upload_id=XYZsecret failed",
            r#"{"upload_id": "XYZsecret"}"#,
            "access_token=XYZsecret&other=1",
        ] {
            let cleaned = redact(message);
            assert!(!cleaned.contains("XYZsecret"), "{message} -> {cleaned}");
        }
    }

    #[test]
    fn messages_without_credentials_are_untouched() {
        let message = "gs://bucket/data/20240115/lkp_fechas.gz.encrypted: the token's signature does not verify";
        assert!(matches!(redact(message), Cow::Borrowed(_)));
        assert_eq!(
            redact("https://dataflow.googleapis.com/v1b3/projects/p"),
            "https://dataflow.googleapis.com/v1b3/projects/p"
        );
    }
}
