//! The operator's commands that read a running gateway through its management listener:
//! `xgate flows` (the XDP flow table, like `ss`), `xgate top` (a live view, once a second) and
//! `xgate heatmap` (request or handshake latency over time as an SVG heat map).
//!
//! Fetching is one HTTP/1.1 GET over a kernel socket; everything else here is rendering, pure
//! functions of the JSON the listener returns, so they are tested without a gateway.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::Value;

use anyhow::{anyhow, bail};
use xgate_gateway::metrics::{quantile_micros, Histogram, LATENCY_BUCKETS};

/// GETs `path` from the management listener at `addr` and parses the JSON body.
pub fn fetch_json(addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let body = fetch(addr, path)?;
    serde_json::from_str(&body)
        .map_err(|e| anyhow!("{path}: the gateway answered something that is not JSON: {e}"))
}

/// GETs `path` and returns the body of a 200 answer.
pub fn fetch(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let unreachable = |e: std::io::Error| {
        anyhow!(
            "cannot reach the gateway's management listener at {addr}: {e} (is xgate running, in this network namespace, with metrics.listen = \"{addr}\"?)"
        )
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(unreachable)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(unreachable)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(unreachable)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{path}: the gateway's answer has no complete head"))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        bail!("{path}: the gateway answered {status}: {}", body.trim());
    }
    Ok(body.to_string())
}

fn micros_text(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}

fn millis_text(ms: u64) -> String {
    if ms >= 60_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1e3)
    }
}

/// The `/flows` answer as an `ss`-like table.
pub fn flows_table(flows: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<12} {:>9} {:>9} {:>10} {:>8} {:>12} {:>5}",
        "CLIENT", "STATE", "AGE", "IDLE", "HANDSHAKE", "PACKETS", "BYTES", "RETX"
    );
    for flow in flows["flows"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let client = format!(
            "{}:{}",
            flow["client"].as_str().unwrap_or("?"),
            flow["client_port"].as_u64().unwrap_or(0)
        );
        let handshake = flow["handshake_us"]
            .as_u64()
            .map_or_else(|| "-".to_string(), micros_text);
        let _ = writeln!(
            out,
            "{:<22} {:<12} {:>9} {:>9} {:>10} {:>8} {:>12} {:>5}",
            client,
            flow["state"].as_str().unwrap_or("?"),
            millis_text(flow["age_ms"].as_u64().unwrap_or(0)),
            millis_text(flow["idle_ms"].as_u64().unwrap_or(0)),
            handshake,
            flow["packets"].as_u64().unwrap_or(0),
            flow["bytes"].as_u64().unwrap_or(0),
            flow["retransmits"].as_u64().unwrap_or(0),
        );
    }
    let shown = flows["flows"].as_array().map_or(0, Vec::len);
    let _ = writeln!(
        out,
        "{shown} of {} flows (sorted by {})",
        flows["total"].as_u64().unwrap_or(0),
        flows["sort"].as_str().unwrap_or("?")
    );
    out
}

fn histogram_of(value: &Value) -> Histogram {
    let mut h = [0u64; LATENCY_BUCKETS];
    for (slot, v) in h
        .iter_mut()
        .zip(value.as_array().map(Vec::as_slice).unwrap_or(&[]))
    {
        *slot = v.as_u64().unwrap_or(0);
    }
    h
}

fn sum_map(value: &Value) -> u64 {
    value
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// One screen of `xgate top` from two `/top` answers `seconds` apart (the first may be `None`:
/// rates then show as totals so far).
pub fn top_screen(previous: Option<&Value>, now: &Value, seconds: f64) -> String {
    let count = |v: &Value, key: &str| v[key].as_u64().unwrap_or(0);
    let rate = |key: &str| match previous {
        Some(p) => count(now, key).saturating_sub(count(p, key)) as f64 / seconds.max(1e-3),
        None => 0.0,
    };
    let latency_now = histogram_of(&now["request_latency_buckets"]);
    let latency_window: Histogram = match previous {
        Some(p) => {
            let before = histogram_of(&p["request_latency_buckets"]);
            std::array::from_fn(|i| latency_now[i].saturating_sub(before[i]))
        }
        None => latency_now,
    };
    let percentile =
        |h: &Histogram, q: f64| quantile_micros(h, q).map_or_else(|| "-".to_string(), micros_text);
    let handshake = histogram_of(&now["handshake_latency_buckets_recent"]);
    let drops_now = sum_map(&now["xdp_drops"]);
    let drop_rate = previous.map_or(0.0, |p| {
        drops_now.saturating_sub(sum_map(&p["xdp_drops"])) as f64 / seconds
    });
    let mut out = String::new();
    let _ = writeln!(out, "xgate top    (every {seconds:.0} s; q to quit: Ctrl-C)");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "requests/s {:>10.0}    total {:>12}    open connections {:>8}    half-open {:>6}",
        rate("requests"),
        count(now, "requests"),
        count(now, "open_connections"),
        count(now, "half_open_connections")
    );
    let _ = writeln!(
        out,
        "latency    p50 {:>8}  p90 {:>8}  p99 {:>8}  p99.9 {:>8}   (wire arrival -> response queued, last interval)",
        percentile(&latency_window, 0.5),
        percentile(&latency_window, 0.9),
        percentile(&latency_window, 0.99),
        percentile(&latency_window, 0.999)
    );
    let _ = writeln!(
        out,
        "handshake  p50 {:>8}  p99 {:>8}   (SYN -> first ACK, in XDP, recent)",
        percentile(&handshake, 0.5),
        percentile(&handshake, 0.99)
    );
    let _ = writeln!(
        out,
        "flows      {:>8}  established {:>8}  half-open {:>8}   redirected frames/s {:>10.0}",
        count(now, "flows"),
        count(now, "flows_established"),
        count(now, "flows_half_open"),
        rate("xdp_redirected")
    );
    let _ = write!(out, "reaped    ");
    for (reason, n) in now["reaped"].as_object().into_iter().flatten() {
        let _ = write!(out, " {reason} {}", n.as_u64().unwrap_or(0));
    }
    let _ = writeln!(out);
    let _ = write!(out, "xdp drops  {drop_rate:>8.0}/s  ");
    for (reason, n) in now["xdp_drops"].as_object().into_iter().flatten() {
        let _ = write!(out, " {reason} {}", n.as_u64().unwrap_or(0));
    }
    let _ = writeln!(out);
    out.push_str(&routes_table(previous, now, seconds));
    out
}

/// Widest route name shown in full by `xgate top`.
const ROUTE_WIDTH: usize = 18;

/// The per-route part of `xgate top`: each route's request rate, and p50/p99 of its whole
/// request and of each phase over the last interval (since the start without a previous
/// answer); `-` for a phase the route did not record in it (a direct route has no upstream
/// phases). At most 113 columns.
fn routes_table(previous: Option<&Value>, now: &Value, seconds: f64) -> String {
    let mut out = String::new();
    let routes = now["routes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if routes.is_empty() {
        return out;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "routes, p50/p99 of the last interval   REQUEST: wire arrival -> response queued   HEAD: head read"
    );
    let _ = writeln!(
        out,
        "  WAIT: for the upstream connection   TTFB: request head sent -> upstream's first byte   \
         WRITE: first -> last byte"
    );
    let _ = writeln!(
        out,
        "{:<ROUTE_WIDTH$} {:>8} {:>16} {:>16} {:>16} {:>16} {:>16}",
        "ROUTE", "REQ/S", "REQUEST", "HEAD", "WAIT", "TTFB", "WRITE"
    );
    for route in routes {
        let name = route["route"].as_str().unwrap_or("?");
        let before = previous
            .and_then(|p| p["routes"].as_array())
            .and_then(|rs| rs.iter().find(|r| r["route"].as_str() == Some(name)));
        let requests = route["requests"].as_u64().unwrap_or(0);
        let rate = match previous {
            None => 0.0,
            Some(_) => {
                let was = before.and_then(|b| b["requests"].as_u64()).unwrap_or(0);
                requests.saturating_sub(was) as f64 / seconds.max(1e-3)
            }
        };
        // p50/p99 of the histogram `pick` finds in a route's answer, over the interval.
        let window = |pick: &dyn Fn(&Value) -> &Value| -> String {
            let now_h = histogram_of(&pick(route)["buckets"]);
            let h: Histogram = match before {
                Some(b) => {
                    let was = histogram_of(&pick(b)["buckets"]);
                    std::array::from_fn(|i| now_h[i].saturating_sub(was[i]))
                }
                None => now_h,
            };
            match (quantile_micros(&h, 0.5), quantile_micros(&h, 0.99)) {
                (Some(p50), Some(p99)) => format!("{}/{}", micros_text(p50), micros_text(p99)),
                _ => "-".to_string(),
            }
        };
        let shown: String = if name.chars().count() > ROUTE_WIDTH {
            name.chars()
                .take(ROUTE_WIDTH - 1)
                .chain(std::iter::once('~'))
                .collect()
        } else {
            name.to_string()
        };
        let _ = writeln!(
            out,
            "{:<ROUTE_WIDTH$} {:>8.0} {:>16} {:>16} {:>16} {:>16} {:>16}",
            shown,
            rate,
            window(&|r| &r["latency"]),
            window(&|r| &r["phases"]["head_read"]),
            window(&|r| &r["phases"]["upstream_wait"]),
            window(&|r| &r["phases"]["upstream_first_byte"]),
            window(&|r| &r["phases"]["response_write"]),
        );
    }
    out
}

/// The `/heatmap` answer as an SVG document: time on x (one column per second), latency bucket
/// on y (fastest at the bottom), colour by count on a log scale (white: none).
pub fn heatmap_svg(heatmap: &Value) -> anyhow::Result<String> {
    let rows = heatmap["rows"]
        .as_array()
        .ok_or_else(|| anyhow!("the heat map has no rows"))?;
    let counts: Vec<Histogram> = rows.iter().map(|r| histogram_of(&r["counts"])).collect();
    // Only the bucket range that has any count, with a margin of one.
    let used = |pick: fn(&mut dyn Iterator<Item = usize>) -> Option<usize>| {
        let mut it = (0..LATENCY_BUCKETS).filter(|&b| counts.iter().any(|h| h[b] > 0));
        pick(&mut it)
    };
    let low = used(|it| it.next()).unwrap_or(0).saturating_sub(1);
    let high = used(|it| it.last())
        .unwrap_or(LATENCY_BUCKETS - 1)
        .saturating_add(1)
        .min(LATENCY_BUCKETS - 1);
    let max = counts
        .iter()
        .flat_map(|h| h.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let (cell_w, cell_h) = (8usize, 14usize);
    let (left, top, bottom) = (80usize, 30usize, 40usize);
    let columns = counts.len().max(1);
    let buckets = high - low + 1;
    let width = left + columns * cell_w + 20;
    let height = top + buckets * cell_h + bottom;
    let kind = heatmap["kind"].as_str().unwrap_or("request");
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"10\">"
    );
    let _ = writeln!(
        svg,
        "<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>"
    );
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"18\" font-size=\"12\">xgate {kind} latency: {} s, log2 buckets, colour = count (max {max})</text>",
        counts.len()
    );
    for (x, histogram) in counts.iter().enumerate() {
        for (bucket, &n) in histogram.iter().enumerate().take(high + 1).skip(low) {
            if n == 0 {
                continue;
            }
            let level = ((n as f64).ln_1p() / (max as f64).ln_1p()).clamp(0.0, 1.0);
            // From pale yellow to dark red.
            let (r, g, b) = (
                255.0 - 100.0 * level,
                230.0 * (1.0 - level),
                150.0 * (1.0 - level),
            );
            let y = top + (high - bucket) * cell_h;
            let _ = writeln!(
                svg,
                "<rect x=\"{}\" y=\"{y}\" width=\"{cell_w}\" height=\"{cell_h}\" fill=\"rgb({},{},{})\"><title>{n}</title></rect>",
                left + x * cell_w,
                r as u8,
                g as u8,
                b as u8
            );
        }
    }
    for bucket in low..=high {
        let y = top + (high - bucket) * cell_h + cell_h - 3;
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{y}\">&lt;{}</text>",
            micros_text(xgate_gateway::metrics::bucket_upper_micros(bucket))
        );
    }
    let axis_y = top + buckets * cell_h + 15;
    let _ = writeln!(
        svg,
        "<text x=\"{left}\" y=\"{axis_y}\">time (1 column = 1 s, oldest left) →</text>"
    );
    svg.push_str("</svg>\n");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_flows_table_shows_every_flow_and_the_total() {
        let flows = json!({"total": 3, "sort": "bytes", "flows": [
            {"client": "10.77.0.1", "client_port": 40000, "state": "established", "age_ms": 1500,
             "idle_ms": 20, "handshake_us": 85, "packets": 7, "bytes": 900, "retransmits": 1},
            {"client": "10.77.0.9", "client_port": 1, "state": "half_open", "age_ms": 61000,
             "idle_ms": 61000, "handshake_us": null, "packets": 1, "bytes": 60, "retransmits": 0}]});
        let table = flows_table(&flows);
        assert!(table.contains("10.77.0.1:40000"), "{table}");
        assert!(table.contains("established"));
        assert!(table.contains("85us"));
        assert!(table.contains("1m01s"));
        assert!(table.ends_with("2 of 3 flows (sorted by bytes)\n"), "{table}");
    }

    #[test]
    fn top_turns_totals_into_rates_and_percentiles() {
        let mut before = [0u64; LATENCY_BUCKETS];
        before[4] = 100;
        let mut after = before;
        after[4] += 90;
        after[12] += 10;
        let p = json!({"requests": 1000, "xdp_redirected": 50, "request_latency_buckets": before.to_vec(),
                       "xdp_drops": {"syn_budget": 10}});
        let n = json!({"requests": 1100, "xdp_redirected": 250, "request_latency_buckets": after.to_vec(),
                       "handshake_latency_buckets_recent": vec![0; 32], "xdp_drops": {"syn_budget": 510},
                       "reaped": {"idle": 2}});
        let screen = top_screen(Some(&p), &n, 1.0);
        assert!(screen.contains("requests/s        100"), "{screen}");
        assert!(screen.contains("p50     32us"), "{screen}");
        assert!(screen.contains("p99    8.2ms"), "{screen}");
        assert!(screen.contains("500/s"), "{screen}");
        assert!(screen.contains("idle 2"), "{screen}");
    }

    #[test]
    fn top_shows_each_routes_phases_over_the_interval_in_120_columns() {
        let histogram = |bucket: usize, n: u64| {
            let mut h = vec![0u64; LATENCY_BUCKETS];
            h[bucket] = n;
            h
        };
        let summary = |buckets: Vec<u64>| json!({"count": buckets.iter().sum::<u64>(), "buckets": buckets});
        let proxied = |requests: u64, n: u64| {
            json!({"route": "a-route-with-a-very-long-name", "requests": requests,
                   "latency": summary(histogram(17, n)),
                   "phases": {"head_read": summary(histogram(4, n)),
                              "upstream_wait": summary(histogram(1, n)),
                              "upstream_first_byte": summary(histogram(17, n)),
                              "response_write": summary(histogram(0, n))}})
        };
        let direct = json!({"route": "status", "requests": 7, "latency": summary(histogram(5, 7)),
                            "phases": {"head_read": summary(histogram(3, 7)),
                                       "response_write": summary(histogram(0, 7))}});
        let p = json!({"requests": 10, "routes": [proxied(3, 3), direct]});
        let mut later = proxied(13, 13);
        // Of the interval's ten requests, all took [1, 2) ms to their first byte.
        later["phases"]["upstream_first_byte"]["buckets"][10] = json!(10);
        later["phases"]["upstream_first_byte"]["buckets"][17] = json!(3);
        let n = json!({"requests": 20, "routes": [later, direct]});
        let screen = top_screen(Some(&p), &n, 2.0);
        let header = screen
            .lines()
            .find(|l| l.starts_with("ROUTE"))
            .expect("a route table");
        assert!(
            header.contains("REQ/S") && header.contains("TTFB") && header.contains("WRITE"),
            "{screen}"
        );
        let row = screen
            .lines()
            .find(|l| l.starts_with("a-route-with-a-ve~"))
            .expect("the long name, cut");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "a-route-with-a-ve~",
                "5",
                "262.1ms/262.1ms",
                "32us/32us",
                "4us/4us",
                "2.0ms/2.0ms",
                "2us/2us"
            ],
            "{screen}"
        );
        let row = screen.lines().find(|l| l.starts_with("status")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["status", "0", "-", "-", "-", "-", "-"],
            "no request of the direct route in the interval: {screen}"
        );
        for line in screen.lines() {
            assert!(
                line.chars().count() <= 120,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        // Without a previous answer: since the start; the direct route has no upstream phases.
        let screen = top_screen(None, &n, 1.0);
        let row = screen.lines().find(|l| l.starts_with("status")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["status", "0", "64us/64us", "16us/16us", "-", "-", "2us/2us"],
            "{screen}"
        );
        // No routes in the answer: no table.
        assert!(!top_screen(None, &json!({}), 1.0).contains("ROUTE"));
    }

    #[test]
    fn the_heat_map_has_a_cell_per_second_and_bucket_with_counts() {
        let mut a = vec![0u64; 32];
        a[5] = 10;
        let mut b = vec![0u64; 32];
        b[5] = 1;
        b[9] = 3;
        let map = json!({"kind": "request", "rows": [{"unix_time": 1, "counts": a}, {"unix_time": 2, "counts": b}]});
        let svg = heatmap_svg(&map).unwrap();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<title>").count(), 3, "{svg}");
        assert!(svg.contains("<title>10</title>"));
        assert!(svg.contains("&lt;64us"), "bucket 5's bound: {svg}");
        assert!(heatmap_svg(&json!({})).is_err());
    }
}
