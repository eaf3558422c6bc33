//! Structured logs: `tracing` events to stderr, filtered by `log.level` from the configuration,
//! or by `RUST_LOG` when it is set (the usual `tracing` filter syntax, e.g. `xgate=debug`).

use tracing_subscriber::EnvFilter;

/// The filter `level` describes, or why it is not one.
pub fn filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(level)
        .map_err(|e| format!("expected a log level or filter (e.g. `info`, `xgate=debug`): {e}"))
}

/// Installs the subscriber once per process (later calls keep the first).
pub fn init(level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => filter(&from_env).or_else(|_| filter(level)),
        _ => filter(level),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
