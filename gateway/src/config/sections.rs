//! The sections of the configuration file, one type each, with their defaults (what a key
//! that is absent means).

use std::{fmt, net::Ipv4Addr};

use serde::Deserialize;

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
    /// When SYNs are answered with SYN cookies: `auto` (under pressure: a stranger's SYN over
    /// the budget, in XDP, and a SYN a lane would leave unanswered at its half-open bound),
    /// `always`, or `never` (those SYNs are dropped; the client sends them again a second later).
    pub syn_cookies: SynCookies,
}

/// `shield.syn_cookies`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SynCookies {
    #[default]
    Auto,
    Always,
    Never,
}

impl SynCookies {
    pub fn mode(self) -> xgate_xdp::SynCookieMode {
        match self {
            SynCookies::Auto => xgate_xdp::SynCookieMode::Auto,
            SynCookies::Always => xgate_xdp::SynCookieMode::Always,
            SynCookies::Never => xgate_xdp::SynCookieMode::Never,
        }
    }
}

/// The largest SYN rate (per second) or burst `[shield]` takes.
pub(super) const MAX_SHIELD_VALUE: u64 = 10_000_000;

impl Default for ShieldConfig {
    fn default() -> Self {
        ShieldConfig {
            stranger_syn_rate: 100,
            // A new client (a load generator, a NAT) may open 10,000 connections at once before
            // its first handshake earns its address trust: over the budget they get SYN cookies.
            // At 1,000, 9,000 SYNs of such a burst were dropped and sent again a second later.
            stranger_syn_burst: 10_000,
            known_syn_rate: 50_000,
            known_syn_burst: 50_000,
            budget_syn_rate: 1_000,
            budget_syn_burst: 100,
            max_sources: 65_536,
            max_half_open: 0,
            syn_cookies: SynCookies::Auto,
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

/// HTTPS: a TLS listener beside the plaintext one, on when at least one certificate is given.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// TCP port the HTTPS listener accepts on.
    pub listen_port: u16,
    /// Certificates (`[[tls.certificate]]`), chosen by the ClientHello's server name.
    pub certificate: Vec<CertificateConfig>,
    /// A ClientHello whose server name no certificate covers is refused (an
    /// `unrecognized_name` alert) instead of getting the default certificate; so is one with no
    /// server name.
    pub refuse_unknown_names: bool,
    /// A handshake not finished in this time is dropped (ms).
    pub handshake_timeout_ms: u64,
    /// TLS 1.3 and 1.2 session tickets (resumption without server state); their key rotates
    /// every `ticket_lifetime_s`, and a ticket is good for up to twice that.
    pub session_tickets: bool,
    pub ticket_lifetime_s: u32,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            listen_port: 443,
            certificate: Vec::new(),
            refuse_unknown_names: false,
            handshake_timeout_ms: 10_000,
            session_tickets: true,
            ticket_lifetime_s: 6 * 3600,
        }
    }
}

/// One certificate: a PEM chain (leaf first) and its PEM private key, and the server names it
/// is chosen for (exact names, or `*.example.com` for one label under it).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// Server names; empty: the names in the certificate are not read, so give them here.
    #[serde(default)]
    pub names: Vec<String>,
    /// The certificate for a ClientHello whose name no entry covers (default: the first entry).
    #[serde(default)]
    pub default: bool,
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
    /// A SYN that finds every client socket of its lane taken is answered with a RST (the
    /// client sees "connection refused" at once) instead of dropped for the client to send
    /// again, as a kernel does with a full listen backlog.
    #[serde(default)]
    pub reset_when_full: bool,
    /// Entries of the table the routes' rate limits count in, shared by every lane (8 bytes
    /// each; a power of two). Keys whose hashes meet in one entry share a budget.
    #[serde(default = "default_rate_limit_entries")]
    pub rate_limit_entries: usize,
}

fn default_rate_limit_entries() -> usize {
    xgate_proxy::ratelimit::RateTable::DEFAULT_ENTRIES
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
/// Half receive, half transmit: 8,192 frames each way, one per default client socket, so that a
/// request from every connection at once finds a receive frame (with 2,048, the kernel dropped
/// frames at 10,000 connections for want of a fill-ring frame, and each came back a second later
/// as a client retransmission).
fn default_frames() -> u32 {
    16_384
}
/// Room for a 1,514-byte frame, the XDP headroom and the arrival stamp.
fn default_frame_size() -> u32 {
    2048
}
fn default_true() -> bool {
    true
}
fn default_max_connections() -> usize {
    8192
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
    8192
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
            reset_when_full: false,
            rate_limit_entries: default_rate_limit_entries(),
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
