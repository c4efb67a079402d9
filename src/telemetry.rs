//! Logs and metrics.
//!
//! Logs are JSON lines by default (one object per event; `request_id` is a field on every
//! event about a request), or human-readable with `LOG_FORMAT=pretty`. Metrics are kept by the
//! `metrics` facade and rendered as Prometheus text at `/metrics`; each noteworthy event is a
//! small struct whose `emit()` bumps its counter with the labels the log line carries.
//!
//! Raw client input (a dead letter's reason, which quotes what failed to parse) is logged as
//! [`Escaped`]: control characters escaped, at most `LOG_MAX_INPUT_CHARS` characters, so no
//! input can begin a log line of its own, in either format.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::domain::RecordType;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSink {
    /// Standard output: the services.
    Stdout,
    /// Standard error: commands whose standard output is their answer (`dnsorch token`).
    Stderr,
}

/// The most characters of one piece of client input a log line shows (`LOG_MAX_INPUT_CHARS`).
static MAX_INPUT_CHARS: AtomicUsize = AtomicUsize::new(1024);

/// Client input as a log line may show it: line feed, carriage return and tab as `\n`, `\r`
/// and `\t`, other control characters and the Unicode line and paragraph separators as
/// `\u{1b}`, and at most `LOG_MAX_INPUT_CHARS` characters (then how many were left out).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(self.0, MAX_INPUT_CHARS.load(Ordering::Relaxed), f)
    }
}

fn write_escaped(text: &str, max_chars: usize, out: &mut impl fmt::Write) -> fmt::Result {
    for (shown, c) in text.chars().enumerate() {
        if shown == max_chars {
            let left = text.chars().count() - max_chars;
            return write!(out, "... ({left} more characters)");
        }
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                write!(out, "\\u{{{:x}}}", u32::from(c))?;
            }
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// Installs the global log subscriber, showing at most `max_input_chars` of each piece of
/// client input. Call once, before anything logs.
///
/// # Errors
/// `level` is not a valid filter directive.
pub fn init_logs(
    format: LogFormat,
    level: &str,
    max_input_chars: usize,
    sink: LogSink,
) -> anyhow::Result<()> {
    MAX_INPUT_CHARS.store(max_input_chars, Ordering::Relaxed);
    let filter = EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("LOG_LEVEL '{level}' is not a valid filter: {e}"))?;
    let writer = match sink {
        LogSink::Stdout => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        LogSink::Stderr => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        // Colours only on a terminal: files and `docker logs` get plain text.
        LogFormat::Pretty => builder
            .compact()
            .with_ansi(match sink {
                LogSink::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
                LogSink::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            })
            .try_init(),
    }
    .map_err(|e| anyhow::anyhow!("failed to install the log subscriber: {e}"))
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const SECONDS: &[f64] = &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
                30.0, 60.0, 120.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// The `source` label of a request's source: `api`, `kafka`, or `other` for anything else a
/// row may hold (rows written before sources were fixed), so labels come from a fixed set.
fn source_label(source: &str) -> &'static str {
    match source {
        "api" => "api",
        "kafka" => "kafka",
        "webhook" => "webhook",
        _ => "other",
    }
}

/// The `method` label of an HTTP method: the standard ones, else `other`, so that a client
/// cannot add label values by inventing methods.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A request was recorded (HTTP or Kafka).
pub struct RequestAccepted {
    pub record_type: RecordType,
    pub source: String,
}

impl RequestAccepted {
    pub fn emit(self) {
        metrics::counter!("dnsorch_requests_accepted_total",
            "record_type" => self.record_type.as_str(), "source" => source_label(&self.source))
        .increment(1);
    }
}

/// The external-dns webhook refused a change (answered 204 and stored once as FAILED).
pub struct WebhookRefused {
    /// `invalid`, `forbidden` or `unsupported_type`.
    pub reason: &'static str,
}

impl WebhookRefused {
    pub fn emit(self) {
        metrics::counter!("dnsorch_webhook_refused_total", "reason" => self.reason).increment(1);
    }
}

/// A request reached a terminal state.
pub struct RequestFinished {
    pub record_type: RecordType,
    pub source: String,
    pub completed: bool,
}

impl RequestFinished {
    pub fn emit(self) {
        let name = if self.completed {
            "dnsorch_requests_completed_total"
        } else {
            "dnsorch_requests_failed_total"
        };
        metrics::counter!(name,
            "record_type" => self.record_type.as_str(), "source" => source_label(&self.source))
        .increment(1);
    }
}

/// One provisioning attempt ended.
pub struct ProvisioningAttempt {
    pub backend: &'static str,
    pub outcome: &'static str,
    pub duration: Duration,
}

impl ProvisioningAttempt {
    pub fn emit(self) {
        metrics::histogram!("dnsorch_provisioning_duration_seconds",
            "backend" => self.backend, "outcome" => self.outcome)
        .record(self.duration.as_secs_f64());
    }
}

/// An HTTP request was answered.
pub struct HttpRequestServed {
    pub method: axum::http::Method,
    pub route: String,
    pub status: u16,
    pub duration: Duration,
}

impl HttpRequestServed {
    pub fn emit(self) {
        let status = self.status.to_string();
        let method = method_label(&self.method);
        metrics::counter!("dnsorch_http_requests_total",
            "method" => method, "route" => self.route.clone(), "status" => status)
        .increment(1);
        metrics::histogram!("dnsorch_http_request_duration_seconds",
            "method" => method, "route" => self.route)
        .record(self.duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str, max_chars: usize) -> String {
        let mut out = String::new();
        write_escaped(text, max_chars, &mut out).unwrap();
        out
    }

    #[test]
    fn control_characters_and_line_separators_are_escaped() {
        let forged = "bad\n2026-01-01T00:00:00Z  INFO forged\r\t\u{1b}[31m\0\u{7f}\u{85}\u{2028}é";
        assert_eq!(
            escaped(forged, 1000),
            r"bad\n2026-01-01T00:00:00Z  INFO forged\r\t\u{1b}[31m\u{0}\u{7f}\u{85}\u{2028}é"
        );
        assert_eq!(escaped("plain text", 1000), "plain text");
    }

    #[test]
    fn input_is_cut_at_the_limit_saying_how_much_was_left_out() {
        assert_eq!(escaped("abcdef", 4), "abcd... (2 more characters)");
        assert_eq!(escaped("abcd", 4), "abcd");
        assert_eq!(escaped("\n\n\n", 2), r"\n\n... (1 more characters)");
    }
}
