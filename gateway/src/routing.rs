//! The gateway's routing configuration: `[[upstream]]` pools, `[[route]]`s and `[timeouts]`,
//! as written in the TOML file, and their translation into the proxy's [`RouteTable`] and
//! [`PoolSpec`]s (a [`Routing`]).
//!
//! Invariants:
//! - A [`Routing`] that [`Routing::build`] returned is valid as a whole: every route names a pool
//!   that exists, every pool validated, every direct answer fits a response slot. Errors name the
//!   key (`route[2].upstream`, `upstream[0].members[1]`, ...).
//! - Without any `[[route]]`, the routing is the built-in one: `GET`/`HEAD /healthz` answers
//!   `200 ok`, anything else 404.

use std::net::SocketAddrV4;

use serde::Deserialize;
use xgate_proxy::{
    ratelimit::{Gcra, LimitKey, RateLimit, MAX_BURST, MAX_RATE},
    routes::{DirectAnswer, HostMatch, MethodSet, Route, RouteAction, RouteTable},
    upstream::{HashKey, HealthCheck, Passive, Policy, PoolSpec},
};

/// Most bytes of a direct answer's body (it must fit a connection's response slot with its head).
pub const MAX_DIRECT_BODY: usize = 4096;
/// The most idle connections `max_idle` may keep per member and lane.
pub const MAX_IDLE_PER_MEMBER: usize = 65_536;

/// One `[[upstream]]` pool.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The name routes refer to.
    pub name: String,
    /// Members: `"ip:port"` or `{ addr = "ip:port", weight = N }`.
    pub members: Vec<MemberConfig>,
    /// `round_robin` (smooth weighted), `least_outstanding`, `hash_client_ip`, `hash_header`.
    #[serde(default = "default_policy")]
    pub policy: String,
    /// The header hashed by `hash_header`.
    #[serde(default)]
    pub hash_header: Option<String>,
    /// Most idle keep-alive connections kept per member and lane. Below it, a member keeps as
    /// many as its recent peak of requests in flight needs (see the README's "Upstream
    /// connections"), so by default the bound is `http.upstream_connections`.
    #[serde(default = "default_max_idle")]
    pub max_idle: usize,
    /// Requests in flight to this pool at once, across the lanes (each lane takes an equal
    /// share, rounded up); more wait in the pool's queue (0: no limit beyond the sockets).
    #[serde(default)]
    pub max_in_flight: u32,
    /// Requests that may wait per lane for a connection to this pool (for `max_in_flight`,
    /// `max_connecting`, or a free upstream socket); beyond it, 503 at once. A lane never has
    /// more waiting than `http.max_connections`.
    #[serde(default = "default_max_queued")]
    pub max_queued: u32,
    /// Connects (handshakes in progress) per member and lane at once; more requests wait in the
    /// queue. Paces a burst of new connections so that it does not overflow the member's listen
    /// backlog (whose SYNs would then be dropped and the connects time out).
    #[serde(default = "default_max_connecting")]
    pub max_connecting: u32,
    /// How long a request waits in the pool's queue before it is answered 503 (ms).
    #[serde(default = "default_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// An idle pooled connection is closed after this long (ms).
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Requests sent over one upstream connection before it is closed (0: no limit).
    #[serde(default = "default_max_requests")]
    pub max_requests_per_connection: u32,
    /// Active health checks (off when absent).
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// Passive ejection after consecutive failures.
    #[serde(default)]
    pub passive: PassiveConfig,
}

/// A pool member.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MemberConfig {
    /// `"ip:port"`, weight 1.
    Addr(String),
    /// `{ addr = "ip:port", weight = N }`.
    Weighted {
        addr: String,
        #[serde(default = "default_weight")]
        weight: u32,
    },
}

/// `[upstream.health]`: active checks.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Path of the `GET` sent to each member; a 2xx or 3xx answer is a success.
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that make an unhealthy member healthy.
    #[serde(default = "default_two")]
    pub rise: u32,
    /// Consecutive failures that make a healthy member unhealthy.
    #[serde(default = "default_two")]
    pub fall: u32,
}

/// `[upstream.passive]`: ejection after consecutive 5xx answers or connect failures.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PassiveConfig {
    /// Consecutive failures that eject a member (0: never).
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// How long an ejected member is left out (ms).
    #[serde(default = "default_eject_ms")]
    pub eject_ms: u64,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            max_failures: default_max_failures(),
            eject_ms: default_eject_ms(),
        }
    }
}

/// One `[[route]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A name for logs and metrics (default: `route<N>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `example.com` (exact) or `*.example.com` (any subdomain); any host when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix, matched on whole segments (`/api` matches `/api/x`, not `/apix`).
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Methods the route takes (any when absent).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// The pool this route proxies to (exactly one of `upstream` and `answer`).
    #[serde(default)]
    pub upstream: Option<String>,
    /// The `Host` sent upstream instead of the client's.
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// A fixed answer (exactly one of `upstream` and `answer`).
    #[serde(default)]
    pub answer: Option<AnswerConfig>,
    /// `[route.rate_limit]`: requests over it get 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Plain-HTTP requests get a 301 to the same host and target on HTTPS (with `[tls]` on).
    #[serde(default)]
    pub https_redirect: bool,
    /// `Strict-Transport-Security: max-age=N` on the route's answers over TLS.
    #[serde(default)]
    pub hsts_max_age: Option<u32>,
}

/// `[route.rate_limit]`: a GCRA limit of `rate` requests per second with bursts of `burst`,
/// per client address or per value of a header (see [`xgate_proxy::ratelimit`]).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second (more than 0, fractions allowed, at most 10,000,000). Required
    /// (an `Option` so that its absence is reported with the route's index).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Requests admitted at once (1..=1,000,000). Required, like `rate`.
    #[serde(default)]
    pub burst: Option<u64>,
    /// `client_ip` (default) or `header:<Name>` (a request without that header counts by its
    /// client's address).
    #[serde(default = "default_rate_limit_key")]
    pub key: String,
    /// The status of a refused request: 429, the only one taken (may be left out).
    #[serde(default)]
    pub status: Option<u16>,
}

fn default_rate_limit_key() -> String {
    "client_ip".to_string()
}

/// `answer = { status = 503, body = "maintenance\n", headers = { "Retry-After" = "60" } }`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnswerConfig {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `[timeouts]`, all in milliseconds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// From a request's first byte to the end of its head (then 408 and close).
    #[serde(default = "default_header_read_ms")]
    pub header_read_ms: u64,
    /// Longest silence while a request body is being received.
    #[serde(default = "default_body_idle_ms")]
    pub body_idle_ms: u64,
    /// An idle keep-alive client connection is closed after this long.
    #[serde(default = "default_keepalive_idle_ms")]
    pub keepalive_idle_ms: u64,
    /// Connecting to an upstream member (then the one retry, or 504).
    #[serde(default = "default_upstream_connect_ms")]
    pub upstream_connect_ms: u64,
    /// From the request sent to the upstream's response head, and the longest silence inside a
    /// response body (then 504, or a reset once the response has begun).
    #[serde(default = "default_upstream_response_ms")]
    pub upstream_response_ms: u64,
    /// On SIGTERM: how long in-flight requests may take to finish before xgate exits anyway.
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            header_read_ms: default_header_read_ms(),
            body_idle_ms: default_body_idle_ms(),
            keepalive_idle_ms: default_keepalive_idle_ms(),
            upstream_connect_ms: default_upstream_connect_ms(),
            upstream_response_ms: default_upstream_response_ms(),
            drain_ms: default_drain_ms(),
        }
    }
}

fn default_policy() -> String {
    "round_robin".into()
}
fn default_max_idle() -> usize {
    MAX_IDLE_PER_MEMBER
}
fn default_max_queued() -> u32 {
    65_536
}
fn default_max_connecting() -> u32 {
    128
}
fn default_queue_timeout_ms() -> u64 {
    2_000
}
fn default_idle_timeout_ms() -> u64 {
    30_000
}
fn default_max_requests() -> u32 {
    10_000
}
fn default_weight() -> u32 {
    1
}
fn default_health_path() -> String {
    "/".into()
}
fn default_health_interval_ms() -> u64 {
    2_000
}
fn default_health_timeout_ms() -> u64 {
    1_000
}
fn default_two() -> u32 {
    2
}
fn default_max_failures() -> u32 {
    5
}
fn default_eject_ms() -> u64 {
    10_000
}
fn default_path_prefix() -> String {
    "/".into()
}
fn default_header_read_ms() -> u64 {
    10_000
}
fn default_body_idle_ms() -> u64 {
    30_000
}
fn default_keepalive_idle_ms() -> u64 {
    60_000
}
/// Long enough for the SYN retransmissions at 1 s and 3 s: a member whose listen backlog
/// overflowed for a moment drops SYNs, and answers the retransmission.
fn default_upstream_connect_ms() -> u64 {
    5_000
}
fn default_upstream_response_ms() -> u64 {
    30_000
}
fn default_drain_ms() -> u64 {
    10_000
}

/// Pool settings the lane applies itself (connection pooling), beside the proxy's [`PoolSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct PoolLimits {
    pub max_idle: usize,
    pub idle_timeout_ms: u64,
    pub max_requests_per_connection: u32,
    /// Across the lanes (0: none); a lane's share is [`PoolLimits::lane_in_flight`].
    pub max_in_flight: u32,
    pub max_queued: u32,
    pub max_connecting: u32,
    pub queue_timeout_ms: u64,
}

impl PoolLimits {
    /// One lane's share of `max_in_flight` among `lanes` (rounded up; `u32::MAX`: no limit).
    pub fn lane_in_flight(&self, lanes: usize) -> u32 {
        if self.max_in_flight == 0 {
            return u32::MAX;
        }
        self.max_in_flight.div_ceil(lanes.max(1) as u32)
    }
}

/// Everything routing needs, validated: the route table and the pools it refers to.
#[derive(Clone, Debug)]
pub struct Routing {
    pub routes: RouteTable,
    pub pools: Vec<PoolSpec>,
    pub pool_limits: Vec<PoolLimits>,
    /// Each route's HTTPS policy, by route index.
    pub https: Vec<xgate_proxy::gateway::HttpsPolicy>,
}

impl Routing {
    /// The routes' names, by route index.
    pub fn route_names(&self) -> Vec<Box<str>> {
        self.routes.routes().iter().map(|r| r.name.clone()).collect()
    }
}

/// The key of entry `index` of array `table`, for errors.
fn key(table: &str, index: usize, field: &str) -> String {
    if field.is_empty() {
        format!("{table}[{index}]")
    } else {
        format!("{table}[{index}].{field}")
    }
}

impl Routing {
    /// Validates `upstreams` and `routes` and builds the routing; errors are `(key, message)`.
    pub fn build(upstreams: &[UpstreamConfig], routes: &[RouteConfig]) -> Result<Routing, (String, String)> {
        let mut pools = Vec::with_capacity(upstreams.len());
        let mut pool_limits = Vec::with_capacity(upstreams.len());
        for (i, u) in upstreams.iter().enumerate() {
            if u.name.is_empty() {
                return Err((key("upstream", i, "name"), "expected a non-empty name".into()));
            }
            if upstreams[..i].iter().any(|other| other.name == u.name) {
                return Err((
                    key("upstream", i, "name"),
                    format!("`{}` is defined twice", u.name),
                ));
            }
            let mut members = Vec::with_capacity(u.members.len());
            for (m, member) in u.members.iter().enumerate() {
                let (addr, weight) = match member {
                    MemberConfig::Addr(addr) => (addr, 1),
                    MemberConfig::Weighted { addr, weight } => (addr, *weight),
                };
                let parsed: SocketAddrV4 = addr.parse().map_err(|_| {
                    (
                        key("upstream", i, &format!("members[{m}]")),
                        format!("expected an IPv4 address and port like 10.0.0.1:8080, got `{addr}`"),
                    )
                })?;
                if parsed.port() == 0 || parsed.ip().is_unspecified() || parsed.ip().is_broadcast() {
                    return Err((
                        key("upstream", i, &format!("members[{m}]")),
                        format!("expected a unicast address and a port above 0, got `{addr}`"),
                    ));
                }
                members.push((parsed.into(), weight));
            }
            let policy = match u.policy.as_str() {
                "round_robin" => Policy::RoundRobin,
                "least_outstanding" => Policy::LeastOutstanding,
                "hash_client_ip" => Policy::ConsistentHash {
                    key: HashKey::ClientIp,
                },
                "hash_header" => {
                    let Some(header) = u.hash_header.as_deref().filter(|h| is_token(h)) else {
                        return Err((
                            key("upstream", i, "hash_header"),
                            "policy `hash_header` needs `hash_header`, a header name".into(),
                        ));
                    };
                    Policy::ConsistentHash {
                        key: HashKey::Header(header.to_ascii_lowercase().into()),
                    }
                }
                other => {
                    return Err((
                        key("upstream", i, "policy"),
                        format!(
                            "expected round_robin, least_outstanding, hash_client_ip or hash_header, got `{other}`"
                        ),
                    ))
                }
            };
            if u.hash_header.is_some() && u.policy != "hash_header" {
                return Err((
                    key("upstream", i, "hash_header"),
                    "only used with policy = \"hash_header\"".into(),
                ));
            }
            if !(1..=100_000).contains(&u.idle_timeout_ms) {
                return Err((
                    key("upstream", i, "idle_timeout_ms"),
                    format!("expected 1..=100000, got {}", u.idle_timeout_ms),
                ));
            }
            if u.max_idle > MAX_IDLE_PER_MEMBER {
                return Err((
                    key("upstream", i, "max_idle"),
                    format!("expected 0..={MAX_IDLE_PER_MEMBER}, got {}", u.max_idle),
                ));
            }
            let health = u.health.as_ref().map(|h| HealthCheck {
                path: h.path.as_str().into(),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                rise: h.rise,
                fall: h.fall,
            });
            if let Some(h) = &u.health {
                if !h.path.starts_with('/') || !h.path.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err((
                        key("upstream", i, "health.path"),
                        format!("expected an absolute path without spaces, got `{}`", h.path),
                    ));
                }
            }
            let spec = PoolSpec {
                name: u.name.as_str().into(),
                members,
                policy,
                health,
                passive: Passive {
                    max_failures: u.passive.max_failures,
                    eject_ms: u.passive.eject_ms,
                },
            };
            // Validated here so that errors name the key.
            xgate_proxy::upstream::Pool::new(spec.clone()).map_err(|message| {
                let field = message.split(':').next().unwrap_or("").trim().to_string();
                let field = if field.contains(' ') { String::new() } else { field };
                (key("upstream", i, &field), message)
            })?;
            pools.push(spec);
            if u.max_queued > 65_536 {
                return Err((
                    key("upstream", i, "max_queued"),
                    format!("expected 0..=65536, got {}", u.max_queued),
                ));
            }
            if !(1..=65_536).contains(&u.max_connecting) {
                return Err((
                    key("upstream", i, "max_connecting"),
                    format!("expected 1..=65536, got {}", u.max_connecting),
                ));
            }
            if !(1..=600_000).contains(&u.queue_timeout_ms) {
                return Err((
                    key("upstream", i, "queue_timeout_ms"),
                    format!("expected 1..=600000, got {}", u.queue_timeout_ms),
                ));
            }
            pool_limits.push(PoolLimits {
                max_idle: u.max_idle,
                idle_timeout_ms: u.idle_timeout_ms,
                max_requests_per_connection: u.max_requests_per_connection,
                max_in_flight: u.max_in_flight,
                max_queued: u.max_queued,
                max_connecting: u.max_connecting,
                queue_timeout_ms: u.queue_timeout_ms,
            });
        }
        if routes.is_empty() {
            return Ok(Routing {
                routes: RouteTable::health_only(),
                pools,
                pool_limits,
                https: Vec::new(),
            });
        }
        let mut table = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            let host = match &r.host {
                None => HostMatch::Any,
                Some(h) => HostMatch::parse(h).map_err(|m| (key("route", i, "host"), m))?,
            };
            if !r.path_prefix.starts_with('/') || !r.path_prefix.bytes().all(|b| b.is_ascii_graphic()) {
                return Err((
                    key("route", i, "path_prefix"),
                    format!(
                        "expected a path starting with / and without spaces, got `{}`",
                        r.path_prefix
                    ),
                ));
            }
            let methods = match &r.methods {
                None => None,
                Some(names) => Some(MethodSet::parse(names).map_err(|m| (key("route", i, "methods"), m))?),
            };
            let action = match (&r.upstream, &r.answer) {
                (Some(name), None) => {
                    let pool = upstreams.iter().position(|u| &u.name == name).ok_or_else(|| {
                        (
                            key("route", i, "upstream"),
                            format!("no [[upstream]] is named `{name}`"),
                        )
                    })?;
                    if let Some(host) = &r.host_rewrite {
                        // A Host value as a client must send it (a request with it would be 400).
                        if host.is_empty() || !xgate_proxy::authority::valid_host(host.as_bytes()) {
                            return Err((
                                key("route", i, "host_rewrite"),
                                format!("expected a host name with an optional :port, got `{host}`"),
                            ));
                        }
                    }
                    RouteAction::Proxy {
                        pool,
                        host_rewrite: r.host_rewrite.as_deref().map(Into::into),
                    }
                }
                (None, Some(answer)) => {
                    if r.host_rewrite.is_some() {
                        return Err((
                            key("route", i, "host_rewrite"),
                            "only used with `upstream`".into(),
                        ));
                    }
                    if answer.body.len() > MAX_DIRECT_BODY {
                        return Err((
                            key("route", i, "answer.body"),
                            format!(
                                "expected at most {MAX_DIRECT_BODY} bytes, got {}",
                                answer.body.len()
                            ),
                        ));
                    }
                    for (name, value) in &answer.headers {
                        if !is_token(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                            return Err((
                                key("route", i, &format!("answer.headers.{name}")),
                                "expected a header name token and a value without CR, LF or NUL".into(),
                            ));
                        }
                        if ["content-length", "transfer-encoding", "connection"]
                            .iter()
                            .any(|h| name.eq_ignore_ascii_case(h))
                        {
                            return Err((
                                key("route", i, &format!("answer.headers.{name}")),
                                "is set by xgate itself".into(),
                            ));
                        }
                    }
                    let direct = DirectAnswer {
                        status: answer.status,
                        headers: answer
                            .headers
                            .iter()
                            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                            .collect(),
                        body: answer.body.as_bytes().into(),
                    };
                    direct
                        .validate()
                        .map_err(|m| (key("route", i, "answer.status"), m))?;
                    RouteAction::Direct(direct)
                }
                _ => {
                    return Err((
                        key("route", i, ""),
                        "expected exactly one of `upstream` and `answer`".into(),
                    ))
                }
            };
            let rate_limit = match &r.rate_limit {
                None => None,
                Some(limit) => Some(rate_limit(i, limit)?),
            };
            table.push(Route {
                name: r.name.clone().unwrap_or_else(|| format!("route{i}")).into(),
                host,
                path_prefix: r.path_prefix.as_str().into(),
                methods,
                action,
                rate_limit,
            });
        }
        Ok(Routing {
            routes: RouteTable::new(table),
            pools,
            pool_limits,
            https: routes
                .iter()
                .map(|r| xgate_proxy::gateway::HttpsPolicy {
                    redirect: r.https_redirect,
                    hsts_max_age: r.hsts_max_age,
                })
                .collect(),
        })
    }
}

/// Route `i`'s `[route.rate_limit]`, checked: errors name the key (`route[i].rate_limit.rate`).
fn rate_limit(i: usize, limit: &RateLimitConfig) -> Result<RateLimit, (String, String)> {
    let field = |name: &str| key("route", i, &format!("rate_limit.{name}"));
    let rate = limit
        .rate
        .ok_or_else(|| (field("rate"), "missing: requests per second".into()))?;
    if !(rate > 0.0 && rate <= MAX_RATE) {
        return Err((
            field("rate"),
            format!("expected requests per second above 0 and at most {MAX_RATE}, got {rate}"),
        ));
    }
    let burst = limit
        .burst
        .ok_or_else(|| (field("burst"), "missing: requests admitted at once".into()))?;
    let burst = u32::try_from(burst)
        .ok()
        .filter(|b| (1..=MAX_BURST).contains(b))
        .ok_or_else(|| {
            (
                field("burst"),
                format!("expected 1..={MAX_BURST} requests, got {burst}"),
            )
        })?;
    let key = match limit.key.as_str() {
        "client_ip" => LimitKey::ClientIp,
        other => match other.strip_prefix("header:").filter(|name| is_token(name)) {
            Some(name) => LimitKey::Header(name.to_ascii_lowercase().into()),
            None => {
                return Err((
                    field("key"),
                    format!("expected \"client_ip\" or \"header:<Name>\", got `{other}`"),
                ))
            }
        },
    };
    if limit.status.is_some_and(|status| status != 429) {
        return Err((
            field("status"),
            format!(
                "expected 429 (the only status a rate limit answers with), got {}",
                limit.status.unwrap_or(0)
            ),
        ));
    }
    let gcra = Gcra::new(rate, burst).expect("rate and burst checked above");
    Ok(RateLimit { gcra, key })
}

/// Whether `name` is an HTTP token (a valid header name).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use xgate_proxy::ratelimit::{Gcra, LimitKey};

    use crate::config::Config;

    /// The lab's config with `extra` appended; the error's key, or `None` if it loads.
    fn key_of_error(extra: &str) -> Option<String> {
        let text = format!("{}\n{extra}", crate::config::tests::sample().to_toml());
        Config::parse(&text, "t.toml")
            .err()
            .map(|e| e.key.unwrap_or_default())
    }

    const POOL: &str = "[[upstream]]\nname = \"app\"\nmembers = [\"10.0.0.9:80\"]\n";

    #[test]
    fn a_valid_routing_loads_and_builds() {
        let text = format!(
            "{}\n{POOL}policy = \"hash_header\"\nhash_header = \"X-User\"\n\
             health = {{ path = \"/h\", interval_ms = 500, timeout_ms = 100 }}\n\
             [[route]]\nhost = \"*.example.com\"\npath_prefix = \"/api\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"app\"\n\
             [[route]]\nanswer = {{ status = 503, body = \"later\\n\", headers = {{ \"Retry-After\" = \"5\" }} }}\n",
            crate::config::tests::sample().to_toml()
        );
        let config = Config::parse(&text, "t.toml").unwrap();
        let routing = config.routing();
        assert_eq!(routing.routes.routes().len(), 2);
        assert_eq!(routing.pools.len(), 1);
        assert_eq!(
            routing.route_names(),
            ["route0".into(), "route1".into()] as [Box<str>; 2]
        );
    }

    #[test]
    fn rate_limits_load_with_their_defaults() {
        let text = format!(
            "{}\n{POOL}\n[[route]]\nname = \"api\"\nupstream = \"app\"\n\
             [route.rate_limit]\nrate = 50\nburst = 10\n\
             [[route]]\nname = \"keyed\"\nanswer = {{ status = 200 }}\n\
             rate_limit = {{ rate = 0.5, burst = 1, key = \"header:X-API-Key\", status = 429 }}\n\
             [[route]]\nanswer = {{ status = 200 }}\n",
            crate::config::tests::sample().to_toml()
        );
        let config = Config::parse(&text, "t.toml").unwrap();
        let routing = config.routing();
        let routes = routing.routes.routes();
        let api = routes[0].rate_limit.as_ref().unwrap();
        assert_eq!(api.gcra, Gcra::new(50.0, 10).unwrap());
        assert_eq!(api.key, LimitKey::ClientIp);
        let keyed = routes[1].rate_limit.as_ref().unwrap();
        assert_eq!(keyed.gcra.interval_ns(), 2_000_000_000);
        assert_eq!(keyed.key, LimitKey::Header("x-api-key".into()));
        assert_eq!(routes[2].rate_limit, None);
    }

    #[test]
    fn without_routes_the_health_endpoint_answers() {
        let routing = super::Routing::build(&[], &[]).unwrap();
        let (_, route) = routing.routes.find(Some(b"gw"), "GET", "/healthz").unwrap();
        assert!(matches!(
            route.action,
            xgate_proxy::routes::RouteAction::Direct(_)
        ));
        assert!(routing.routes.find(Some(b"gw"), "GET", "/other").is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[[route]]\nupstream = \"missing\"\n", "route[0].upstream"),
            (
                "[[route]]\nanswer = { status = 200 }\nupstream = \"x\"\n",
                "route[0]",
            ),
            ("[[route]]\n", "route[0]"),
            (
                "[[route]]\npath_prefix = \"api\"\nanswer = { status = 200 }\n",
                "route[0].path_prefix",
            ),
            (
                "[[route]]\nhost = \"a b\"\nanswer = { status = 200 }\n",
                "route[0].host",
            ),
            (
                &format!("{POOL}[[route]]\nupstream = \"app\"\nhost_rewrite = \"user@app\"\n"),
                "route[0].host_rewrite",
            ),
            (
                "[[route]]\nmethods = [\"FETCH\"]\nanswer = { status = 200 }\n",
                "route[0].methods",
            ),
            ("[[route]]\nanswer = { status = 99 }\n", "route[0].answer.status"),
            (
                "[[route]]\nanswer = { status = 200, headers = { \"Content-Length\" = \"1\" } }\n",
                "route[0].answer.headers.Content-Length",
            ),
            (
                "[[upstream]]\nname = \"a\"\nmembers = [\"10.0.0.1\"]\n",
                "upstream[0].members[0]",
            ),
            (
                "[[upstream]]\nname = \"a\"\nmembers = [\"10.0.0.1:0\"]\n",
                "upstream[0].members[0]",
            ),
            (
                "[[upstream]]\nname = \"a\"\nmembers = [\"10.0.0.1:80\"]\npolicy = \"random\"\n",
                "upstream[0].policy",
            ),
            (
                "[[upstream]]\nname = \"a\"\nmembers = [\"10.0.0.1:80\"]\npolicy = \"hash_header\"\n",
                "upstream[0].hash_header",
            ),
            (&format!("{POOL}{POOL}"), "upstream[1].name"),
            (&format!("{POOL}max_queued = 70000\n"), "upstream[0].max_queued"),
            (
                &format!("{POOL}queue_timeout_ms = 0\n"),
                "upstream[0].queue_timeout_ms",
            ),
            ("[timeouts]\nheader_read_ms = 0\n", "timeouts.header_read_ms"),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 0\nburst = 1\n",
                "route[0].rate_limit.rate",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = -1.5\nburst = 1\n",
                "route[0].rate_limit.rate",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 1e9\nburst = 1\n",
                "route[0].rate_limit.rate",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 10\nburst = 0\n",
                "route[0].rate_limit.burst",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 10\nburst = 5000000000\n",
                "route[0].rate_limit.burst",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 10\nburst = 5\nkey = \"ip\"\n",
                "route[0].rate_limit.key",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 10\nburst = 5\nkey = \"header:\"\n",
                "route[0].rate_limit.key",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 10\nburst = 5\nkey = \"header:X User\"\n",
                "route[0].rate_limit.key",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 10\nburst = 5\nstatus = 503\n",
                "route[0].rate_limit.status",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\n[[route]]\nanswer = { status = 200 }\n[route.rate_limit]\nrate = 10\n",
                "route[1].rate_limit.burst",
            ),
            (
                "[[route]]\nanswer = { status = 200 }\nrate_limit = { burst = 10 }\n",
                "route[0].rate_limit.rate",
            ),
        ];
        for (extra, key) in cases {
            assert_eq!(key_of_error(extra).as_deref(), Some(key), "{extra}");
        }
        assert_eq!(key_of_error(POOL), None);
    }
}
