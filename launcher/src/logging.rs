//! The launcher's own logs (TGI's `LOG_LEVEL` and `--json-output`), and re-emission of the
//! children's lines: shard JSON records become launcher events tagged with the rank; router
//! lines, already formatted the same way, are passed through.

use crate::process::LineHandler;
use std::io::Write;
use std::sync::Arc;
use tracing::Level;

/// `LOG_LEVEL` as TGI reads it (`warn|info|debug` → both our targets at that level).
pub fn filter_from_env(log_level: Option<&str>) -> String {
    match log_level {
        Some(l @ ("error" | "warn" | "info" | "debug" | "trace")) => {
            format!("text_generation_launcher={l},text_generation_router={l}")
        }
        Some(other) => other.to_string(),
        None => "info".to_string(),
    }
}

/// Level name for the shard's `--logger-level`.
pub fn shard_logger_level(log_level: Option<&str>) -> String {
    match log_level {
        Some(l @ ("error" | "warn" | "info" | "debug" | "trace")) => l.to_uppercase(),
        _ => "INFO".to_string(),
    }
}

/// Installs the launcher's subscriber (stdout, like TGI).
pub fn init(json: bool) {
    let filter = filter_from_env(std::env::var("LOG_LEVEL").ok().as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Renders one shard JSON log record as `(level, text)`; non-JSON lines (panics, plain
/// `Error:` lines) come back as errors with the raw text.
pub fn parse_shard_line(line: &str) -> (Level, String) {
    let Ok(serde_json::Value::Object(record)) = serde_json::from_str::<serde_json::Value>(line)
    else {
        return (Level::ERROR, line.to_string());
    };
    let level = match record.get("level").and_then(|l| l.as_str()) {
        Some("TRACE") => Level::TRACE,
        Some("DEBUG") => Level::DEBUG,
        Some("WARN") => Level::WARN,
        Some("ERROR") => Level::ERROR,
        _ => Level::INFO,
    };
    let mut text = record
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    for (k, v) in &record {
        if matches!(
            k.as_str(),
            "message" | "level" | "timestamp" | "target" | "span" | "spans" | "threadId"
        ) {
            continue;
        }
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        text.push_str(&format!(" {k}={v}"));
    }
    (level, text)
}

/// Handler for a shard's output: re-emit each record with the rank; every line is kept for
/// the crash report.
pub fn shard_handler(rank: usize) -> LineHandler {
    Arc::new(move |line: &str| {
        if line.trim().is_empty() {
            return None;
        }
        let (level, text) = parse_shard_line(line);
        match level {
            Level::ERROR => tracing::error!(rank, "{text}"),
            Level::WARN => tracing::warn!(rank, "{text}"),
            Level::INFO => tracing::info!(rank, "{text}"),
            Level::DEBUG => tracing::debug!(rank, "{text}"),
            Level::TRACE => tracing::trace!(rank, "{text}"),
        }
        Some(text)
    })
}

/// Handler for the router's output: passed through verbatim (it already honours
/// `--json-output` and `LOG_LEVEL`).
pub fn router_handler() -> LineHandler {
    Arc::new(|line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        Some(line.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_json_record_becomes_text_with_fields() {
        let (level, text) = parse_shard_line(
            r#"{"timestamp":"t","level":"WARN","message":"model loaded","elapsed_ms":12,"target":"x"}"#,
        );
        assert_eq!(level, Level::WARN);
        assert_eq!(text, "model loaded elapsed_ms=12");
        let (level, text) = parse_shard_line("Error: WORLD_SIZE 2: nope");
        assert_eq!(level, Level::ERROR);
        assert_eq!(text, "Error: WORLD_SIZE 2: nope");
    }

    #[test]
    fn log_level_mapping() {
        assert_eq!(
            filter_from_env(Some("debug")),
            "text_generation_launcher=debug,text_generation_router=debug"
        );
        assert_eq!(filter_from_env(None), "info");
        assert_eq!(shard_logger_level(Some("warn")), "WARN");
        assert_eq!(shard_logger_level(Some("x=debug")), "INFO");
    }
}
