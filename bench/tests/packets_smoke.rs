//! `xgate-bench packets` end to end, briefly: the real binary builds its own namespaces and veth,
//! runs every case once for 0.3 s, and prints JSON in the documented shape. Checks that frames
//! really reached the AF_XDP socket and that the `xgpkt-` namespaces are gone afterwards. Needs
//! root (namespaces, XDP); touches only names starting with `xgpkt-`/`xgp-`.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_xgate-bench");

fn our_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("xgpkt-"))
                .collect()
        })
        .unwrap_or_default()
}

/// This process's effective user id, from `/proc/self/status` (`Uid:` real, effective, ...).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn number(case: &Value, field: &str) -> f64 {
    case[field]
        .as_f64()
        .unwrap_or_else(|| panic!("field {field} missing or not a number in {case}"))
}

#[test]
fn packets_json_reports_every_case_and_cleans_up() {
    assert_eq!(effective_uid(), Some(0), "the packet benchmark needs root");
    let output = Command::new(BENCH)
        .args(["packets", "--seconds", "0.3", "--repeats", "1", "--json"])
        .output()
        .expect("xgate-bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "xgate-bench packets failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{stderr}"));

    let cases = report["packet_path"].as_array().expect("packet_path is an array");
    let mut seen = Vec::new();
    for case in cases {
        let frame_bytes = number(case, "frame_bytes") as u64;
        let receiver = case["receiver"]
            .as_str()
            .expect("receiver is a string")
            .to_string();
        assert!(number(case, "median_pps") > 0.0, "no frames/s in {case}");
        assert!(number(case, "min_pps") <= number(case, "max_pps"));
        assert_eq!(case["runs_pps"].as_array().map(Vec::len), Some(1));
        assert!(number(case, "generated_pps_median") > 0.0);
        for field in [
            "kernel_rx_dropped",
            "rx_ring_full",
            "fill_ring_empty",
            "steering_redirected",
        ] {
            assert!(case[field].is_u64(), "{field} in {case}");
        }
        match receiver.as_str() {
            "af_xdp" => {
                assert!(
                    number(case, "received_frames") > 0.0,
                    "AF_XDP received nothing: {case}"
                );
                assert!(number(case, "steering_redirected") > 0.0);
                // veth has no zero-copy AF_XDP.
                assert_eq!(case["mode"], "copy");
            }
            "xdp_drop" => assert_eq!(case["mode"], "native XDP"),
            other => panic!("unknown receiver {other}"),
        }
        seen.push((frame_bytes, receiver));
    }
    seen.sort();
    let expected: Vec<(u64, String)> = [64u64, 1514]
        .iter()
        .flat_map(|&size| ["af_xdp", "xdp_drop"].map(|r| (size, r.to_string())))
        .collect();
    assert_eq!(seen, expected, "one entry per default frame size × receiver");

    let ratios = report["ratios"].as_array().expect("ratios is an array");
    assert_eq!(ratios.len(), 2);
    for ratio in ratios {
        assert!(number(ratio, "af_xdp_over_drop") > 0.0, "{ratio}");
    }
    assert_eq!(report["setup"]["zero_copy_available"], false);

    // `ip netns del` removes the names before the process exits; allow a moment regardless.
    for _ in 0..20 {
        if our_namespaces().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(our_namespaces().is_empty(), "left behind: {:?}", our_namespaces());
    assert!(!Path::new("/run/netns/xgpkt-tx").exists());
}

#[test]
fn bad_input_fails_with_one_clear_line() {
    let output = Command::new(BENCH)
        .args(["packets", "--sizes", "40", "--seconds", "0.3"])
        .output()
        .expect("xgate-bench runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("frame size 40 is out of range"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
