//! The goals table: each goal with its target, what this run measured, and whether it was met
//! (terminating HTTP, connection scaling, proxy mode, the packet path).

use serde_json::Value;

use crate::results::{
    proxy_reference, SuiteResults, DIRECT_SERVER, NGINX_PROXY_SERVER, OPEN_LOOP_CLIENT, XGATE_PROXY_SERVER,
};

use super::{
    micros,
    summary::{find, CaseSummary},
};

/// One goal and whether the run met it.
pub(super) struct Goal {
    pub(super) name: String,
    pub(super) target: String,
    pub(super) measured: String,
    pub(super) met: Option<bool>,
    pub(super) kind: GoalKind,
}

/// What a goal row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GoalKind {
    /// A target this run's figures meet or miss.
    Target,
    /// A figure reported beside the goals, with no target to meet.
    ReportOnly,
    /// A target this machine cannot measure: the figure is bound by the load generator
    /// (received what was generated), so meeting it would say nothing about xgate.
    Unmeasurable,
}

impl Goal {
    /// A goal whose figures this run did not produce.
    fn not_measured(name: &str, target: &str) -> Goal {
        Goal {
            name: name.into(),
            target: target.into(),
            measured: "not measured".into(),
            met: None,
            kind: GoalKind::Target,
        }
    }
}

pub(super) fn goals(results: &SuiteResults, summaries: &[CaseSummary]) -> Vec<Goal> {
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
            kind: GoalKind::Target,
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
            kind: GoalKind::Target,
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
            kind: GoalKind::Target,
        },
        _ => Goal::not_measured("connection scaling: xgate at 10,000 vs 100 connections", "≥ 80%"),
    });
    goals.extend(proxy_goals(results, summaries));
    goals.extend(super::tls::tls_goals(results));
    let ratios = results
        .packet_path
        .get("ratios")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ratios.is_empty() {
        goals.push(Goal::not_measured("packet path: AF_XDP rx vs XDP_DROP", "≥ 50%"));
    }
    let rows = results
        .packet_path
        .get("packet_path")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for ratio in ratios {
        let bytes = ratio.get("frame_bytes").and_then(Value::as_u64).unwrap_or(0);
        let value = ratio.get("af_xdp_over_drop").and_then(Value::as_f64);
        let name = format!("packet path, {bytes}-byte frames: AF_XDP rx vs XDP_DROP");
        // XDP_DROP receiving what the generator sent (within 2%) measures the generator: the
        // ratio then says nothing about what AF_XDP could take.
        let drop_row = rows.iter().find(|row| {
            row.get("frame_bytes").and_then(Value::as_u64) == Some(bytes)
                && row.get("receiver").and_then(Value::as_str) == Some("xdp_drop")
        });
        let number = |row: &Value, key: &str| row.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
        if let Some(row) = drop_row {
            let (received, generated) = (number(row, "median_pps"), number(row, "generated_pps_median"));
            if generated > 0.0 && (received - generated).abs() <= 0.02 * generated {
                goals.push(Goal {
                    name,
                    target: "≥ 50%".into(),
                    measured: format!(
                        "{} (XDP_DROP received {} of {} frames/s generated: generator-bound)",
                        value.map_or("–".into(), |v| format!("{:.0}%", v * 100.0)),
                        super::thousands(received),
                        super::thousands(generated)
                    ),
                    met: None,
                    kind: GoalKind::Unmeasurable,
                });
                continue;
            }
        }
        goals.push(Goal {
            name,
            target: "≥ 50%".into(),
            measured: value.map_or("not measured".into(), |v| format!("{:.0}%", v * 100.0)),
            met: value.map(|v| v >= 0.5),
            kind: GoalKind::Target,
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
            kind: GoalKind::Target,
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
            kind: GoalKind::Target,
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
                kind: GoalKind::ReportOnly,
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
                kind: GoalKind::ReportOnly,
            }
        }
        _ => Goal::not_measured(OPEN_HOP_NAME, HOP_TARGET),
    });
    goals
}
