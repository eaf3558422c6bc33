//! xgate's configuration file (TOML): what it contains, its defaults, and its validation.
//!
//! Invariant: a [`Config`] that [`Config::load`] returned is valid as a whole; every error names
//! the file, the key, and what was expected.

use std::{fmt, path::Path};

use serde::Deserialize;

use crate::routing::{RouteConfig, Routing, TimeoutsConfig, UpstreamConfig};

mod sections;

use sections::MAX_SHIELD_VALUE;
pub use sections::{
    CertificateConfig, FaultConfig, FlowsConfig, GatewayConfig, HttpConfig, LogConfig, MacAddr,
    MetricsConfig, ShieldConfig, SynCookies, TcpConfig, TlsConfig, UmemConfig,
};

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
    /// HTTPS.
    #[serde(default)]
    pub tls: TlsConfig,
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
        let t = &self.tls;
        if !t.certificate.is_empty() {
            if t.listen_port == 0 || t.listen_port == g.listen_port {
                return Err(err(
                    "tls.listen_port",
                    format!(
                        "expected a port in 1..=65535 other than gateway.listen_port ({}), got {}",
                        g.listen_port, t.listen_port
                    ),
                ));
            }
            if t.certificate.iter().filter(|c| c.default).count() > 1 {
                return Err(err(
                    "tls.certificate.default",
                    "at most one certificate may be the default".into(),
                ));
            }
            for c in &t.certificate {
                for name in &c.names {
                    if !crate::tls::valid_name_pattern(name) {
                        return Err(err(
                            "tls.certificate.names",
                            format!("`{name}` is not a DNS name or `*.` followed by one"),
                        ));
                    }
                }
            }
            if !(100..=600_000).contains(&t.handshake_timeout_ms) {
                return Err(err(
                    "tls.handshake_timeout_ms",
                    format!("expected 100..=600000, got {}", t.handshake_timeout_ms),
                ));
            }
            if !(60..=7 * 86_400).contains(&t.ticket_lifetime_s) {
                return Err(err(
                    "tls.ticket_lifetime_s",
                    format!("expected 60..=604800, got {}", t.ticket_lifetime_s),
                ));
            }
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
        if !h.rate_limit_entries.is_power_of_two() || !(1024..=1 << 24).contains(&h.rate_limit_entries) {
            return Err(err(
                "http.rate_limit_entries",
                format!(
                    "expected a power of two in 1024..=16777216, got {}",
                    h.rate_limit_entries
                ),
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
    /// The HTTPS listener's port, when certificates are configured.
    pub fn https_port(&self) -> Option<u16> {
        (!self.tls.certificate.is_empty()).then_some(self.tls.listen_port)
    }

    /// What the XDP program is loaded with; `cookie_key` is the SYN cookies' secret (the
    /// lanes' too) and `link_mtu` the interface's MTU (the cookie SYN-ACK's MSS follows it).
    pub fn xdp_options(&self, cookie_key: [u64; 2], link_mtu: u32) -> xgate_xdp::XdpOptions {
        xgate_xdp::XdpOptions {
            gateway: self.gateway.ipv4,
            listen_port: self.gateway.listen_port,
            extra_listen_port: self.https_port().unwrap_or(0),
            flows: self.flows.max_flows,
            drops: self.flows.max_drops,
            sources: self.shield.max_sources,
            shield: self.shield.limits(),
            syn_cookies: xgate_xdp::SynCookieConfig {
                key: cookie_key,
                mode: self.shield.syn_cookies.mode() as u32,
                mss: link_mtu.saturating_sub(40).clamp(536, u32::from(u16::MAX)) as u16,
                window: crate::lane::SOCKET_BUFFER.min(usize::from(u16::MAX)) as u16,
                mac: self.gateway.mac.0,
                pad: [0; 2],
            },
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
            tls: TlsConfig::default(),
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
pub(crate) mod tests;
