//! The Prometheus text exposition of `/metrics`: every family the gateway shows, in groups
//! (HTTP, flows and the SYN shield, the XDP program's counters, per-lane counters), each group
//! one function over the [`Observatory`].

use xgate_xdp::{ActionStats, ReapReason, XdpVerdict};

use super::{lane_sums, ControlView, Observatory};
use crate::{
    counters::LaneCounters,
    metrics::{
        phases::{self, Phase},
        Exposition, LaneMetrics, COUNTED_STATUSES, LATENCY_BUCKETS, ROUTE_SLOTS, UNROUTED,
    },
};

/// The whole `/metrics` page.
pub fn render_metrics(observatory: &Observatory<'_>) -> String {
    let mut e = Exposition::new();
    let view = observatory.view.lock().unwrap_or_else(|e| e.into_inner());
    http_families(&mut e, observatory, &view);
    phase_families(&mut e, observatory.metrics, &view);
    flow_families(&mut e, observatory, &view);
    xdp_families(&mut e, &view);
    certificate_families(&mut e, &view);
    drop(view);
    lane_families(&mut e, observatory);
    e.finish()
}

/// Requests by route and status, and their latency by route.
fn http_families(e: &mut Exposition, observatory: &Observatory<'_>, view: &ControlView) {
    let route_name = |slot: usize| -> String {
        if slot == UNROUTED {
            return "(none)".to_string();
        }
        view.route_names
            .get(slot)
            .map_or_else(|| format!("route{slot}"), |n| n.to_string())
    };

    e.family(
        "xgate_http_requests_total",
        "counter",
        "Responses sent, by route and status.",
    );
    let mut routes_seen = Vec::new();
    for slot in 0..ROUTE_SLOTS {
        let mut by_status = [0u64; COUNTED_STATUSES.len()];
        for lane in observatory.metrics {
            for (t, n) in by_status.iter_mut().zip(lane.requests(slot)) {
                *t += n;
            }
        }
        if by_status.iter().all(|n| *n == 0) {
            continue;
        }
        routes_seen.push(slot);
        let name = route_name(slot);
        for (status, n) in COUNTED_STATUSES.iter().zip(by_status) {
            if n > 0 {
                let status = if *status == 0 {
                    "other".to_string()
                } else {
                    status.to_string()
                };
                e.sample(
                    "xgate_http_requests_total",
                    &[("route", &name), ("status", &status)],
                    n as f64,
                );
            }
        }
    }
    e.family(
        "xgate_rate_limited_total",
        "counter",
        "Requests answered 429 by their route's rate limit, by route.",
    );
    for slot in 0..ROUTE_SLOTS {
        let limited: u64 = observatory
            .metrics
            .iter()
            .map(|lane| lane.rate_limited(slot))
            .sum();
        if limited > 0 {
            e.sample(
                "xgate_rate_limited_total",
                &[("route", &route_name(slot))],
                limited as f64,
            );
        }
    }
    e.family(
        "xgate_http_request_duration_seconds",
        "histogram",
        "From the request's first frame arriving in XDP to its response being queued for the socket, by route.",
    );
    for slot in routes_seen {
        let mut histogram = [0u64; LATENCY_BUCKETS];
        let mut sum_ns = 0u64;
        for lane in observatory.metrics {
            let (h, s) = lane.latency(slot);
            for (t, n) in histogram.iter_mut().zip(h) {
                *t += n;
            }
            sum_ns += s;
        }
        if histogram.iter().sum::<u64>() > 0 {
            e.histogram(
                "xgate_http_request_duration_seconds",
                &[("route", &route_name(slot))],
                &histogram,
                sum_ns as f64 / 1e9,
            );
        }
    }
}

/// The name a route slot is shown with.
pub(super) fn route_label(view: &ControlView, slot: usize) -> String {
    if slot == UNROUTED {
        return "(none)".to_string();
    }
    view.route_names
        .get(slot)
        .map_or_else(|| format!("route{slot}"), |n| n.to_string())
}

/// The requests' phases by route and phase (see `metrics::phases`): only the routes and
/// phases that recorded any.
pub(super) fn phase_families(e: &mut Exposition, lanes: &[LaneMetrics], view: &ControlView) {
    e.family(
        "xgate_http_request_phase_seconds",
        "histogram",
        "Phases of a request, by route and phase: head_read (first frame in XDP to the complete head handed to the HTTP stage), upstream_wait (verdict Forward to an upstream connection ready to send on), upstream_first_byte (request head sent upstream to the upstream's first response byte), response_write (first to last response byte into the client socket).",
    );
    for slot in 0..ROUTE_SLOTS {
        for phase in Phase::ALL {
            let (histogram, sum_ns) = phases::over_lanes(lanes, slot, phase);
            if histogram.iter().sum::<u64>() > 0 {
                e.histogram(
                    "xgate_http_request_phase_seconds",
                    &[("route", &route_label(view, slot)), ("phase", phase.name())],
                    &histogram,
                    sum_ns as f64 / 1e9,
                );
            }
        }
    }
}

/// The handshake histogram, the flow table, the reaper and the SYN shield.
fn flow_families(e: &mut Exposition, observatory: &Observatory<'_>, view: &ControlView) {
    e.family(
        "xgate_tcp_handshake_duration_seconds",
        "histogram",
        "Client SYN to the client's first ACK, measured in XDP (log2 buckets).",
    );
    let handshake = observatory
        .maps
        .handshake_histogram()
        .unwrap_or([0; LATENCY_BUCKETS]);
    let handshake_sum_ns = observatory.maps.handshake_sum_ns().unwrap_or(0);
    e.histogram(
        "xgate_tcp_handshake_duration_seconds",
        &[],
        &handshake,
        handshake_sum_ns as f64 / 1e9,
    );
    e.family(
        "xgate_tls_handshake_duration_seconds",
        "histogram",
        "A TLS handshake, from the connection's first service by its lane to the handshake's end, over every lane (log2 buckets).",
    );
    let mut tls = [0u64; LATENCY_BUCKETS];
    let mut tls_sum_ns = 0;
    for lane in observatory.metrics {
        let (histogram, sum) = lane.tls_handshakes();
        for (total, n) in tls.iter_mut().zip(histogram) {
            *total += n;
        }
        tls_sum_ns += sum;
    }
    e.histogram(
        "xgate_tls_handshake_duration_seconds",
        &[],
        &tls,
        tls_sum_ns as f64 / 1e9,
    );

    let r = &view.reaper;
    e.family(
        "xgate_flows",
        "gauge",
        "Flows in the XDP flow table at the reaper's last walk, by state.",
    );
    e.sample("xgate_flows", &[("state", "half_open")], r.half_open as f64);
    e.sample("xgate_flows", &[("state", "established")], r.established as f64);
    e.sample("xgate_flows", &[("state", "closed")], r.closed as f64);
    let (_, _, reaped, half_open, evicted) = lane_sums(observatory);
    e.family(
        "xgate_flows_reaped_total",
        "counter",
        "Dead flows removed by the reaper (socket aborted, 5-tuple dropped in XDP), by reason.",
    );
    for reason in ReapReason::ALL {
        e.sample(
            "xgate_flows_reaped_total",
            &[("reason", reason.name())],
            reaped[reason as usize] as f64,
        );
    }
    e.family(
        "xgate_flows_removed_total",
        "counter",
        "Flow-table entries removed without a reap: no lane held the flow (stale), or it ended (closed).",
    );
    e.sample(
        "xgate_flows_removed_total",
        &[("cause", "stale")],
        r.stale_removed as f64,
    );
    e.sample(
        "xgate_flows_removed_total",
        &[("cause", "closed")],
        r.closed_removed as f64,
    );
    e.family(
        "xgate_flow_drop_entries",
        "gauge",
        "5-tuples of reaped flows whose segments XDP drops.",
    );
    e.sample("xgate_flow_drop_entries", &[], r.drop_entries as f64);
    e.family(
        "xgate_flow_drop_hits",
        "gauge",
        "Segments XDP dropped for the drop entries alive now (an entry's hits leave with it).",
    );
    e.sample("xgate_flow_drop_hits", &[], r.drop_hits as f64);
    e.family("xgate_reaper_walks_total", "counter", "Walks of the flow table.");
    e.sample("xgate_reaper_walks_total", &[], r.walks as f64);
    e.family(
        "xgate_reaper_walk_duration_seconds",
        "gauge",
        "How long the last walk of the flow table took.",
    );
    e.sample(
        "xgate_reaper_walk_duration_seconds",
        &[],
        r.last_walk_micros as f64 / 1e6,
    );
    e.family(
        "xgate_reaper_orders_refused_total",
        "counter",
        "Reap orders a full lane ring refused (sent again at the next walk).",
    );
    e.sample("xgate_reaper_orders_refused_total", &[], r.orders_refused as f64);
    e.family(
        "xgate_half_open_connections",
        "gauge",
        "Half-open client connections held by the lanes.",
    );
    e.sample("xgate_half_open_connections", &[], half_open as f64);
    e.family(
        "xgate_half_open_evicted_total",
        "counter",
        "Half-open connections aborted to make room for a new SYN at shield.max_half_open.",
    );
    e.sample("xgate_half_open_evicted_total", &[], evicted as f64);
    e.family(
        "xgate_syn_sources",
        "gauge",
        "Sources the SYN shield tracks, by whether they completed a handshake.",
    );
    e.sample(
        "xgate_syn_sources",
        &[("handshake", "completed")],
        view.sources.1 as f64,
    );
    e.sample(
        "xgate_syn_sources",
        &[("handshake", "never")],
        view.sources.0.saturating_sub(view.sources.1) as f64,
    );
    e.family(
        "xgate_syn_handshake_notices_total",
        "counter",
        "Handshakes the TCP stack accepted whose source the SYN shield was told to trust.",
    );
    e.sample(
        "xgate_syn_handshake_notices_total",
        &[],
        r.handshake_notices as f64,
    );
}

/// Frames and bytes the XDP program handled, by action and reason.
fn xdp_families(e: &mut Exposition, view: &ControlView) {
    type ActionField = fn(&ActionStats) -> u64;
    let families: [(&str, &str, ActionField); 2] = [
        (
            "xgate_xdp_packets_total",
            "Frames the XDP program handled, by action and reason.",
            |s| s.packets,
        ),
        (
            "xgate_xdp_bytes_total",
            "Bytes of the frames the XDP program handled, by action and reason.",
            |s| s.bytes,
        ),
    ];
    for (name, help, field) in families {
        e.family(name, "counter", help);
        for v in XdpVerdict::ALL {
            let n = view.xdp.get(v as usize).map_or(0, field);
            e.sample(name, &[("action", v.action()), ("reason", v.reason())], n as f64);
        }
    }
}

/// Seconds until each HTTPS certificate expires (negative once it has).
fn certificate_families(e: &mut Exposition, view: &ControlView) {
    if view.certificates.is_empty() {
        return;
    }
    e.family(
        "xgate_tls_certificate_expiry_seconds",
        "gauge",
        "Seconds until an HTTPS certificate's notAfter (negative once expired), by certificate file and its first server name.",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for certificate in &view.certificates {
        if let Some(not_after) = certificate.not_after {
            e.sample(
                "xgate_tls_certificate_expiry_seconds",
                &[("certificate", &certificate.path), ("name", &certificate.name)],
                (not_after - now) as f64,
            );
        }
    }
}

/// Each lane's own counters, after its placement.
fn lane_families(e: &mut Exposition, observatory: &Observatory<'_>) {
    e.family(
        "xgate_lane_info",
        "gauge",
        "Always 1: a lane's core (\"unpinned\" if it is not pinned), its UMEM's NUMA node (\"unknown\" without NUMA information), its AF_XDP bind mode and UMEM backing.",
    );
    for (i, placement) in observatory.placements.iter().enumerate() {
        let node = placement
            .umem_node
            .map_or_else(|| "unknown".to_string(), |node| node.to_string());
        e.sample(
            "xgate_lane_info",
            &[
                ("lane", &i.to_string()),
                (
                    "core",
                    &placement
                        .core
                        .map_or_else(|| "unpinned".to_string(), |c| c.to_string()),
                ),
                ("umem_node", &node),
                ("bind_mode", placement.bind_mode),
                ("umem_backing", &placement.umem_backing),
            ],
            1.0,
        );
    }
    let lanes: Vec<_> = observatory.counters.iter().map(LaneCounters::read).collect();
    let per_lane = |e: &mut Exposition,
                    name: &str,
                    kind: &str,
                    help: &str,
                    get: &dyn Fn(&crate::counters::CounterValues) -> u64| {
        e.family(name, kind, help);
        for (i, values) in lanes.iter().enumerate() {
            e.sample(name, &[("lane", &i.to_string())], get(values) as f64);
        }
    };
    // The same, with a second label: `get` gives each of its values and the count.
    type Labelled = Vec<(&'static str, u64)>;
    let per_lane_by = |e: &mut Exposition,
                       name: &str,
                       kind: &str,
                       help: &str,
                       label: &str,
                       get: &dyn Fn(&crate::counters::CounterValues) -> Labelled| {
        e.family(name, kind, help);
        for (i, values) in lanes.iter().enumerate() {
            let lane = i.to_string();
            for (value, n) in get(values) {
                e.sample(name, &[("lane", &lane), (label, value)], n as f64);
            }
        }
    };
    per_lane(
        e,
        "xgate_lane_rx_frames_total",
        "counter",
        "Frames a lane's stack or rings took.",
        &|v| v.rx_frames,
    );
    per_lane(
        e,
        "xgate_lane_tx_frames_total",
        "counter",
        "Frames a lane's stack sent.",
        &|v| v.tx_frames,
    );
    per_lane(
        e,
        "xgate_lane_requests_total",
        "counter",
        "Requests a lane answered.",
        &|v| v.requests,
    );
    per_lane(
        e,
        "xgate_lane_connections_accepted_total",
        "counter",
        "Client connections a lane accepted.",
        &|v| v.accepted,
    );
    per_lane(
        e,
        "xgate_lane_open_connections",
        "gauge",
        "Client connections open on a lane.",
        &|v| v.open_connections,
    );
    per_lane(
        e,
        "xgate_lane_in_flight_requests",
        "gauge",
        "Proxied requests in flight on a lane.",
        &|v| v.in_flight,
    );
    per_lane(
        e,
        "xgate_lane_http_ring_used",
        "gauge",
        "Slots in use in a lane's ring toward its HTTP stage.",
        &|v| v.http_ring_used,
    );
    per_lane_by(
        e,
        "xgate_lane_backpressure_events_total",
        "counter",
        "Times a lane had to hold work back, by kind.",
        "kind",
        &|v| {
            vec![
                ("http_ring_full", v.http_ring_full),
                ("tx_starved", v.tx_starved),
                ("handoff_dropped", v.handoff_dropped),
                ("xsk_rx_ring_full", v.xsk_rx_ring_full),
                ("xsk_fill_ring_empty", v.xsk_fill_ring_empty),
            ]
        },
    );
    per_lane_by(
        e,
        "xgate_lane_upstream_events_total",
        "counter",
        "Upstream connection events of a lane, by kind: connects opened, connects failed, retries, requests queued for a connection, 503s for a full queue or a queue timeout, idle connections closed beyond recent demand.",
        "kind",
        &|v| {
            vec![
                ("connects", v.upstream_connects),
                ("connect_failures", v.upstream_connect_failures),
                ("retries", v.upstream_retries),
                ("queued", v.upstream_queued),
                ("queue_full", v.upstream_queue_full),
                ("queue_timeouts", v.upstream_queue_timeouts),
                ("idle_trimmed", v.upstream_idle_trimmed),
            ]
        },
    );
    per_lane_by(
        e,
        "xgate_lane_syns_unserved_total",
        "counter",
        "SYNs of new clients a lane did not accept, by outcome: dropped because every client socket was taken (the client sends it again), or refused with a RST (draining, or http.reset_when_full).",
        "outcome",
        &|v| vec![("dropped_full", v.syn_dropped_full), ("refused", v.refused)],
    );
    per_lane_by(
        e,
        "xgate_lane_syn_cookies_total",
        "counter",
        "SYN cookies in a lane, by event: sent (SYN-ACKs the lane answered statelessly), accepted (connections taken up from a valid cookie's ACK, the lane's or the XDP program's), unanswered (malformed SYNs), rejected (ACKs of unknown flows that were no valid cookie's, dropped while cookies were in use), no_socket (valid ones dropped for want of a free socket).",
        "event",
        &|v| {
            vec![
                ("sent", v.syn_cookies_sent),
                ("unanswered", v.syn_cookies_unanswered),
                ("accepted", v.syn_cookies_accepted),
                ("rejected", v.syn_cookies_rejected),
                ("no_socket", v.syn_cookies_no_socket),
            ]
        },
    );
    per_lane_by(
        e,
        "xgate_lane_tls_handshakes_total",
        "counter",
        "TLS handshakes a lane completed, by version and kind (full or resumed).",
        "kind",
        &|v| {
            vec![
                ("tls13_full", v.tls13_full),
                ("tls13_resumed", v.tls13_resumed),
                ("tls12_full", v.tls12_full),
                ("tls12_resumed", v.tls12_resumed),
            ]
        },
    );
    per_lane_by(
        e,
        "xgate_lane_tls_failures_total",
        "counter",
        "TLS sessions that failed, by reason: not_tls (bytes that are no TLS), unknown_name (no certificate for the server name, with tls.refuse_unknown_names), no_common_parameters (no version, cipher or group in common), peer_alert (the client sent an alert), protocol (any other protocol error), handshake_timeout (not finished within tls.handshake_timeout_ms).",
        "reason",
        &|v| {
            vec![
                ("not_tls", v.tls_failed_not_tls),
                ("unknown_name", v.tls_failed_unknown_name),
                ("no_common_parameters", v.tls_failed_no_common_parameters),
                ("peer_alert", v.tls_failed_peer_alert),
                ("protocol", v.tls_failed_protocol),
                ("handshake_timeout", v.tls_handshake_timeouts),
            ]
        },
    );
    per_lane(
        e,
        "xgate_lane_syn_deferred_total",
        "counter",
        "New SYNs dropped unanswered at shield.max_half_open while every half-open connection was younger than 100 ms.",
        &|v| v.syn_deferred,
    );
    per_lane(
        e,
        "xgate_lane_xsk_rx_dropped_total",
        "counter",
        "Frames the kernel dropped on the way to the lane's AF_XDP socket (no fill frame or rx slot).",
        &|v| v.xsk_rx_dropped,
    );
    per_lane(
        e,
        "xgate_lane_xsk_invalid_descriptors_total",
        "counter",
        "Invalid descriptors the kernel found on the lane's AF_XDP rings (rx and tx).",
        &|v| v.xsk_invalid_descs,
    );
    per_lane_by(
        e,
        "xgate_lane_umem_frames",
        "gauge",
        "A lane's UMEM frames by state (fill and tx_free are the free ones).",
        "state",
        &|v| {
            vec![
                ("fill", v.umem_fill),
                ("in_stack", v.umem_in_stack),
                ("tx_free", v.umem_tx_free),
                ("tx_pending", v.umem_tx_pending),
                ("tx_ring", v.umem_tx_ring),
                ("lent", v.umem_lent),
            ]
        },
    );
    per_lane(
        e,
        "xgate_lane_heap_allocations_total",
        "counter",
        "Heap allocations a lane made since it started serving.",
        &|v| v.heap_allocations,
    );
}
