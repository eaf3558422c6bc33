//! What the gateway counts for operators, and the Prometheus text it is shown in.
//!
//! [`LaneMetrics`] are a lane's request counters by route and status and its request-latency
//! histograms by route (wire arrival, stamped by XDP, to the moment the response is queued for
//! the socket). The lane is their only writer: it bumps them with a relaxed load and store (no
//! read-modify-write, no lock); readers (the management listener) may see a value a moment
//! old, never a torn one.
//!
//! Latency histograms have [`LATENCY_BUCKETS`] log2 buckets: bucket `i` counts latencies in
//! `[2^i, 2^(i+1))` µs (bucket 0 also everything below 1 µs, the last everything above). In
//! Prometheus terms bucket `i`'s upper bound is `2^(i+1)` µs, written in seconds.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use xgate_xdp::ReapReason;
pub use xgate_xdp::LATENCY_BUCKETS as LATENCY_BUCKETS_U32;

pub mod phases;

/// Statuses counted by the lane (the last entry counts any other).
pub const COUNTED_STATUSES: [u16; 23] = [
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 414, 417, 429, 431, 500, 502, 503,
    504, 0,
];

/// Buckets of every latency histogram.
pub const LATENCY_BUCKETS: usize = LATENCY_BUCKETS_U32 as usize;
/// Routes counted one by one; requests of later routes (and of no route) share the last slot.
pub const ROUTE_SLOTS: usize = 64;
/// The slot of requests answered before routing (refusals, 404, 405) or of routes past the
/// first `ROUTE_SLOTS - 1`.
pub const UNROUTED: usize = ROUTE_SLOTS - 1;

/// A latency histogram as plain counts.
pub type Histogram = [u64; LATENCY_BUCKETS];

/// The bucket of a latency of `micros` µs.
pub fn bucket_of(micros: u64) -> usize {
    if micros == 0 {
        return 0;
    }
    (63 - micros.leading_zeros() as usize).min(LATENCY_BUCKETS - 1)
}

/// Upper bound of bucket `i`, in µs.
pub fn bucket_upper_micros(i: usize) -> u64 {
    1u64 << (i + 1).min(63)
}

/// The latency below which `quantile` (0..=1) of the histogram's counts lie, in µs, taken as
/// the upper bound of the bucket where that count is reached; `None` for an empty histogram.
pub fn quantile_micros(histogram: &Histogram, quantile: f64) -> Option<u64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(bucket_upper_micros(i));
        }
    }
    Some(bucket_upper_micros(LATENCY_BUCKETS - 1))
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// One lane's request metrics (see the module doc).
pub struct LaneMetrics {
    requests: Box<[[AtomicU64; COUNTED_STATUSES.len()]; ROUTE_SLOTS]>,
    latency: Box<[[AtomicU64; LATENCY_BUCKETS]; ROUTE_SLOTS]>,
    latency_sum_ns: Box<[AtomicU64; ROUTE_SLOTS]>,
    /// The requests' phases by route (see [`phases`]).
    phases: phases::PhaseHistograms,
    /// Requests a route's rate limit answered with 429, by route slot.
    rate_limited: Box<[AtomicU64; ROUTE_SLOTS]>,
    /// Connections the lane aborted on the reaper's word, by reason.
    reaped: [AtomicU64; ReapReason::COUNT],
    /// Half-open connections aborted because the lane held more than its bound.
    half_open_evicted: AtomicU64,
    /// Half-open connections, at the last sweep.
    half_open: AtomicU64,
    /// Completed TLS handshakes: from the session's creation (the connection's first service)
    /// to the end of the handshake, and their sum in ns.
    tls_handshake: [AtomicU64; LATENCY_BUCKETS],
    tls_handshake_sum_ns: AtomicU64,
}

impl Default for LaneMetrics {
    fn default() -> Self {
        LaneMetrics {
            requests: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
            latency: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
            latency_sum_ns: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            phases: phases::PhaseHistograms::default(),
            rate_limited: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            reaped: std::array::from_fn(|_| AtomicU64::new(0)),
            half_open_evicted: AtomicU64::new(0),
            half_open: AtomicU64::new(0),
            tls_handshake: std::array::from_fn(|_| AtomicU64::new(0)),
            tls_handshake_sum_ns: AtomicU64::new(0),
        }
    }
}

/// The route slot of `route`.
pub fn route_slot(route: Option<usize>) -> usize {
    route.map_or(UNROUTED, |r| r.min(UNROUTED))
}

impl LaneMetrics {
    /// One response with `status` (an index into `COUNTED_STATUSES`) for `route`, queued
    /// `latency_ns` after its request's first frame arrived (if that is known).
    pub fn record(&self, route: Option<usize>, status_index: usize, latency_ns: Option<u64>) {
        let slot = route_slot(route);
        bump(&self.requests[slot][status_index], 1);
        if let Some(ns) = latency_ns {
            bump(&self.latency[slot][bucket_of(ns / 1000)], 1);
            bump(&self.latency_sum_ns[slot], ns);
        }
    }

    /// One request of `route` answered 429 by its rate limit.
    pub fn record_rate_limited(&self, route: Option<usize>) {
        bump(&self.rate_limited[route_slot(route)], 1);
    }

    /// Requests of route slot `slot` its rate limit answered with 429.
    pub fn rate_limited(&self, slot: usize) -> u64 {
        self.rate_limited[slot].load(Ordering::Relaxed)
    }

    pub fn record_reaped(&self, reason: ReapReason) {
        bump(&self.reaped[reason as usize], 1);
    }

    pub fn record_half_open(&self, now_open: u64, evicted: u64) {
        self.half_open.store(now_open, Ordering::Relaxed);
        bump(&self.half_open_evicted, evicted);
    }

    /// Requests of route slot `slot` by status index.
    pub fn requests(&self, slot: usize) -> [u64; COUNTED_STATUSES.len()] {
        std::array::from_fn(|i| self.requests[slot][i].load(Ordering::Relaxed))
    }

    /// The latency histogram of route slot `slot`, and its sum in ns.
    pub fn latency(&self, slot: usize) -> (Histogram, u64) {
        (
            std::array::from_fn(|i| self.latency[slot][i].load(Ordering::Relaxed)),
            self.latency_sum_ns[slot].load(Ordering::Relaxed),
        )
    }

    pub fn reaped(&self) -> [u64; ReapReason::COUNT] {
        std::array::from_fn(|i| self.reaped[i].load(Ordering::Relaxed))
    }

    /// One completed TLS handshake that took `ns`.
    pub fn record_tls_handshake(&self, ns: u64) {
        bump(&self.tls_handshake[bucket_of(ns / 1000)], 1);
        bump(&self.tls_handshake_sum_ns, ns);
    }

    /// The TLS handshake histogram and its sum in ns.
    pub fn tls_handshakes(&self) -> (Histogram, u64) {
        (
            std::array::from_fn(|i| self.tls_handshake[i].load(Ordering::Relaxed)),
            self.tls_handshake_sum_ns.load(Ordering::Relaxed),
        )
    }

    pub fn half_open(&self) -> (u64, u64) {
        (
            self.half_open.load(Ordering::Relaxed),
            self.half_open_evicted.load(Ordering::Relaxed),
        )
    }
}

/// Writes Prometheus text exposition format (version 0.0.4).
pub struct Exposition {
    text: String,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            text: String::with_capacity(64 * 1024),
        }
    }

    /// Starts metric family `name` of `kind` (`counter`, `gauge`, `histogram`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of `name` with `labels` (pairs of name and value).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
        if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.text, " {}", value as i64);
        } else {
            let _ = writeln!(self.text, " {value}");
        }
    }

    /// The samples of a histogram family `name` (`_bucket`, `_sum`, `_count`) from log2 µs
    /// buckets and a sum in seconds.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], buckets: &Histogram, sum_seconds: f64) {
        let mut cumulative = 0u64;
        let bucket_name = format!("{name}_bucket");
        let bounds: Vec<String> = (0..LATENCY_BUCKETS - 1)
            .map(|i| format!("{}", bucket_upper_micros(i) as f64 / 1e6))
            .chain(std::iter::once("+Inf".to_string()))
            .collect();
        for (count, le) in buckets.iter().zip(&bounds) {
            cumulative += count;
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket_name, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, sum_seconds);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_micros() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 1);
        assert_eq!(bucket_of(1024), 10);
        assert_eq!(bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
        assert_eq!(bucket_upper_micros(10), 2048);
    }

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let mut h = [0u64; LATENCY_BUCKETS];
        assert_eq!(quantile_micros(&h, 0.5), None);
        h[3] = 90; // [8, 16) µs
        h[10] = 10; // [1024, 2048) µs
        assert_eq!(quantile_micros(&h, 0.5), Some(16));
        assert_eq!(quantile_micros(&h, 0.9), Some(16));
        assert_eq!(quantile_micros(&h, 0.99), Some(2048));
    }

    #[test]
    fn the_lane_records_by_route_status_and_latency() {
        let m = LaneMetrics::default();
        m.record(Some(2), 0, Some(5_000));
        m.record(Some(2), 0, Some(5_000));
        m.record(None, 7, None);
        m.record(Some(500), 1, Some(1));
        assert_eq!(m.requests(2)[0], 2);
        assert_eq!(m.requests(UNROUTED)[7], 1);
        assert_eq!(m.requests(UNROUTED)[1], 1);
        let (h, sum) = m.latency(2);
        assert_eq!(h[bucket_of(5)], 2);
        assert_eq!(sum, 10_000);
        m.record_rate_limited(Some(2));
        m.record_rate_limited(Some(2));
        m.record_rate_limited(Some(500));
        assert_eq!(
            (m.rate_limited(2), m.rate_limited(UNROUTED), m.rate_limited(0)),
            (2, 1, 0)
        );
        assert!(COUNTED_STATUSES.contains(&429));
    }

    #[test]
    fn exposition_escapes_labels_and_accumulates_buckets() {
        let mut e = Exposition::new();
        e.family("x_seconds", "histogram", "test");
        let mut h = [0u64; LATENCY_BUCKETS];
        h[0] = 1;
        h[2] = 2;
        e.histogram("x_seconds", &[("route", "a\"b")], &h, 0.5);
        let text = e.finish();
        assert!(
            text.contains("x_seconds_bucket{route=\"a\\\"b\",le=\"0.000002\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"a\\\"b\",le=\"0.000008\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"a\\\"b\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{route=\"a\\\"b\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum{route=\"a\\\"b\"} 0.5\n"), "{text}");
    }
}
