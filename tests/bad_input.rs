//! `xgate run` refuses what it cannot work with in one clear line, exits non-zero and leaves
//! nothing attached: bad config, missing interface, missing privileges, missing hugepages. A
//! running gateway refuses requests it must not serve (an invalid `Host`).

mod common;

use std::process::Command;

use common::{output, raw_exchange, require_root, status_line, TestLab, XGATE};

fn run_with_config(text: &str) -> (bool, String) {
    let path = std::env::temp_dir().join(format!("{}.toml", common::unique_name("cfg")));
    std::fs::write(&path, text).unwrap();
    let out = output(Command::new(XGATE).args(["run", "--config"]).arg(&path));
    let _ = std::fs::remove_file(&path);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const VALID: &str =
    "[gateway]\ninterface = \"xg-none0\"\nipv4 = \"10.77.0.2\"\nmac = \"02:77:00:00:00:02\"\n";

#[test]
fn config_errors_name_file_key_and_expectation() {
    let (ok, err) = run_with_config(&VALID.replace("10.77.0.2", "not-an-ip"));
    assert!(!ok);
    assert!(
        err.starts_with("xgate: error: config ") && err.contains("`gateway.ipv4`"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let (ok, err) = run_with_config(&format!("{VALID}\n[umem]\nframe_size = 1000\n"));
    assert!(
        !ok && err.contains("`umem.frame_size`") && err.contains("2048 or 4096"),
        "{err}"
    );

    let out = output(Command::new(XGATE).args(["run", "--config", "/nonexistent/x.toml"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read it"));
}

#[test]
fn a_missing_interface_is_named() {
    require_root();
    let (ok, err) = run_with_config(VALID);
    assert!(!ok);
    assert!(err.contains("no network interface named `xg-none0`"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn without_root_or_capabilities_it_says_so() {
    require_root();
    let binary = common::PublicCopy::of_xgate();
    let path = std::env::temp_dir().join(format!("{}.toml", common::unique_name("nr")));
    std::fs::write(&path, VALID).unwrap();
    let out = output(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&binary.0)
            .args(["run", "--config"])
            .arg(&path),
    );
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("needs CAP_NET_ADMIN") && err.contains("run as root"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// Root without the capabilities (dropped from the bounding set, as a locked-down container
/// would): loading the XDP program is refused with a line that names them, nothing attaches.
#[test]
fn root_without_cap_bpf_is_told_which_capabilities_are_missing() {
    let lab = TestLab::new("cap");
    let out = output(
        lab.exec("gw", "setpriv")
            .args([
                "--bounding-set=-bpf,-sys_admin,-perfmon,-net_admin",
                "--inh-caps=-all",
            ])
            .arg(XGATE)
            .args(["run", "--config"])
            .arg(&lab.config_path),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without CAP_BPF: {err}");
    // Checked before anything is loaded (the kernel's own refusal says "refused" instead).
    assert!(
        err.contains("CAP_BPF") && (err.contains("refused") || err.contains("needs")),
        "{err}"
    );
    assert!(!err.contains("setpriv:"), "setpriv itself failed: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!lab.xdp_attached());
}

/// With too few hugepages free and fallback refused, xgate stops with the command that reserves
/// them, and nothing stays attached.
#[test]
fn missing_hugepages_are_reported_with_the_fix() {
    let lab = TestLab::with_hugepages_to_itself("hp");
    // A UMEM larger than every free hugepage: 1,024 frames of the default 2 KiB per 2 MiB page.
    let frames = ((common::available_hugepages() + 8) * 1024).next_power_of_two();
    if frames > 1 << 20 || common::overcommit_hugepages() > 0 {
        eprintln!(
            "skipping: this host can back the largest UMEM xgate takes with hugepages \
             ({} free, {} overcommit)",
            common::available_hugepages(),
            common::overcommit_hugepages()
        );
        return;
    }
    lab.set_key("frames", frames);
    lab.edit_config(|t| t.replace("allow_normal_pages = true", "allow_normal_pages = false"));
    let out = lab.run_gateway_to_completion();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("hugepages/setup.sh") && err.contains("free"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!lab.xdp_attached(), "XDP left attached after a failed start");
}

/// RFC 9112 §3.2: a Host value that is not `uri-host [ ":" port ]` is answered 400 and the
/// connection closed; the same request with a valid Host is served.
#[test]
fn an_invalid_host_is_refused_with_400() {
    let mut lab = TestLab::new("host");
    lab.start_gateway();
    let (text, closed) = raw_exchange(&lab, b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n");
    assert_eq!(status_line(&text), "HTTP/1.1 400 Bad Request", "{text:?}");
    assert!(closed, "connection left open after 400: {text:?}");
    let (text, closed) = raw_exchange(
        &lab,
        b"GET /healthz HTTP/1.1\r\nHost: a.example:80\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_line(&text), "HTTP/1.1 200 OK", "{text:?}");
    assert!(closed);
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["responses"]["400"], 1, "{stopped}");
}
