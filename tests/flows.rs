//! Lab tests of the flow layer: what XDP records per flow, the reaper removing each kind of dead
//! flow for real (a half-open handshake, a client that retransmits, an idle client, a client
//! that stops taking data, a client that vanishes mid-response), the flow table's bound under
//! 100,000 distinct flows (the SYN-flood shield and SYN cookies are `syn_cookies.rs`'), and the management listener's `/metrics` (parsed
//! by the Prometheus client library), `xgate flows`, `xgate top` and `xgate heatmap`, checked
//! against the numbers each test produced.

mod common;

use std::time::Duration;

use common::{metric, output, scrape, TestLab, GATEWAY_IP, SYSTEM_PYTHON, XGATE};

const RAWPEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/rawpeer.py");

/// `xgate <args>` in the gateway namespace (the management listener is on its loopback).
fn xgate_cli(lab: &TestLab, args: &[&str]) -> String {
    let out = output(lab.exec("gw", XGATE).args(args));
    assert!(
        out.status.success(),
        "xgate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flows_json(lab: &TestLab, sort: &str) -> serde_json::Value {
    serde_json::from_str(&xgate_cli(lab, &["flows", "--json", "--sort", sort])).unwrap()
}

/// `xgate lab flood <args>` from the lab's client namespace; returns its JSON line.
fn flood(lab: &TestLab, args: &[&str]) -> serde_json::Value {
    let out = output(
        std::process::Command::new(XGATE)
            .args(["lab", "flood", "--name", &lab.name])
            .args(args),
    );
    assert!(
        out.status.success(),
        "xgate lab flood {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("xgate lab flood printed {:?}", out.stdout))
}

/// Runs the raw peer (`tests/rawpeer.py`) in the client namespace and returns its JSON line.
fn rawpeer(lab: &TestLab, args: &[&str]) -> serde_json::Value {
    let out = output(
        lab.exec("cli", SYSTEM_PYTHON)
            .arg(RAWPEER)
            .args(args)
            .args(["--iface", "xg-cli"]),
    );
    assert!(
        out.status.success(),
        "rawpeer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("rawpeer printed {:?}", out.stdout))
}

#[test]
fn metrics_flows_top_and_heatmap_show_the_requests_the_test_made() {
    let mut lab = TestLab::new("fm");
    let ready = lab.start_gateway();
    assert_eq!(ready["metrics"], "127.0.0.1:9180", "{ready}");
    let url = format!("http://{GATEWAY_IP}/healthz");
    for _ in 0..20 {
        let (ok, code) = lab.curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]);
        assert!(ok && code == "200", "{code}");
    }
    // The heat map gains a row a second; let one pass after the last request.
    std::thread::sleep(Duration::from_millis(1500));

    let samples = scrape(&lab);
    let by_route_200: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("xgate_http_requests_total{") && k.contains("status=200"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(by_route_200, 20.0, "{samples:?}");
    let latency_count: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("xgate_http_request_duration_seconds_count{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        latency_count, 20.0,
        "every request's latency is measured from its XDP stamp"
    );
    let latency_sum: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("xgate_http_request_duration_seconds_sum{"))
        .map(|(_, v)| v)
        .sum();
    assert!(latency_sum > 0.0 && latency_sum < 20.0, "sum {latency_sum} s");
    assert_eq!(
        metric(&samples, "xgate_tcp_handshake_duration_seconds_count{}"),
        20.0
    );
    assert!(metric(&samples, "xgate_xdp_packets_total{action=redirect,reason=ipv4}") >= 20.0 * 5.0);
    assert_eq!(
        metric(&samples, "xgate_xdp_packets_total{action=drop,reason=syn_budget}"),
        0.0
    );
    assert!(metric(&samples, "xgate_lane_rx_frames_total{lane=0}") >= 100.0);
    assert!(metric(&samples, "xgate_lane_umem_frames{lane=0,state=fill}") > 0.0);
    // The kernel's AF_XDP counts are there; 20 requests never fill a ring.
    assert_eq!(metric(&samples, "xgate_lane_xsk_rx_dropped_total{lane=0}"), 0.0);
    assert_eq!(
        metric(
            &samples,
            "xgate_lane_backpressure_events_total{kind=xsk_rx_ring_full,lane=0}"
        ),
        0.0
    );
    assert_eq!(metric(&samples, "xgate_flows_reaped_total{reason=idle}"), 0.0);
    assert_eq!(metric(&samples, "xgate_syn_sources{handshake=completed}"), 1.0);

    // `xgate flows`: the 20 connections, each with its handshake, packets and bytes.
    let flows = flows_json(&lab, "bytes");
    let from_client: Vec<&serde_json::Value> = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["client"] == "10.77.0.1")
        .collect();
    assert_eq!(from_client.len(), 20, "{flows}");
    for flow in &from_client {
        assert!(flow["handshake_us"].as_u64().is_some(), "{flow}");
        assert!(flow["packets"].as_u64().unwrap() >= 4, "{flow}");
        assert!(flow["bytes"].as_u64().unwrap() > 200, "{flow}");
        assert_eq!(flow["retransmits"], 0, "{flow}");
        assert_eq!(flow["state"], "closing", "curl closed it: {flow}");
    }
    // The handshake histogram's sum is the flows' handshakes added up (each flow shows whole µs).
    let flows_handshake_s: f64 = from_client
        .iter()
        .map(|f| f["handshake_us"].as_u64().unwrap() as f64 / 1e6)
        .sum();
    let histogram_sum = metric(&samples, "xgate_tcp_handshake_duration_seconds_sum{}");
    assert!(
        histogram_sum >= flows_handshake_s && histogram_sum < flows_handshake_s + 20e-6,
        "histogram sum {histogram_sum} s, flows {flows_handshake_s} s"
    );
    let bytes: Vec<u64> = from_client.iter().map(|f| f["bytes"].as_u64().unwrap()).collect();
    assert!(
        bytes.windows(2).all(|w| w[0] >= w[1]),
        "sorted by bytes: {bytes:?}"
    );
    let table = xgate_cli(&lab, &["flows", "--sort", "latency", "--limit", "5"]);
    assert!(
        table.contains("10.77.0.1:") && table.contains("5 of 20 flows (sorted by latency)"),
        "{table}"
    );

    let top = xgate_cli(
        &lab,
        &["top", "--iterations", "2", "--interval-ms", "300", "--plain"],
    );
    assert!(
        top.contains("requests/s") && top.contains("total           20"),
        "{top}"
    );

    let svg_path = std::env::temp_dir().join(format!("{}-heat.svg", lab.name));
    xgate_cli(&lab, &["heatmap", "--out", svg_path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    std::fs::remove_file(&svg_path).ok();
    let cells: u64 = svg
        .split("<title>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(cells, 20, "every request is in the heat map once: {svg}");
    lab.stop_gateway();
}

#[test]
fn the_reaper_removes_each_kind_of_dead_flow() {
    let mut lab = TestLab::new("fr");
    let site = std::env::temp_dir().join(format!("{}-site", lab.name));
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("big.bin"), vec![b'x'; 4_000_000]).unwrap();
    lab.start_nginx_backend(8080, &site);
    lab.append_config(
        "[flows]\nreap_interval_ms = 200\nstall_ms = 1000\nidle_ms = 4000\nhalf_open_ms = 1500\nmax_retransmissions = 5\n\n\
         [timeouts]\nkeepalive_idle_ms = 60000\nheader_read_ms = 60000\n\n\
         [[upstream]]\nname = \"site\"\nmembers = [\"10.77.0.4:8080\"]\n\n\
         [[route]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"site\"\n",
    );
    lab.start_gateway();

    // Half-open: a SYN and never the last ACK. The gateway answers with SYN-ACKs, then the
    // reaper aborts the socket (RST) at 1.5 s; a stray segment after that dies in XDP.
    let half_open = rawpeer(
        &lab,
        &[
            "halfopen",
            "--ip",
            "10.77.0.77",
            "--port",
            "41000",
            "--seconds",
            "8",
        ],
    );
    assert!(half_open["synacks"].as_u64().unwrap() >= 1, "{half_open}");
    let rst = half_open["rst_after_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no RST: {half_open}"));
    assert!((1.4..4.0).contains(&rst), "RST {rst} s after the SYN");

    // Retransmissions: the same data segment again and again (a head that never ends, so the
    // gateway answers nothing): reaped after the fifth repeat.
    let retrans = rawpeer(
        &lab,
        &[
            "retrans",
            "--ip",
            "10.77.0.78",
            "--port",
            "41001",
            "--repeats",
            "12",
            "--gap",
            "0.2",
            "--seconds",
            "8",
        ],
    );
    let rst = retrans["rst_after_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no RST: {retrans}"));
    let sent = retrans["data_segments_sent"].as_u64().unwrap();
    assert!(
        (6..=9).contains(&sent),
        "reaped after 1 + 5 repeats (and a walk): {retrans}, RST at {rst} s"
    );

    // A client that vanishes mid-response: it takes the first 20 kB of a 4 MB answer, then
    // sends nothing more (no ACK, no RST) while the gateway has data in flight. The gateway
    // retransmits into the silence; the reaper sees the client's ACKs stop moving and resets it.
    let vanished = rawpeer(
        &lab,
        &[
            "vanish",
            "--ip",
            "10.77.0.79",
            "--port",
            "41002",
            "--take",
            "20000",
            "--seconds",
            "10",
        ],
    );
    eprintln!("reaper: the client that vanished: {vanished}");
    assert!(vanished["taken"].as_u64().unwrap() >= 20_000, "{vanished}");
    assert!(
        vanished["retransmissions_seen"].as_u64().unwrap() >= 1,
        "the gateway had unacknowledged data to send again: {vanished}"
    );
    let rst = vanished["rst_after_silence_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no RST: {vanished}"));
    assert!(
        (0.9..4.0).contains(&rst),
        "RST {rst} s after the client fell silent"
    );

    // Idle and stalled, with real kernel clients: one connects and sends nothing; the other
    // asks for 4 MB with a 4 KiB receive buffer and never reads, so its window closes and its
    // ACKs stop moving while the gateway still has data for it.
    let clients = lab.python(
        r#"
import json, socket, threading, time
out = {}
def idle():
    s = socket.create_connection(("10.77.0.2", 80))
    start = time.time()
    s.settimeout(15)
    try:
        s.recv(1)
        out["idle"] = "closed"
    except ConnectionResetError:
        out["idle"] = time.time() - start
def stalled():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("10.77.0.2", 80))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: gw\r\n\r\n")
    start = time.time()
    time.sleep(6)
    s.settimeout(10)
    got = 0
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                out["stalled"] = "closed after %d bytes" % got
                return
            got += len(chunk)
    except ConnectionResetError:
        out["stalled"] = got
threads = [threading.Thread(target=f) for f in (idle, stalled)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(out))
"#,
    );
    let clients: serde_json::Value = serde_json::from_str(&clients).unwrap();
    let idle = clients["idle"]
        .as_f64()
        .unwrap_or_else(|| panic!("idle client not reset: {clients}"));
    assert!((3.9..7.0).contains(&idle), "idle client reset after {idle} s");
    let stalled = clients["stalled"]
        .as_u64()
        .unwrap_or_else(|| panic!("stalled client not reset: {clients}"));
    assert!(
        stalled < 4_000_000,
        "the stalled client got {stalled} bytes before the RST"
    );

    std::thread::sleep(Duration::from_millis(1200));
    let samples = scrape(&lab);
    // Stalled twice: the client that vanished and the one that stopped reading.
    for (reason, reaped) in [
        ("half_open", 1.0),
        ("retransmissions", 1.0),
        ("idle", 1.0),
        ("stalled", 2.0),
    ] {
        assert_eq!(
            metric(&samples, &format!("xgate_flows_reaped_total{{reason={reason}}}")),
            reaped,
            "{reason}: {samples:?}"
        );
    }
    // The three raw peers each sent a stray segment after their RST: dropped in XDP.
    assert!(
        metric(
            &samples,
            "xgate_xdp_packets_total{action=drop,reason=reaped_flow}"
        ) >= 3.0
    );
    assert!(metric(&samples, "xgate_flow_drop_entries{}") >= 5.0);
    // Sockets gone: no client connection is left open, and the table no longer has the flows.
    assert_eq!(metric(&samples, "xgate_lane_open_connections{lane=0}"), 0.0);
    let flows = flows_json(&lab, "age");
    for flow in flows["flows"].as_array().unwrap() {
        let port = flow["client_port"].as_u64().unwrap();
        assert!(
            ![41000, 41001, 41002].contains(&port),
            "a reaped flow is back: {flow}"
        );
        assert_ne!(flow["state"], "established", "{flow}");
    }
    let stats = lab.stats();
    let lane = &stats["lanes"][0];
    assert_eq!(lane["open_connections"], 0, "{stats}");
    lab.stop_gateway();
    std::fs::remove_dir_all(&site).ok();
}

#[test]
fn the_flow_table_stays_within_its_bound_under_100000_flows() {
    let mut lab = TestLab::new("fb");
    lab.append_config(
        "[flows]\nmax_flows = 8192\n\n[shield]\nstranger_syn_rate = 0\nknown_syn_rate = 0\nbudget_syn_rate = 0\n",
    );
    lab.start_gateway();
    let pid = lab.gateway_pid();
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    let rss_before = rss();
    // 100,000 SYNs, each its own flow (distinct source address and port), all admitted.
    let flood = flood(
        &lab,
        &[
            "--seconds",
            "30",
            "--count",
            "100000",
            "--sources",
            "100000",
            "--from",
            "10.77.1.0",
        ],
    );
    assert_eq!(flood["sent"], 100_000, "{flood}");
    std::thread::sleep(Duration::from_millis(1500));
    let flows = flows_json(&lab, "age");
    let total = flows["total"].as_u64().unwrap();
    assert!(total <= 8192, "{total} flows in a table of 8192");
    assert!(total >= 4096, "the LRU keeps the most recent flows: {total}");
    let samples = scrape(&lab);
    let in_table: f64 = ["half_open", "established", "closed"]
        .iter()
        .map(|s| metric(&samples, &format!("xgate_flows{{state={s}}}")))
        .sum();
    assert!(in_table <= 8192.0, "{in_table}");
    eprintln!(
        "100,000 flows: {total} in the table of 8192, a reaper walk took {:.1} ms, {} half-open connections evicted",
        metric(&samples, "xgate_reaper_walk_duration_seconds{}") * 1e3,
        metric(&samples, "xgate_half_open_evicted_total{}")
    );
    // The flood got past XDP (no limits here): at the lane's bound (half of its 8,192 sockets),
    // new SYNs evicted the oldest half-open connections, or were answered with SYN cookies
    // while all were young, instead of taking every socket.
    assert!(
        metric(&samples, "xgate_half_open_evicted_total{}")
            + metric(&samples, "xgate_lane_syn_cookies_total{event=sent,lane=0}")
            > 0.0,
        "{samples:?}"
    );
    assert!(metric(&samples, "xgate_half_open_connections{}") <= 4096.0);
    // Still serving, and the process did not grow with the flood.
    assert_eq!(lab.healthz_status().unwrap(), "200");
    let grown_kib = rss().saturating_sub(rss_before);
    assert!(grown_kib < 64 * 1024, "RSS grew by {grown_kib} KiB");
    lab.stop_gateway();
}
