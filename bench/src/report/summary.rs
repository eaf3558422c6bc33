//! One case's runs summarised (median and min–max of every figure), and finding a case by
//! server, client and connection count.

use crate::results::{HttpCase, RunFigures};

use super::Spread;

/// Figures of one case, summarised.
pub(super) struct CaseSummary<'a> {
    pub(super) case: &'a HttpCase,
    pub(super) rps: Spread,
    pub(super) p50: Spread,
    pub(super) p90: Spread,
    pub(super) p99: Spread,
    pub(super) p999: Spread,
    pub(super) cpu: Spread,
    pub(super) machine_cpu: Spread,
    /// Median share of idle loop turns of the load generator, if it was xgate-bench.
    pub(super) client_idle: Option<f64>,
    pub(super) errors: u64,
}

pub(super) fn summarise(case: &HttpCase) -> Option<CaseSummary<'_>> {
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

pub(super) fn find<'a>(
    summaries: &'a [CaseSummary<'a>],
    server: &str,
    client: &str,
    connections: usize,
) -> Option<&'a CaseSummary<'a>> {
    summaries
        .iter()
        .find(|s| s.case.server == server && s.case.client == client && s.case.connections == connections)
}
