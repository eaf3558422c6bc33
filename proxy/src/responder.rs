//! xgate's fixed responder: the [`Gateway`] with the health-only route table
//! ([`RouteTable::health_only`]) and no upstreams, for callers that only answer (the micro
//! benchmarks, and the default of a gateway configured without routes).
//!
//! Routes: `GET`/`HEAD /healthz` → 200 `ok\n`; `/healthz` with any other method → 405 with
//! `Allow: GET, HEAD`; any other path → 404. The query string never affects routing, and an
//! absolute-form target (`http://host/healthz`) routes on its path.
//!
//! Framing: the head is framed by [`frame_request`](crate::request::frame_request) (the rules are
//! listed in [`request`](crate::request): 400 / 413 / 414 / 417 / 431 refusals). It then waits
//! for the whole body before answering, and consumes it with the request (every route ignores it):
//! - a `Content-Length` body must be entirely in the input;
//! - a chunked body (`Transfer-Encoding` ending in `chunked`) is walked by a
//!   [`ChunkedDecoder`](crate::chunked::ChunkedDecoder)
//!   and must be entirely in the input too, trailers and final CRLF included; invalid chunked
//!   framing is refused (400, or 413 when its payload passes `max_body`), and so is a chunked body
//!   still incomplete after `max_body` bytes of framing (413), which keeps the bytes a caller must
//!   buffer within `max_header_bytes + max_body`. Each call re-walks the body from its start.
//!
//! Invariants:
//! - every refusal (any status ≥ 400 decided by framing) closes the connection and consumes the
//!   whole input, since the bytes after a refused head cannot be trusted to start a request;
//!   routed answers (200/404/405) keep the connection open unless the keep-alive rules say not;
//! - a response to `HEAD` never carries a body, refusals included;
//! - every response is `HTTP/1.1`, carries `Server`, `Content-Type` and `Content-Length`, carries
//!   `Connection: close` when `close` is set and `Connection: keep-alive` when an HTTP/1.0 client
//!   asked to keep the connection, and fits in [`MIN_RESPONSE_BUFFER`] bytes.

use std::net::Ipv4Addr;

use crate::{
    gateway::{Gateway, Verdict},
    limits::{Limits, MAX_HEADERS},
    routes::RouteTable,
};

/// Smallest response buffer [`Responder::handle`] accepts; every response it writes fits.
/// A smaller buffer is a programming error in the caller (checked by `debug_assert!`).
pub const MIN_RESPONSE_BUFFER: usize = 512;

/// What to do with the bytes a connection has received: the gateway's [`Verdict`], of which the
/// responder only ever gives `Incomplete` and `Respond` (it forwards nothing).
pub type Outcome = Verdict;

/// Answers requests from the health-only route table under `limits`.
#[derive(Clone, Debug)]
pub struct Responder {
    limits: Limits,
    gateway: Gateway,
}

impl Responder {
    /// A responder enforcing `limits`; `max_headers` is clamped to `1..=MAX_HEADERS`.
    pub fn new(limits: Limits) -> Responder {
        let limits = Limits {
            max_headers: limits.max_headers.clamp(1, MAX_HEADERS),
            ..limits
        };
        let buffered = limits.max_header_bytes.saturating_add(limits.max_body);
        Responder {
            limits,
            gateway: Gateway::new(&RouteTable::health_only(), &[], limits, "", buffered),
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Handles the first request at the start of `input` (the bytes received on one connection
    /// and not yet consumed: possibly several pipelined requests, possibly a partial one) and
    /// writes at most one full response into `out`, which must hold at least
    /// [`MIN_RESPONSE_BUFFER`] bytes. Deterministic: the same input always gives the same outcome.
    pub fn handle(&self, input: &[u8], out: &mut [u8]) -> Outcome {
        debug_assert!(
            out.len() >= MIN_RESPONSE_BUFFER,
            "response buffer below MIN_RESPONSE_BUFFER"
        );
        self.gateway.decide(input, Ipv4Addr::UNSPECIFIED.into(), 0, out)
    }
}

#[cfg(test)]
mod tests;
