//! Structured logs for Cloud Logging, correlated with Cloud Trace.
//!
//! Cloud Run forwards stdout lines that are JSON objects as structured entries; with
//! `logging.googleapis.com/trace` set, every line of a request groups under the caller's
//! trace (the workflow execution, the load balancer, curl with a traceparent header).

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use std::io::Write;

use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::redact::redact;

/// The project that trace ids are reported under; Cloud Run does not set it by itself.
pub const PROJECT_VAR: &str = "GOOGLE_CLOUD_PROJECT";

/// Installs the JSON logger on stdout (level from `RUST_LOG`, default `info`). Safe to call
/// twice; the second call does nothing, so tests may start several services in one process.
pub fn init() {
    init_with_writer(std::io::stdout);
}

/// [`init`] writing to `writer` instead of stdout: tests capture the log lines to prove what
/// they never contain. Every line is redacted on its way out, whatever logged it.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = opentelemetry_sdk::trace::TracerProvider::builder().build();
    let tracer = provider.tracer("sigma");
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let layer = tracing_stackdriver::layer().with_writer(Redacting(writer));
    let stackdriver = match crate::config::optional(PROJECT_VAR) {
        Some(project_id) => layer
            .with_cloud_trace(tracing_stackdriver::CloudTraceConfiguration { project_id })
            .boxed(),
        None => layer.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(stackdriver.with_filter(filter))
        .try_init();
}

/// Wraps the log destination so each line is redacted before it is written: a log line
/// that quotes a Google error (and so maybe a resumable-upload session URL) never reaches
/// Cloud Logging with the credential in it, whichever code logged it.
struct Redacting<W>(W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Redacting<W> {
    type Writer = RedactedLine<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine {
            line: Vec::new(),
            inner: self.0.make_writer(),
        }
    }
}

/// One log line, held until it is complete (the formatter writes it in pieces) and then
/// written redacted in one piece.
struct RedactedLine<W: Write> {
    line: Vec<u8>,
    inner: W,
}

impl<W: Write> Write for RedactedLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&line);
        self.inner.write_all(redact(&text).as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactedLine<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A trace the caller is part of, from `traceparent` (W3C) or `X-Cloud-Trace-Context`
/// (Google's older header, which Cloud Run and Workflows still send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        header("traceparent")
            .and_then(Self::parse_w3c)
            .or_else(|| header("x-cloud-trace-context").and_then(Self::parse_cloud))
    }

    /// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
    pub fn parse_w3c(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Self::valid(
            TraceId::from_hex(trace).ok()?,
            SpanId::from_hex(span).ok()?,
            flags & 1 == 1,
        )
    }

    /// `<32 hex trace id>[/<decimal span id>][;o=<0|1>]`.
    pub fn parse_cloud(value: &str) -> Option<Self> {
        let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
        let (trace, span) = ids.split_once('/').unwrap_or((ids, "0"));
        if trace.len() != 32 {
            return None;
        }
        let span = span.parse::<u64>().ok()?;
        let span_id = if span == 0 {
            SpanId::from_bytes([0, 0, 0, 0, 0, 0, 0, 1])
        } else {
            SpanId::from_bytes(span.to_be_bytes())
        };
        Self::valid(
            TraceId::from_hex(trace).ok()?,
            span_id,
            options.trim() == "o=1",
        )
    }

    fn valid(trace_id: TraceId, span_id: SpanId, sampled: bool) -> Option<Self> {
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(Self {
            trace_id,
            span_id,
            sampled,
        })
    }

    /// Makes `span` (and so every log line inside it) part of this trace.
    pub fn adopt(self, span: &tracing::Span) {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            true,
            TraceState::default(),
        );
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_redacted_before_they_are_written() {
        let mut sink = Vec::new();
        {
            let mut line = RedactedLine {
                line: Vec::new(),
                inner: &mut sink,
            };
            line.write_all(b"{\"message\":\"upload failed: http://h/upload?upload_id=")
                .unwrap();
            line.write_all(b"SECRET\"}\n").unwrap();
        }
        let written = String::from_utf8(sink).unwrap();
        assert!(!written.contains("SECRET"), "{written}");
        assert!(written.ends_with("}\n"));
    }

    #[test]
    fn w3c_traceparent_is_parsed() {
        let t = TraceParent::parse_w3c("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id.to_string(), "00f067aa0ba902b7");
        assert!(t.sampled);
        assert!(
            TraceParent::parse_w3c("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
                .is_none()
        );
        assert!(TraceParent::parse_w3c("garbage").is_none());
    }

    #[test]
    fn cloud_trace_context_is_parsed() {
        let t = TraceParent::parse_cloud("105445aa7843bc8bf206b12000100000/1;o=1").unwrap();
        assert_eq!(t.trace_id.to_string(), "105445aa7843bc8bf206b12000100000");
        assert!(t.sampled);
        let unsampled = TraceParent::parse_cloud("105445aa7843bc8bf206b12000100000/123").unwrap();
        assert!(!unsampled.sampled);
        assert!(TraceParent::parse_cloud("short/1;o=1").is_none());
    }

    #[test]
    fn w3c_header_wins_over_the_cloud_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
        );
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
                .parse()
                .unwrap(),
        );
        let t = TraceParent::from_headers(&headers).unwrap();
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
