//! `xgate doctor` in the lab: what veth's host answers (every check passes), and bad hosts made
//! in the lab, each named with its fix: an MTU the UMEM frame cannot hold, the kernel holding
//! the gateway's address, more lanes than queues, too few hugepages without normal pages, and no
//! privileges. Where the fix can be applied here, the test applies the command the doctor named
//! and the doctor passes again. Beside it, the host scripts the doctor points to:
//! `hugepages/setup.sh --node` and `scripts/nic-setup.sh`.

mod common;

use common::{output, TestLab, XGATE};

/// `xgate doctor --json` in the gateway namespace (with `prefix`, e.g. setpriv, in front):
/// exit code and findings.
fn doctor(lab: &TestLab, prefix: &[&str]) -> (i32, serde_json::Value) {
    let mut command = lab.exec("gw", prefix.first().copied().unwrap_or(XGATE));
    if !prefix.is_empty() {
        command.args(&prefix[1..]).arg(XGATE);
    }
    let out = output(
        command
            .args(["doctor", "--json", "--config"])
            .arg(&lab.config_path),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let findings: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "doctor printed {text:?}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), findings)
}

/// The finding of `check`: (level, fix).
fn finding(findings: &serde_json::Value, check: &str) -> (String, String) {
    let found = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {findings}"));
    (
        found["level"].as_str().unwrap().to_string(),
        found["fix"].as_str().unwrap_or("").to_string(),
    )
}

/// Runs a fix the doctor named, in the gateway namespace.
fn apply(lab: &TestLab, fix: &str) {
    let words: Vec<&str> = fix.split_whitespace().collect();
    let out = output(lab.exec("gw", words[0]).args(&words[1..]));
    assert!(
        out.status.success(),
        "{fix}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_lab_passes_and_each_bad_host_is_named_with_its_fix() {
    let lab = TestLab::new("dr");
    let (code, findings) = doctor(&lab, &[]);
    assert_eq!(
        (code, findings["worst"].as_str()),
        (0, Some("pass")),
        "{findings}"
    );
    assert_eq!(findings["findings"].as_array().unwrap().len(), 13, "{findings}");
    // veth's own answer to the netdev netlink family: native XDP with redirect, no zero-copy.
    let xdp = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "xdp")
        .expect("an xdp finding");
    let detail = xdp["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("driver veth: native XDP (basic, redirect")
            && detail.contains("no AF_XDP zero-copy"),
        "{xdp}"
    );

    // An MTU the 2048-byte frame cannot hold.
    apply(&lab, "ip link set xg-gw mtu 3000");
    let (code, findings) = doctor(&lab, &[]);
    let (level, fix) = finding(&findings, "mtu");
    assert_eq!((code, level.as_str()), (2, "fail"), "{findings}");
    assert_eq!(fix, "ip link set xg-gw mtu 1762");
    apply(&lab, &fix);
    assert_eq!(doctor(&lab, &[]).0, 0);

    // The kernel holding the gateway's address.
    apply(&lab, "ip addr add 10.77.0.2/24 dev xg-gw");
    let (code, findings) = doctor(&lab, &[]);
    let (level, fix) = finding(&findings, "address");
    assert_eq!((code, level.as_str()), (2, "fail"), "{findings}");
    assert_eq!(fix, "ip addr del 10.77.0.2/24 dev xg-gw");
    apply(&lab, &fix);
    assert_eq!(doctor(&lab, &[]).0, 0);

    // No privileges: the doctor run as nobody with no capabilities.
    let (code, findings) = doctor(
        &lab,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
    );
    let (level, fix) = finding(&findings, "privileges");
    assert_eq!((code, level.as_str()), (2, "fail"), "{findings}");
    assert!(fix.contains("CAP_NET_ADMIN"), "{fix}");

    // More lanes than the veth has queues.
    lab.edit_config(|text| text.replace("queue = 0\n", "queue = 0\nlanes = 2\n"));
    let (code, findings) = doctor(&lab, &[]);
    let (level, fix) = finding(&findings, "queues");
    assert_eq!((code, level.as_str()), (2, "fail"), "{findings}");
    assert!(fix.starts_with("ethtool -L xg-gw rx 2 tx 2"), "{fix}");
    lab.edit_config(|text| text.replace("lanes = 2\n", ""));

    // A UMEM larger than the free hugepages, with normal pages not allowed.
    lab.set_key("frames", 1 << 20);
    lab.set_key("allow_normal_pages", false);
    let (code, findings) = doctor(&lab, &[]);
    let (level, fix) = finding(&findings, "hugepages");
    assert_eq!((code, level.as_str()), (2, "fail"), "{findings}");
    assert_eq!(fix, "hugepages/setup.sh 1024");
    lab.set_key("allow_normal_pages", true);
    let (code, findings) = doctor(&lab, &[]);
    assert_eq!(
        (code, finding(&findings, "hugepages").0.as_str()),
        (1, "warn"),
        "{findings}"
    );
}

/// `hugepages/setup.sh --node K N`: the pool of one NUMA node (this host has node 0 only).
#[test]
fn hugepages_are_reserved_per_node() {
    let _exclusive = common::hugepage_lock(libc::LOCK_EX);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../hugepages/setup.sh");
    let pool = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages";
    let current: u64 = std::fs::read_to_string(pool).unwrap().trim().parse().unwrap();
    let run = |args: &[String]| output(std::process::Command::new("bash").arg(script).args(args));
    // Node 0 already holds `current`: nothing to do, said for node 0.
    let out = run(&["--node".into(), "0".into(), current.max(1).to_string()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if current > 0 {
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("node 0") && text.contains("nothing to do"),
            "{text}"
        );
    }
    // One more page on node 0, then back to where it was (`--exact`).
    let out = run(&["--node".into(), "0".into(), (current + 1).to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after: u64 = std::fs::read_to_string(pool).unwrap().trim().parse().unwrap();
    assert_eq!(after, current + 1);
    let out = run(&["--node".into(), "0".into(), "--exact".into(), current.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(pool).unwrap().trim(), current.to_string());
    // A node the host does not have, and a node that is no number: refused, exit 2.
    for args in [vec!["--node", "9", "4"], vec!["--node", "x", "4"]] {
        let out = run(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("node"), "{args:?}");
    }
}

/// `scripts/nic-setup.sh` on the lab's veth with two queues: `--dry-run` prints the change and
/// makes none; the real run shrinks the channels to the lanes (what veth accepts of the script:
/// it has no LRO, queue interrupts, RSS table or ntuple filters, each said), a second run changes
/// nothing, and the doctor then agrees with the lanes.
#[test]
fn nic_setup_sets_the_channels_idempotently() {
    let mut lab = TestLab::with_queues("ns", 2);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/nic-setup.sh");
    let run = |args: &[&str]| {
        let out = output(lab.exec("gw", "bash").arg(script).arg("xg-gw").args(args));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rx_queues = || {
        let out = output(lab.exec("gw", "ls").arg("/sys/class/net/xg-gw/queues"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|q| q.starts_with("rx-"))
            .count()
    };
    assert_eq!(rx_queues(), 2);
    let dry = run(&[
        "--lanes",
        "1",
        "--cores",
        "0",
        "--dry-run",
        "--steer",
        "10.77.0.2",
    ]);
    assert!(dry.contains("+ ethtool -L xg-gw rx 1 tx 1"), "{dry}");
    assert!(
        dry.contains("no ntuple filters") && dry.contains("no queue interrupts"),
        "{dry}"
    );
    assert_eq!(rx_queues(), 2, "a dry run changes nothing");
    let real = run(&["--lanes", "1", "--cores", "0"]);
    assert!(real.contains("+ ethtool -L xg-gw rx 1 tx 1"), "{real}");
    assert_eq!(rx_queues(), 1);
    let again = run(&["--lanes", "1", "--cores", "0"]);
    assert!(!again.contains("+ "), "a second run changes nothing: {again}");
    // veth withdraws native XDP while its peer (p-gw, in the switch) has more tx queues than
    // xg-gw now has rx queues: the doctor says so, and the fix is on the peer's side.
    let (code, findings) = doctor(&lab, &[]);
    let (level, fix) = finding(&findings, "xdp");
    assert_eq!((code, level.as_str()), (1, "warn"), "{findings}");
    assert_eq!(
        fix,
        "ethtool -L PEER tx 1 (PEER: the other end of the veth, in its namespace)"
    );
    let out = output(lab.exec("sw", "ethtool").args(["-L", "p-gw", "tx", "1"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, findings) = doctor(&lab, &[]);
    assert_eq!(code, 0, "{findings}");
    // veth has no RSS of its own (ETHTOOL_GRSSH: not supported): the ready event says the lanes
    // assume the default key.
    let ready = lab.start_gateway();
    assert_eq!(ready["rss_key"], "default", "{ready}");
    // The lane's UMEM on its core's node: this host has node 0 only.
    assert_eq!(ready["umem_nodes"], serde_json::json!([0]), "{ready}");
    // Zero-copy is tried first; veth refuses it (EOPNOTSUPP) and the ready event says so.
    assert_eq!(ready["bind_mode"], "copy", "{ready}");
    let zero_copy = ready["zero_copy"].as_str().unwrap_or_default();
    assert!(
        zero_copy.starts_with("refused: ") && zero_copy.contains("errno 95"),
        "{ready}"
    );
    // ... and in the metrics, with the lane's core and bind mode.
    let samples = common::scrape(&lab);
    let info: Vec<_> = samples
        .iter()
        .filter(|(key, _)| key.starts_with("xgate_lane_info{"))
        .collect();
    assert_eq!(info.len(), 1, "one lane: {info:?}");
    let (key, value) = info[0];
    assert_eq!(*value, 1.0);
    for label in ["bind_mode=copy", "lane=0", "umem_node=0", "umem_backing="] {
        assert!(key.contains(label), "{label} in {key}");
    }
    assert_eq!(lab.healthz_status(), Ok("200".to_string()));
    lab.stop_gateway();
    // Nonsense is refused with exit 2.
    let out = output(
        lab.exec("gw", "bash")
            .arg(script)
            .args(["xg-gw", "--lanes", "2", "--cores", "0"]),
    );
    assert_eq!(out.status.code(), Some(2));
}
