//! The markdown report of one run: the header, the goals, and the table of every section.

use std::fmt::Write as _;

use serde_json::Value;

use crate::results::{
    proxy_reference, FloodCase, FloodRun, SuiteResults, UpstreamChurn, DIRECT_SERVER, NGINX_PROXY_SERVER,
    OPEN_LOOP_CLIENT, PROXY_SERVERS, TWO_LANES_SERVER, XGATE_PROXY_SERVER,
};

use super::{
    goals::{goals, GoalKind},
    micros,
    summary::{find, summarise, CaseSummary},
    thousands, Spread, NOISY_SPREAD,
};

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
         sources that never completed a handshake, SYN cookies sent with XDP_TX over the budget), or the kernel's SYN \
         backlog and cookies for nginx. The flood takes \
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
    let _ = writeln!(
        out,
        "\nFirst-time clients: one connection (connect, GET /healthz, the whole response, close) from each of 50 \
         client addresses the fresh server never saw, 10 at a time (Python's kernel sockets, `suite/first_time.py`), \
         without and then under the flood, from another 50 addresses. xgate answers a stranger's SYN over the budget \
         with a SYN cookie in XDP; the kernel answers with its own once nginx's SYN backlog is full. The rate is bound \
         by the Python client, which spends a thread per connection: compare the times.\n\n\
         | server | quiet p50 / p99 ms | flooded p50 / p99 ms | flooded max ms | conn./s quiet / flooded | failed (quiet / flood) |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    for case in cases {
        let runs = &case.runs;
        let median = |field: fn(&FloodRun) -> f64| {
            Spread::of(&runs.iter().map(field).collect::<Vec<_>>()).map_or(f64::NAN, |s| s.median)
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.0} / {:.0} | {} / {} |",
            case.server,
            median(|r| r.first_time_quiet.p50_ms),
            median(|r| r.first_time_quiet.p99_ms),
            median(|r| r.first_time_flooded.p50_ms),
            median(|r| r.first_time_flooded.p99_ms),
            median(|r| r.first_time_flooded.max_ms),
            median(|r| r.first_time_quiet.rate),
            median(|r| r.first_time_flooded.rate),
            runs.iter().map(|r| r.first_time_quiet.failed).sum::<u64>(),
            runs.iter().map(|r| r.first_time_flooded.failed).sum::<u64>(),
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
    upstream_churn_table(out, &cases);
    proxy_open_loop_table(out, results, summaries);
}

/// xgate's upstream connections per 1,000 requests in each proxy case, from its own counters
/// after the warm-up (goal: at most 1, with the pool's default idle sizing).
fn upstream_churn_table(out: &mut String, cases: &[&CaseSummary]) {
    let rows: Vec<(usize, Vec<UpstreamChurn>)> = cases
        .iter()
        .filter(|s| s.case.server == XGATE_PROXY_SERVER)
        .map(|s| {
            (
                s.case.connections,
                s.case.runs.iter().filter_map(|r| r.upstream).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, churn)| !churn.is_empty())
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nxgate proxy's upstream connections after the warm-up (from the moment xgate has answered 20 requests per client connection to the end of the run), from its own counters; the pool runs with its defaults (goal: at most 1 connect per 1,000 requests):\n"
    );
    let _ = writeln!(
        out,
        "| connections | upstream connects per 1,000 requests, median (min–max) | connects | requests | connect failures |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    for (connections, churn) in rows {
        let per_thousand: Vec<f64> = churn.iter().map(UpstreamChurn::per_thousand).collect();
        let Some(spread) = Spread::of(&per_thousand) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {:.3} ({:.3}–{:.3}) | {} | {} | {} |",
            thousands(connections as f64),
            spread.median,
            spread.min,
            spread.max,
            churn.iter().map(|c| c.connects).sum::<u64>(),
            churn.iter().map(|c| c.requests).sum::<u64>(),
            churn.iter().map(|c| c.connect_failures).sum::<u64>(),
        );
    }
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
        let met = match (goal.kind, goal.met) {
            (GoalKind::ReportOnly, _) => "–",
            (GoalKind::Unmeasurable, _) => "not measurable here",
            (GoalKind::Target, Some(true)) => "yes",
            (GoalKind::Target, Some(false)) => "**no**",
            (GoalKind::Target, None) => "not measured",
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
    super::tls::tls_section(&mut out, results);
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
