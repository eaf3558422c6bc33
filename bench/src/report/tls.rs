//! The HTTPS section's table and goals: keep-alive requests over TLS (wrk) and full handshakes
//! (ab), xgate against nginx with the same certificate, and how busy the client was (both
//! clients use one core; near 100% the client, not the server, is the limit).

use std::fmt::Write;

use crate::results::{SuiteResults, TlsCase};

use super::{
    goals::{Goal, GoalKind},
    thousands, Spread,
};

/// A client this busy (its CPU time over the run's wall time) was the limit of the run.
const CLIENT_BOUND: f64 = 0.95;

fn median(values: impl Iterator<Item = f64>) -> f64 {
    Spread::of(&values.collect::<Vec<_>>()).map_or(f64::NAN, |s| s.median)
}

/// Median keep-alive requests/s, errors, and median client busy share at `connections`.
fn keep_alive(case: &TlsCase, connections: usize) -> Option<(f64, u64, f64)> {
    let at = case
        .keep_alive
        .iter()
        .position(|c| c.connections == connections)?;
    let runs = &case.keep_alive[at].runs;
    let busy = case
        .keep_alive_client_busy
        .get(at)
        .map_or(f64::NAN, |b| median(b.iter().copied()));
    Some((
        median(runs.iter().map(|r| r.requests_per_second)),
        runs.iter().map(|r| r.errors).sum(),
        busy,
    ))
}

/// Median full handshakes/s, failures, and median client busy share.
fn handshakes(case: &TlsCase) -> (f64, u64, f64) {
    (
        median(case.handshakes.iter().map(|r| r.requests_per_second)),
        case.handshakes.iter().map(|r| r.failed).sum(),
        median(case.handshake_client_busy.iter().copied()),
    )
}

fn case<'a>(results: &'a SuiteResults, server: &str) -> Option<&'a TlsCase> {
    results.tls.iter().find(|c| c.server == server)
}

/// The counts both servers ran keep-alive at.
fn counts(results: &SuiteResults) -> Vec<usize> {
    let mut counts: Vec<usize> = results
        .tls
        .iter()
        .flat_map(|c| c.keep_alive.iter().map(|k| k.connections))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

pub(super) fn tls_section(out: &mut String, results: &SuiteResults) {
    if results.tls.is_empty() {
        return;
    }
    let counts = counts(results);
    let _ = writeln!(
        out,
        "\n## HTTPS: xgate and nginx terminating TLS (same ECDSA P-256 certificate, TLS 1.3)\n\n\
         Keep-alive: wrk (one thread, OpenSSL, kernel stack) over HTTPS. Full handshakes: ab, one request per \
         connection, {} at a time, no session reuse. Each client has one core (CPU 1); \"client busy\" is its CPU \
         time over the run: near 100% the client, not the server, set the figure.\n",
        crate::results::NEW_CONNECTION_CLIENTS
    );
    let mut header = String::from("| server |");
    let mut rule = String::from("|---|");
    for c in &counts {
        let _ = write!(header, " keep-alive req/s, {c} conn. (client busy) |");
        rule.push_str("---:|");
    }
    header.push_str(" full handshakes/s (client busy) | errors |");
    rule.push_str("---:|---:|");
    let _ = writeln!(out, "{header}\n{rule}");
    for tls in &results.tls {
        let mut row = format!("| {} |", tls.server);
        let mut errors = 0;
        for &c in &counts {
            match keep_alive(tls, c) {
                Some((rps, e, busy)) => {
                    errors += e;
                    let _ = write!(row, " {} ({:.0}%) |", thousands(rps), busy * 100.0);
                }
                None => row.push_str(" – |"),
            }
        }
        let (rate, failed, busy) = handshakes(tls);
        let _ = writeln!(
            row,
            " {} ({:.0}%) | {} |",
            thousands(rate),
            busy * 100.0,
            errors + failed
        );
        out.push_str(&row);
    }
}

/// xgate against nginx: keep-alive ≥ 2× at each count, full handshakes ≥ 1×; a ratio taken with
/// either client saturated is "not measurable here", never met.
pub(super) fn tls_goals(results: &SuiteResults) -> Vec<Goal> {
    let (Some(x), Some(n)) = (case(results, "xgate"), case(results, "nginx")) else {
        return Vec::new();
    };
    let judge = |name: String, target: &str, factor: f64, x: (f64, u64, f64), n: (f64, u64, f64)| {
        let ratio = x.0 / n.0;
        let clean = x.1 == 0 && n.1 == 0 && n.0 > 0.0;
        let met = clean && ratio >= factor;
        let mut measured = format!(
            "{ratio:.2}× ({} vs {}; client busy {:.0}% / {:.0}%)",
            thousands(x.0),
            thousands(n.0),
            x.2 * 100.0,
            n.2 * 100.0
        );
        if x.1 + n.1 > 0 {
            let _ = write!(measured, " (errors: xgate {}, nginx {})", x.1, n.1);
        }
        // A saturated client caps the figure: the ratio then says nothing about the servers,
        // whichever way it points.
        if x.2 >= CLIENT_BOUND || n.2 >= CLIENT_BOUND {
            measured.push_str(": client-bound");
            return Goal {
                name,
                target: target.into(),
                measured,
                met: None,
                kind: GoalKind::Unmeasurable,
            };
        }
        Goal {
            name,
            target: target.into(),
            measured,
            met: Some(met),
            kind: GoalKind::Target,
        }
    };
    let mut goals = Vec::new();
    for c in counts(results) {
        if let (Some(xa), Some(na)) = (keep_alive(x, c), keep_alive(n, c)) {
            goals.push(judge(
                format!("HTTPS keep-alive, {c} connections (wrk): requests/s"),
                "xgate ≥ 2.0× nginx",
                2.0,
                xa,
                na,
            ));
        }
    }
    goals.push(judge(
        "full TLS 1.3 handshakes/s, ECDSA P-256 (ab, one request per connection)".into(),
        "xgate ≥ nginx",
        1.0,
        handshakes(x),
        handshakes(n),
    ));
    goals
}
