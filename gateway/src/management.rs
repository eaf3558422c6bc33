//! The management listener: a plain kernel TCP socket (loopback by default, `metrics.listen`)
//! on its own thread, answering one small HTTP/1.1 request per connection:
//!
//! - `GET /metrics`: Prometheus text format (requests by route and status, latency histograms,
//!   flows, reaped flows by reason, XDP actions and drops by reason, frames, UMEM, rings).
//! - `GET /flows?sort=latency|bytes|age|packets|retransmits&limit=N`: the XDP flow table as
//!   JSON (what `xgate flows` shows).
//! - `GET /top`: totals and gauges as JSON (what `xgate top` turns into rates), and per route
//!   its responses, latency and request phases.
//! - `GET /heatmap?kind=request|handshake`: per-second latency histograms as JSON (what
//!   `xgate heatmap` draws).
//!
//! [`Observatory`] is what the listener reads: the lanes' published counters and metrics
//! (atomics), the flow maps (by descriptor), and a [`ControlView`] the main thread refreshes
//! once a second behind a mutex that only these two threads take. Nothing here touches a
//! lane's data path.

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::{json, Value};
use xgate_xdp::{ActionStats, FlowMaps, ReapReason, XdpVerdict, FLOW_ESTABLISHED, FLOW_FIN, FLOW_RST};

use crate::{
    counters::LaneCounters,
    metrics::{
        bucket_upper_micros,
        phases::{self, Phase},
        quantile_micros, Histogram, LaneMetrics, LATENCY_BUCKETS, ROUTE_SLOTS,
    },
    reaper::ReaperCounts,
};

/// Largest request head the listener reads.
const MAX_REQUEST: usize = 8 * 1024;
/// Longest a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod phase_tests;
mod prometheus;

pub use prometheus::render_metrics;

/// One second of a heat map: when it ended (Unix seconds) and its latency histogram.
pub type HeatRow = (u64, Histogram);

/// What the main thread refreshes once a second for the listener.
#[derive(Default)]
pub struct ControlView {
    pub route_names: Vec<Box<str>>,
    pub xdp: Vec<ActionStats>,
    pub reaper: ReaperCounts,
    /// SYN sources tracked, and those with a completed handshake.
    pub sources: (u64, u64),
    pub heat_request: VecDeque<HeatRow>,
    pub heat_handshake: VecDeque<HeatRow>,
    pub previous_request: Option<Histogram>,
    pub previous_handshake: Option<Histogram>,
    /// The HTTPS listener's certificates (`xgate_tls_certificate_expiry_seconds`), as last
    /// loaded.
    pub certificates: Vec<crate::tls::CertificateInfo>,
}

/// Everything the listener reads (see the module doc).
pub struct Observatory<'a> {
    pub counters: &'a [LaneCounters],
    pub metrics: &'a [LaneMetrics],
    pub maps: Arc<FlowMaps>,
    pub view: Mutex<ControlView>,
    pub heatmap_seconds: usize,
    /// Where each lane runs and keeps its frames, fixed at start (`xgate_lane_info`).
    pub placements: Vec<LanePlacement>,
}

/// A lane's core, its UMEM's NUMA node and how its socket is bound, as `xgate_lane_info` labels.
#[derive(Clone, Debug)]
pub struct LanePlacement {
    /// The core the lane is pinned to (`None`: not pinned).
    pub core: Option<usize>,
    /// The node the UMEM's pages are on (`None`: not known, no NUMA information).
    pub umem_node: Option<u32>,
    pub bind_mode: &'static str,
    pub umem_backing: String,
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Observatory<'_> {
    /// Request latency over every lane and route.
    pub fn request_histogram(&self) -> Histogram {
        let mut total = [0u64; LATENCY_BUCKETS];
        for lane in self.metrics {
            for slot in 0..ROUTE_SLOTS {
                let (histogram, _) = lane.latency(slot);
                for (t, n) in total.iter_mut().zip(histogram) {
                    *t += n;
                }
            }
        }
        total
    }

    /// Called by the main thread once a second: XDP counters, reaper counts, and one more row
    /// of each heat map.
    pub fn refresh(&self, xdp: Vec<ActionStats>, reaper: ReaperCounts, route_names: Option<Vec<Box<str>>>) {
        let request = self.request_histogram();
        let handshake = self.maps.handshake_histogram().unwrap_or([0; LATENCY_BUCKETS]);
        let sources = self.maps.sources().unwrap_or((0, 0));
        let now = unix_seconds();
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.xdp = xdp;
        view.reaper = reaper;
        view.sources = sources;
        if let Some(names) = route_names {
            view.route_names = names;
        }
        let keep = self.heatmap_seconds;
        let request_row = delta(view.previous_request.as_ref(), &request);
        push_row(&mut view.heat_request, (now, request_row), keep);
        view.previous_request = Some(request);
        let handshake_row = delta(view.previous_handshake.as_ref(), &handshake);
        push_row(&mut view.heat_handshake, (now, handshake_row), keep);
        view.previous_handshake = Some(handshake);
    }
}

fn delta(previous: Option<&Histogram>, now: &Histogram) -> Histogram {
    match previous {
        Some(before) => std::array::from_fn(|i| now[i].saturating_sub(before[i])),
        None => *now,
    }
}

fn push_row(rows: &mut VecDeque<HeatRow>, row: HeatRow, keep: usize) {
    rows.push_back(row);
    while rows.len() > keep {
        rows.pop_front();
    }
}

/// Serves the listener until `stop` is set. Errors of one client never end it.
pub fn serve(listener: TcpListener, observatory: &Observatory<'_>, stop: &AtomicBool) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!(error = %e, "management listener: cannot poll the socket");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, observatory) {
                    tracing::debug!(error = %e, "management listener: a client failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "management listener: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: TcpStream, observatory: &Observatory<'_>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut buffer = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    while !buffer[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buffer.len() {
            return respond(&mut stream, 431, "text/plain", b"request head too large\n");
        }
        let n = stream.read(&mut buffer[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buffer[..len]);
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain", b"only GET\n");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    match path {
        "/metrics" => {
            let text = render_metrics(observatory);
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.as_bytes(),
            )
        }
        "/flows" => {
            let sort = param("sort").unwrap_or_else(|| "age".into());
            let limit = param("limit").and_then(|l| l.parse().ok()).unwrap_or(usize::MAX);
            match flows_json(observatory, &sort, limit) {
                Ok(body) => respond(&mut stream, 200, "application/json", body.to_string().as_bytes()),
                Err(message) => respond(&mut stream, 400, "text/plain", message.as_bytes()),
            }
        }
        "/top" => respond(
            &mut stream,
            200,
            "application/json",
            top_json(observatory).to_string().as_bytes(),
        ),
        "/heatmap" => {
            let kind = param("kind").unwrap_or_else(|| "request".into());
            match heatmap_json(observatory, &kind) {
                Some(body) => respond(&mut stream, 200, "application/json", body.to_string().as_bytes()),
                None => respond(&mut stream, 400, "text/plain", b"kind is request or handshake\n"),
            }
        }
        _ => respond(
            &mut stream,
            404,
            "text/plain",
            b"try /metrics, /flows, /top or /heatmap\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let reason = xgate_proxy::direct::reason(status);
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// The flow table as JSON, sorted (`latency`: handshake, slowest first; `bytes`, `packets`,
/// `retransmits`: most first; `age`: oldest first), at most `limit` flows.
pub fn flows_json(observatory: &Observatory<'_>, sort: &str, limit: usize) -> Result<Value, String> {
    let mut flows = observatory
        .maps
        .flows()
        .map_err(|e| format!("reading the flow table: {e}\n"))?;
    let now = crate::sys::monotonic_ns();
    match sort {
        "latency" => flows.sort_by_key(|f| std::cmp::Reverse(f.stats.handshake_ns)),
        "bytes" => flows.sort_by_key(|f| std::cmp::Reverse(f.stats.bytes)),
        "packets" => flows.sort_by_key(|f| std::cmp::Reverse(f.stats.packets)),
        "retransmits" => flows.sort_by_key(|f| std::cmp::Reverse(f.stats.retransmits)),
        "age" => flows.sort_by_key(|f| f.stats.first_seen_ns),
        other => {
            return Err(format!(
                "sort is latency, bytes, packets, retransmits or age, not `{other}`\n"
            ))
        }
    }
    let total = flows.len();
    let rows: Vec<Value> = flows
        .iter()
        .take(limit)
        .map(|f| {
            let s = &f.stats;
            let state = if s.flags & FLOW_RST != 0 {
                "reset"
            } else if s.flags & FLOW_FIN != 0 {
                "closing"
            } else if s.flags & FLOW_ESTABLISHED != 0 {
                "established"
            } else {
                "half_open"
            };
            json!({
                "client": std::net::Ipv4Addr::from(f.key.src()).to_string(),
                "client_port": f.key.src_port(),
                "server": std::net::Ipv4Addr::from(f.key.dst()).to_string(),
                "server_port": f.key.dst_port(),
                "state": state,
                "age_ms": now.saturating_sub(s.first_seen_ns) / 1_000_000,
                "idle_ms": now.saturating_sub(s.last_seen_ns) / 1_000_000,
                "packets": s.packets,
                "bytes": s.bytes,
                "handshake_us": (s.handshake_ns > 0).then_some(s.handshake_ns / 1000),
                "retransmits": s.retransmits,
                "retransmit_streak": s.retransmit_streak,
                "ack_progress_ms_ago": now.saturating_sub(s.ack_progress_ns) / 1_000_000,
            })
        })
        .collect();
    Ok(json!({ "total": total, "sort": sort, "flows": rows }))
}

fn lane_sums(observatory: &Observatory<'_>) -> (u64, u64, [u64; ReapReason::COUNT], u64, u64) {
    let (mut requests, mut open, mut reaped, mut half_open, mut evicted) =
        (0, 0, [0u64; ReapReason::COUNT], 0, 0);
    for (counters, metrics) in observatory.counters.iter().zip(observatory.metrics) {
        let values = counters.read();
        requests += values.requests;
        open += values.open_connections;
        for (total, n) in reaped.iter_mut().zip(metrics.reaped()) {
            *total += n;
        }
        let (now_open, out) = metrics.half_open();
        half_open += now_open;
        evicted += out;
    }
    (requests, open, reaped, half_open, evicted)
}

/// Totals and gauges for `xgate top`.
pub fn top_json(observatory: &Observatory<'_>) -> Value {
    let (requests, open, reaped, half_open, evicted) = lane_sums(observatory);
    let view = observatory.view.lock().unwrap_or_else(|e| e.into_inner());
    let handshake = view
        .heat_handshake
        .iter()
        .fold([0u64; LATENCY_BUCKETS], |mut acc, (_, row)| {
            for (a, n) in acc.iter_mut().zip(row) {
                *a += n;
            }
            acc
        });
    let drops: serde_json::Map<String, Value> = XdpVerdict::ALL
        .iter()
        .filter(|v| v.action() == "drop")
        .map(|v| {
            (
                v.reason().to_string(),
                json!(view.xdp.get(*v as usize).map_or(0, |s| s.packets)),
            )
        })
        .collect();
    let reaped_json: serde_json::Map<String, Value> = ReapReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), json!(reaped[*r as usize])))
        .collect();
    json!({
        "unix_time": unix_seconds(),
        "requests": requests,
        "open_connections": open,
        "half_open_connections": half_open,
        "half_open_evicted": evicted,
        "request_latency_buckets": observatory.request_histogram().to_vec(),
        "handshake_latency_buckets_recent": handshake.to_vec(),
        "flows": view.reaper.flows,
        "flows_half_open": view.reaper.half_open,
        "flows_established": view.reaper.established,
        "reaped": reaped_json,
        "xdp_drops": drops,
        "xdp_redirected": view.xdp.get(XdpVerdict::RedirectIpv4 as usize).map_or(0, |s| s.packets),
        "routes": routes_json(observatory.metrics, &view),
    })
}

/// A histogram for `/top`: its count, sum (µs), p50 and p99 (µs, the upper bound of the log2
/// bucket where the rank falls; `null` when empty) and its buckets (so a viewer can take the
/// difference of two answers).
fn histogram_json(histogram: &Histogram, sum_ns: u64) -> Value {
    json!({
        "count": histogram.iter().sum::<u64>(),
        "sum_us": sum_ns / 1000,
        "p50_us": quantile_micros(histogram, 0.5),
        "p99_us": quantile_micros(histogram, 0.99),
        "buckets": histogram.to_vec(),
    })
}

/// Every route slot that answered a request, in route order: its name, its responses, its
/// whole-request latency and the phases it recorded (see `metrics::phases`), since the start.
fn routes_json(lanes: &[LaneMetrics], view: &ControlView) -> Value {
    let mut routes = Vec::new();
    for slot in 0..ROUTE_SLOTS {
        let mut requests = 0u64;
        let mut latency = [0u64; LATENCY_BUCKETS];
        let mut latency_sum_ns = 0u64;
        for lane in lanes {
            requests += lane.requests(slot).iter().sum::<u64>();
            let (h, s) = lane.latency(slot);
            for (t, n) in latency.iter_mut().zip(h) {
                *t += n;
            }
            latency_sum_ns = latency_sum_ns.wrapping_add(s);
        }
        let recorded: Vec<(Phase, Histogram, u64)> = Phase::ALL
            .into_iter()
            .map(|phase| {
                let (h, s) = phases::over_lanes(lanes, slot, phase);
                (phase, h, s)
            })
            .filter(|(_, h, _)| h.iter().any(|n| *n > 0))
            .collect();
        if requests == 0 && recorded.is_empty() {
            continue;
        }
        let phases: serde_json::Map<String, Value> = recorded
            .iter()
            .map(|(phase, h, s)| (phase.name().to_string(), histogram_json(h, *s)))
            .collect();
        routes.push(json!({
            "route": prometheus::route_label(view, slot),
            "requests": requests,
            "latency": histogram_json(&latency, latency_sum_ns),
            "phases": phases,
        }));
    }
    Value::Array(routes)
}

/// The heat map of `kind` (`request` or `handshake`) as JSON.
pub fn heatmap_json(observatory: &Observatory<'_>, kind: &str) -> Option<Value> {
    let view = observatory.view.lock().unwrap_or_else(|e| e.into_inner());
    let rows = match kind {
        "request" => &view.heat_request,
        "handshake" => &view.heat_handshake,
        _ => return None,
    };
    Some(json!({
        "kind": kind,
        "interval_s": 1,
        "bucket_upper_us": (0..LATENCY_BUCKETS).map(bucket_upper_micros).collect::<Vec<_>>(),
        "rows": rows.iter().map(|(t, h)| json!({"unix_time": t, "counts": h.to_vec()})).collect::<Vec<_>>(),
    }))
}
