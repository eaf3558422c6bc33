//! A smoke run of the whole benchmark suite (tiny durations): the lab comes up, xgate and nginx
//! both answer the userspace load generator and wrk, both proxy the generator's requests to the
//! backend (and the generator reaches the backend directly), closed loop and at one offered rate
//! (open loop), the packet path runs, and every output file is written and readable. It checks
//! that the harness works, never how fast anything is.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn namespaces() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn smoke_suite_writes_every_output_with_figures_from_both_servers() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_xgate-bench"));
    let xgate = bench.with_file_name("xgate");
    assert!(
        xgate.exists(),
        "{} is missing: build the whole workspace (cargo test --workspace builds it)",
        xgate.display()
    );
    let out = std::env::temp_dir().join(format!("xgate-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    // Outside `out`, so that `out` holds only the run's own files.
    let results_md =
        std::env::temp_dir().join(format!("xgate-bench-smoke-{}-RESULTS.md", std::process::id()));
    let mut child = Command::new(&bench)
        .args(["suite", "--smoke", "--out"])
        .arg(&out)
        .arg("--results-md")
        .arg(&results_md)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xgate-bench runs");
    // The suite bounds every step; this bounds the test even if that were broken.
    let stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || std::io::read_to_string(stderr_pipe).unwrap_or_default());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the smoke suite ran over 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: stderr_reader.join().unwrap().into_bytes(),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "suite failed:\n{stderr}");
    let last_step = stderr
        .lines()
        .filter_map(|line| {
            line.split_once("] ")?
                .1
                .split_whitespace()
                .next()?
                .split_once('/')
        })
        .next_back()
        .unwrap_or_else(|| panic!("no progress bar:\n{stderr}"));
    assert_eq!(
        last_step.0, last_step.1,
        "the progress bar reaches the end:\n{stderr}"
    );

    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    let find = |suffix: &str| {
        files
            .iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {files:?}"))
            .clone()
    };
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(find(".json")).unwrap()).unwrap();
    assert_eq!(json["plan"]["mode"], "smoke");
    for server in ["xgate", "nginx"] {
        for connections in [10, 100] {
            let case = json["http"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| {
                    c["server"] == server && c["client"] == "xgate-bench" && c["connections"] == connections
                })
                .unwrap_or_else(|| panic!("no xgate-bench case for {server} at {connections}"));
            let runs = case["runs"].as_array().unwrap();
            assert_eq!(runs.len(), 3, "{server} at {connections}: three repeats");
            for run in runs {
                assert!(
                    run["requests_per_second"].as_f64().unwrap() > 0.0,
                    "{server}: {run}"
                );
                assert_eq!(run["errors"], 0, "{server} at {connections}: {run}");
                assert!(run["p99_us"].as_f64().unwrap() >= run["p50_us"].as_f64().unwrap());
                assert!(run["response_bytes"].as_u64().unwrap() > 0);
                assert!(!run["cdf"].as_array().unwrap().is_empty());
            }
        }
        let wrk = json["http"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["server"] == server && c["client"] == "wrk")
            .unwrap_or_else(|| panic!("no wrk case for {server}"));
        assert!(wrk["runs"][0]["requests_per_second"].as_f64().unwrap() > 0.0);
    }
    let open_loop: Vec<&serde_json::Value> = json["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["client"] == "xgate-bench open loop" && (c["server"] == "xgate" || c["server"] == "nginx")
        })
        .collect();
    assert_eq!(open_loop.len(), 2, "open loop against both servers");
    for case in open_loop {
        for run in case["runs"].as_array().unwrap() {
            let offered = run["offered_rate"].as_f64().unwrap();
            let achieved = run["requests_per_second"].as_f64().unwrap();
            // Neither server is saturated at half the lower closed-loop rate.
            assert!(achieved > 0.5 * offered, "open loop kept up: {run}");
        }
    }
    // xgate with two lanes ran at 100 connections, every request answered.
    let two_lanes = json["http"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["server"] == "xgate lanes=2" && c["connections"] == 100)
        .expect("a two-lane case at 100 connections");
    for run in two_lanes["runs"].as_array().unwrap() {
        assert!(run["requests_per_second"].as_f64().unwrap() > 0.0, "{run}");
        assert_eq!(run["errors"], 0, "two lanes: {run}");
    }
    // Proxy mode at 100 connections: xgate and nginx as proxies, and the backend directly.
    assert_eq!(json["plan"]["proxy_connections"], serde_json::json!([100]));
    for server in ["xgate proxy", "nginx proxy", "direct"] {
        let case = json["http"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["server"] == server && c["client"] == "xgate-bench" && c["connections"] == 100)
            .unwrap_or_else(|| panic!("no proxy-mode case for {server}"));
        let runs = case["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{server}: three repeats");
        for run in runs {
            assert!(
                run["requests_per_second"].as_f64().unwrap() > 0.0,
                "{server}: {run}"
            );
            assert!(run["p50_us"].as_f64().unwrap() > 0.0, "{server}: {run}");
            assert!(run["p99_us"].as_f64().unwrap() >= run["p50_us"].as_f64().unwrap());
            assert!(run["response_bytes"].as_u64().unwrap() > 0);
        }
    }
    // Proxy mode at the same offered load: all three in open loop at 100 connections, one rate.
    let mut proxy_rates = Vec::new();
    for server in ["xgate proxy", "nginx proxy", "direct"] {
        let case = json["http"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["server"] == server && c["client"] == "xgate-bench open loop" && c["connections"] == 100
            })
            .unwrap_or_else(|| panic!("no open-loop proxy-mode case for {server}"));
        let runs = case["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{server} open loop: three repeats");
        for run in runs {
            assert!(
                run["requests_per_second"].as_f64().unwrap() > 0.0,
                "{server} open loop: {run}"
            );
            assert!(
                run["p99_us"].as_f64().unwrap() >= run["p50_us"].as_f64().unwrap(),
                "{server} open loop: {run}"
            );
            proxy_rates.push(run["offered_rate"].as_f64().unwrap());
        }
    }
    assert!(
        proxy_rates.iter().all(|r| *r == proxy_rates[0]),
        "one offered rate for all three: {proxy_rates:?}"
    );
    // The SYN-flood section: both servers, each repeat with a flood that really ran, and the
    // loads measured under it.
    let flood = json["flood"].as_array().expect("flood section");
    assert_eq!(flood.len(), 2, "flood against both servers: {flood:?}");
    for case in flood {
        let runs = case["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{case}");
        for run in runs {
            for rate in run["flood_syn_per_second"].as_array().unwrap() {
                assert!(rate.as_f64().unwrap() > 1000.0, "the flood ran: {run}");
            }
            for load in ["keepalive_quiet", "keepalive_flooded"] {
                assert!(
                    run[load]["requests_per_second"].as_f64().unwrap() > 0.0,
                    "{load}: {run}"
                );
            }
            for load in ["new_connections_quiet", "new_connections_flooded"] {
                assert!(run[load]["completed"].as_u64().unwrap() > 0, "{load}: {run}");
            }
        }
    }
    let packet_rows = json["packet_path"]["packet_path"]
        .as_array()
        .unwrap_or_else(|| panic!("packet path missing: {}", json["packet_path"]));
    assert!(packet_rows.iter().any(|r| r["receiver"] == "af_xdp"));

    let markdown = std::fs::read_to_string(find(".md")).unwrap();
    for needle in [
        "## Goals",
        "| 100 | xgate |",
        "| 100 | nginx |",
        "### Ratios",
        "### Lanes: one lane (CPU 0) vs two lanes (CPUs 0 and 1)",
        "| 100 | xgate lanes=2 |",
        "## Proxy mode",
        "| xgate proxy | 100 |",
        "| nginx proxy | 100 |",
        "| direct | 100 |",
        "| proxy mode, 100 connections, closed loop: requests/s | xgate proxy ≥ 2.0× nginx proxy |",
        "| proxy mode, 100 connections, same offered load (open loop): p99 | xgate proxy < nginx proxy |",
        "proxy mode: added p50 of the xgate hop",
        "proxy mode: added p50 of the nginx hop",
        "| proxy mode, same offered load: added p99 of the hop (xgate vs nginx), 100 connections | reported (no target) | xgate ",
        "### Proxy mode at the same offered load (open loop)",
        "## SYN flood",
        "| xgate | ",
        "| nginx | ",
        "## Packet path",
    ] {
        assert!(
            markdown.contains(needle),
            "markdown lacks {needle:?}:\n{markdown}"
        );
    }
    for svg in ["-rps.svg", "-latency-cdf.svg"] {
        let text = std::fs::read_to_string(find(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg} is not an SVG"
        );
        assert!(
            text.contains("xgate") && text.contains("nginx"),
            "{svg} lacks a series"
        );
    }
    // `xgate-bench report` writes the same views again from the JSON alone.
    let md_path = find(".md");
    std::fs::remove_file(&md_path).unwrap();
    let rerender = Command::new(&bench)
        .arg("report")
        .arg(find(".json"))
        .output()
        .unwrap();
    assert!(
        rerender.status.success(),
        "{}",
        String::from_utf8_lossy(&rerender.stderr)
    );
    assert_eq!(std::fs::read_to_string(&md_path).unwrap(), markdown);

    let results = std::fs::read_to_string(&results_md).unwrap();
    assert!(results.contains("results/") && results.contains("## Goals"));
    assert!(
        !namespaces().contains("xgbench-"),
        "the lab was removed:\n{}",
        namespaces()
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&results_md);
}
