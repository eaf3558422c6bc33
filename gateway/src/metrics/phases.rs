//! The phases of a request, per route, beside its whole-request latency: how long its head took
//! to read, how long a proxied request waited for its upstream connection, how long the
//! upstream took to its first byte, and how long the response took to write.
//!
//! Every moment is a CLOCK_MONOTONIC reading in nanoseconds (the clock the XDP program stamps
//! arrivals with, [`crate::sys::monotonic_ns`]); 0 means "not reached". A phase is recorded
//! only when both its ends were reached, into a histogram of the same log2 µs buckets as the
//! request latency (see [`crate::metrics`]), fixed arrays per route slot allocated when the
//! lane's metrics are.
//!
//! - **head read** ([`Phase::HeadRead`]): from the arrival in XDP of the frame that began the
//!   request (the request latency's start) to the moment the lane handed the slot holding the
//!   complete head to the HTTP stage (the last hand-off before a verdict other than "more
//!   bytes"; for a direct answer to a request with a body, the stage answers once the body is
//!   in the slot too). Direct and proxied requests, counted when the verdict comes back.
//! - **upstream wait** ([`Phase::UpstreamWait`]): from the lane taking the verdict `Forward` to
//!   the upstream connection that carried the request being ready to send on (an idle pooled
//!   connection: at once; a new one: once its handshake completed), time spent in the pool's
//!   queue included. After a retry, the connection of the retry; an exchange whose connection
//!   never became ready (no member, connect failed, the queue's time limit) is not counted.
//! - **upstream first byte** ([`Phase::UpstreamFirstByte`]): from the last byte of the
//!   upstream request head going into the upstream connection's send buffer to the first byte
//!   of the upstream's response (an interim 1xx counts) seen by the lane. A request body sent
//!   after the head is inside this phase.
//! - **response write** ([`Phase::ResponseWrite`]): from the first byte of the response (its
//!   head; not `100 Continue`) going into the client socket's send buffer to its last byte
//!   going there. 0 when the whole response went in one write. A response that could not be
//!   finished (the client left, the upstream failed mid-body) is not counted.
//!
//! Proxied requests have the four phases; direct answers (and the gateway's own error answers)
//! head read and response write only. Phases of a proxied request are recorded when its
//! exchange ends (completed, failed, or its client gone), from the stamps the lane keeps in
//! [`ExchangeStamps`]; the lane stamps the exchange's milestones when the pump that reached them
//! returns (one clock reading per pump that reached any), so a phase may include up to one
//! pump's own work (microseconds).

use std::sync::atomic::AtomicU64;

use xgate_proxy::exchange::Milestones;

use super::{bucket_of, bump, route_slot, Histogram, LaneMetrics, LATENCY_BUCKETS, ROUTE_SLOTS};

/// A phase of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    HeadRead,
    UpstreamWait,
    UpstreamFirstByte,
    ResponseWrite,
}

/// Phases per route.
pub const PHASES: usize = 4;

impl Phase {
    pub const ALL: [Phase; PHASES] = [
        Phase::HeadRead,
        Phase::UpstreamWait,
        Phase::UpstreamFirstByte,
        Phase::ResponseWrite,
    ];

    /// The phase's name in metrics and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::HeadRead => "head_read",
            Phase::UpstreamWait => "upstream_wait",
            Phase::UpstreamFirstByte => "upstream_first_byte",
            Phase::ResponseWrite => "response_write",
        }
    }
}

/// Histograms of every phase per route slot, and their sums in ns (a lane writes them, see
/// [`LaneMetrics`]).
pub struct PhaseHistograms {
    counts: Box<[[[AtomicU64; LATENCY_BUCKETS]; PHASES]; ROUTE_SLOTS]>,
    sums_ns: Box<[[AtomicU64; PHASES]; ROUTE_SLOTS]>,
}

impl Default for PhaseHistograms {
    fn default() -> Self {
        PhaseHistograms {
            counts: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            })),
            sums_ns: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
        }
    }
}

impl LaneMetrics {
    /// One request of `route` spent `ns` in `phase`.
    pub fn record_phase(&self, route: Option<usize>, phase: Phase, ns: u64) {
        let slot = route_slot(route);
        bump(&self.phases.counts[slot][phase as usize][bucket_of(ns / 1000)], 1);
        bump(&self.phases.sums_ns[slot][phase as usize], ns);
    }

    /// The histogram of `phase` for route slot `slot`, and its sum in ns.
    pub fn phase(&self, slot: usize, phase: Phase) -> (Histogram, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let p = phase as usize;
        (
            std::array::from_fn(|i| self.phases.counts[slot][p][i].load(Relaxed)),
            self.phases.sums_ns[slot][p].load(Relaxed),
        )
    }
}

/// The histogram of `phase` for route slot `slot` over every lane, and its sum in ns.
pub fn over_lanes(lanes: &[LaneMetrics], slot: usize, phase: Phase) -> (Histogram, u64) {
    let mut total = [0u64; LATENCY_BUCKETS];
    let mut sum_ns = 0u64;
    for lane in lanes {
        let (h, s) = lane.phase(slot, phase);
        for (t, n) in total.iter_mut().zip(h) {
            *t += n;
        }
        sum_ns = sum_ns.wrapping_add(s);
    }
    (total, sum_ns)
}

/// How long from `start_ns` to `end_ns`, when both were reached (0 is "not reached"); a clock
/// that seems to go back gives 0.
pub fn between(start_ns: u64, end_ns: u64) -> Option<u64> {
    (start_ns != 0 && end_ns != 0).then(|| end_ns.saturating_sub(start_ns))
}

/// The moments of one proxied request, as the lane stamps them (CLOCK_MONOTONIC ns; 0: not
/// reached).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStamps {
    /// The lane took the verdict `Forward`.
    pub forward_ns: u64,
    /// The current upstream connection was ready to send on.
    pub ready_ns: u64,
    /// The request head's last byte went to the current upstream connection.
    pub head_sent_ns: u64,
    /// The upstream's first response byte was seen.
    pub first_byte_ns: u64,
    /// The response's first byte went to the client.
    pub write_start_ns: u64,
    /// The response's last byte went to the client (the exchange completed).
    pub write_end_ns: u64,
}

impl ExchangeStamps {
    /// Stamps for a request forwarded at `now_ns`.
    pub fn forwarded(now_ns: u64) -> ExchangeStamps {
        ExchangeStamps {
            forward_ns: now_ns,
            ..ExchangeStamps::default()
        }
    }

    /// The moments one pump reached, at `now_ns`; `completed`: the exchange completed in it
    /// (its response's last byte went to the client).
    pub fn note(&mut self, reached: &Milestones, completed: bool, now_ns: u64) {
        if reached.upstream_ready {
            self.ready_ns = now_ns;
        }
        if reached.request_head_sent {
            self.head_sent_ns = now_ns;
        }
        if reached.upstream_first_byte {
            self.first_byte_ns = now_ns;
        }
        if reached.response_started {
            self.write_start_ns = now_ns;
        }
        if completed {
            self.write_end_ns = now_ns;
        }
    }

    /// The request moves to another upstream connection: the moments of the failed one are
    /// forgotten.
    pub fn retried(&mut self) {
        self.ready_ns = 0;
        self.head_sent_ns = 0;
        self.first_byte_ns = 0;
    }

    /// The upstream and write phases whose two ends were reached, and how long each took (ns).
    pub fn phases(&self) -> [(Phase, Option<u64>); 3] {
        [
            (Phase::UpstreamWait, between(self.forward_ns, self.ready_ns)),
            (
                Phase::UpstreamFirstByte,
                between(self.head_sent_ns, self.first_byte_ns),
            ),
            (
                Phase::ResponseWrite,
                between(self.write_start_ns, self.write_end_ns),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reached(ready: bool, head_sent: bool, first_byte: bool, response_started: bool) -> Milestones {
        Milestones {
            upstream_ready: ready,
            request_head_sent: head_sent,
            upstream_first_byte: first_byte,
            response_started,
        }
    }

    #[test]
    fn a_completed_exchange_has_every_upstream_phase_and_its_write() {
        let mut s = ExchangeStamps::forwarded(1_000);
        s.note(&reached(false, false, false, false), false, 1_500);
        s.note(&reached(true, true, false, false), false, 3_000_000);
        s.note(&reached(false, false, true, true), false, 203_000_000);
        s.note(&Milestones::default(), true, 203_050_000);
        assert_eq!(
            s.phases(),
            [
                (Phase::UpstreamWait, Some(2_999_000)),
                (Phase::UpstreamFirstByte, Some(200_000_000)),
                (Phase::ResponseWrite, Some(50_000)),
            ]
        );
    }

    #[test]
    fn a_quick_answer_in_one_pump_takes_no_time_in_the_later_phases() {
        let mut s = ExchangeStamps::forwarded(10);
        s.note(&reached(true, true, true, true), true, 90);
        assert_eq!(
            s.phases(),
            [
                (Phase::UpstreamWait, Some(80)),
                (Phase::UpstreamFirstByte, Some(0)),
                (Phase::ResponseWrite, Some(0)),
            ]
        );
    }

    #[test]
    fn phases_not_reached_are_left_out() {
        // Never connected.
        let s = ExchangeStamps::forwarded(10);
        assert!(s.phases().iter().all(|(_, d)| d.is_none()));
        // Ready, the head out, no answer (a timeout).
        let mut s = ExchangeStamps::forwarded(10);
        s.note(&reached(true, true, false, false), false, 20);
        assert_eq!(s.phases()[0], (Phase::UpstreamWait, Some(10)));
        assert_eq!(s.phases()[1], (Phase::UpstreamFirstByte, None));
        // The response began but did not finish (cut mid-body).
        s.note(&reached(false, false, true, true), false, 30);
        assert_eq!(s.phases()[2], (Phase::ResponseWrite, None));
    }

    #[test]
    fn a_retry_forgets_the_failed_connection_and_waits_from_the_verdict() {
        let mut s = ExchangeStamps::forwarded(100);
        s.note(&reached(true, true, true, false), false, 200);
        s.retried();
        assert!(s.phases().iter().all(|(_, d)| d.is_none()));
        s.note(&reached(true, true, false, false), false, 5_000);
        s.note(&reached(false, false, true, true), true, 9_000);
        assert_eq!(
            s.phases(),
            [
                (Phase::UpstreamWait, Some(4_900)),
                (Phase::UpstreamFirstByte, Some(4_000)),
                (Phase::ResponseWrite, Some(0)),
            ]
        );
        // A retry whose connection never became ready: no wait.
        s.retried();
        assert_eq!(s.phases()[0], (Phase::UpstreamWait, None));
    }

    #[test]
    fn between_needs_both_ends_and_never_goes_negative() {
        assert_eq!(between(0, 5), None);
        assert_eq!(between(5, 0), None);
        assert_eq!(between(5, 9), Some(4));
        assert_eq!(between(9, 5), Some(0));
    }

    #[test]
    fn phases_are_recorded_per_route_and_phase_in_latency_buckets() {
        let m = LaneMetrics::default();
        m.record_phase(Some(1), Phase::UpstreamFirstByte, 200_000_000);
        m.record_phase(Some(1), Phase::UpstreamFirstByte, 210_000_000);
        m.record_phase(Some(1), Phase::HeadRead, 30_000);
        m.record_phase(None, Phase::ResponseWrite, 0);
        m.record_phase(Some(900), Phase::HeadRead, 1_000);
        let (h, sum) = m.phase(1, Phase::UpstreamFirstByte);
        assert_eq!(h[bucket_of(200_000)], 2, "both in [131 ms, 262 ms)");
        assert_eq!(h.iter().sum::<u64>(), 2);
        assert_eq!(sum, 410_000_000);
        let (h, sum) = m.phase(1, Phase::HeadRead);
        assert_eq!((h[bucket_of(30)], sum), (1, 30_000));
        assert_eq!(m.phase(1, Phase::UpstreamWait).0.iter().sum::<u64>(), 0);
        assert_eq!(m.phase(1, Phase::ResponseWrite).0.iter().sum::<u64>(), 0);
        let (h, _) = m.phase(super::super::UNROUTED, Phase::ResponseWrite);
        assert_eq!(h[0], 1);
        let (h, _) = m.phase(super::super::UNROUTED, Phase::HeadRead);
        assert_eq!(h[bucket_of(1)], 1, "routes past the slots share the last");
        // The whole-request histogram is apart.
        assert_eq!(m.latency(1).0.iter().sum::<u64>(), 0);
        assert_eq!(
            Phase::ALL.map(Phase::name),
            [
                "head_read",
                "upstream_wait",
                "upstream_first_byte",
                "response_write"
            ]
        );
    }
}
