//! Reading the text output of the kernel-stack clients: wrk's `--latency` report and ab's.

use serde_json::Value;

use crate::results::{NewConnectionRun, RunFigures};

/// Parses wrk's `--latency` output: the figures and the number of requests completed.
pub fn parse_wrk(text: &str) -> Option<(RunFigures, u64)> {
    let duration_us = |value: &str| -> Option<f64> {
        let (number, scale) = if let Some(v) = value.strip_suffix("us") {
            (v, 1.0)
        } else if let Some(v) = value.strip_suffix("ms") {
            (v, 1e3)
        } else if let Some(v) = value.strip_suffix('s') {
            (v, 1e6)
        } else {
            return None;
        };
        Some(number.parse::<f64>().ok()? * scale)
    };
    let mut figures = RunFigures {
        requests_per_second: -1.0,
        p50_us: 0.0,
        p90_us: 0.0,
        p99_us: 0.0,
        p999_us: f64::NAN,
        errors: 0,
        client_rx_dropped: 0,
        client_tx_starved: 0,
        client_idle_fraction: None,
        error_kinds: Value::Null,
        cpu_us_per_request: 0.0,
        machine_cpu_us_per_request: 0.0,
        response_bytes: 0,
        offered_rate: None,
        cdf: Vec::new(),
        upstream: None,
    };
    let mut completed = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => figures.requests_per_second = value.parse().ok()?,
            [count, "requests", "in", ..] => completed = Some(count.parse::<u64>().ok()?),
            ["50%", value] => figures.p50_us = duration_us(value)?,
            ["90%", value] => figures.p90_us = duration_us(value)?,
            ["99%", value] => figures.p99_us = duration_us(value)?,
            ["Socket", "errors:", rest @ ..] => {
                figures.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => figures.errors += count.parse::<u64>().ok()?,
            _ => {}
        }
    }
    (figures.requests_per_second >= 0.0).then_some((figures, completed?))
}

/// Parses ab's output: requests/s, requests completed, and failures (failed requests plus
/// answers that were not 2xx).
pub fn parse_ab(text: &str) -> Option<NewConnectionRun> {
    let (mut rps, mut completed, mut failed) = (None, None, 0u64);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests", "per", "second:", value, ..] => rps = Some(value.parse::<f64>().ok()?),
            ["Complete", "requests:", count] => completed = Some(count.parse::<u64>().ok()?),
            ["Failed", "requests:", count] => failed += count.parse::<u64>().ok()?,
            ["Non-2xx", "responses:", count] => failed += count.parse::<u64>().ok()?,
            _ => {}
        }
    }
    Some(NewConnectionRun {
        requests_per_second: rps?,
        completed: completed?,
        failed,
    })
}
