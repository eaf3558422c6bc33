//! Running xgate as the service unit does (`deploy/xgate.service`): a user that is not root,
//! holding only the unit's ambient capabilities, serves requests in the lab and gives them all up
//! once set up; without one of them it refuses to start and names what it lacks.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use common::TestLab;

/// The unit's `AmbientCapabilities`, as setpriv spells them (`+net_admin,...`).
fn unit_capabilities() -> String {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/xgate.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit sets AmbientCapabilities");
    line.split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `xgate run` in the lab's gateway namespace as nobody with `caps` (ambient, inheritable and
/// bounding).
fn run_as_nobody(lab: &TestLab, xgate: &std::path::Path, caps: &str) -> std::process::Child {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&lab.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    lab.exec("gw", "setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg(xgate)
        .args(["run", "--config"])
        .arg(&lab.config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_user_with_only_the_units_capabilities_serves_and_one_without_them_is_told_why() {
    let lab = TestLab::new("np");
    let binary = common::PublicCopy::of_xgate();
    let xgate = binary.0.clone();
    let caps = unit_capabilities();
    assert_eq!(caps, "+net_admin,+net_raw,+ipc_lock,+bpf,+perfmon");

    let mut child = run_as_nobody(&lab, &xgate, &caps);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a line on stdout").unwrap();
    assert!(ready.contains("\"event\":\"ready\""), "{ready}");
    for _ in 0..20 {
        assert_eq!(lab.healthz_status(), Ok("200".to_string()));
    }
    // Not root, and started with exactly the unit's capabilities (ip netns exec and setpriv exec
    // xgate in place: the child is xgate); once set up, every thread holds none (this kernel
    // lets a process use the maps it holds without CAP_BPF), as the ready event says.
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["capabilities_kept"], serde_json::json!([]), "{ready}");
    let pid = child.id();
    let status_field = |status: &str, name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let xgate_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status_field(&xgate_status, "Uid:").starts_with("65534"),
        "{xgate_status}"
    );
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
            assert_eq!(
                status_field(&status, set),
                "0000000000000000",
                "{set} of {status}"
            );
        }
        threads += 1;
    }
    assert!(threads >= 2, "the lane and the main thread at least: {threads}");
    // Without capabilities it still reads the XDP program's maps (the metrics refresh once a
    // second) and reloads.
    std::thread::sleep(Duration::from_millis(1_200));
    let samples = common::scrape(&lab);
    let redirected = common::metric(&samples, "xgate_xdp_packets_total{action=redirect,reason=ipv4}");
    assert!(redirected >= 20.0, "{redirected}");
    let _ = xgate_gateway::sys::send_signal(pid as i32, libc::SIGHUP);
    let reload = lines.next().expect("a reload event").unwrap();
    assert!(reload.contains("\"event\":\"reload\",\"ok\":true"), "{reload}");
    let _ = xgate_gateway::sys::send_signal(pid as i32, libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "xgate did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Without CAP_BPF and CAP_PERFMON: refused at once, the missing ones named.
    let child = run_as_nobody(&lab, &xgate, "+net_admin,+net_raw,+ipc_lock");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("CAP_BPF") && stderr.contains("deploy/xgate.service"),
        "{stderr}"
    );
}
