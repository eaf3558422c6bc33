//! Lab tests of a crowd against the default configuration: wrk with hundreds to thousands of
//! connections on a direct route and on a route proxied to one nginx backend, and a burst of
//! connects larger than the gateway's socket pool. A new user meets these first; the defaults
//! must serve them without an error.

mod common;

use std::time::Duration;

use common::{TestLab, BACKEND_IP, GATEWAY_IP};

/// What wrk reported.
#[derive(Debug)]
struct WrkRun {
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    text: String,
}

/// Runs wrk from the client namespace with `connections` connections for `seconds` against
/// `path` on the gateway.
fn wrk(lab: &TestLab, connections: u32, seconds: u32, path: &str) -> WrkRun {
    let script = format!(
        "ulimit -n 20000; exec wrk -t2 -c{connections} -d{seconds}s --timeout 10s http://{GATEWAY_IP}{path}"
    );
    let out = common::output(lab.exec("cli", "sh").args(["-c", &script]));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wrk failed: {text}");
    let number_after = |label: &str| -> u64 {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .map_or(0, |n| n.trim_end_matches(',').parse().unwrap())
    };
    let requests = text
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in: {text}"));
    let socket_errors = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Socket errors:"))
        .map_or(0, |rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().last())
                .map(|n| n.parse::<u64>().unwrap())
                .sum()
        });
    WrkRun {
        requests,
        non_2xx: number_after("Non-2xx or 3xx responses:"),
        socket_errors,
        text,
    }
}

/// The lab with nginx as the one member of pool `app`, routed at `/app`; `/healthz` is answered
/// by the gateway itself. Everything else is the default configuration.
fn crowd_lab(tag: &str) -> TestLab {
    let mut lab = TestLab::new(tag);
    let site = std::env::temp_dir().join(format!("{}-site", lab.name));
    std::fs::create_dir_all(site.join("app")).unwrap();
    std::fs::write(site.join("app/index.html"), "hello from nginx\n").unwrap();
    lab.start_nginx_backend(8080, &site);
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8080"]

[[route]]
name = "health"
path_prefix = "/healthz"
answer = {{ status = 200, body = "ok\n" }}

[[route]]
name = "app"
path_prefix = "/app"
upstream = "app"
"#
    ));
    lab.start_gateway();
    lab
}

fn lane_total(stats: &serde_json::Value, key: &str) -> u64 {
    stats["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .map(|lane| lane[key].as_u64().unwrap_or_else(|| panic!("no {key} in {lane}")))
        .sum()
}

/// wrk with 200, 1,000 and 5,000 connections, on the proxied route and on the direct one, each
/// count against a freshly started gateway with the default configuration (a cold start: no
/// upstream connection open yet, 5,000 at once overflow nginx's listen backlog of 511): every
/// response 2xx, no socket error. The proxied route's upstream connections are reused: at most
/// one connect per client connection.
#[test]
fn crowds_of_wrk_connections_get_no_error_with_the_defaults() {
    let mut lab = crowd_lab("crowd");
    for connections in [200, 1_000, 5_000] {
        if connections != 200 {
            lab.stop_gateway();
            lab.start_gateway();
        }
        for path in ["/app/", "/healthz"] {
            let before = lab.stats();
            let run = wrk(&lab, connections, 4, path);
            let after = lab.stats();
            assert!(run.requests > 0, "{connections} on {path}: {}", run.text);
            assert_eq!(
                (run.non_2xx, run.socket_errors),
                (0, 0),
                "{connections} connections on {path}: {}",
                run.text
            );
            let connects = lane_total(&after, "upstream_connects") - lane_total(&before, "upstream_connects");
            let dropped = lane_total(&after, "syn_dropped_full") - lane_total(&before, "syn_dropped_full");
            assert_eq!(dropped, 0, "the default pool holds {connections} connections");
            if path == "/app/" {
                // At most one connection per client connection: demand-sized idle lists keep
                // them between requests instead of closing and reopening.
                assert!(
                    connects <= u64::from(connections),
                    "{connects} upstream connects for {} requests from {connections} connections",
                    run.requests
                );
            } else {
                assert_eq!(connects, 0, "a direct route opens no upstream connection");
            }
            eprintln!(
                "{connections} connections on {path}: {} requests, {connects} upstream connects",
                run.requests
            );
        }
        let stats = lab.stats();
        assert_eq!(lane_total(&stats, "upstream_connect_failures"), 0, "{stats}");
        assert_eq!(lane_total(&stats, "heap_allocations"), 0, "{stats}");
    }
    lab.stop_gateway();
}

/// A burst of 3,000 simultaneous connects against a pool of 1,000 client sockets: the SYNs
/// that find no socket are dropped, not refused, so their clients send them again and every
/// one of the 3,000 is served.
#[test]
fn a_burst_three_times_the_socket_pool_is_served_in_full() {
    let mut lab = TestLab::new("burst");
    lab.set_key("max_connections", 1000);
    lab.start_gateway();
    let script = format!(
        r#"
import resource, selectors, socket, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
N = 3000
sel = selectors.DefaultSelector()
request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
state = {{}}
for i in range(N):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("{GATEWAY_IP}", 80))
    state[s] = b""
    sel.register(s, selectors.EVENT_WRITE)
ok = failed = 0
deadline = time.time() + 90
while state and time.time() < deadline:
    for key, events in sel.select(timeout=1):
        s = key.fileobj
        if events & selectors.EVENT_WRITE:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                failed += 1
                sel.unregister(s); s.close(); del state[s]
                continue
            s.send(request)
            sel.modify(s, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(4096)
        except OSError:
            data = None
        if data:
            state[s] += data
            continue
        if state[s].startswith(b"HTTP/1.1 200"):
            ok += 1
        else:
            failed += 1
        sel.unregister(s); s.close(); del state[s]
print(ok, failed, len(state))
"#
    );
    let out = common::output(lab.exec("cli", "python3").args(["-c", &script]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: Vec<u64> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts, [3_000, 0, 0], "served, failed, unfinished");
    std::thread::sleep(Duration::from_millis(200));
    let stats = lab.stats();
    // Over the pool: SYNs dropped for want of a socket, deferred at the half-open bound, or
    // answered with SYN cookies whose ACKs then waited for a free socket.
    assert!(
        lane_total(&stats, "syn_dropped_full")
            + lane_total(&stats, "syn_deferred")
            + lane_total(&stats, "syn_cookies_no_socket")
            > 0,
        "the burst did exceed the pool: {stats}"
    );
    assert_eq!(lane_total(&stats, "refused"), 0, "{stats}");
    lab.stop_gateway();
}

/// Idle upstream connections follow demand down: after a load of 50 connections stops, the
/// pool's recent peak falls to nothing within two demand windows (20 s), and the idle
/// connections it kept are closed before their `idle_timeout_ms` (30 s by default).
#[test]
fn idle_upstream_connections_are_closed_once_demand_has_fallen() {
    let mut lab = crowd_lab("trim");
    let run = wrk(&lab, 50, 2, "/app/");
    assert_eq!((run.non_2xx, run.socket_errors), (0, 0), "{}", run.text);
    let loaded = lab.stats();
    let connects = lane_total(&loaded, "upstream_connects");
    assert!((1..=50).contains(&connects), "{loaded}");
    assert_eq!(lane_total(&loaded, "upstream_idle_trimmed"), 0, "{loaded}");
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let stats = lab.stats();
        if lane_total(&stats, "upstream_idle_trimmed") == connects {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "idle connections not closed 25 s after the load: {stats}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    lab.stop_gateway();
}
