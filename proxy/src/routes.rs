//! The route table: which route a request belongs to, from its `Host`, method and path.
//!
//! A [`RouteTable`] holds [`Route`]s in configuration order; [`RouteTable::find`] returns the
//! first route whose host pattern, method set and path prefix all match. A route either sends
//! the request to an upstream pool ([`RouteAction::Proxy`]) or answers it from configuration
//! ([`RouteAction::Direct`]).
//!
//! Matching rules:
//! - host: the raw `Host` value loses surrounding whitespace, a `:port` suffix and one trailing
//!   `.`, then compares ASCII case-insensitively; a request without `Host` matches only
//!   [`HostMatch::Any`];
//! - method: case-sensitive, as methods are; a route without a method set takes every method;
//! - path: the prefix must match at a segment boundary: `/api` matches `/api`, `/api/x` and
//!   `/api?q`, not `/apix`; a prefix ending in `/` matches everything under it; `/` matches all.
//!
//! Invariants:
//! - [`HostMatch::Exact`] and [`HostMatch::Suffix`] patterns are lowercase and built by
//!   [`HostMatch::parse`], so matching never needs to fold the pattern's case;
//! - a request's host is valid `uri-host [ ":" port ]` by the time it is matched (framing
//!   refuses others);
//! - [`RouteTable::find`] allocates nothing and never reorders routes: the index it returns is
//!   the route's position in the configuration.

use crate::ratelimit::RateLimit;

/// Which `Host` values a route takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Every request, with or without a `Host`.
    Any,
    /// One host name, lowercase, without a trailing dot.
    Exact(Box<str>),
    /// Every host strictly under a domain: from `*.example.com`, stored as `.example.com`
    /// (lowercase, leading dot kept); matches `a.example.com` and `a.b.example.com`, not
    /// `example.com`.
    Suffix(Box<str>),
}

impl HostMatch {
    /// Parses a configured host pattern: `example.com` or `*.example.com`, case-insensitive, one
    /// trailing dot ignored. Rejects an empty pattern, whitespace, a port, empty labels, a `*`
    /// anywhere but a leading `*.`, and any character outside letters, digits, `-`, `_`, `.`.
    pub fn parse(pattern: &str) -> Result<HostMatch, String> {
        let (wildcard, name) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Err(format!("host pattern {pattern:?} is empty"));
        }
        if let Some(bad) = name
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(match bad {
                '*' => format!("host pattern {pattern:?}: `*` is only allowed as a leading `*.`"),
                c if c.is_whitespace() => format!("host pattern {pattern:?} contains whitespace"),
                ':' => format!("host pattern {pattern:?} must not carry a port"),
                c => format!("host pattern {pattern:?} contains {c:?}"),
            });
        }
        if name.split('.').any(str::is_empty) {
            return Err(format!("host pattern {pattern:?} has an empty label"));
        }
        let name = name.to_ascii_lowercase();
        Ok(if wildcard {
            HostMatch::Suffix(format!(".{name}").into_boxed_str())
        } else {
            HostMatch::Exact(name.into_boxed_str())
        })
    }

    /// Whether this pattern takes a request's raw `Host` value (`None` when it has none).
    pub fn matches(&self, host: Option<&[u8]>) -> bool {
        let host = match (self, host) {
            (HostMatch::Any, _) => return true,
            (_, None) => return false,
            (_, Some(raw)) => normalize_host(raw),
        };
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
            HostMatch::Suffix(suffix) => {
                let suffix = suffix.as_bytes();
                host.len() > suffix.len() && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// The host name inside a raw `Host` value: surrounding whitespace, a `:port` suffix (digits
/// after the last `:`, so `[::1]:80` keeps `[::1]`) and one trailing `.` removed.
fn normalize_host(raw: &[u8]) -> &[u8] {
    let mut host = raw.trim_ascii();
    if let Some(colon) = host.iter().rposition(|&b| b == b':') {
        if host[colon + 1..].iter().all(u8::is_ascii_digit) {
            host = &host[..colon];
        }
    }
    host.strip_suffix(b".").unwrap_or(host)
}

/// The methods a [`MethodSet`] knows, in bit order.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// A set of the standard methods (`GET HEAD POST PUT DELETE PATCH OPTIONS CONNECT TRACE`), one
/// bit each. Requests with any other method never match a route that has a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MethodSet(u16);

impl MethodSet {
    /// The set of configured method names, case-insensitive. `GET` brings `HEAD` with it (a
    /// server answering `GET` must answer `HEAD` the same way). Rejects an empty list and names
    /// the first unknown method.
    pub fn parse(names: &[impl AsRef<str>]) -> Result<MethodSet, String> {
        if names.is_empty() {
            return Err("methods: the list is empty (leave it out to take every method)".into());
        }
        let mut set = MethodSet(0);
        for name in names {
            let name = name.as_ref();
            let bit = KNOWN_METHODS
                .iter()
                .position(|known| known.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("methods: unknown method {name:?}"))?;
            set.0 |= 1 << bit;
        }
        if set.contains("GET") {
            set.0 |= 1 << 1;
        }
        Ok(set)
    }

    /// Whether `method` (case-sensitive, as sent on the wire) is in the set.
    pub fn contains(&self, method: &str) -> bool {
        KNOWN_METHODS
            .iter()
            .position(|&known| known == method)
            .is_some_and(|bit| self.0 & (1 << bit) != 0)
    }

    /// The methods in the set, in a fixed order (for an `Allow` header).
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        KNOWN_METHODS
            .iter()
            .enumerate()
            .filter(|&(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, &name)| name)
    }
}

/// A response given from configuration, without an upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectAnswer {
    /// Status code, in `200..=599`.
    pub status: u16,
    /// Extra header fields, in order; framing fields are the responder's, not these.
    pub headers: Vec<(Box<str>, Box<str>)>,
    /// Body bytes (not sent to `HEAD`).
    pub body: Box<[u8]>,
}

impl DirectAnswer {
    /// Checks the answer can be sent as configured: status in `200..=599`, no body with 204 or
    /// 304, header names are tokens, values hold no CR, LF or NUL, and no `Content-Length`,
    /// `Transfer-Encoding` or `Connection` field (the responder owns framing).
    pub fn validate(&self) -> Result<(), String> {
        if !(200..=599).contains(&self.status) {
            return Err(format!("status: {} is not in 200..=599", self.status));
        }
        if matches!(self.status, 204 | 304) && !self.body.is_empty() {
            return Err(format!("body: status {} must not carry a body", self.status));
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!("headers[{i}]: name {name:?} is not a valid field name"));
            }
            if ["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|framing| name.eq_ignore_ascii_case(framing))
            {
                return Err(format!("headers[{i}]: {name} is set by the responder"));
            }
            if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(format!("headers[{i}]: value of {name} contains CR, LF or NUL"));
            }
        }
        Ok(())
    }
}

/// Whether `b` may appear in an HTTP token (a field name).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a matched route does with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to upstream pool number `pool`, replacing the `Host` sent upstream with
    /// `host_rewrite` when set.
    Proxy {
        /// Index of the upstream pool.
        pool: usize,
        /// `Host` value sent upstream instead of the client's.
        host_rewrite: Option<Box<str>>,
    },
    /// Answer from configuration.
    Direct(DirectAnswer),
}

/// One configured route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Name for logs and metrics.
    pub name: Box<str>,
    /// Hosts the route takes.
    pub host: HostMatch,
    /// Path prefix the route takes, starting with `/`; matched at a segment boundary.
    pub path_prefix: Box<str>,
    /// Methods the route takes; `None` takes every method.
    pub methods: Option<MethodSet>,
    /// What to do with a matched request.
    pub action: RouteAction,
    /// Requests beyond this rate get 429 (none: no limit).
    pub rate_limit: Option<RateLimit>,
}

impl Route {
    /// Checks the route against a configuration with `pool_count` upstream pools: non-empty
    /// name, a path prefix starting with `/`, an existing pool, a valid direct answer. Errors
    /// name the offending field.
    pub fn validate(&self, pool_count: usize) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("name: must not be empty".into());
        }
        if !self.path_prefix.starts_with('/') {
            return Err(format!("path_prefix: {:?} must start with '/'", self.path_prefix));
        }
        if self
            .path_prefix
            .bytes()
            .any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace())
        {
            return Err(format!(
                "path_prefix: {:?} must not contain '?', '#' or whitespace",
                self.path_prefix
            ));
        }
        match &self.action {
            RouteAction::Proxy { pool, .. } if *pool >= pool_count => Err(format!(
                "action.pool: {pool} is out of range ({pool_count} pools)"
            )),
            RouteAction::Proxy {
                host_rewrite: Some(host),
                ..
            } if host.is_empty()
                || host
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) =>
            {
                Err(format!("action.host_rewrite: {host:?} is not a valid Host value"))
            }
            RouteAction::Proxy { .. } => Ok(()),
            RouteAction::Direct(answer) => answer.validate().map_err(|e| format!("action.{e}")),
        }
    }

    /// Whether this route takes a request with this raw `Host`, method and path (no query).
    pub fn matches(&self, host: Option<&[u8]>, method: &str, path: &str) -> bool {
        self.methods.is_none_or(|set| set.contains(method))
            && path_has_prefix(path, &self.path_prefix)
            && self.host.matches(host)
    }
}

/// Whether `path` starts with `prefix` at a segment boundary.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.as_bytes().strip_prefix(prefix.as_bytes()) {
        None => false,
        Some(rest) => prefix.ends_with('/') || matches!(rest.first(), None | Some(b'/' | b'?')),
    }
}

/// Routes in configuration order; the first match wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// A table of `routes`, matched in the given order.
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable { routes }
    }

    /// The first route (configuration order) taking the request, with its index. `host` is the
    /// raw `Host` value (`None` when absent; may carry `:port`, any case, a trailing dot);
    /// `path` is the path without its query. Allocation-free.
    pub fn find(&self, host: Option<&[u8]>, method: &str, path: &str) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, route)| route.matches(host, method, path))
    }

    /// All routes, in configuration order.
    /// The table of a gateway configured with no routes: `GET`/`HEAD /healthz` answers
    /// `200 ok` (text/plain); any other method there is 405, any other path 404.
    pub fn health_only() -> RouteTable {
        RouteTable::new(vec![Route {
            name: "healthz".into(),
            host: HostMatch::Any,
            path_prefix: "/healthz".into(),
            methods: Some(MethodSet::parse(&["GET"]).expect("a known method")),
            action: RouteAction::Direct(DirectAnswer {
                status: 200,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: b"ok\n".as_slice().into(),
            }),
            rate_limit: None,
        }])
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests;
