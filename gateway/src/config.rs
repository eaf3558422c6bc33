//! xgate's configuration file (TOML): what it contains, its defaults, and its validation.
//!
//! Invariant: a [`Config`] that [`Config::load`] returned is valid as a whole; every error names
//! the file, the key, and what was expected.

use std::{fmt, net::Ipv4Addr, path::Path};

use serde::Deserialize;

use crate::routing::{RouteConfig, Routing, TimeoutsConfig, UpstreamConfig};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub umem: UmemConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub tcp: TcpConfig,
    #[serde(default)]
    pub fault: FaultConfig,
    /// Time limits on clients and upstreams.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Upstream pools (`[[upstream]]`), in file order.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
    /// Routes (`[[route]]`), in file order: the first that matches a request takes it.
    #[serde(default)]
    pub route: Vec<RouteConfig>,
    /// The XDP flow table and the reaper that removes dead flows.
    #[serde(default)]
    pub flows: FlowsConfig,
    /// The SYN-flood shield in XDP.
    #[serde(default)]
    pub shield: ShieldConfig,
    /// The management listener (`/metrics`, `/flows`, ...).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Logging (tracing, to stderr).
    #[serde(default)]
    pub log: LogConfig,
}

/// The XDP flow table and the reaper's policy. A flow is dead, and removed (its socket aborted
/// with a RST, its 5-tuple dropped in XDP for `drop_ttl_ms`), when the first of these holds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Entries of the XDP flow table (an LRU hash: the least recently used flow makes room).
    pub max_flows: u32,
    /// Entries of the XDP drop map (5-tuples of removed flows).
    pub max_drops: u32,
    /// How long a removed flow's stray segments are dropped in XDP (ms).
    pub drop_ttl_ms: u64,
    /// How often the reaper walks the flow table (ms).
    pub reap_interval_ms: u64,
    /// Client retransmissions (repeated data or SYNs) that make a flow dead.
    pub max_retransmissions: u32,
    /// Gateway data unacknowledged with no progress in the client's ACKs for this long (ms).
    pub stall_ms: u64,
    /// Nothing from the client for this long (ms).
    pub idle_ms: u64,
    /// A handshake not completed in this time (ms).
    pub half_open_ms: u64,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            max_flows: 131_072,
            max_drops: 65_536,
            drop_ttl_ms: 30_000,
            reap_interval_ms: 1_000,
            max_retransmissions: 5,
            stall_ms: 3_000,
            idle_ms: 60_000,
            half_open_ms: 5_000,
        }
    }
}

/// The SYN-flood shield: rate limits in XDP on SYNs to the listening port, and a bound on
/// half-open connections per lane.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShieldConfig {
    /// SYNs per second from one source that never completed a handshake (0: no limit).
    pub stranger_syn_rate: u64,
    pub stranger_syn_burst: u64,
    /// SYNs per second from one source that completed a handshake (0: no limit).
    pub known_syn_rate: u64,
    pub known_syn_burst: u64,
    /// SYNs per second, per CPU, from all sources that never completed a handshake together
    /// (0: no limit).
    pub budget_syn_rate: u64,
    pub budget_syn_burst: u64,
    /// Sources the shield remembers (LRU).
    pub max_sources: u32,
    /// Half-open connections a lane keeps: at the bound, a new SYN evicts the oldest one that
    /// has waited 100 ms, or is dropped unanswered if none has (0: half of
    /// `http.max_connections`).
    pub max_half_open: usize,
}

/// The largest SYN rate (per second) or burst `[shield]` takes.
const MAX_SHIELD_VALUE: u64 = 10_000_000;

impl Default for ShieldConfig {
    fn default() -> Self {
        ShieldConfig {
            stranger_syn_rate: 100,
            stranger_syn_burst: 1_000,
            known_syn_rate: 50_000,
            known_syn_burst: 50_000,
            budget_syn_rate: 1_000,
            budget_syn_burst: 100,
            max_sources: 65_536,
            max_half_open: 0,
        }
    }
}

impl ShieldConfig {
    /// The limits as the XDP program takes them.
    pub fn limits(&self) -> xgate_xdp::ShieldLimits {
        use xgate_xdp::RateLimit;
        xgate_xdp::ShieldLimits {
            untrusted_source: RateLimit::per_second(self.stranger_syn_rate, self.stranger_syn_burst),
            trusted_source: RateLimit::per_second(self.known_syn_rate, self.known_syn_burst),
            budget: RateLimit::per_second(self.budget_syn_rate, self.budget_syn_burst),
        }
    }
}

/// The management listener: a kernel TCP socket serving `/metrics` (Prometheus text format),
/// `/flows` and `/top` (JSON) and `/heatmap`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to listen on (loopback by default: the metrics say who the clients are).
    pub listen: std::net::SocketAddr,
    /// Serve at all.
    pub enabled: bool,
    /// Seconds of per-second latency histograms kept for the heat map.
    pub heatmap_seconds: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9180)),
            enabled: true,
            heatmap_seconds: 600,
        }
    }
}

/// Logging: `tracing` to stderr, at `level` (`RUST_LOG`, when set, decides instead).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a filter such as `xgate=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
        }
    }
}

/// Faults xgate injects into its own data path, for tests. All off by default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Every Nth TCP segment (not a SYN) a lane receives for a connection it owns is delivered to
    /// the next lane instead, as if the NIC had steered it to the wrong queue (0: never). The
    /// frames then travel the lanes' hand-off rings back to their owner.
    #[serde(default)]
    pub misroute_every: u64,
}

/// TCP behaviour of the gateway's sockets.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Keep-alive probe interval on an idle connection (ms): finds peers that vanished.
    #[serde(default = "default_keepalive_ms")]
    pub keepalive_ms: u64,
    /// A connection whose peer stays silent this long while a probe, data or a handshake is
    /// outstanding is aborted and its socket reused (ms). At least twice `keepalive_ms`.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            keepalive_ms: default_keepalive_ms(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_keepalive_ms() -> u64 {
    10_000
}
fn default_timeout_ms() -> u64 {
    30_000
}

/// The interface xgate takes over and the address it answers on.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Network interface (in xgate's network namespace) the XDP program attaches to.
    pub interface: String,
    /// The first rx/tx queue of that interface xgate takes: lane `i` binds queue `queue + i`.
    #[serde(default)]
    pub queue: u32,
    /// Lanes (threads, each with its own queue, AF_XDP socket, UMEM and TCP stack). Default:
    /// one per queue the interface has from `queue` on, capped by the cores xgate may run on.
    #[serde(default)]
    pub lanes: Option<usize>,
    /// CPU cores the lanes are pinned to, lane `i` on `cores[i]`. Default: the cores this
    /// process may run on (its affinity mask, e.g. from `taskset`), in order.
    #[serde(default)]
    pub cores: Option<Vec<usize>>,
    /// Start even if some rx queues of the interface have no lane (their frames for the
    /// gateway would be dropped): only for NICs whose flow rules keep the gateway's traffic off
    /// those queues.
    #[serde(default)]
    pub allow_uncovered_queues: bool,
    /// The gateway's IPv4 address, owned by xgate's userspace stack (the kernel must not hold it).
    pub ipv4: Ipv4Addr,
    /// Prefix length of the gateway's subnet.
    #[serde(default = "default_prefix_len")]
    pub prefix_len: u8,
    /// The gateway's MAC address (a unicast address; locally administered is usual).
    pub mac: MacAddr,
    /// TCP port the HTTP listener accepts on.
    #[serde(default = "default_listen_port")]
    pub listen_port: u16,
}

impl GatewayConfig {
    /// Interface `interface` answered on `ipv4`/`prefix_len` with `mac`; the other keys at their
    /// defaults.
    pub fn new(interface: &str, ipv4: Ipv4Addr, prefix_len: u8, mac: [u8; 6]) -> GatewayConfig {
        GatewayConfig {
            interface: interface.to_string(),
            queue: 0,
            lanes: None,
            cores: None,
            allow_uncovered_queues: false,
            ipv4,
            prefix_len,
            mac: MacAddr(mac),
            listen_port: default_listen_port(),
        }
    }
}

/// The AF_XDP UMEM.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UmemConfig {
    /// Frames in the UMEM: a power of two, at least 64 (half for rx, half for tx).
    #[serde(default = "default_frames")]
    pub frames: u32,
    /// Bytes per frame: 2048 or 4096.
    #[serde(default = "default_frame_size")]
    pub frame_size: u32,
    /// Run on normal pages (with a warning) when no 2 MiB hugepages are free.
    #[serde(default = "default_true")]
    pub allow_normal_pages: bool,
}

/// The HTTP listener.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// TCP sockets kept per lane (each free one ready to accept): the most concurrent
    /// connections a lane holds, and the largest burst of connects it takes at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Slots in each lane's ring toward its HTTP stage. A full ring is backpressure: waiting
    /// connections read nothing more until there is room.
    #[serde(default = "default_ring_size")]
    pub ring_size: usize,
    /// Bytes of a request head (request line and headers) before 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Bytes of a request line before 414.
    #[serde(default = "default_max_request_line")]
    pub max_request_line: usize,
    /// Header fields of a request before 431 (at most 64).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Bytes of a request body before 413 (bodies stream to the upstream; this bounds them).
    #[serde(default = "default_max_body")]
    pub max_body: u64,
    /// Sockets per lane for connections to upstream members (proxied requests and health
    /// checks in flight, and idle pooled connections).
    #[serde(default = "default_upstream_connections")]
    pub upstream_connections: usize,
    /// One JSON line per request on stdout (off by default: it costs a write per turn).
    #[serde(default)]
    pub access_log: bool,
}

impl HttpConfig {
    /// The request limits the HTTP stage enforces.
    pub fn limits(&self) -> xgate_proxy::Limits {
        xgate_proxy::Limits {
            max_request_line: self.max_request_line,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_body: usize::try_from(self.max_body).unwrap_or(usize::MAX),
        }
    }
}

fn default_prefix_len() -> u8 {
    24
}
fn default_listen_port() -> u16 {
    80
}
fn default_frames() -> u32 {
    4096
}
fn default_frame_size() -> u32 {
    4096
}
fn default_true() -> bool {
    true
}
fn default_max_connections() -> usize {
    256
}
fn default_ring_size() -> usize {
    1024
}
fn default_max_header_bytes() -> usize {
    8192
}
fn default_max_request_line() -> usize {
    4096
}
fn default_max_headers() -> usize {
    xgate_proxy::MAX_HEADERS
}
fn default_max_body() -> u64 {
    16 * 1024 * 1024
}
fn default_upstream_connections() -> usize {
    256
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frames: default_frames(),
            frame_size: default_frame_size(),
            allow_normal_pages: true,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: default_max_connections(),
            ring_size: default_ring_size(),
            max_header_bytes: default_max_header_bytes(),
            max_request_line: default_max_request_line(),
            max_headers: default_max_headers(),
            max_body: default_max_body(),
            upstream_connections: default_upstream_connections(),
            access_log: false,
        }
    }
}

/// An Ethernet MAC address written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in octets.iter_mut() {
            let part = parts
                .next()
                .ok_or_else(|| format!("`{text}` has fewer than 6 octets"))?;
            if part.len() != 2 {
                return Err(format!("`{text}`: octet `{part}` is not two hex digits"));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| format!("`{text}`: `{part}` is not hex"))?;
        }
        if parts.next().is_some() {
            return Err(format!("`{text}` has more than 6 octets"));
        }
        Ok(MacAddr(octets))
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e| {
            serde::de::Error::custom(format!("expected a MAC address like 02:00:00:00:00:01, {e}"))
        })
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

/// A configuration error, displayed as `config FILE: key KEY: problem`.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "config {}: key `{key}`: {}", self.file, self.message),
            None => write!(f, "config {}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: None,
            message: format!("cannot read it: {e}"),
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let location = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigError {
                file: file.to_string(),
                key: key_of(&message, text, e.span()),
                message: format!("{message}{location}"),
            }
        })?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: file.to_string(),
            key: Some(key.to_string()),
            message,
        };
        let g = &self.gateway;
        if g.interface.is_empty() || g.interface.len() > 15 || g.interface.contains(['/', ' ']) {
            return Err(err(
                "gateway.interface",
                format!(
                    "expected an interface name of 1-15 characters, got `{}`",
                    g.interface
                ),
            ));
        }
        if g.ipv4.is_unspecified() || g.ipv4.is_broadcast() || g.ipv4.is_multicast() || g.ipv4.is_loopback() {
            return Err(err(
                "gateway.ipv4",
                format!("expected a unicast, non-loopback IPv4 address, got {}", g.ipv4),
            ));
        }
        if !(8..=30).contains(&g.prefix_len) {
            return Err(err(
                "gateway.prefix_len",
                format!("expected 8..=30, got {}", g.prefix_len),
            ));
        }
        if g.mac.0[0] & 1 == 1 || g.mac.0 == [0; 6] {
            return Err(err(
                "gateway.mac",
                format!("expected a unicast MAC address, got {}", g.mac),
            ));
        }
        if g.listen_port == 0 {
            return Err(err(
                "gateway.listen_port",
                "expected a port in 1..=65535, got 0".into(),
            ));
        }
        let u = &self.umem;
        if u.frame_size != 2048 && u.frame_size != 4096 {
            return Err(err(
                "umem.frame_size",
                format!("expected 2048 or 4096, got {}", u.frame_size),
            ));
        }
        if !u.frames.is_power_of_two() || !(64..=1 << 20).contains(&u.frames) {
            return Err(err(
                "umem.frames",
                format!("expected a power of two in 64..=1048576, got {}", u.frames),
            ));
        }
        let h = &self.http;
        if !(1..=65_536).contains(&h.max_connections) {
            return Err(err(
                "http.max_connections",
                format!("expected 1..=65536, got {}", h.max_connections),
            ));
        }
        if !(1..=65_536).contains(&h.ring_size) {
            return Err(err(
                "http.ring_size",
                format!("expected 1..=65536, got {}", h.ring_size),
            ));
        }
        if g.lanes.is_some_and(|n| !(1..=64).contains(&n)) {
            return Err(err(
                "gateway.lanes",
                format!("expected 1..=64, got {}", g.lanes.unwrap_or(0)),
            ));
        }
        if let Some(cores) = &g.cores {
            if cores.is_empty() {
                return Err(err("gateway.cores", "expected at least one core".into()));
            }
            if let Some(lanes) = g.lanes.filter(|&lanes| cores.len() < lanes) {
                return Err(err(
                    "gateway.cores",
                    format!(
                        "lists {} cores for {lanes} lanes: give one core per lane",
                        cores.len()
                    ),
                ));
            }
        }
        if !(256..=65_536).contains(&h.max_header_bytes) {
            return Err(err(
                "http.max_header_bytes",
                format!("expected 256..=65536, got {}", h.max_header_bytes),
            ));
        }
        if !(64..=h.max_header_bytes).contains(&h.max_request_line) {
            return Err(err(
                "http.max_request_line",
                format!(
                    "expected 64..=http.max_header_bytes ({}), got {}",
                    h.max_header_bytes, h.max_request_line
                ),
            ));
        }
        if !(1..=xgate_proxy::MAX_HEADERS).contains(&h.max_headers) {
            return Err(err(
                "http.max_headers",
                format!("expected 1..={}, got {}", xgate_proxy::MAX_HEADERS, h.max_headers),
            ));
        }
        if h.max_body > 1 << 40 {
            return Err(err(
                "http.max_body",
                format!("expected at most 1 TiB ({}), got {}", 1u64 << 40, h.max_body),
            ));
        }
        if h.upstream_connections > 65_536 {
            return Err(err(
                "http.upstream_connections",
                format!("expected 0..=65536, got {}", h.upstream_connections),
            ));
        }
        let timeouts = &self.timeouts;
        for (name, value) in [
            ("timeouts.header_read_ms", timeouts.header_read_ms),
            ("timeouts.body_idle_ms", timeouts.body_idle_ms),
            ("timeouts.keepalive_idle_ms", timeouts.keepalive_idle_ms),
            ("timeouts.upstream_connect_ms", timeouts.upstream_connect_ms),
            ("timeouts.upstream_response_ms", timeouts.upstream_response_ms),
            ("timeouts.drain_ms", timeouts.drain_ms),
        ] {
            if !(1..=3_600_000).contains(&value) {
                return Err(err(name, format!("expected 1..=3600000 ms, got {value}")));
            }
        }
        Routing::build(&self.upstream, &self.route).map_err(|(key, message)| err(&key, message))?;
        if !self.upstream.is_empty() && h.upstream_connections == 0 {
            return Err(err(
                "http.upstream_connections",
                "is 0, but [[upstream]] pools are configured: give the lanes sockets to reach them".into(),
            ));
        }
        let t = &self.tcp;
        if !(100..=1_800_000).contains(&t.keepalive_ms) {
            return Err(err(
                "tcp.keepalive_ms",
                format!("expected 100..=1800000, got {}", t.keepalive_ms),
            ));
        }
        // A healthy idle peer must get at least one probe and time to answer it.
        if t.timeout_ms < 2 * t.keepalive_ms || t.timeout_ms > 3_600_000 {
            return Err(err(
                "tcp.timeout_ms",
                format!(
                    "expected at least twice tcp.keepalive_ms ({}) and at most 3600000, got {}",
                    2 * t.keepalive_ms,
                    t.timeout_ms
                ),
            ));
        }
        let f = &self.flows;
        for (key, value, least) in [
            ("flows.max_flows", u64::from(f.max_flows), 16),
            ("flows.max_drops", u64::from(f.max_drops), 16),
            ("shield.max_sources", u64::from(self.shield.max_sources), 16),
            ("flows.reap_interval_ms", f.reap_interval_ms, 10),
            ("flows.max_retransmissions", u64::from(f.max_retransmissions), 1),
            ("flows.stall_ms", f.stall_ms, 100),
            ("flows.idle_ms", f.idle_ms, 100),
            ("flows.half_open_ms", f.half_open_ms, 100),
            ("flows.drop_ttl_ms", f.drop_ttl_ms, 0),
        ] {
            if value < least
                || (key.ends_with("_ms") && value > 86_400_000)
                || value > 1 << 26 && !key.ends_with("_ms")
            {
                return Err(err(
                    key,
                    format!(
                        "expected a value from {least} to {}, got {value}",
                        if key.ends_with("_ms") { 86_400_000 } else { 1 << 26 }
                    ),
                ));
            }
        }
        let sh = &self.shield;
        for (key, value) in [
            ("shield.stranger_syn_rate", sh.stranger_syn_rate),
            ("shield.stranger_syn_burst", sh.stranger_syn_burst),
            ("shield.known_syn_rate", sh.known_syn_rate),
            ("shield.known_syn_burst", sh.known_syn_burst),
            ("shield.budget_syn_rate", sh.budget_syn_rate),
            ("shield.budget_syn_burst", sh.budget_syn_burst),
        ] {
            // XDP keeps a rate as whole nanoseconds between SYNs (which lose precision at high
            // rates, and reach zero, meaning no limit, past 10^9/s) and a burst as that
            // interval times the burst.
            if value > MAX_SHIELD_VALUE {
                let zero = if key.ends_with("_rate") {
                    "no limit"
                } else {
                    "as 1"
                };
                return Err(err(
                    key,
                    format!("expected 0 to {MAX_SHIELD_VALUE} (0: {zero}), got {value}"),
                ));
            }
        }
        if self.shield.max_half_open > self.http.max_connections {
            return Err(err(
                "shield.max_half_open",
                format!(
                    "expected at most http.max_connections ({}), got {}",
                    self.http.max_connections, self.shield.max_half_open
                ),
            ));
        }
        if self.metrics.heatmap_seconds == 0 || self.metrics.heatmap_seconds > 86_400 {
            return Err(err(
                "metrics.heatmap_seconds",
                format!("expected 1 to 86400, got {}", self.metrics.heatmap_seconds),
            ));
        }
        if let Err(e) = crate::logging::filter(&self.log.level) {
            return Err(err("log.level", e));
        }
        Ok(())
    }

    /// What the XDP program is loaded with.
    pub fn xdp_options(&self) -> xgate_xdp::XdpOptions {
        xgate_xdp::XdpOptions {
            gateway: self.gateway.ipv4,
            listen_port: self.gateway.listen_port,
            flows: self.flows.max_flows,
            drops: self.flows.max_drops,
            sources: self.shield.max_sources,
            shield: self.shield.limits(),
        }
    }

    /// Half-open connections a lane keeps at most.
    pub fn max_half_open(&self) -> usize {
        match self.shield.max_half_open {
            0 => (self.http.max_connections / 2).max(1),
            n => n,
        }
    }

    /// A configuration for `gateway` with every other section at its defaults (no routes, no
    /// upstreams).
    pub fn new(gateway: GatewayConfig) -> Config {
        Config {
            gateway,
            umem: UmemConfig::default(),
            http: HttpConfig::default(),
            tcp: TcpConfig::default(),
            fault: FaultConfig::default(),
            timeouts: TimeoutsConfig::default(),
            upstream: Vec::new(),
            route: Vec::new(),
            flows: FlowsConfig::default(),
            shield: ShieldConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
        }
    }

    /// The routing this configuration describes (valid: [`Config::load`] checked it).
    pub fn routing(&self) -> Routing {
        Routing::build(&self.upstream, &self.route).expect("validated when loaded")
    }

    /// This configuration as TOML text (what `xgate lab up` writes, and what tests start with).
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "[gateway]\ninterface = \"{}\"\nqueue = {}\nipv4 = \"{}\"\nprefix_len = {}\nmac = \"{}\"\nlisten_port = {}\n\n\
             [umem]\nframes = {}\nframe_size = {}\nallow_normal_pages = {}\n\n\
             [http]\nmax_connections = {}\nring_size = {}\nmax_header_bytes = {}\n\n\
             [tcp]\nkeepalive_ms = {}\ntimeout_ms = {}\n",
            self.gateway.interface,
            self.gateway.queue,
            self.gateway.ipv4,
            self.gateway.prefix_len,
            self.gateway.mac,
            self.gateway.listen_port,
            self.umem.frames,
            self.umem.frame_size,
            self.umem.allow_normal_pages,
            self.http.max_connections,
            self.http.ring_size,
            self.http.max_header_bytes,
            self.tcp.keepalive_ms,
            self.tcp.timeout_ms,
        );
        // Optional gateway keys go right after the [gateway] table's last line.
        let mut extra = String::new();
        if let Some(lanes) = self.gateway.lanes {
            extra.push_str(&format!("lanes = {lanes}\n"));
        }
        if let Some(cores) = &self.gateway.cores {
            extra.push_str(&format!("cores = {cores:?}\n"));
        }
        let at = text
            .find("\n\n[umem]")
            .expect("the umem table follows the gateway table")
            + 1;
        text.insert_str(at, &extra);
        text
    }
}

/// Finds the dotted key a TOML error is about: the table header above the error's line plus the
/// key on that line, or a key named in the message.
fn key_of(message: &str, text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    if let Some(start) = message.find("unknown field `") {
        let rest = &message[start + 15..];
        let field = &rest[..rest.find('`')?];
        let table = span.as_ref().and_then(|s| table_above(text, s.start));
        return Some(match table {
            Some(t) => format!("{t}.{field}"),
            None => field.to_string(),
        });
    }
    if let Some(start) = message.find("missing field `") {
        let rest = &message[start + 15..];
        let field = &rest[..rest.find('`')?];
        let table = span.as_ref().and_then(|s| table_above(text, s.start));
        return Some(match table {
            Some(t) => format!("{t}.{field}"),
            None => field.to_string(),
        });
    }
    let span = span?;
    let line_start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split('=').next()?.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    Some(match table_above(text, line_start) {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

fn table_above(text: &str, offset: usize) -> Option<String> {
    text[..offset.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
        assert_eq!(c.http.max_connections, 256);
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
}
