//! The gateway's decision for one request head: refuse it, answer it directly, or forward it
//! to an upstream pool with the head rewritten for the upstream.
//!
//! [`Gateway::decide`] is what a lane's HTTP stage runs for each request: it frames the head
//! ([`frame_request`]), finds the route ([`RouteTable::find`]) and writes either the whole
//! direct answer or the upstream's request head into the caller's buffer. Bodies are not its
//! business: a forwarded request's body streams from the client's socket to the upstream's, and
//! [`Forward::body`] says how its end is found.
//!
//! Invariants:
//! - Deterministic and allocation-free: the same input, client address and table give the same
//!   verdict; everything is written into the caller's buffer.
//! - Every refusal closes the connection and consumes the whole input (the bytes after a refused
//!   head cannot be trusted to start a request); routed answers keep it open unless the client's
//!   keep-alive rules say not.
//! - A route match that fails only on the method answers 405 with `Allow`; no match at all, 404.
//! - A path with a `.` or `..` segment (also percent-encoded) is refused with 400 before routing:
//!   routes match the path as sent, and the upstream would resolve it outside the matched prefix.
//! - A direct answer waits for its request's body when the body fits the buffered bytes
//!   (`max_buffered`), and consumes it; a larger one is refused with 413 (and invalid chunked
//!   framing with 400), so the gateway never buffers more than it was sized for.
//! - A route with a rate limit ([`ratelimit`](crate::ratelimit)) answers a request over it
//!   with `429 Too Many Requests` and `Retry-After` (whole seconds, at least 1), as a direct
//!   answer: it waits for a body that fits and keeps the connection as the client's keep-alive
//!   rules say; a body that cannot fit gets the 429 with `close`. Only admitted requests count
//!   against the limit, and a request is charged once: a direct route charges it when its body
//!   is complete, a proxied route when it decides to forward it. The time is the caller's
//!   (`now_ns`).
//! - A limit counts by the client's address, or by a header's value (`header:<Name>`: the
//!   first such field, trimmed; a request without it, or with it empty, counts by its client's
//!   address).

use std::{net::IpAddr, sync::Arc};

use crate::{
    direct::{write_direct, write_direct_with, write_error},
    forward::{write_upstream_head, ForwardOptions},
    limits::Limits,
    ratelimit::{retry_after_seconds, LimitKey, RateLimit, RateTable},
    request::{frame_request, starts_with_head, BodyFraming, Refusal, RequestHead},
    routes::{RouteAction, RouteTable},
    upstream::{hash_key, HashKey, Policy, PoolSpec},
};

/// What to do with the bytes a connection has received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The first request's head (or a direct route's body) is not complete; nothing consumed.
    Incomplete,
    /// The first `consumed` bytes are answered by `out[..written]`; close after it if `close`.
    Respond {
        consumed: usize,
        written: usize,
        close: bool,
        status: u16,
        /// Index of the route that answered (for metrics); `None` before routing (a refusal, a
        /// 404 or 405).
        route: Option<usize>,
        /// The answer is the route's rate limit's 429.
        rate_limited: bool,
    },
    /// Forward the request: `out[..written]` is the head to send upstream.
    Forward(Forward),
}

/// A request to forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// Bytes of the client's head (the body, if any, follows them).
    pub head_len: usize,
    /// Bytes of the upstream head written into `out`.
    pub written: usize,
    /// Index of the route (for logs and metrics).
    pub route: usize,
    /// Index of the upstream pool.
    pub pool: usize,
    /// How the request body is delimited.
    pub body: BodyFraming,
    /// The client connection closes after the response.
    pub close: bool,
    pub http10: bool,
    pub is_head: bool,
    /// The client waits for `100 Continue` before its body (the header is not forwarded; the
    /// gateway answers it).
    pub expect_continue: bool,
    /// Safe to send again to another member.
    pub idempotent: bool,
    /// The consistent-hash key of the request, for pools that hash.
    pub hash: Option<u64>,
    /// `Strict-Transport-Security: max-age=N` for the client's response (its route's HSTS, the
    /// request over TLS).
    pub hsts_max_age: Option<u32>,
}

/// Who sent a request: its address, and whether it came over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub https: bool,
}

/// A route's HTTPS policy: plain-HTTP requests redirected to HTTPS (301), and HSTS on its
/// answers over TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpsPolicy {
    pub redirect: bool,
    pub hsts_max_age: Option<u32>,
}

/// Routing and framing for one lane's HTTP stage.
#[derive(Clone, Debug)]
pub struct Gateway {
    routes: RouteTable,
    /// What each pool hashes on (`None`: it does not hash).
    hash_keys: Vec<Option<HashKey>>,
    limits: Limits,
    /// Sent as `Host` to the upstream for an HTTP/1.0 request without one.
    authority: Box<str>,
    /// The most bytes a connection buffers for one request (head and body).
    max_buffered: usize,
    /// Where rate limits count (`None` when no route has one).
    rate_table: Option<Arc<RateTable>>,
    /// Each route's identity in the rate table: a hash of its name and of how many routes
    /// before it have that name, so a route keeps its budgets across a reload that keeps it.
    scopes: Vec<u64>,
    /// The HTTPS listener's port (`None`: no HTTPS, no redirects) and each route's policy.
    https_port: Option<u16>,
    https: Vec<HttpsPolicy>,
}

/// Entries of the table a gateway makes for itself when a route has a rate limit and it is not
/// given one to share ([`Gateway::with_rate_table`]).
const PRIVATE_RATE_ENTRIES: usize = 4096;

impl Gateway {
    /// A gateway routing with `routes` to `pools` under `limits`; `authority` is the gateway's
    /// own `host:port`; `max_buffered` the bytes a connection's buffer holds. If a route has a
    /// rate limit, the gateway counts it in a small table of its own until given the table the
    /// lanes share ([`Gateway::with_rate_table`]).
    pub fn new(
        routes: &RouteTable,
        pools: &[PoolSpec],
        limits: Limits,
        authority: &str,
        max_buffered: usize,
    ) -> Gateway {
        Gateway {
            routes: routes.clone(),
            hash_keys: pools
                .iter()
                .map(|p| match &p.policy {
                    Policy::ConsistentHash { key } => Some(key.clone()),
                    _ => None,
                })
                .collect(),
            limits,
            authority: authority.into(),
            max_buffered,
            rate_table: routes
                .routes()
                .iter()
                .any(|r| r.rate_limit.is_some())
                .then(|| Arc::new(RateTable::new(PRIVATE_RATE_ENTRIES))),
            scopes: routes
                .routes()
                .iter()
                .enumerate()
                .map(|(i, route)| {
                    let same_name = routes.routes()[..i]
                        .iter()
                        .filter(|r| r.name == route.name)
                        .count();
                    hash_key(route.name.as_bytes()).wrapping_add(same_name as u64)
                })
                .collect(),
            https_port: None,
            https: Vec::new(),
        }
    }

    /// The same gateway counting its rate limits in `table` (the one every lane shares).
    pub fn with_rate_table(mut self, table: Arc<RateTable>) -> Gateway {
        self.rate_table = Some(table);
        self
    }

    /// Decides what to do with the first request in `input` from `client` at `now_ns` (a
    /// monotonic clock in nanoseconds, the same for every gateway sharing a rate table; only
    /// rate limits read it); writes the answer or the upstream head into `out` (at least
    /// [`MIN_RESPONSE_BUFFER`](crate::MIN_RESPONSE_BUFFER) bytes, and as large as the largest
    /// head plus 1 KiB for a forward).
    pub fn decide(&self, input: &[u8], client: IpAddr, now_ns: u64, out: &mut [u8]) -> Verdict {
        self.decide_from(
            input,
            Client {
                ip: client,
                https: false,
            },
            now_ns,
            out,
        )
    }

    /// Sets the HTTPS listener's port and each route's HTTPS policy (by route index).
    pub fn with_https(mut self, port: u16, policies: Vec<HttpsPolicy>) -> Gateway {
        self.https_port = Some(port);
        self.https = policies;
        self
    }

    /// [`Gateway::decide`] for a request from `from`, which may have come over TLS: a route with
    /// `redirect` answers plain HTTP with a 301 to the same host and target on HTTPS, and one
    /// with HSTS adds it to its answers over TLS.
    pub fn decide_from(&self, input: &[u8], from: Client, now_ns: u64, out: &mut [u8]) -> Verdict {
        let client = from.ip;
        let head = match frame_request(input, &self.limits) {
            Ok(None) => return Verdict::Incomplete,
            Ok(Some(head)) => head,
            Err(Refusal(status)) => return refuse(status, input, out),
        };
        if has_dot_segment(head.path) {
            // Routes match the path as sent; a `..` could climb out of the prefix that chose the
            // route once the upstream resolves it.
            return refuse(400, input, out);
        }
        let Some((index, route)) = self.routes.find(head.host, head.method, head.path) else {
            return self.unrouted(&head, input, out);
        };
        let policy = self.https.get(index).copied().unwrap_or_default();
        if policy.redirect && !from.https {
            if let Some(port) = self.https_port {
                return self.redirect_to_https(&head, input, port, index, out);
            }
        }
        let hsts_max_age = policy.hsts_max_age.filter(|_| from.https);
        match &route.action {
            RouteAction::Direct(answer) => {
                let consumed = match self.direct_extent(&head, input) {
                    Ok(Some(consumed)) => consumed,
                    Ok(None) => return Verdict::Incomplete,
                    Err(Refusal(status)) => return refuse(status, input, out),
                };
                let close = !head.keep_alive;
                if let Some(wait) =
                    self.over_limit(index, route.rate_limit.as_ref(), &head, input, client, now_ns)
                {
                    return too_many(&head, consumed, close, wait, index, out);
                }
                let mut hsts = [0u8; 40];
                let written = write_direct_with(
                    answer.status,
                    &answer.headers,
                    hsts_max_age.map(|age| ("Strict-Transport-Security", hsts_value(age, &mut hsts))),
                    &answer.body,
                    head.is_head,
                    connection(&head, close),
                    out,
                )
                .expect("direct answers are validated to fit");
                Verdict::Respond {
                    consumed,
                    written,
                    close,
                    status: answer.status,
                    route: Some(index),
                    rate_limited: false,
                }
            }
            RouteAction::Proxy { pool, host_rewrite } => {
                if let Some(wait) =
                    self.over_limit(index, route.rate_limit.as_ref(), &head, input, client, now_ns)
                {
                    // Not charged: the request may still be admitted once its body is in.
                    return match self.direct_extent(&head, input) {
                        Ok(Some(consumed)) => too_many(&head, consumed, !head.keep_alive, wait, index, out),
                        Ok(None) => Verdict::Incomplete,
                        Err(_) => too_many(&head, input.len(), true, wait, index, out),
                    };
                }
                let options = ForwardOptions {
                    client_ip: client,
                    host_rewrite: host_rewrite.as_deref(),
                    upstream_authority: &self.authority,
                    strip_expect: true,
                    https: from.https,
                };
                let Some(written) = write_upstream_head(&head, input, &options, out) else {
                    // The rewritten head does not fit: as if the client's head were too large.
                    return refuse(431, input, out);
                };
                let hash = match self.hash_keys.get(*pool).and_then(Option::as_ref) {
                    Some(HashKey::ClientIp) => Some(match client {
                        IpAddr::V4(ip) => hash_key(&ip.octets()),
                        IpAddr::V6(ip) => hash_key(&ip.octets()),
                    }),
                    Some(HashKey::Header(name)) => header_value(&input[..head.head_len], name).map(hash_key),
                    None => None,
                };
                Verdict::Forward(Forward {
                    head_len: head.head_len,
                    written,
                    route: index,
                    pool: *pool,
                    body: head.body,
                    close: !head.keep_alive,
                    http10: head.http10,
                    is_head: head.is_head,
                    expect_continue: head.expect_continue,
                    idempotent: head.idempotent,
                    hash,
                    hsts_max_age,
                })
            }
        }
    }

    /// A 301 to `https://host[:port]target` for a plain-HTTP request on a route that redirects
    /// (the host without its port, from `Host`, or the gateway's own address for an HTTP/1.0
    /// request without one).
    fn redirect_to_https(
        &self,
        head: &RequestHead<'_>,
        input: &[u8],
        port: u16,
        route: usize,
        out: &mut [u8],
    ) -> Verdict {
        let consumed = match self.direct_extent(head, input) {
            Ok(Some(consumed)) => consumed,
            Ok(None) => return Verdict::Incomplete,
            Err(Refusal(status)) => return refuse(status, input, out),
        };
        let host = head
            .host
            .filter(|host| !host.is_empty())
            .and_then(|host| std::str::from_utf8(host).ok())
            .unwrap_or(&self.authority);
        // `host:port`, `[v6]:port` or a bare host: the port goes.
        let host = match host.rfind(':') {
            Some(colon) if !host[colon..].contains(']') => &host[..colon],
            _ => host,
        };
        let query = head.target.find('?').map_or("", |at| &head.target[at..]);
        let mut location = [0u8; 4096];
        let mut c = crate::writer::Cursor::new(&mut location);
        c.put(b"https://").put(host.as_bytes());
        if port != 443 {
            c.put(b":").put_decimal(usize::from(port));
        }
        c.put(head.path.as_bytes()).put(query.as_bytes());
        let Some(len) = c.finish() else {
            return refuse(414, input, out);
        };
        let location = std::str::from_utf8(&location[..len]).unwrap_or("https:///");
        let close = !head.keep_alive;
        let no_headers: [(&str, &str); 0] = [];
        match write_direct_with(
            301,
            &no_headers,
            Some(("Location", location)),
            b"",
            head.is_head,
            connection(head, close),
            out,
        ) {
            Some(written) => Verdict::Respond {
                consumed,
                written,
                close,
                status: 301,
                route: Some(route),
                rate_limited: false,
            },
            None => refuse(400, input, out),
        }
    }

    /// No route took the request: 405 if one would have without its method set, else 404.
    fn unrouted(&self, head: &RequestHead<'_>, input: &[u8], out: &mut [u8]) -> Verdict {
        let consumed = match self.direct_extent(head, input) {
            Ok(Some(consumed)) => consumed,
            Ok(None) => return Verdict::Incomplete,
            Err(Refusal(status)) => return refuse(status, input, out),
        };
        let close = !head.keep_alive;
        let allowed = self.routes.routes().iter().find(|r| {
            r.methods.is_some() && r.host.matches(head.host) && path_matches(&r.path_prefix, head.path)
        });
        let (status, allow) = match allowed.and_then(|r| r.methods) {
            Some(methods) => (405, Some(methods)),
            None => (404, None),
        };
        let mut allow_value = [0u8; 96];
        let mut allow_len = 0;
        if let Some(methods) = allow {
            for (i, method) in methods.iter().enumerate() {
                let sep: &[u8] = if i == 0 { b"" } else { b", " };
                for part in [sep, method.as_bytes()] {
                    let end = allow_len + part.len();
                    if end <= allow_value.len() {
                        allow_value[allow_len..end].copy_from_slice(part);
                        allow_len = end;
                    }
                }
            }
        }
        let allow_text = std::str::from_utf8(&allow_value[..allow_len]).unwrap_or("");
        let with_allow = [("Content-Type", "text/plain"), ("Allow", allow_text)];
        let headers = if allow.is_some() {
            &with_allow[..]
        } else {
            &with_allow[..1]
        };
        let body: &[u8] = if status == 405 {
            b"method not allowed\n"
        } else {
            b"not found\n"
        };
        let written = write_direct(status, headers, body, head.is_head, connection(head, close), out)
            .expect("fits MIN_RESPONSE_BUFFER");
        Verdict::Respond {
            consumed,
            written,
            close,
            status,
            route: None,
            rate_limited: false,
        }
    }

    /// Whether the request goes over route `index`'s `limit` at `now`: the nanoseconds until it
    /// would not, or `None` (admitted and charged, or no limit).
    fn over_limit(
        &self,
        index: usize,
        limit: Option<&RateLimit>,
        head: &RequestHead<'_>,
        input: &[u8],
        client: IpAddr,
        now: u64,
    ) -> Option<u64> {
        let limit = limit?;
        let table = self.rate_table.as_ref()?;
        let scope = self.scopes[index];
        let header = match &limit.key {
            LimitKey::Header(name) => header_value(&input[..head.head_len], name).filter(|v| !v.is_empty()),
            LimitKey::ClientIp => None,
        };
        let entry = match (header, client) {
            (Some(value), _) => table.entry(scope, 1, value),
            (None, IpAddr::V4(ip)) => table.entry(scope, 0, &ip.octets()),
            (None, IpAddr::V6(ip)) => table.entry(scope, 0, &ip.octets()),
        };
        table.admit(entry, &limit.gcra, now).err()
    }

    /// The bytes a directly answered request spans (head and body), or `None` while a body
    /// that fits the buffer is still arriving. A body that cannot fit is refused with 413, and
    /// invalid chunked framing with its status (400 or 413).
    fn direct_extent(&self, head: &RequestHead<'_>, input: &[u8]) -> Result<Option<usize>, Refusal> {
        let end = match head.body {
            BodyFraming::None => head.head_len,
            BodyFraming::Length(n) => head
                .head_len
                .saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
            BodyFraming::Chunked => {
                let mut decoder = crate::chunked::ChunkedDecoder::new(self.limits.max_body as u64);
                let feed = decoder
                    .feed(&input[head.head_len..])
                    .map_err(|error| Refusal(error.status()))?;
                if feed.done {
                    head.head_len + feed.consumed
                } else if input.len() - head.head_len > self.limits.max_body {
                    // The framing alone may not take more than `max_body` bytes either.
                    return Err(Refusal(413));
                } else {
                    // Not there yet: at least one byte more than the input holds.
                    input.len() + 1
                }
            }
        };
        if end <= input.len() {
            Ok(Some(end))
        } else if end > self.max_buffered {
            Err(Refusal(413))
        } else {
            Ok(None)
        }
    }
}

/// Writes the request of an active health check, `GET path` to `member` with
/// `Connection: close`, into `out`; returns its length (0 if `out` is too small).
pub fn health_request(path: &str, member: std::net::SocketAddr, out: &mut [u8]) -> usize {
    let mut cursor = crate::writer::Cursor::new(out);
    cursor
        .put(b"GET ")
        .put(path.as_bytes())
        .put(b" HTTP/1.1\r\nHost: ")
        .put_authority(member)
        .put(b"\r\nUser-Agent: xgate-health\r\nConnection: close\r\n\r\n");
    cursor.finish().unwrap_or(0)
}

/// A refusal: `status`, close, the whole input consumed.
fn refuse(status: u16, input: &[u8], out: &mut [u8]) -> Verdict {
    let written = write_error(status, starts_with_head(input), true, out);
    Verdict::Respond {
        consumed: input.len(),
        written,
        close: true,
        status,
        route: None,
        rate_limited: false,
    }
}

/// A rate limit's answer to a request of route `route`: 429 with `Retry-After` (the seconds
/// until `wait_ns` has passed, rounded up, at least 1), the first `consumed` bytes consumed.
fn too_many(
    head: &RequestHead<'_>,
    consumed: usize,
    close: bool,
    wait_ns: u64,
    route: usize,
    out: &mut [u8],
) -> Verdict {
    let mut digits = [0u8; 20];
    let seconds = decimal(retry_after_seconds(wait_ns), &mut digits);
    let headers = [("Content-Type", "text/plain"), ("Retry-After", seconds)];
    let written = write_direct(
        429,
        &headers,
        b"Too Many Requests\n",
        head.is_head,
        connection(head, close),
        out,
    )
    .expect("fits MIN_RESPONSE_BUFFER");
    Verdict::Respond {
        consumed,
        written,
        close,
        status: 429,
        route: Some(route),
        rate_limited: true,
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).expect("ASCII digits")
}

/// The `Connection` field of a direct answer.
/// `max-age=N` written into `buf` (large enough for any u32).
fn hsts_value(max_age: u32, buf: &mut [u8; 40]) -> &str {
    let mut c = crate::writer::Cursor::new(buf.as_mut_slice());
    c.put(b"max-age=").put_decimal(max_age as usize);
    let len = c.finish().unwrap_or(0);
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

fn connection(head: &RequestHead<'_>, close: bool) -> Option<&'static str> {
    match (close, head.http10) {
        (true, _) => Some("close"),
        (false, true) => Some("keep-alive"),
        (false, false) => None,
    }
}

/// Whether `path` is under `prefix` on whole segments (as routes match).
fn path_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

/// Whether `path` has a `.` or `..` segment, also percent-encoded (`%2e`, any case): a path the
/// upstream would resolve to somewhere else than the prefix the route matched.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let bytes = segment.as_bytes();
        let mut dots = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'.' {
                i += 1;
            } else if bytes[i] == b'%'
                && bytes.get(i + 1) == Some(&b'2')
                && matches!(bytes.get(i + 2), Some(b'e' | b'E'))
            {
                i += 3;
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// The value of the first header field `name` (lowercase) in `head`, trimmed.
fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        let value = &line[colon + 1..];
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        let start = value
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(value.len());
        let end = value
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |e| e + 1);
        Some(&value[start..end])
    })
}

#[cfg(test)]
mod tests;
