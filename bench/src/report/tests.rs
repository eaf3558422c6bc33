//! Tests of the report: the clients' output, spreads, number formatting, kept notes, and the
//! markdown of each section from hand-made results.

use serde_json::Value;

use super::{svg::nines, *};
use crate::results::{
    FloodCase, HttpCase, NewConnectionRun, RunFigures, DIRECT_SERVER, NGINX_PROXY_SERVER, OPEN_LOOP_CLIENT,
    XGATE_PROXY_SERVER,
};

const WRK: &str = "Running 2s test @ http://10.77.0.3/healthz
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.61ms  256.44us   6.86ms   92.61%
    Req/Sec    62.50k     2.14k   65.29k    80.00%
  Latency Distribution
     50%    1.56ms
     75%    1.65ms
     90%    1.76ms
     99%  812.00us
  124411 requests in 2.00s, 17.92MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  62183.50
Transfer/sec:      8.96MB
";

#[test]
fn wrk_output_is_read_with_units_and_errors() {
    let (figures, completed) = parse_wrk(WRK).unwrap();
    assert_eq!(completed, 124411);
    assert_eq!(figures.requests_per_second, 62183.5);
    assert_eq!(figures.p50_us, 1560.0);
    assert_eq!(figures.p90_us, 1760.0);
    assert_eq!(figures.p99_us, 812.0);
    assert_eq!(figures.errors, 7);
    assert!(parse_wrk("unable to connect to 10.77.0.3:80 Connection refused").is_none());
}

#[test]
fn spreads_take_the_median_and_flag_noise() {
    let spread = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
    assert_eq!((spread.median, spread.min, spread.max), (2.0, 1.0, 3.0));
    assert!(spread.noisy());
    assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
    assert!(!Spread::of(&[100.0, 101.0, 99.0]).unwrap().noisy());
    assert!(Spread::of(&[]).is_none());
}

#[test]
fn numbers_are_grouped_for_reading() {
    assert_eq!(thousands(1234567.4), "1,234,567");
    assert_eq!(thousands(999.0), "999");
    assert_eq!(thousands(-1000.0), "-1,000");
    assert_eq!(micros(1234.4), "1234");
    assert_eq!(micros(12.34), "12.3");
}

#[test]
fn notes_survive_a_rewrite_and_tables_do_not() {
    let old = format!("# old tables\n| 1 |\n\n{NOTES_HEADING}\n\nThe loop and worker share a core.\n");
    let new = with_kept_notes("# new tables\n".into(), Some(&old));
    assert!(new.starts_with("# new tables\n"));
    assert!(!new.contains("old tables"));
    assert!(new.ends_with("The loop and worker share a core.\n"));
    assert_eq!(with_kept_notes("# new\n".into(), Some("# no notes\n")), "# new\n");
    assert_eq!(with_kept_notes("# new\n".into(), None), "# new\n");
}

/// A run with the given requests/s, p50 and p99 (µs), every request answered.
fn run(rps: f64, p50: f64, p99: f64) -> RunFigures {
    let (mut figures, _) = parse_wrk(WRK).unwrap();
    figures.requests_per_second = rps;
    figures.p50_us = p50;
    figures.p90_us = p50;
    figures.p99_us = p99;
    figures.p999_us = p99;
    figures.errors = 0;
    figures
}

fn case(server: &str, connections: usize, runs: Vec<RunFigures>) -> HttpCase {
    HttpCase {
        server: server.into(),
        client: "xgate-bench".into(),
        connections,
        runs,
    }
}

/// Results of a smoke-sized run: terminating cases at 100 connections and the proxy cases
/// given (none: as written before the proxy section existed).
fn results(proxy: Vec<HttpCase>) -> SuiteResults {
    let mut plan = serde_json::json!({
        "mode": "smoke", "connections": [100], "repeats": 3, "warmup_seconds": 0.1,
        "duration_seconds": 0.3, "wrk_connections": [], "packet_seconds": 0.2, "profile": false,
    });
    if !proxy.is_empty() {
        plan["proxy_connections"] = serde_json::json!([100]);
    }
    let mut http = vec![
        case("xgate", 100, vec![run(200_000.0, 400.0, 900.0); 3]),
        case("nginx", 100, vec![run(80_000.0, 1200.0, 2000.0); 3]),
    ];
    http.extend(proxy);
    SuiteResults {
        schema: 1,
        date: "2025-01-01".into(),
        git: "abc1234".into(),
        command: "xgate-bench suite --smoke".into(),
        plan: serde_json::from_value(plan).unwrap(),
        machine: crate::results::Machine {
            cpu_model: "cpu".into(),
            cpus: 2,
            kernel: "6.1".into(),
            memory_gib: 4.0,
            nginx: "nginx/1.22.1".into(),
            wrk: "wrk 4.1.0".into(),
        },
        pinning: "servers on CPU 0".into(),
        xgate_umem_backing: "NormalPages".into(),
        http,
        packet_path: Value::Null,
        profile: Vec::new(),
        flood: Vec::new(),
        tls: Vec::new(),
    }
}

/// ab's output as ab 2.3 prints it with `-q` (trimmed).
const AB: &str = "Server Software:\nServer Hostname:        10.77.0.2\nServer Port:            80\n\n\
        Document Path:          /healthz\nDocument Length:        3 bytes\n\nConcurrency Level:      10\n\
        Time taken for tests:   2.000 seconds\nComplete requests:      14718\nFailed requests:        2\n\
           (Connect: 0, Receive: 0, Length: 2, Exceptions: 0)\nNon-2xx responses:      3\n\
        Total transferred:      1206876 bytes\nRequests per second:    7358.94 [#/sec] (mean)\n";

#[test]
fn ab_output_gives_rate_completed_and_failures() {
    let run = parse_ab(AB).unwrap();
    assert_eq!(run.completed, 14718);
    assert_eq!(run.failed, 5, "failed requests and non-2xx answers");
    assert!((run.requests_per_second - 7358.94).abs() < 1e-9);
    assert!(parse_ab("apr_socket_connect(): Connection refused (111)").is_none());
}

#[test]
fn the_flood_section_shows_medians_and_ratios_per_server() {
    let new_connections = |rps: f64, failed: u64| NewConnectionRun {
        requests_per_second: rps,
        completed: rps as u64 * 2,
        failed,
    };
    let flood_run = |quiet: f64, flooded: f64, syn: f64| crate::results::FloodRun {
        keepalive_quiet: run(quiet, 400.0, 900.0),
        keepalive_flooded: run(flooded, 500.0, 1000.0),
        new_connections_quiet: new_connections(8000.0, 0),
        new_connections_flooded: new_connections(4000.0, 1),
        flood_syn_per_second: [syn, syn],
        first_time_quiet: crate::results::FirstTimeRun {
            connections: 50,
            failed: 0,
            rate: 5000.0,
            p50_ms: 0.5,
            p99_ms: 1.0,
            max_ms: 1.0,
        },
        first_time_flooded: crate::results::FirstTimeRun {
            connections: 50,
            failed: 1,
            rate: quiet / 50.0,
            p50_ms: 0.8,
            p99_ms: 2.5,
            max_ms: 3.0,
        },
    };
    let mut results = results(Vec::new());
    results.flood = vec![FloodCase {
        server: "xgate".into(),
        connections: 100,
        runs: vec![
            flood_run(200_000.0, 100_000.0, 280_000.0),
            flood_run(210_000.0, 105_000.0, 300_000.0),
            flood_run(190_000.0, 95_000.0, 290_000.0),
        ],
    }];
    let markdown = markdown(&results, None);
    assert!(markdown.contains("## SYN flood"), "{markdown}");
    assert!(
        markdown
            .contains("| xgate | 290,000 | 200,000 | 100,000 | 0.50× | 0 | 8,000 | 4,000 | 0.50× | 0 / 3 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| xgate | 0.5 / 1.0 | 0.8 / 2.5 | 3.0 | 5000 / 4000 | 0 / 3 |"),
        "{markdown}"
    );
    // Results written before the section existed have none.
    assert!(!super::markdown(&super::tests::results(Vec::new()), None).contains("## SYN flood"));
}

#[test]
fn proxy_cases_get_their_own_table_and_goals() {
    let results = results(vec![
        case(XGATE_PROXY_SERVER, 100, vec![run(90_000.0, 500.0, 1000.0); 3]),
        case(
            NGINX_PROXY_SERVER,
            100,
            vec![
                run(40_000.0, 1500.0, 3000.0),
                run(41_000.0, 1600.0, 3100.0),
                run(39_000.0, 1400.0, 2900.0),
            ],
        ),
        case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
    ]);
    let text = markdown(&results, None);
    for needle in [
            "## Proxy mode",
            "| xgate proxy | 100 | 90,000 (90,000–90,000) | 500 (500–500) | 1000 (1000–1000) |",
            "| nginx proxy | 100 | 40,000 (39,000–41,000) | 1500 (1400–1600) | 3000 (2900–3100) |",
            "| direct | 100 | 100,000 (100,000–100,000) |",
            "| proxy mode, 100 connections, closed loop: requests/s | xgate proxy ≥ 2.0× nginx proxy | 2.25× | yes |",
            "| proxy mode, 100 connections, closed loop: p99 | xgate proxy < nginx proxy | 1000 µs vs 3000 µs | yes |",
            "added p50 of the xgate hop (p50 through it − p50 direct), 100 connections, closed loop | reported (no target) | 50.0 µs (500 − 450) | – |",
            "added p50 of the nginx hop (p50 through it − p50 direct), 100 connections, closed loop | reported (no target) | 1050 µs (1500 − 450) | – |",
            "| 100 | 2.25× | 50.0 | 1050 |",
        ] {
            assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
        }
    // The terminating table keeps to the terminating servers.
    let terminating = &text[text.find("## HTTP, terminating").unwrap()..text.find("## Latency at").unwrap()];
    assert!(
        !terminating.contains("proxy") && !terminating.contains("| direct |"),
        "{terminating}"
    );
    // Without the open-loop proxy cases (results written before they existed) there is no
    // open-loop proxy table, and the added p99 of the hop is not measured.
    assert!(!text.contains("Proxy mode at the same offered load"), "{text}");
    assert!(
            text.contains(
                "| proxy mode, same offered load: added p99 of the hop (xgate vs nginx) | reported (no target) | not measured | not measured |"
            ),
            "{text}"
        );
}

/// An open-loop case at `rate` requests/s offered.
fn open_case(server: &str, rate: f64, runs: Vec<RunFigures>) -> HttpCase {
    HttpCase {
        client: OPEN_LOOP_CLIENT.into(),
        runs: runs
            .into_iter()
            .map(|mut r| {
                r.offered_rate = Some(rate);
                r
            })
            .collect(),
        ..case(server, 100, Vec::new())
    }
}

#[test]
fn proxy_open_loop_cases_judge_the_proxy_p99_and_stay_out_of_the_terminating_sections() {
    let results = results(vec![
        open_case("xgate", 40_000.0, vec![run(40_000.0, 300.0, 700.0); 3]),
        open_case("nginx", 40_000.0, vec![run(40_000.0, 900.0, 1800.0); 3]),
        case(XGATE_PROXY_SERVER, 100, vec![run(90_000.0, 500.0, 5000.0); 3]),
        case(NGINX_PROXY_SERVER, 100, vec![run(40_000.0, 1500.0, 3000.0); 3]),
        case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
        open_case(
            XGATE_PROXY_SERVER,
            20_000.0,
            vec![
                run(20_000.0, 300.0, 600.0),
                run(20_000.0, 310.0, 650.0),
                run(20_000.0, 290.0, 550.0),
            ],
        ),
        open_case(
            NGINX_PROXY_SERVER,
            20_000.0,
            vec![run(20_000.0, 700.0, 1400.0); 3],
        ),
        open_case(DIRECT_SERVER, 20_000.0, vec![run(20_000.0, 200.0, 400.0); 3]),
    ]);
    let text = markdown(&results, None);
    for needle in [
            "### Proxy mode at the same offered load (open loop)",
            "| xgate proxy | 20,000 | 300 | 300 | 600 (550–650) | 600 |",
            "| nginx proxy | 20,000 | 700 | 700 | 1400 (1400–1400) | 1400 |",
            "| direct | 20,000 | 200 | 200 | 400 (400–400) | 400 |",
            // Judged at the same offered load, not closed loop (where xgate proxy's p99 is higher).
            "| proxy mode, 100 connections, same offered load (open loop): p99 | xgate proxy < nginx proxy | 600 µs vs 1400 µs | yes |",
            "| proxy mode, same offered load: added p99 of the hop (xgate vs nginx), 100 connections | reported (no target) | xgate 200 µs (600 − 400), nginx 1000 µs (1400 − 400) | – |",
            // The closed-loop p99 stays in the proxy table.
            "| xgate proxy | 100 | 90,000 (90,000–90,000) | 500 (500–500) | 5000 (5000–5000) |",
            // The terminating goal and rate are the terminating servers' own.
            "| terminating HTTP, 100 connections, same offered load (open loop): p99 | xgate ≤ nginx | 700 µs vs 1800 µs | yes |",
            "same request rate (40,000 req/s,",
        ] {
            assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
        }
    assert!(!text.contains("closed loop: p99"), "{text}");
    let terminating_open =
        &text[text.find("## Latency at the same offered load").unwrap()..text.find("## Proxy mode").unwrap()];
    assert!(
        !terminating_open.contains("proxy") && !terminating_open.contains("| direct |"),
        "{terminating_open}"
    );

    // A slower xgate proxy at the same offered load does not meet the p99 goal.
    let mut slower = results.clone();
    for case in &mut slower.http {
        if case.server == XGATE_PROXY_SERVER && case.client == OPEN_LOOP_CLIENT {
            for run in &mut case.runs {
                run.p99_us = 2000.0;
            }
        }
    }
    let text = markdown(&slower, None);
    assert!(text.contains("| 2000 µs vs 1400 µs | **no** |"), "{text}");
}

#[test]
fn a_slower_or_erring_xgate_proxy_does_not_meet_the_proxy_goals() {
    let mut erring = run(90_000.0, 500.0, 1000.0);
    erring.errors = 2;
    let results = results(vec![
        case(XGATE_PROXY_SERVER, 100, vec![erring; 3]),
        case(NGINX_PROXY_SERVER, 100, vec![run(40_000.0, 1500.0, 3000.0); 3]),
        case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
    ]);
    let text = markdown(&results, None);
    assert!(
        text.contains("| 2.25× (errors: xgate proxy 6) | **no** |"),
        "{text}"
    );
    let slow = results_with_xgate_proxy(run(60_000.0, 2000.0, 4000.0));
    let text = markdown(&slow, None);
    assert!(text.contains("| 1.50× | **no** |"), "{text}");
    assert!(text.contains("| 4000 µs vs 3000 µs | **no** |"), "{text}");
}

fn results_with_xgate_proxy(xgate: RunFigures) -> SuiteResults {
    results(vec![
        case(XGATE_PROXY_SERVER, 100, vec![xgate; 3]),
        case(NGINX_PROXY_SERVER, 100, vec![run(40_000.0, 1500.0, 3000.0); 3]),
        case(DIRECT_SERVER, 100, vec![run(100_000.0, 450.0, 800.0); 3]),
    ])
}

#[test]
fn results_without_a_proxy_section_still_render() {
    let text = markdown(&results(Vec::new()), None);
    assert!(!text.contains("## Proxy mode"), "{text}");
    assert!(
        text.contains(
            "| proxy mode: requests/s | xgate proxy ≥ 2.0× nginx proxy | not measured | not measured |"
        ),
        "{text}"
    );
    // A results file written before the proxy section existed reads as it did.
    let mut json = serde_json::to_value(results(Vec::new())).unwrap();
    json["plan"].as_object_mut().unwrap().remove("proxy_connections");
    let old: SuiteResults = serde_json::from_value(json).unwrap();
    assert!(old.plan.proxy_connections.is_empty());
    assert_eq!(markdown(&old, None), text);
}

#[test]
fn nines_spread_the_tail() {
    assert!((nines(90.0) - 1.0).abs() < 1e-9);
    assert!((nines(99.0) - 2.0).abs() < 1e-9);
    assert!(nines(100.0).is_finite());
}

/// The proxy section lists xgate's upstream connects per 1,000 requests from its counters.
#[test]
fn the_proxy_section_gives_upstream_connects_per_thousand_requests() {
    let mut churned = run(40_000.0, 200.0, 900.0);
    churned.upstream = Some(crate::results::UpstreamChurn {
        requests: 400_000,
        connects: 40,
        connect_failures: 0,
    });
    let mut cases = vec![
        case(XGATE_PROXY_SERVER, 100, vec![churned.clone(), churned]),
        case(NGINX_PROXY_SERVER, 100, vec![run(20_000.0, 300.0, 1_000.0)]),
        case(DIRECT_SERVER, 100, vec![run(60_000.0, 100.0, 500.0)]),
    ];
    let results = results(std::mem::take(&mut cases));
    let text = markdown(&results, None);
    assert!(
        text.contains("| 100 | 0.100 (0.100–0.100) | 80 | 800000 | 0 |"),
        "{text}"
    );
}

/// A packet-path figure where XDP_DROP received what the generator sent reads "not measurable
/// here", never "met"; one where XDP_DROP took less than was generated is judged.
#[test]
fn a_generator_bound_packet_figure_is_not_measurable_here() {
    let row = |bytes: u64, receiver: &str, received: f64, generated: f64| {
        serde_json::json!({
            "frame_bytes": bytes, "receiver": receiver, "mode": "copy", "label": "x",
            "median_pps": received, "min_pps": received, "max_pps": received,
            "generated_pps_median": generated,
        })
    };
    let mut results = results(Vec::new());
    results.packet_path = serde_json::json!({
        "packet_path": [
            row(64, "xdp_drop", 700_000.0, 705_000.0),
            row(64, "af_xdp", 500_000.0, 705_000.0),
            row(1514, "xdp_drop", 400_000.0, 600_000.0),
            row(1514, "af_xdp", 300_000.0, 600_000.0),
        ],
        "ratios": [
            {"frame_bytes": 64, "af_xdp_over_drop": 0.71},
            {"frame_bytes": 1514, "af_xdp_over_drop": 0.75},
        ],
    });
    let markdown = markdown(&results, None);
    let line = |bytes: &str| {
        markdown
            .lines()
            .find(|l| l.starts_with(&format!("| packet path, {bytes}-byte frames")))
            .unwrap_or_else(|| panic!("{markdown}"))
            .to_string()
    };
    let small = line("64");
    assert!(small.ends_with("| not measurable here |"), "{small}");
    assert!(small.contains("generator-bound"), "{small}");
    assert!(line("1514").ends_with("| 75% | yes |"), "{}", line("1514"));
}

/// A TLS case: keep-alive at 100 connections, handshakes, with the clients' busy shares.
fn tls_case(server: &str, rps: f64, handshakes: f64, busy: f64) -> crate::results::TlsCase {
    crate::results::TlsCase {
        server: server.into(),
        keep_alive: vec![case(server, 100, vec![run(rps, 500.0, 900.0); 3])],
        keep_alive_client_busy: vec![vec![busy; 3]],
        handshakes: vec![
            crate::results::NewConnectionRun {
                requests_per_second: handshakes,
                completed: 1000,
                failed: 0,
            };
            3
        ],
        handshake_client_busy: vec![busy; 3],
    }
}

#[test]
fn tls_goals_are_met_or_missed_only_when_no_client_was_saturated() {
    let mut free = results(Vec::new());
    free.tls = vec![
        tls_case("xgate", 90_000.0, 3_000.0, 0.6),
        tls_case("nginx", 40_000.0, 2_000.0, 0.5),
    ];
    let text = markdown(&free, None);
    assert!(
        text.contains("| HTTPS keep-alive, 100 connections (wrk): requests/s | xgate ≥ 2.0× nginx | 2.25×"),
        "{text}"
    );
    assert!(
        text.contains("| xgate | 90,000 (60%) | 3,000 (60%) | 0 |"),
        "{text}"
    );
    let goal_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HTTPS keep-alive") || l.contains("handshakes/s, ECDSA"))
        .collect();
    assert!(
        goal_rows.iter().all(|row| row.ends_with("| yes |")),
        "{goal_rows:?}"
    );
    let mut bound = results(Vec::new());
    bound.tls = vec![
        tls_case("xgate", 90_000.0, 3_000.0, 0.99),
        tls_case("nginx", 40_000.0, 2_000.0, 0.99),
    ];
    let text = markdown(&bound, None);
    let goal_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("HTTPS keep-alive") || l.contains("handshakes/s, ECDSA"))
        .collect();
    assert_eq!(goal_rows.len(), 2, "{text}");
    assert!(
        goal_rows
            .iter()
            .all(|row| row.contains("client-bound") && row.ends_with("| not measurable here |")),
        "{goal_rows:?}"
    );
}
