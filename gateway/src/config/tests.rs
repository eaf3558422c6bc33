use super::*;
use std::net::Ipv4Addr;

const GOOD: &str = r#"
[gateway]
interface = "xg-gw"
ipv4 = "10.77.0.2"
mac = "02:77:00:00:00:02"
"#;

/// A configuration for the address and interface of `GOOD`.
pub(crate) fn sample() -> Config {
    Config::new(GatewayConfig::new(
        "xg-gw",
        Ipv4Addr::new(10, 77, 0, 2),
        24,
        [2, 0x77, 0, 0, 0, 2],
    ))
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.gateway.listen_port, 80);
    assert_eq!(c.gateway.queue, 0);
    assert_eq!(c.gateway.mac, MacAddr([2, 0x77, 0, 0, 0, 2]));
    assert_eq!(c.umem, UmemConfig::default());
    assert_eq!(c.http.max_connections, 8192);
    assert_eq!(c.http.upstream_connections, 8192);
    assert!(!c.http.reset_when_full);
}

#[test]
fn lab_config_round_trips_through_toml() {
    let mut c = sample();
    assert_eq!(Config::parse(&c.to_toml(), "lab.toml").unwrap(), c);
    c.gateway.lanes = Some(2);
    c.gateway.cores = Some(vec![0, 1]);
    assert_eq!(Config::parse(&c.to_toml(), "lab.toml").unwrap(), c);
}

#[test]
fn lanes_and_cores_are_checked() {
    let e = error_of(&format!("{GOOD}lanes = 0\n"));
    assert!(e.contains("`gateway.lanes`"), "{e}");
    let e = error_of(&format!("{GOOD}lanes = 2\ncores = [0]\n"));
    assert!(
        e.contains("`gateway.cores`") && e.contains("one core per lane"),
        "{e}"
    );
    let e = error_of(&format!("{GOOD}cores = []\n"));
    assert!(e.contains("`gateway.cores`"), "{e}");
    let e = error_of(&format!("{GOOD}\n[http]\nring_size = 0\n"));
    assert!(e.contains("`http.ring_size`"), "{e}");
}

fn error_of(text: &str) -> String {
    Config::parse(text, "bad.toml").unwrap_err().to_string()
}

#[test]
fn bad_address_names_file_and_key() {
    let e = error_of(&GOOD.replace("10.77.0.2", "10.77.0.300"));
    assert!(e.starts_with("config bad.toml: key `gateway.ipv4`:"), "{e}");
}

#[test]
fn shield_rates_beyond_what_xdp_can_keep_are_refused() {
    let e = error_of(&format!("{GOOD}\n[shield]\nbudget_syn_rate = 2000000000\n"));
    assert!(
        e.contains("`shield.budget_syn_rate`") && e.contains("0 to 10000000"),
        "{e}"
    );
    let e = error_of(&format!(
        "{GOOD}\n[shield]\nknown_syn_burst = 18446744073709551615\n"
    ));
    assert!(e.contains("`shield.known_syn_burst`"), "{e}");
    let ok = format!("{GOOD}\n[shield]\nstranger_syn_rate = 10000000\nstranger_syn_burst = 10000000\n");
    Config::parse(&ok, "ok.toml").unwrap();
}

#[test]
fn bad_mac_names_key_and_expectation() {
    let e = error_of(&GOOD.replace("02:77:00:00:00:02", "02:77:00"));
    assert!(
        e.contains("`gateway.mac`") && e.contains("expected a MAC address"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("02:77:00:00:00:02", "03:77:00:00:00:02"));
    assert!(e.contains("`gateway.mac`") && e.contains("unicast"), "{e}");
}

#[test]
fn unknown_and_missing_keys_are_named() {
    let e = error_of(&format!("{GOOD}colour = \"blue\"\n"));
    assert!(e.contains("`gateway.colour`"), "{e}");
    let e = error_of(&GOOD.replace("interface = \"xg-gw\"\n", ""));
    assert!(e.contains("interface"), "{e}");
}

#[test]
fn semantic_limits_are_checked() {
    let e = error_of(&format!("{GOOD}\n[umem]\nframe_size = 3000\n"));
    assert!(
        e.contains("`umem.frame_size`") && e.contains("2048 or 4096"),
        "{e}"
    );
    let e = error_of(&format!("{GOOD}\n[umem]\nframes = 100\n"));
    assert!(e.contains("`umem.frames`"), "{e}");
    let e = error_of(&GOOD.replace("10.77.0.2", "127.0.0.1"));
    assert!(e.contains("`gateway.ipv4`"), "{e}");
    let e = error_of(&format!(
        "{GOOD}\n[tcp]\nkeepalive_ms = 5000\ntimeout_ms = 9999\n"
    ));
    assert!(e.contains("`tcp.timeout_ms`") && e.contains("twice"), "{e}");
    let e = error_of(&format!("{GOOD}listen_port = 0\n"));
    assert!(e.contains("`gateway.listen_port`"), "{e}");
}

#[test]
fn wrong_type_is_reported_with_line() {
    let e = error_of(&format!("{GOOD}\n[http]\nmax_connections = \"many\"\n"));
    assert!(e.contains("`http.max_connections`") && e.contains("line"), "{e}");
}

#[test]
fn unreadable_file_is_reported() {
    let e = Config::load(Path::new("/nonexistent/xgate.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config /nonexistent/xgate.toml: cannot read it"),
        "{e}"
    );
}

#[test]
fn the_rate_limit_table_is_a_power_of_two_in_range() {
    assert_eq!(
        Config::parse(GOOD, "t.toml").unwrap().http.rate_limit_entries,
        65_536
    );
    for bad in [1000, 512, 1 << 25] {
        let e = error_of(&format!("{GOOD}\n[http]\nrate_limit_entries = {bad}\n"));
        assert!(e.contains("`http.rate_limit_entries`"), "{e}");
    }
    let ok = format!("{GOOD}\n[http]\nrate_limit_entries = 1024\n");
    assert_eq!(
        Config::parse(&ok, "ok.toml").unwrap().http.rate_limit_entries,
        1024
    );
}
