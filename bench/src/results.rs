//! What a suite run produces, as written to and read back from its JSON: the plan, every run's
//! figures by case, the machine, the SYN-flood section, and the labels of servers and clients the
//! report looks cases up by. The suite fills these in; the report reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Extra sockets xgate gets in the SYN-flood section: room for the half-open connections the
/// shield admits (at most half the pool, `shield.max_half_open`'s default), so that the measured
/// clients compete with the flood for sockets only as far as the shield lets them.
pub const FLOOD_POOL_MARGIN: usize = 1024;
/// Concurrent clients of the new-connection load (ab: one connection per request).
pub const NEW_CONNECTION_CLIENTS: usize = 10;

/// Durations and counts of one suite mode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub mode: String,
    pub connections: Vec<usize>,
    pub repeats: usize,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    /// Connection counts at which wrk also runs.
    pub wrk_connections: Vec<usize>,
    pub packet_seconds: f64,
    pub profile: bool,
    /// Connection counts of the proxy section (absent from results written before it existed).
    #[serde(default)]
    pub proxy_connections: Vec<usize>,
    /// The sections this run measured (`--only`); written only when some were left out, so
    /// absent means every section.
    #[serde(default = "Section::every", skip_serializing_if = "Section::is_every")]
    pub sections: Vec<Section>,
}

impl Plan {
    /// Whether this run measures `section`.
    pub fn runs(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }
}

/// A part of the suite that `--only` can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// xgate terminating, closed loop, at every connection count (and its profile, if planned).
    Xgate,
    /// nginx terminating, closed loop, at every connection count.
    Nginx,
    /// wrk beside the load generator against the terminating servers run, where planned.
    Wrk,
    /// Both terminating servers in open loop at one offered rate (needs xgate and nginx).
    OpenLoop,
    /// xgate with two lanes.
    TwoLanes,
    /// Proxy mode, closed loop: xgate as the proxy.
    XgateProxy,
    /// Proxy mode, closed loop: nginx as the proxy.
    NginxProxy,
    /// Proxy mode, closed loop: the client on the backend directly.
    Direct,
    /// Proxy mode, all three in open loop at one offered rate (needs xgate-proxy, nginx-proxy and
    /// direct).
    ProxyOpenLoop,
    /// The SYN-flood section.
    Flood,
    /// HTTPS: both servers terminating TLS (keep-alive requests, full handshakes).
    Tls,
    /// The packet path (`xgate-bench packets`).
    Packets,
}

impl Section {
    /// Every section, in the order the suite runs them.
    pub const ALL: [Section; 12] = [
        Section::Xgate,
        Section::Nginx,
        Section::Wrk,
        Section::OpenLoop,
        Section::TwoLanes,
        Section::XgateProxy,
        Section::NginxProxy,
        Section::Direct,
        Section::ProxyOpenLoop,
        Section::Flood,
        Section::Tls,
        Section::Packets,
    ];

    fn every() -> Vec<Section> {
        Section::ALL.to_vec()
    }

    /// Whether `sections` holds every section.
    pub fn is_every(sections: &[Section]) -> bool {
        Section::ALL.iter().all(|section| sections.contains(section))
    }
}

/// The proxy section's reference count, where its open-loop runs take place and its goals are
/// judged: 100 if the section runs there, else its first count; `None` without a proxy section.
pub fn proxy_reference(proxy_connections: &[usize]) -> Option<usize> {
    if proxy_connections.contains(&100) {
        Some(100)
    } else {
        proxy_connections.first().copied()
    }
}

/// One measured run of one client against one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFigures {
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    /// Not measured (NaN, written as `null`) for wrk, which reports up to p99.
    #[serde(deserialize_with = "nan_if_null")]
    pub p999_us: f64,
    pub errors: u64,
    /// Frames the client's AF_XDP socket lost (its rx ring was full) and times it had no free tx
    /// frame: a client-side limit, if not zero (xgate-bench runs only).
    #[serde(default)]
    pub client_rx_dropped: u64,
    #[serde(default)]
    pub client_tx_starved: u64,
    /// Share of the load generator's loop turns that found nothing to do (xgate-bench runs only;
    /// `None` for wrk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_idle_fraction: Option<f64>,
    /// Errors by kind and refused-then-retried connects (xgate-bench runs only).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub error_kinds: Value,
    /// Server-side CPU per request: machine busy time minus the client's own, over requests.
    pub cpu_us_per_request: f64,
    /// Whole-machine CPU per request: every process (the client too), kernel and softirq.
    pub machine_cpu_us_per_request: f64,
    pub response_bytes: u64,
    /// Open loop: the request rate offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_rate: Option<f64>,
    /// (percentile, microseconds), from xgate-bench runs only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdf: Vec<(f64, f64)>,
    /// xgate as a proxy: upstream connections it opened per 1,000 requests it answered, after
    /// the warm-up (from its own counters), and the upstream connects that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamChurn>,
}

/// xgate's upstream connections over the measured part of a proxy run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct UpstreamChurn {
    pub requests: u64,
    pub connects: u64,
    pub connect_failures: u64,
}

impl UpstreamChurn {
    /// Connects per 1,000 requests.
    pub fn per_thousand(&self) -> f64 {
        if self.requests == 0 {
            return f64::NAN;
        }
        self.connects as f64 * 1000.0 / self.requests as f64
    }
}

/// Reads `null` (how JSON writes NaN) back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// All runs of one (server, client, connections) case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpCase {
    pub server: String,
    pub client: String,
    pub connections: usize,
    pub runs: Vec<RunFigures>,
}

/// The top symbols of one perf profile of xgate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileSection {
    pub connections: usize,
    /// `percent dso symbol`, by self time, largest first.
    pub top: Vec<String>,
}

/// Where the suite ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub kernel: String,
    pub memory_gib: f64,
    pub nginx: String,
    pub wrk: String,
}

/// Everything one suite run produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuiteResults {
    pub schema: u32,
    pub date: String,
    pub git: String,
    pub command: String,
    pub plan: Plan,
    pub machine: Machine,
    pub pinning: String,
    /// What xgate's UMEM sat on (`HugePages2M` or `NormalPages`).
    pub xgate_umem_backing: String,
    pub http: Vec<HttpCase>,
    pub packet_path: Value,
    /// Top costs of xgate's CPU profile (perf) per connection count, if recorded.
    pub profile: Vec<ProfileSection>,
    /// The SYN-flood section (absent from results written before it existed).
    #[serde(default)]
    pub flood: Vec<FloodCase>,
    /// The HTTPS section (absent from results written before it existed).
    #[serde(default)]
    pub tls: Vec<TlsCase>,
}

/// The HTTPS section for one server: keep-alive requests over TLS (wrk) at each connection
/// count, and full handshakes (ab, one request per connection, no session reuse).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TlsCase {
    /// `xgate` or `nginx`.
    pub server: String,
    pub keep_alive: Vec<HttpCase>,
    /// wrk's CPU time over the run's wall time, per run of each `keep_alive` case.
    pub keep_alive_client_busy: Vec<Vec<f64>>,
    pub handshakes: Vec<NewConnectionRun>,
    /// ab's CPU time over the run's wall time, per run: near 1, the client was the limit.
    pub handshake_client_busy: Vec<f64>,
}

/// One run of the new-connection load: ab, one connection per request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewConnectionRun {
    pub requests_per_second: f64,
    pub completed: u64,
    /// Requests that failed (connect refused or reset, timeouts) or were not answered 2xx.
    pub failed: u64,
}

/// First-time clients: one connection from each of a set of addresses the server never saw
/// (`suite/first_time.py`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FirstTimeRun {
    pub connections: u64,
    pub failed: u64,
    /// Completed connections per second of the whole run.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One repeat of the SYN-flood section against one freshly started server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloodRun {
    /// The keep-alive load (xgate-bench, closed loop) without and under the flood.
    pub keepalive_quiet: RunFigures,
    pub keepalive_flooded: RunFigures,
    /// The new-connection load without and under the flood.
    pub new_connections_quiet: NewConnectionRun,
    pub new_connections_flooded: NewConnectionRun,
    /// SYN/s the flood sent during the keep-alive and during the new-connection measurement.
    pub flood_syn_per_second: [f64; 2],
    /// First-time clients without and under the flood (each set of addresses new to the server).
    #[serde(default)]
    pub first_time_quiet: FirstTimeRun,
    #[serde(default)]
    pub first_time_flooded: FirstTimeRun,
}

/// All repeats of the SYN-flood section against one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloodCase {
    pub server: String,
    /// Connections of the keep-alive load.
    pub connections: usize,
    pub runs: Vec<FloodRun>,
}

/// The server label of xgate with two lanes.
pub const TWO_LANES_SERVER: &str = "xgate lanes=2";

/// The server label of xgate proxying to the backend.
pub const XGATE_PROXY_SERVER: &str = "xgate proxy";

/// The server label of nginx proxying to the backend.
pub const NGINX_PROXY_SERVER: &str = "nginx proxy";

/// The server label of the backend reached without a proxy.
pub const DIRECT_SERVER: &str = "direct";

/// The servers of the proxy section, in the order they run.
pub const PROXY_SERVERS: [&str; 3] = [XGATE_PROXY_SERVER, NGINX_PROXY_SERVER, DIRECT_SERVER];

/// The client label of open-loop cases (the terminating ones, servers `xgate` and `nginx`, and
/// the proxy section's, servers [`PROXY_SERVERS`]).
pub const OPEN_LOOP_CLIENT: &str = "xgate-bench open loop";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_written_before_the_proxy_section_still_read() {
        let plan: Plan = serde_json::from_str(
            r#"{"mode":"quick","connections":[10,100],"repeats":3,"warmup_seconds":0.5,
                "duration_seconds":2.0,"wrk_connections":[100],"packet_seconds":1.0,"profile":false}"#,
        )
        .unwrap();
        assert!(plan.proxy_connections.is_empty());
    }

    #[test]
    fn sections_are_written_only_when_some_were_left_out() {
        let text = r#"{"mode":"quick","connections":[100],"repeats":3,"warmup_seconds":0.5,
            "duration_seconds":2.0,"wrk_connections":[],"packet_seconds":1.0,"profile":false,
            "proxy_connections":[100]}"#;
        let mut plan: Plan = serde_json::from_str(text).unwrap();
        assert!(Section::ALL.iter().all(|&section| plan.runs(section)));
        assert!(serde_json::to_value(&plan).unwrap().get("sections").is_none());
        plan.sections = vec![Section::Xgate, Section::XgateProxy];
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["sections"], serde_json::json!(["xgate", "xgate-proxy"]));
        let back: Plan = serde_json::from_value(json).unwrap();
        assert!(back.runs(Section::XgateProxy) && !back.runs(Section::Nginx));
    }

    #[test]
    fn the_proxy_reference_is_100_or_the_first_count() {
        assert_eq!(proxy_reference(&[10, 100, 1000]), Some(100));
        assert_eq!(proxy_reference(&[10, 1000]), Some(10));
        assert_eq!(proxy_reference(&[]), None);
    }
}
