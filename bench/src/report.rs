//! Turning a suite run into what people read: medians with min–max, ratios taken within the same
//! run, the goals with measured values, a markdown table, SVG plots (plotters), the JSON file,
//! and `bench/RESULTS.md`. Also reads wrk's text output.
//!
//! Invariants:
//! - Every figure shown is a median over the run's repeats, with its min–max beside it; a figure
//!   whose spread exceeds [`NOISY_SPREAD`] of its median is marked noisy.
//! - Ratios compare medians of the same suite run only, never figures from different runs.
//! - A goal is "met" only when both of its figures were measured; missing data reads "not
//!   measured", never "met".

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context;
use plotters::prelude::*;
use serde_json::Value;

use crate::results::{
    proxy_reference, FloodCase, FloodRun, HttpCase, NewConnectionRun, RunFigures, SuiteResults,
    DIRECT_SERVER, NGINX_PROXY_SERVER, OPEN_LOOP_CLIENT, PROXY_SERVERS, TWO_LANES_SERVER, XGATE_PROXY_SERVER,
};

/// Spread (max − min) above this share of the median marks a figure as noisy.
pub const NOISY_SPREAD: f64 = 0.10;

/// Median and range of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }

    pub fn noisy(&self) -> bool {
        self.median > 0.0 && (self.max - self.min) / self.median > NOISY_SPREAD
    }
}

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

/// Figures of one case, summarised.
struct CaseSummary<'a> {
    case: &'a HttpCase,
    rps: Spread,
    p50: Spread,
    p90: Spread,
    p99: Spread,
    p999: Spread,
    cpu: Spread,
    machine_cpu: Spread,
    /// Median share of idle loop turns of the load generator, if it was xgate-bench.
    client_idle: Option<f64>,
    errors: u64,
}

fn summarise(case: &HttpCase) -> Option<CaseSummary<'_>> {
    let field = |f: fn(&RunFigures) -> f64| Spread::of(&case.runs.iter().map(f).collect::<Vec<_>>());
    Some(CaseSummary {
        case,
        rps: field(|r| r.requests_per_second)?,
        p50: field(|r| r.p50_us)?,
        p90: field(|r| r.p90_us)?,
        p99: field(|r| r.p99_us)?,
        p999: field(|r| r.p999_us)?,
        cpu: field(|r| r.cpu_us_per_request)?,
        machine_cpu: field(|r| r.machine_cpu_us_per_request)?,
        client_idle: Spread::of(
            &case
                .runs
                .iter()
                .filter_map(|r| r.client_idle_fraction)
                .collect::<Vec<_>>(),
        )
        .map(|s| s.median),
        errors: case.runs.iter().map(|r| r.errors).sum(),
    })
}

fn find<'a>(
    summaries: &'a [CaseSummary<'a>],
    server: &str,
    client: &str,
    connections: usize,
) -> Option<&'a CaseSummary<'a>> {
    summaries
        .iter()
        .find(|s| s.case.server == server && s.case.client == client && s.case.connections == connections)
}

fn thousands(value: f64) -> String {
    let whole = value.round() as i64;
    let digits = whole.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn micros(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The SYN-flood section: each server's clients without and under the flood, medians of the
/// repeats, ratios within the same repeats' medians.
fn flood_section(out: &mut String, cases: &[FloodCase]) {
    let Some(first) = cases.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n## SYN flood: real clients while `xgate lab flood` sends SYNs from 65,000 spoofed sources\n\n\
         Each repeat against a fresh server: the keep-alive load (xgate-bench, {} connections, closed loop) and the \
         new-connection load (ab, one connection per request, {} at a time), each without and then under a flood aimed \
         at the server's address. The flood (an AF_PACKET socket, as fast as one core sends) runs on CPU 1 with the \
         clients, and so does its delivery (veth runs the receiver's XDP and kernel input on the sender's CPU), so the \
         server's CPU sees only what its defense lets through: xgate's XDP shield (per-source rate, a budget for \
         sources that never completed a handshake), or the kernel's SYN backlog and cookies for nginx. The flood takes \
         CPU from the clients too: read the ratios side by side, not as the defense's cost alone. xgate's socket pool \
         gets {} more sockets here, room for the half-open connections its shield admits.\n",
        first.connections,
        crate::results::NEW_CONNECTION_CLIENTS,
        thousands(crate::results::FLOOD_POOL_MARGIN as f64),
    );
    let _ = writeln!(
        out,
        "| server | flood SYN/s | keep-alive req/s quiet | under flood | ratio | keep-alive errors (flood) | new conn./s quiet | under flood | ratio | failed (quiet / flood) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for case in cases {
        let runs = &case.runs;
        let median = |values: Vec<f64>| Spread::of(&values).map_or(f64::NAN, |s| s.median);
        let median_of = |field: fn(&FloodRun) -> f64| median(runs.iter().map(field).collect());
        let flood = median(runs.iter().flat_map(|r| r.flood_syn_per_second).collect());
        let ka_quiet = median_of(|r| r.keepalive_quiet.requests_per_second);
        let ka_flood = median_of(|r| r.keepalive_flooded.requests_per_second);
        let nc_quiet = median_of(|r| r.new_connections_quiet.requests_per_second);
        let nc_flood = median_of(|r| r.new_connections_flooded.requests_per_second);
        let ka_errors: u64 = runs.iter().map(|r| r.keepalive_flooded.errors).sum();
        let failed_quiet: u64 = runs.iter().map(|r| r.new_connections_quiet.failed).sum();
        let failed_flood: u64 = runs.iter().map(|r| r.new_connections_flooded.failed).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2}× | {} | {} | {} | {:.2}× | {} / {} |",
            case.server,
            thousands(flood),
            thousands(ka_quiet),
            thousands(ka_flood),
            ka_flood / ka_quiet,
            ka_errors,
            thousands(nc_quiet),
            thousands(nc_flood),
            nc_flood / nc_quiet,
            failed_quiet,
            failed_flood,
        );
    }
}

/// The table of one client's cases, the proxy section's left out (it has its own table).
fn http_table(out: &mut String, summaries: &[CaseSummary], client: &str) {
    let _ = writeln!(
        out,
        "| connections | server | req/s median (min–max) | p50 µs | p90 µs | p99 µs (min–max) | p99.9 µs | server CPU µs/req | machine CPU µs/req | client idle | errors | noisy |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in summaries
        .iter()
        .filter(|s| s.case.client == client && !PROXY_SERVERS.contains(&s.case.server.as_str()))
    {
        let mut noisy = Vec::new();
        if s.rps.noisy() {
            noisy.push("req/s");
        }
        if s.p99.noisy() {
            noisy.push("p99");
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}–{}) | {} | {} | {} ({}–{}) | {} | {:.2} | {:.2} | {} | {} | {} |",
            thousands(s.case.connections as f64),
            s.case.server,
            thousands(s.rps.median),
            thousands(s.rps.min),
            thousands(s.rps.max),
            micros(s.p50.median),
            micros(s.p90.median),
            micros(s.p99.median),
            micros(s.p99.min),
            micros(s.p99.max),
            micros(s.p999.median),
            s.cpu.median,
            s.machine_cpu.median,
            s.client_idle
                .map_or("–".to_string(), |idle| format!("{:.0}%", idle * 100.0)),
            s.errors,
            if noisy.is_empty() {
                "".to_string()
            } else {
                noisy.join(", ")
            }
        );
    }
}

/// One goal and whether the run met it.
struct Goal {
    name: String,
    target: String,
    measured: String,
    met: Option<bool>,
    /// A figure reported beside the goals, with no target to meet.
    report_only: bool,
}

impl Goal {
    /// A goal whose figures this run did not produce.
    fn not_measured(name: &str, target: &str) -> Goal {
        Goal {
            name: name.into(),
            target: target.into(),
            measured: "not measured".into(),
            met: None,
            report_only: false,
        }
    }
}

fn goals(results: &SuiteResults, summaries: &[CaseSummary]) -> Vec<Goal> {
    let mut goals = Vec::new();
    let reference = if results.plan.connections.contains(&100) {
        100
    } else {
        results.plan.connections[0]
    };
    let x = find(summaries, "xgate", "xgate-bench", reference);
    let n = find(summaries, "nginx", "xgate-bench", reference);
    // A comparison only counts when both sides answered every request.
    let clean = |a: &CaseSummary, b: &CaseSummary| {
        a.errors == 0 && b.errors == 0 && a.rps.median > 0.0 && b.rps.median > 0.0
    };
    let with_errors = |measured: String, a: &CaseSummary, b: &CaseSummary| {
        if a.errors + b.errors > 0 {
            format!("{measured} (errors: xgate {}, nginx {})", a.errors, b.errors)
        } else {
            measured
        }
    };
    goals.push(match (x, n) {
        (Some(x), Some(n)) if n.rps.median > 0.0 => Goal {
            name: format!("terminating HTTP, {reference} connections, closed loop: requests/s"),
            target: "xgate ≥ 2.0× nginx".into(),
            measured: with_errors(format!("{:.2}×", x.rps.median / n.rps.median), x, n),
            met: Some(clean(x, n) && x.rps.median >= 2.0 * n.rps.median),
            report_only: false,
        },
        _ => Goal::not_measured("terminating HTTP: requests/s", "xgate ≥ 2.0× nginx"),
    });
    // p99 is compared at the same offered load (open loop): in a closed loop latency is about
    // connections / throughput, which would only restate the requests/s goal.
    let xo = find(summaries, "xgate", OPEN_LOOP_CLIENT, reference);
    let no = find(summaries, "nginx", OPEN_LOOP_CLIENT, reference);
    goals.push(match (xo, no) {
        (Some(x), Some(n)) => Goal {
            name: format!("terminating HTTP, {reference} connections, same offered load (open loop): p99"),
            target: "xgate ≤ nginx".into(),
            measured: with_errors(
                format!("{} µs vs {} µs", micros(x.p99.median), micros(n.p99.median)),
                x,
                n,
            ),
            met: Some(clean(x, n) && x.p99.median <= n.p99.median),
            report_only: false,
        },
        _ => Goal::not_measured("terminating HTTP, same offered load: p99", "xgate ≤ nginx"),
    });
    let at_100 = find(summaries, "xgate", "xgate-bench", 100);
    let at_10k = find(summaries, "xgate", "xgate-bench", 10_000);
    goals.push(match (at_100, at_10k) {
        (Some(a), Some(b)) if a.rps.median > 0.0 => Goal {
            name: "connection scaling: xgate at 10,000 vs 100 connections".into(),
            target: "≥ 80%".into(),
            measured: format!("{:.0}%", 100.0 * b.rps.median / a.rps.median),
            met: Some(b.rps.median >= 0.8 * a.rps.median),
            report_only: false,
        },
        _ => Goal::not_measured("connection scaling: xgate at 10,000 vs 100 connections", "≥ 80%"),
    });
    goals.extend(proxy_goals(results, summaries));
    let ratios = results
        .packet_path
        .get("ratios")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ratios.is_empty() {
        goals.push(Goal::not_measured("packet path: AF_XDP rx vs XDP_DROP", "≥ 50%"));
    }
    for ratio in ratios {
        let bytes = ratio.get("frame_bytes").and_then(Value::as_u64).unwrap_or(0);
        let value = ratio.get("af_xdp_over_drop").and_then(Value::as_f64);
        goals.push(Goal {
            name: format!("packet path, {bytes}-byte frames: AF_XDP rx vs XDP_DROP"),
            target: "≥ 50%".into(),
            measured: value.map_or("not measured".into(), |v| format!("{:.0}%", v * 100.0)),
            met: value.map(|v| v >= 0.5),
            report_only: false,
        });
    }
    goals
}

/// The proxy section's goals (requests/s closed loop; p99 at the same offered load, open loop,
/// or closed loop in results without the open-loop proxy cases; xgate proxy vs nginx proxy) and,
/// reported beside them, the p50 each proxy's hop adds to the direct path (closed loop) and the
/// p99 each adds at the same offered load (open loop).
fn proxy_goals(results: &SuiteResults, summaries: &[CaseSummary]) -> Vec<Goal> {
    const RPS_TARGET: &str = "xgate proxy ≥ 2.0× nginx proxy";
    const P99_TARGET: &str = "xgate proxy < nginx proxy";
    const HOP_TARGET: &str = "reported (no target)";
    const OPEN_HOP_NAME: &str = "proxy mode, same offered load: added p99 of the hop (xgate vs nginx)";
    let hop_name =
        |proxy: &str| format!("proxy mode: added p50 of the {proxy} hop (p50 through it − p50 direct)");
    let Some(reference) = proxy_reference(&results.plan.proxy_connections) else {
        return vec![
            Goal::not_measured("proxy mode: requests/s", RPS_TARGET),
            Goal::not_measured("proxy mode: p99", P99_TARGET),
            Goal::not_measured(&hop_name("xgate"), HOP_TARGET),
            Goal::not_measured(&hop_name("nginx"), HOP_TARGET),
            Goal::not_measured(OPEN_HOP_NAME, HOP_TARGET),
        ];
    };
    let x = find(summaries, XGATE_PROXY_SERVER, "xgate-bench", reference);
    let n = find(summaries, NGINX_PROXY_SERVER, "xgate-bench", reference);
    let d = find(summaries, DIRECT_SERVER, "xgate-bench", reference);
    let xo = find(summaries, XGATE_PROXY_SERVER, OPEN_LOOP_CLIENT, reference);
    let no = find(summaries, NGINX_PROXY_SERVER, OPEN_LOOP_CLIENT, reference);
    let d_open = find(summaries, DIRECT_SERVER, OPEN_LOOP_CLIENT, reference);
    let errors_note = |cases: &[&CaseSummary]| -> String {
        let with_errors: Vec<String> = cases
            .iter()
            .filter(|c| c.errors > 0)
            .map(|c| format!("{} {}", c.case.server, c.errors))
            .collect();
        if with_errors.is_empty() {
            String::new()
        } else {
            format!(" (errors: {})", with_errors.join(", "))
        }
    };
    // A comparison only counts when every side answered every request.
    let clean = |cases: &[&CaseSummary]| cases.iter().all(|c| c.errors == 0 && c.rps.median > 0.0);
    let mut goals = Vec::new();
    goals.push(match (x, n) {
        (Some(x), Some(n)) if n.rps.median > 0.0 => Goal {
            name: format!("proxy mode, {reference} connections, closed loop: requests/s"),
            target: RPS_TARGET.into(),
            measured: format!("{:.2}×{}", x.rps.median / n.rps.median, errors_note(&[x, n])),
            met: Some(clean(&[x, n]) && x.rps.median >= 2.0 * n.rps.median),
            report_only: false,
        },
        _ => Goal::not_measured("proxy mode: requests/s", RPS_TARGET),
    });
    // p99 is compared at the same offered load where the run has it (as for the terminating
    // servers): in a closed loop it mostly restates the requests/s ratio.
    let (p99_pair, p99_loop) = match (xo, no) {
        (Some(x), Some(n)) => ((Some(x), Some(n)), "same offered load (open loop)"),
        _ => ((x, n), "closed loop"),
    };
    goals.push(match p99_pair {
        (Some(x), Some(n)) => Goal {
            name: format!("proxy mode, {reference} connections, {p99_loop}: p99"),
            target: P99_TARGET.into(),
            measured: format!(
                "{} µs vs {} µs{}",
                micros(x.p99.median),
                micros(n.p99.median),
                errors_note(&[x, n])
            ),
            met: Some(clean(&[x, n]) && x.p99.median < n.p99.median),
            report_only: false,
        },
        _ => Goal::not_measured("proxy mode: p99", P99_TARGET),
    });
    for (proxy, through) in [("xgate", x), ("nginx", n)] {
        goals.push(match (through, d) {
            (Some(p), Some(d)) => Goal {
                name: format!("{}, {reference} connections, closed loop", hop_name(proxy)),
                target: HOP_TARGET.into(),
                measured: format!(
                    "{} µs ({} − {}){}",
                    micros(p.p50.median - d.p50.median),
                    micros(p.p50.median),
                    micros(d.p50.median),
                    errors_note(&[p, d])
                ),
                met: None,
                report_only: true,
            },
            _ => Goal::not_measured(&hop_name(proxy), HOP_TARGET),
        });
    }
    goals.push(match (xo, no, d_open) {
        (Some(x), Some(n), Some(d)) => {
            let added = |p: &CaseSummary| {
                format!(
                    "{} µs ({} − {})",
                    micros(p.p99.median - d.p99.median),
                    micros(p.p99.median),
                    micros(d.p99.median)
                )
            };
            Goal {
                name: format!("{OPEN_HOP_NAME}, {reference} connections"),
                target: HOP_TARGET.into(),
                measured: format!(
                    "xgate {}, nginx {}{}",
                    added(x),
                    added(n),
                    errors_note(&[x, n, d])
                ),
                met: None,
                report_only: true,
            }
        }
        _ => Goal::not_measured(OPEN_HOP_NAME, HOP_TARGET),
    });
    goals
}

/// The proxy section's open-loop cases: all three servers at one offered rate, at the reference
/// count (absent from results written before they existed).
fn proxy_open_loop_table(out: &mut String, results: &SuiteResults, summaries: &[CaseSummary]) {
    let Some(reference) = proxy_reference(&results.plan.proxy_connections) else {
        return;
    };
    let cases: Vec<&CaseSummary> = PROXY_SERVERS
        .iter()
        .filter_map(|server| find(summaries, server, OPEN_LOOP_CLIENT, reference))
        .collect();
    if cases.is_empty() {
        return;
    }
    let rate = |s: &CaseSummary| {
        s.case
            .runs
            .first()
            .and_then(|r| r.offered_rate)
            .unwrap_or(f64::NAN)
    };
    let _ = writeln!(out, "\n### Proxy mode at the same offered load (open loop)\n");
    let _ = writeln!(
        out,
        "{} connections. All three get the same request rate, half the lower of the two proxies' closed-loop medians at this count, \
         so neither proxy is saturated; each request's latency runs from the time it was due (coordinated-omission corrected). \
         The added p99 of a hop is its p99 minus direct's.\n",
        thousands(reference as f64)
    );
    let _ = writeln!(
        out,
        "| server | rate req/s | p50 µs | p90 µs | p99 µs (min–max) | p99.9 µs |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for s in cases {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} ({}–{}) | {} |",
            s.case.server,
            if rate(s).is_nan() {
                "–".to_string()
            } else {
                thousands(rate(s))
            },
            micros(s.p50.median),
            micros(s.p90.median),
            micros(s.p99.median),
            micros(s.p99.min),
            micros(s.p99.max),
            micros(s.p999.median)
        );
    }
}

/// The proxy section: every proxy-mode case, and the p50 each hop adds at each count.
fn proxy_section(out: &mut String, results: &SuiteResults, summaries: &[CaseSummary]) {
    let cases: Vec<&CaseSummary> = results
        .plan
        .proxy_connections
        .iter()
        .flat_map(|&c| {
            PROXY_SERVERS
                .iter()
                .filter_map(move |server| find(summaries, server, "xgate-bench", c))
        })
        .collect();
    if cases.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Proxy mode: `GET /healthz` through one proxy to the same backend, client xgate-bench\n"
    );
    let _ = writeln!(
        out,
        "The backend is nginx in the lab's backend namespace (10.77.0.4:8080, `return 200 \"ok\\n\"`, one worker) on CPU 1 with the client, \
         so that each proxy has CPU 0 to itself. `xgate proxy`: xgate (one lane, 10.77.0.2) with the backend as its one upstream pool; \
         `nginx proxy`: nginx (10.77.0.3) with `proxy_pass` and upstream keepalive; `direct`: the client on the backend itself, no proxy. \
         Closed loop (the open-loop table at the end excepted); the added p50 of a hop is its p50 minus direct's at the same count.\n"
    );
    let _ = writeln!(
        out,
        "| server | connections | req/s median (min–max) | p50 µs (min–max) | p99 µs (min–max) | machine CPU µs/req | errors | noisy |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    for s in &cases {
        let mut noisy = Vec::new();
        if s.rps.noisy() {
            noisy.push("req/s");
        }
        if s.p99.noisy() {
            noisy.push("p99");
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}–{}) | {} ({}–{}) | {} ({}–{}) | {:.2} | {} | {} |",
            s.case.server,
            thousands(s.case.connections as f64),
            thousands(s.rps.median),
            thousands(s.rps.min),
            thousands(s.rps.max),
            micros(s.p50.median),
            micros(s.p50.min),
            micros(s.p50.max),
            micros(s.p99.median),
            micros(s.p99.min),
            micros(s.p99.max),
            s.machine_cpu.median,
            s.errors,
            noisy.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n| connections | xgate proxy / nginx proxy req/s | added p50 of the xgate hop µs | added p50 of the nginx hop µs |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    for &c in &results.plan.proxy_connections {
        let x = find(summaries, XGATE_PROXY_SERVER, "xgate-bench", c);
        let n = find(summaries, NGINX_PROXY_SERVER, "xgate-bench", c);
        let d = find(summaries, DIRECT_SERVER, "xgate-bench", c);
        let added = |p: Option<&CaseSummary>| match (p, d) {
            (Some(p), Some(d)) => micros(p.p50.median - d.p50.median),
            _ => "–".into(),
        };
        let ratio = match (x, n) {
            (Some(x), Some(n)) if n.rps.median > 0.0 => format!("{:.2}×", x.rps.median / n.rps.median),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            thousands(c as f64),
            ratio,
            added(x),
            added(n)
        );
    }
    proxy_open_loop_table(out, results, summaries);
}

fn packet_table(out: &mut String, packet_path: &Value) {
    if let Some(error) = packet_path.get("error") {
        let _ = writeln!(out, "The packet-path run failed: {error}\n");
        return;
    }
    let Some(rows) = packet_path.get("packet_path").and_then(Value::as_array) else {
        let _ = writeln!(out, "Not measured in this run.\n");
        return;
    };
    let _ = writeln!(
        out,
        "| frame | receiver | mode | frames/s median (min–max) | generated frames/s | noisy |"
    );
    let _ = writeln!(out, "|---:|---|---|---:|---:|---|");
    for row in rows {
        let number = |key: &str| row.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("?").to_string();
        let spread = Spread {
            median: number("median_pps"),
            min: number("min_pps"),
            max: number("max_pps"),
        };
        let _ = writeln!(
            out,
            "| {} B | {} | {} | {} ({}–{}) | {} | {} |",
            row.get("frame_bytes").and_then(Value::as_u64).unwrap_or(0),
            text("receiver"),
            text("mode"),
            thousands(spread.median),
            thousands(spread.min),
            thousands(spread.max),
            thousands(number("generated_pps_median")),
            if spread.noisy() { "yes" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "\nveth offers AF_XDP in copy mode only (zero-copy bind is refused), so no zero-copy figure can be measured here.\n"
    );
}

/// xgate with one lane vs two lanes, where both were measured.
fn lanes_section(out: &mut String, results: &SuiteResults, summaries: &[CaseSummary]) {
    let rows: Vec<(usize, &CaseSummary, &CaseSummary)> = results
        .plan
        .connections
        .iter()
        .filter_map(|&c| {
            Some((
                c,
                find(summaries, "xgate", "xgate-bench", c)?,
                find(summaries, TWO_LANES_SERVER, "xgate-bench", c)?,
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Lanes: one lane (CPU 0) vs two lanes (CPUs 0 and 1)\n");
    let _ = writeln!(
        out,
        "This machine has two CPUs in all and the load generator is pinned to CPU 1, so the second lane shares its CPU with the client: \
         the figure shows what a second lane gives when no core is free for it, not how lanes scale on a machine with cores to spare.\n"
    );
    let _ = writeln!(
        out,
        "| connections | lanes=1 req/s | lanes=2 req/s | lanes=2 / lanes=1 | lanes=1 p99 µs | lanes=2 p99 µs | lanes=2 machine CPU µs/req |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    for (connections, one, two) in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2}× | {} | {} | {:.2} |",
            thousands(connections as f64),
            thousands(one.rps.median),
            thousands(two.rps.median),
            two.rps.median / one.rps.median.max(1.0),
            micros(one.p99.median),
            micros(two.p99.median),
            two.machine_cpu.median
        );
    }
}

/// The markdown report of one run.
pub fn markdown(results: &SuiteResults, plots: Option<(&str, &str)>) -> String {
    let summaries: Vec<CaseSummary> = results.http.iter().filter_map(summarise).collect();
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(out, "# xgate benchmark results\n");
    let _ = writeln!(
        out,
        "Run of {} at revision `{}`, {} mode: {} repeats per figure, {} s measured after {} s warm-up.\n",
        results.date,
        results.git,
        results.plan.mode,
        results.plan.repeats,
        results.plan.duration_seconds,
        results.plan.warmup_seconds
    );
    let _ = writeln!(out, "Command: `{}`\n", results.command);
    let _ = writeln!(
        out,
        "Machine: {} ({} CPUs), Linux {}, {} GiB; {}; {}. Pinning: {}. xgate's UMEM: {}.\n",
        m.cpu_model,
        m.cpus,
        m.kernel,
        m.memory_gib,
        m.nginx,
        m.wrk,
        results.pinning,
        results.xgate_umem_backing
    );
    let _ = writeln!(
        out,
        "Every figure is the median of the repeats with min–max beside it; a figure whose spread exceeds {:.0}% of its median is marked noisy. \
         Machine CPU per request = whole-machine busy time from /proc/stat over the measurement (all processes, the client included, kernel and softirq) divided by requests; \
         server CPU per request = the same minus the client process's own CPU time (the userspace client busy-polls its core, so its time is mostly spinning). \
         Client idle = the share of the load generator's loop turns that found no frame and no work: the room the client had left (wrk: not known).\n",
        NOISY_SPREAD * 100.0
    );
    let _ = writeln!(out, "## Goals\n");
    let _ = writeln!(out, "| goal | target | measured | met |");
    let _ = writeln!(out, "|---|---|---|---|");
    for goal in goals(results, &summaries) {
        let met = match (goal.report_only, goal.met) {
            (true, _) => "–",
            (false, Some(true)) => "yes",
            (false, Some(false)) => "**no**",
            (false, None) => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            goal.name, goal.target, goal.measured, met
        );
    }
    let _ = writeln!(
        out,
        "\n## HTTP, terminating: `GET /healthz`, client xgate-bench (userspace stack over AF_XDP)\n"
    );
    let bytes: Vec<String> = ["xgate", "nginx"]
        .iter()
        .filter_map(|server| {
            let runs = results.http.iter().find(|c| c.server == *server)?;
            Some(format!("{server} {} B", runs.runs.first()?.response_bytes))
        })
        .collect();
    let _ = writeln!(out, "Response size (head and body): {}.\n", bytes.join(", "));
    http_table(&mut out, &summaries, "xgate-bench");
    let _ = writeln!(out, "\n### Ratios, xgate / nginx (medians of this run)\n");
    let _ = writeln!(
        out,
        "| connections | req/s | p99 (lower is better) | server CPU per request |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    for &connections in &results.plan.connections {
        if let (Some(x), Some(n)) = (
            find(&summaries, "xgate", "xgate-bench", connections),
            find(&summaries, "nginx", "xgate-bench", connections),
        ) {
            let ratio = |a: f64, b: f64| {
                if b > 0.0 {
                    format!("{:.2}×", a / b)
                } else {
                    "–".into()
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                thousands(connections as f64),
                ratio(x.rps.median, n.rps.median),
                ratio(x.p99.median, n.p99.median),
                ratio(x.cpu.median, n.cpu.median)
            );
        }
    }
    lanes_section(&mut out, results, &summaries);
    if let Some((rps_svg, cdf_svg)) = plots {
        let _ = writeln!(
            out,
            "\n![requests/s vs connections]({rps_svg})\n\n![latency CDF]({cdf_svg})"
        );
    }
    let _ = writeln!(
        out,
        "\n## Latency at the same offered load (open loop, coordinated-omission corrected)\n"
    );
    // The terminating servers' rate: the proxy section's open-loop cases have their own.
    if let Some(rate) = results
        .http
        .iter()
        .find(|c| c.client == OPEN_LOOP_CLIENT && !PROXY_SERVERS.contains(&c.server.as_str()))
        .and_then(|c| c.runs.first())
    {
        let _ = writeln!(
            out,
            "Both servers get the same request rate ({} req/s, half the lower closed-loop median), so latency is compared without either being saturated; each request's latency runs from the time it was due.\n",
            thousands(rate.offered_rate.unwrap_or(0.0))
        );
    }
    http_table(&mut out, &summaries, OPEN_LOOP_CLIENT);
    proxy_section(&mut out, results, &summaries);
    let _ = writeln!(
        out,
        "\n## Cross-check: wrk (kernel-stack client, 1 thread)\n\nwrk reports p50/p90/p99 only. It runs on one core of the kernel stack, so it saturates well below the servers.\n"
    );
    http_table(&mut out, &summaries, "wrk");
    flood_section(&mut out, &results.flood);
    let _ = writeln!(out, "\n## Packet path: AF_XDP receive vs XDP_DROP on one veth\n");
    packet_table(&mut out, &results.packet_path);
    for section in &results.profile {
        let _ = writeln!(
            out,
            "## Where xgate spends its CPU at {} connections (perf: xgate's threads, user and kernel, top symbols by self time)\n\n```",
            thousands(section.connections as f64)
        );
        for line in &section.top {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "```\n");
    }
    out
}

fn xgate_bench_series(results: &SuiteResults, server: &str) -> Vec<(usize, Spread)> {
    results
        .http
        .iter()
        .filter(|c| c.server == server && c.client == "xgate-bench")
        .filter_map(|c| {
            Some((
                c.connections,
                Spread::of(&c.runs.iter().map(|r| r.requests_per_second).collect::<Vec<_>>())?,
            ))
        })
        .collect()
}

const SERIES: [(&str, RGBColor); 3] = [
    ("xgate", RGBColor(0x1f, 0x77, 0xb4)),
    ("nginx", RGBColor(0xd6, 0x27, 0x28)),
    (TWO_LANES_SERVER, RGBColor(0x2c, 0xa0, 0x2c)),
];

fn plot_rps(results: &SuiteResults, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = results
        .http
        .iter()
        .flat_map(|c| c.runs.iter().map(|r| r.requests_per_second))
        .fold(1.0, f64::max)
        * 1.1;
    let (low, high) = results
        .plan
        .connections
        .iter()
        .fold((f64::MAX, 1.0f64), |(lo, hi), &c| {
            (lo.min(c as f64), hi.max(c as f64))
        });
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "requests/s vs keep-alive connections (median, min–max)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((low * 0.7..high * 1.4).log_scale(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("requests/s")
        .y_label_formatter(&|v| thousands(*v))
        .x_label_formatter(&|v| thousands(*v))
        .draw()?;
    for (server, color) in SERIES {
        let series = xgate_bench_series(results, server);
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|(c, s)| (*c as f64, s.median)),
                color.stroke_width(2),
            ))?
            .label(server)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            series
                .iter()
                .map(|(c, s)| Circle::new((*c as f64, s.median), 4, color.filled())),
        )?;
        chart.draw_series(series.iter().map(|(c, s)| {
            PathElement::new(
                vec![(*c as f64, s.min), (*c as f64, s.max)],
                color.stroke_width(1),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Maps a percentile to "nines" so the tail gets room: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3.
fn nines(percentile: f64) -> f64 {
    -(1.0 - (percentile / 100.0).min(0.99999)).log10()
}

fn plot_cdf(results: &SuiteResults, path: &Path) -> anyhow::Result<bool> {
    let reference = if results.plan.connections.contains(&100) {
        100
    } else {
        results.plan.connections[0]
    };
    // The run whose p99 is the median of its case (closed loop, and open loop at equal load).
    let median_run = |server: &str, client: &str| -> Option<&RunFigures> {
        let case = results
            .http
            .iter()
            .find(|c| c.server == server && c.client == client && c.connections == reference)?;
        let mut runs: Vec<&RunFigures> = case.runs.iter().collect();
        runs.sort_by(|a, b| a.p99_us.total_cmp(&b.p99_us));
        runs.get(runs.len() / 2).copied()
    };
    let mut curves: Vec<(String, RGBColor, &RunFigures)> = Vec::new();
    for (server, color) in SERIES {
        if let Some(run) = median_run(server, "xgate-bench") {
            curves.push((format!("{server}, closed loop"), color, run));
        }
        if let Some(run) = median_run(server, OPEN_LOOP_CLIENT) {
            // The same hue, lighter: the open-loop run at equal offered load.
            let light = RGBColor(color.0 / 2 + 127, color.1 / 2 + 127, color.2 / 2 + 127);
            curves.push((format!("{server}, same offered load (open loop)"), light, run));
        }
    }
    curves.retain(|(_, _, run)| !run.cdf.is_empty());
    if curves.is_empty() {
        return Ok(false);
    }
    let top = curves
        .iter()
        .flat_map(|(_, _, run)| run.cdf.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.5;
    let bottom = curves
        .iter()
        .flat_map(|(_, _, run)| run.cdf.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .clamp(1.0, top)
        * 0.7;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("latency by percentile, {reference} connections (run with the median p99)"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..nines(99.999), (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(6)
        .x_label_formatter(&|t| format!("{}%", 100.0 * (1.0 - 10f64.powf(-*t))))
        .draw()?;
    for (label, color, run) in curves {
        chart
            .draw_series(LineSeries::new(
                run.cdf.iter().map(|(p, us)| (nines(*p), us.max(bottom))),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(true)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `<stem>.json`, `<stem>.md`, `<stem>-rps.svg` and `<stem>-latency-cdf.svg`.
pub fn write_all(results: &SuiteResults, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let json = PathBuf::from(format!("{}.json", stem.display()));
    std::fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let mut written = vec![json];
    written.extend(write_views(results, stem)?);
    Ok(written)
}

/// Writes `<stem>.md`, `<stem>-rps.svg` and `<stem>-latency-cdf.svg` from `results`.
pub fn write_views(results: &SuiteResults, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let with_suffix = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
    let rps = with_suffix("-rps.svg");
    plot_rps(results, &rps).context("plotting requests/s")?;
    let cdf = with_suffix("-latency-cdf.svg");
    let have_cdf = plot_cdf(results, &cdf).context("plotting the latency CDF")?;
    let md = with_suffix(".md");
    std::fs::write(&md, markdown(results, Some((&file_name(&rps), &file_name(&cdf)))))?;
    let mut written = vec![md, rps];
    if have_cdf {
        written.push(cdf);
    }
    Ok(written)
}

/// The heading of the part of `RESULTS.md` that people write (the reading of the figures and
/// profiles); everything from it on survives when the suite rewrites the file.
pub const NOTES_HEADING: &str = "## Notes (written by people; kept when the suite rewrites this file)";

/// Keeps the notes of an existing `RESULTS.md` behind freshly generated tables.
fn with_kept_notes(generated: String, existing: Option<&str>) -> String {
    match existing.and_then(|old| old.find(NOTES_HEADING).map(|at| &old[at..])) {
        Some(notes) => format!("{generated}\n{notes}"),
        None => generated,
    }
}

/// Writes `bench/RESULTS.md`: the latest table, with plots linked from `results/`, followed by
/// the notes already in the file.
pub fn write_results_md(results: &SuiteResults, stem: &Path, path: &Path) -> anyhow::Result<()> {
    let relative = |suffix: &str| format!("results/{}{suffix}", file_name(stem));
    let mut text = markdown(
        results,
        Some((&relative("-rps.svg"), &relative("-latency-cdf.svg"))),
    );
    let _ = writeln!(
        text,
        "\nFull data: [`{}`]({}). Regenerate with `scripts/bench.sh` (quick, about 2 minutes) or `scripts/bench.sh --full`.",
        relative(".json"),
        relative(".json")
    );
    let existing = std::fs::read_to_string(path).ok();
    let text = with_kept_notes(text, existing.as_deref());
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 2s test @ http://10.77.0.3/healthz
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.61ms  256.44us   6.86ms   92.61%
    Req/Sec    62.50k     2.14k   65.29k    80.00%
  Latency Distribution
     50%    1.56ms
     75%    1.65ms
     90%    1.76ms
     99%  812.00us
  124411 requests in 2.00s, 17.92MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  62183.50
Transfer/sec:      8.96MB
";

    #[test]
    fn wrk_output_is_read_with_units_and_errors() {
        let (figures, completed) = parse_wrk(WRK).unwrap();
        assert_eq!(completed, 124411);
        assert_eq!(figures.requests_per_second, 62183.5);
        assert_eq!(figures.p50_us, 1560.0);
        assert_eq!(figures.p90_us, 1760.0);
        assert_eq!(figures.p99_us, 812.0);
        assert_eq!(figures.errors, 7);
        assert!(parse_wrk("unable to connect to 10.77.0.3:80 Connection refused").is_none());
    }

    #[test]
    fn spreads_take_the_median_and_flag_noise() {
        let spread = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((spread.median, spread.min, spread.max), (2.0, 1.0, 3.0));
        assert!(spread.noisy());
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(!Spread::of(&[100.0, 101.0, 99.0]).unwrap().noisy());
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn numbers_are_grouped_for_reading() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(micros(1234.4), "1234");
        assert_eq!(micros(12.34), "12.3");
    }

    #[test]
    fn notes_survive_a_rewrite_and_tables_do_not() {
        let old = format!("# old tables\n| 1 |\n\n{NOTES_HEADING}\n\nThe loop and worker share a core.\n");
        let new = with_kept_notes("# new tables\n".into(), Some(&old));
        assert!(new.starts_with("# new tables\n"));
        assert!(!new.contains("old tables"));
        assert!(new.ends_with("The loop and worker share a core.\n"));
        assert_eq!(with_kept_notes("# new\n".into(), Some("# no notes\n")), "# new\n");
        assert_eq!(with_kept_notes("# new\n".into(), None), "# new\n");
    }

    /// A run with the given requests/s, p50 and p99 (µs), every request answered.
    fn run(rps: f64, p50: f64, p99: f64) -> RunFigures {
        let (mut figures, _) = parse_wrk(WRK).unwrap();
        figures.requests_per_second = rps;
        figures.p50_us = p50;
        figures.p90_us = p50;
        figures.p99_us = p99;
        figures.p999_us = p99;
        figures.errors = 0;
        figures
    }

    fn case(server: &str, connections: usize, runs: Vec<RunFigures>) -> HttpCase {
        HttpCase {
            server: server.into(),
            client: "xgate-bench".into(),
            connections,
            runs,
        }
    }

    /// Results of a smoke-sized run: terminating cases at 100 connections and the proxy cases
    /// given (none: as written before the proxy section existed).
    fn results(proxy: Vec<HttpCase>) -> SuiteResults {
        let mut plan = serde_json::json!({
            "mode": "smoke", "connections": [100], "repeats": 3, "warmup_seconds": 0.1,
            "duration_seconds": 0.3, "wrk_connections": [], "packet_seconds": 0.2, "profile": false,
        });
        if !proxy.is_empty() {
            plan["proxy_connections"] = serde_json::json!([100]);
        }
        let mut http = vec![
            case("xgate", 100, vec![run(200_000.0, 400.0, 900.0); 3]),
            case("nginx", 100, vec![run(80_000.0, 1200.0, 2000.0); 3]),
        ];
        http.extend(proxy);
        SuiteResults {
            schema: 1,
            date: "2025-01-01".into(),
            git: "abc1234".into(),
            command: "xgate-bench suite --smoke".into(),
            plan: serde_json::from_value(plan).unwrap(),
            machine: crate::results::Machine {
                cpu_model: "cpu".into(),
                cpus: 2,
                kernel: "6.1".into(),
                memory_gib: 4.0,
                nginx: "nginx/1.22.1".into(),
                wrk: "wrk 4.1.0".into(),
            },
            pinning: "servers on CPU 0".into(),
            xgate_umem_backing: "NormalPages".into(),
            http,
            packet_path: Value::Null,
            profile: Vec::new(),
            flood: Vec::new(),
        }
    }

    /// ab's output as ab 2.3 prints it with `-q` (trimmed).
    const AB: &str = "Server Software:\nServer Hostname:        10.77.0.2\nServer Port:            80\n\n\
        Document Path:          /healthz\nDocument Length:        3 bytes\n\nConcurrency Level:      10\n\
        Time taken for tests:   2.000 seconds\nComplete requests:      14718\nFailed requests:        2\n\
           (Connect: 0, Receive: 0, Length: 2, Exceptions: 0)\nNon-2xx responses:      3\n\
        Total transferred:      1206876 bytes\nRequests per second:    7358.94 [#/sec] (mean)\n";

    #[test]
    fn ab_output_gives_rate_completed_and_failures() {
        let run = parse_ab(AB).unwrap();
        assert_eq!(run.completed, 14718);
        assert_eq!(run.failed, 5, "failed requests and non-2xx answers");
        assert!((run.requests_per_second - 7358.94).abs() < 1e-9);
        assert!(parse_ab("apr_socket_connect(): Connection refused (111)").is_none());
    }

    #[test]
    fn the_flood_section_shows_medians_and_ratios_per_server() {
        let new_connections = |rps: f64, failed: u64| NewConnectionRun {
            requests_per_second: rps,
            completed: rps as u64 * 2,
            failed,
        };
        let flood_run = |quiet: f64, flooded: f64, syn: f64| crate::results::FloodRun {
            keepalive_quiet: run(quiet, 400.0, 900.0),
            keepalive_flooded: run(flooded, 500.0, 1000.0),
            new_connections_quiet: new_connections(8000.0, 0),
            new_connections_flooded: new_connections(4000.0, 1),
            flood_syn_per_second: [syn, syn],
        };
        let mut results = results(Vec::new());
        results.flood = vec![FloodCase {
            server: "xgate".into(),
            connections: 100,
            runs: vec![
                flood_run(200_000.0, 100_000.0, 280_000.0),
                flood_run(210_000.0, 105_000.0, 300_000.0),
                flood_run(190_000.0, 95_000.0, 290_000.0),
            ],
        }];
        let markdown = markdown(&results, None);
        assert!(markdown.contains("## SYN flood"), "{markdown}");
        assert!(
            markdown.contains(
                "| xgate | 290,000 | 200,000 | 100,000 | 0.50× | 0 | 8,000 | 4,000 | 0.50× | 0 / 3 |"
            ),
            "{markdown}"
        );
        // Results written before the section existed have none.
        assert!(!super::markdown(&super::tests::results(Vec::new()), None).contains("## SYN flood"));
    }

    #[test]
    fn proxy_cases_get_their_own_table_and_goals() {
        let results = results(vec![
            case(XGATE_PROXY_SERVER, 100, vec![run(90_000.0, 500.0, 1000.0); 3]),
            case(
                NGINX_PROXY_SERVER,
                100,
                vec![
                    run(40_000.0, 1500.0, 3000.0),
                    run(41_000.0, 1600.0, 3100.0),
                    run(39_000.0, 1400.0, 2900.0),
                ],
            ),
            case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
        ]);
        let text = markdown(&results, None);
        for needle in [
            "## Proxy mode",
            "| xgate proxy | 100 | 90,000 (90,000–90,000) | 500 (500–500) | 1000 (1000–1000) |",
            "| nginx proxy | 100 | 40,000 (39,000–41,000) | 1500 (1400–1600) | 3000 (2900–3100) |",
            "| direct | 100 | 100,000 (100,000–100,000) |",
            "| proxy mode, 100 connections, closed loop: requests/s | xgate proxy ≥ 2.0× nginx proxy | 2.25× | yes |",
            "| proxy mode, 100 connections, closed loop: p99 | xgate proxy < nginx proxy | 1000 µs vs 3000 µs | yes |",
            "added p50 of the xgate hop (p50 through it − p50 direct), 100 connections, closed loop | reported (no target) | 50.0 µs (500 − 450) | – |",
            "added p50 of the nginx hop (p50 through it − p50 direct), 100 connections, closed loop | reported (no target) | 1050 µs (1500 − 450) | – |",
            "| 100 | 2.25× | 50.0 | 1050 |",
        ] {
            assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
        }
        // The terminating table keeps to the terminating servers.
        let terminating =
            &text[text.find("## HTTP, terminating").unwrap()..text.find("## Latency at").unwrap()];
        assert!(
            !terminating.contains("proxy") && !terminating.contains("| direct |"),
            "{terminating}"
        );
        // Without the open-loop proxy cases (results written before they existed) there is no
        // open-loop proxy table, and the added p99 of the hop is not measured.
        assert!(!text.contains("Proxy mode at the same offered load"), "{text}");
        assert!(
            text.contains(
                "| proxy mode, same offered load: added p99 of the hop (xgate vs nginx) | reported (no target) | not measured | not measured |"
            ),
            "{text}"
        );
    }

    /// An open-loop case at `rate` requests/s offered.
    fn open_case(server: &str, rate: f64, runs: Vec<RunFigures>) -> HttpCase {
        HttpCase {
            client: OPEN_LOOP_CLIENT.into(),
            runs: runs
                .into_iter()
                .map(|mut r| {
                    r.offered_rate = Some(rate);
                    r
                })
                .collect(),
            ..case(server, 100, Vec::new())
        }
    }

    #[test]
    fn proxy_open_loop_cases_judge_the_proxy_p99_and_stay_out_of_the_terminating_sections() {
        let results = results(vec![
            open_case("xgate", 40_000.0, vec![run(40_000.0, 300.0, 700.0); 3]),
            open_case("nginx", 40_000.0, vec![run(40_000.0, 900.0, 1800.0); 3]),
            case(XGATE_PROXY_SERVER, 100, vec![run(90_000.0, 500.0, 5000.0); 3]),
            case(NGINX_PROXY_SERVER, 100, vec![run(40_000.0, 1500.0, 3000.0); 3]),
            case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
            open_case(
                XGATE_PROXY_SERVER,
                20_000.0,
                vec![
                    run(20_000.0, 300.0, 600.0),
                    run(20_000.0, 310.0, 650.0),
                    run(20_000.0, 290.0, 550.0),
                ],
            ),
            open_case(
                NGINX_PROXY_SERVER,
                20_000.0,
                vec![run(20_000.0, 700.0, 1400.0); 3],
            ),
            open_case(DIRECT_SERVER, 20_000.0, vec![run(20_000.0, 200.0, 400.0); 3]),
        ]);
        let text = markdown(&results, None);
        for needle in [
            "### Proxy mode at the same offered load (open loop)",
            "| xgate proxy | 20,000 | 300 | 300 | 600 (550–650) | 600 |",
            "| nginx proxy | 20,000 | 700 | 700 | 1400 (1400–1400) | 1400 |",
            "| direct | 20,000 | 200 | 200 | 400 (400–400) | 400 |",
            // Judged at the same offered load, not closed loop (where xgate proxy's p99 is higher).
            "| proxy mode, 100 connections, same offered load (open loop): p99 | xgate proxy < nginx proxy | 600 µs vs 1400 µs | yes |",
            "| proxy mode, same offered load: added p99 of the hop (xgate vs nginx), 100 connections | reported (no target) | xgate 200 µs (600 − 400), nginx 1000 µs (1400 − 400) | – |",
            // The closed-loop p99 stays in the proxy table.
            "| xgate proxy | 100 | 90,000 (90,000–90,000) | 500 (500–500) | 5000 (5000–5000) |",
            // The terminating goal and rate are the terminating servers' own.
            "| terminating HTTP, 100 connections, same offered load (open loop): p99 | xgate ≤ nginx | 700 µs vs 1800 µs | yes |",
            "same request rate (40,000 req/s,",
        ] {
            assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
        }
        assert!(!text.contains("closed loop: p99"), "{text}");
        let terminating_open = &text
            [text.find("## Latency at the same offered load").unwrap()..text.find("## Proxy mode").unwrap()];
        assert!(
            !terminating_open.contains("proxy") && !terminating_open.contains("| direct |"),
            "{terminating_open}"
        );

        // A slower xgate proxy at the same offered load does not meet the p99 goal.
        let mut slower = results.clone();
        for case in &mut slower.http {
            if case.server == XGATE_PROXY_SERVER && case.client == OPEN_LOOP_CLIENT {
                for run in &mut case.runs {
                    run.p99_us = 2000.0;
                }
            }
        }
        let text = markdown(&slower, None);
        assert!(text.contains("| 2000 µs vs 1400 µs | **no** |"), "{text}");
    }

    #[test]
    fn a_slower_or_erring_xgate_proxy_does_not_meet_the_proxy_goals() {
        let mut erring = run(90_000.0, 500.0, 1000.0);
        erring.errors = 2;
        let results = results(vec![
            case(XGATE_PROXY_SERVER, 100, vec![erring; 3]),
            case(NGINX_PROXY_SERVER, 100, vec![run(40_000.0, 1500.0, 3000.0); 3]),
            case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
        ]);
        let text = markdown(&results, None);
        assert!(
            text.contains("| 2.25× (errors: xgate proxy 6) | **no** |"),
            "{text}"
        );
        let slow = results_with_xgate_proxy(run(60_000.0, 2000.0, 4000.0));
        let text = markdown(&slow, None);
        assert!(text.contains("| 1.50× | **no** |"), "{text}");
        assert!(text.contains("| 4000 µs vs 3000 µs | **no** |"), "{text}");
    }

    fn results_with_xgate_proxy(xgate: RunFigures) -> SuiteResults {
        results(vec![
            case(XGATE_PROXY_SERVER, 100, vec![xgate; 3]),
            case(NGINX_PROXY_SERVER, 100, vec![run(40_000.0, 1500.0, 3000.0); 3]),
            case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
        ])
    }

    #[test]
    fn results_without_a_proxy_section_still_render() {
        let text = markdown(&results(Vec::new()), None);
        assert!(!text.contains("## Proxy mode"), "{text}");
        assert!(
            text.contains(
                "| proxy mode: requests/s | xgate proxy ≥ 2.0× nginx proxy | not measured | not measured |"
            ),
            "{text}"
        );
        // A results file written before the proxy section existed reads as it did.
        let mut json = serde_json::to_value(results(Vec::new())).unwrap();
        json["plan"].as_object_mut().unwrap().remove("proxy_connections");
        let old: SuiteResults = serde_json::from_value(json).unwrap();
        assert!(old.plan.proxy_connections.is_empty());
        assert_eq!(markdown(&old, None), text);
    }

    #[test]
    fn nines_spread_the_tail() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!(nines(100.0).is_finite());
    }
}
