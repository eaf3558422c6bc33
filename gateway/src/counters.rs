//! A lane's counters: the plain values the lane keeps, and the atomics it publishes once per loop
//! turn for other threads (the stats events, the final report, `/metrics`).
//!
//! Invariant: [`LaneCounters`] are written by their lane only and read by others; each sits on
//! its own cache lines (64-byte aligned) so one lane's updates never invalidate another lane's
//! line.

use std::sync::atomic::{AtomicU64, Ordering};

/// Defines the lane counters once: the atomics a lane publishes, their plain values, and their
/// names (the keys of the JSON events).
macro_rules! lane_counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// A lane's counters, published by the lane at the end of each loop turn and read by the
        /// main thread (stats and the final report). One cache line group per lane.
        #[repr(align(64))]
        #[derive(Default)]
        pub struct LaneCounters {
            $(pub $name: AtomicU64,)*
        }

        /// A lane's counters as plain numbers.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CounterValues {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl LaneCounters {
            /// Publishes the lane's current values (only the lane calls this).
            pub fn publish(&self, values: &CounterValues) {
                $(self.$name.store(values.$name, Ordering::Relaxed);)*
            }

            pub fn read(&self) -> CounterValues {
                CounterValues {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl CounterValues {
            /// Every counter with its name, in declaration order.
            pub fn named(&self) -> [(&'static str, u64); [$(stringify!($name)),*].len()] {
                [$((stringify!($name), self.$name)),*]
            }
        }
    };
}

lane_counters! {
    /// Frames the lane's stack or rings took.
    rx_frames,
    /// Requests answered (direct answers and proxied responses that completed).
    requests,
    accepted,
    refused,
    /// New SYNs dropped unanswered at the half-open bound (all half-open connections young).
    syn_deferred,
    /// Half-open connections aborted at the bound to make room for a new SYN.
    half_open_evicted,
    /// SYNs the lane answered with a SYN cookie (at its half-open bound, or every SYN with
    /// `shield.syn_cookies = "always"`; the XDP program's cookies are counted in its verdicts).
    syn_cookies_sent,
    /// SYNs to be answered with a cookie that were no well-formed SYN (dropped).
    syn_cookies_unanswered,
    /// Connections taken up from a valid cookie's ACK (the lane's cookies or the XDP program's).
    syn_cookies_accepted,
    /// ACKs of unknown flows dropped while cookies were in use: no valid cookie's.
    syn_cookies_rejected,
    /// Valid cookie ACKs dropped because no client socket was free (the client sends again).
    syn_cookies_no_socket,
    /// TLS handshakes completed: full and resumed, by version.
    tls13_full,
    tls13_resumed,
    tls12_full,
    tls12_resumed,
    /// TLS sessions that failed, by why (see `tls::session::FailureKind`).
    tls_failed_not_tls,
    tls_failed_unknown_name,
    tls_failed_no_common_parameters,
    tls_failed_peer_alert,
    tls_failed_protocol,
    /// TLS handshakes not finished within `tls.handshake_timeout_ms` (connection closed).
    tls_handshake_timeouts,
    handed_out,
    handed_in,
    handoff_dropped,
    heap_allocations,
    /// Connections opened to upstream members (proxying and health checks).
    upstream_connects,
    /// Upstream connects that failed (refused or reset by the member, timed out, no local port).
    upstream_connect_failures,
    /// Requests moved once to another member (or tried again on the only one) after a failed
    /// connect.
    upstream_retries,
    /// Requests that waited in a pool's queue for a connection (in-flight limit, or no free
    /// upstream socket).
    upstream_queued,
    /// Requests answered 503 because their pool's queue was full.
    upstream_queue_full,
    /// Requests answered 503 after waiting `queue_timeout_ms` in their pool's queue.
    upstream_queue_timeouts,
    /// Idle upstream connections closed because recent demand no longer needed them.
    upstream_idle_trimmed,
    /// Upstream handshakes in progress for requests, at the last sweep (each member within its
    /// pool's `max_connecting`).
    upstream_connecting,
    /// Entries in the pools' queues, at the last sweep (some may be of requests that ended).
    upstream_waiting,
    /// SYNs of new clients dropped unanswered because every client socket was taken (the
    /// client sends its SYN again).
    syn_dropped_full,
    /// Upstream responses that could not be framed (then 502, or a reset once begun).
    bad_upstream_responses,
    /// Request bodies with invalid chunked framing or over the size limit.
    bad_bodies,
    /// Requests answered 429 by a route's rate limit.
    rate_limited,
    /// Client connections reset because their response could not be finished.
    client_resets,
    /// Time limits that fired (header read, body, upstream connect or response).
    timeouts,
    /// Idle keep-alive client connections closed.
    idle_closed,
    /// Exchanges in flight (proxied requests not finished), at the last publish.
    in_flight,
    /// Client connections open, at the last publish; while draining, only those with a request
    /// in progress or response bytes not yet acknowledged.
    open_connections,
    /// Frames the lane's stack sent.
    tx_frames,
    /// Times the stack wanted to send but every tx frame was in flight (backpressure).
    tx_starved,
    /// The lane's UMEM frames by state, at the last sweep: on the fill ring, ...
    umem_fill,
    /// ... received and held by the stack, ...
    umem_in_stack,
    /// ... free to send in, ...
    umem_tx_free,
    /// ... written and waiting for the tx ring, ...
    umem_tx_pending,
    /// ... on the tx ring or in flight, ...
    umem_tx_ring,
    /// ... lent to another lane.
    umem_lent,
    /// Slots in the ring toward the HTTP stage, in use at the last sweep.
    http_ring_used,
    /// Loop turns that found the ring toward the HTTP stage full with requests waiting
    /// (backpressure).
    http_ring_full,
    /// The kernel's counts for the lane's AF_XDP socket (XDP_STATISTICS), at the last sweep:
    /// frames dropped for want of a fill-ring frame or rx-ring slot (rx_dropped), times the rx
    /// ring was full, times the fill ring was empty, and invalid descriptors (rx and tx).
    xsk_rx_dropped,
    xsk_rx_ring_full,
    xsk_fill_ring_empty,
    xsk_invalid_descs,
}
