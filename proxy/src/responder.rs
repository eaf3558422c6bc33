//! xgate's fixed responder: frames the first HTTP/1.1 request in a connection's bytes (head and
//! body) and answers from a fixed route table.
//!
//! Routes: `GET`/`HEAD /healthz` → 200 `ok\n`; `/healthz` with any other method → 405 with
//! `Allow: GET, HEAD`; any other path → 404. The query string never affects routing, and an
//! absolute-form target (`http://host/healthz`) routes on its path.
//!
//! Framing: the head is framed by [`frame_request`] (the rules are listed in
//! [`request`](crate::request): 400 / 413 / 414 / 417 / 431 refusals). The responder then waits
//! for the whole body before answering, and consumes it with the request (every route ignores it):
//! - a `Content-Length` body must be entirely in the input;
//! - a chunked body (`Transfer-Encoding` ending in `chunked`) is walked by a [`ChunkedDecoder`]
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

use crate::{
    chunked::{ChunkedDecoder, Feed},
    direct::{reason, write_error},
    limits::{Limits, MAX_HEADERS},
    request::{frame_request, starts_with_head, BodyFraming, Refusal, RequestHead},
    writer::Cursor,
};

/// Smallest response buffer [`Responder::handle`] accepts; every response it writes fits.
/// A smaller buffer is a programming error in the caller (checked by `debug_assert!`).
pub const MIN_RESPONSE_BUFFER: usize = 512;

/// What to do with the bytes a connection has received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The first request is not complete yet (head or body); nothing was consumed or written.
    /// Never returned once the input holds more than `max_header_bytes` without a complete head
    /// (that is a 431 refusal instead), so a caller buffering `max_header_bytes + max_body`
    /// bytes per connection always makes progress.
    Incomplete,
    /// The first `consumed` input bytes were one request, answered by `out[..written]`; the
    /// connection closes after the response when `close` is set.
    Respond {
        /// Input bytes of this request (head and body); never more than the input's length.
        consumed: usize,
        /// Response bytes at the start of `out`; never more than `out.len()`.
        written: usize,
        /// The connection must close once the response is sent.
        close: bool,
        /// The response's status code.
        status: u16,
    },
}

/// Answers requests from the fixed route table under `limits`.
#[derive(Clone, Debug)]
pub struct Responder {
    limits: Limits,
}

impl Responder {
    /// A responder enforcing `limits`; `max_headers` is clamped to `1..=MAX_HEADERS`.
    pub fn new(limits: Limits) -> Responder {
        let max_headers = limits.max_headers.clamp(1, MAX_HEADERS);
        Responder {
            limits: Limits {
                max_headers,
                ..limits
            },
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
    ///
    /// # Panics
    ///
    /// If `out` is too small for the response, which cannot happen when it holds at least
    /// [`MIN_RESPONSE_BUFFER`] bytes.
    pub fn handle(&self, input: &[u8], out: &mut [u8]) -> Outcome {
        debug_assert!(
            out.len() >= MIN_RESPONSE_BUFFER,
            "response buffer below MIN_RESPONSE_BUFFER"
        );
        match self.frame(input) {
            Ok(None) => Outcome::Incomplete,
            Ok(Some((request, consumed))) => {
                let (status, allow, body) = route(request.method, request.path);
                let body = if request.is_head {
                    Body::HeadOf(body.len())
                } else {
                    Body::Bytes(body)
                };
                let connection = match (request.keep_alive, request.http10) {
                    (false, _) => Some("close"),
                    (true, true) => Some("keep-alive"),
                    (true, false) => None,
                };
                let written = write_response(out, status, connection, allow, body);
                Outcome::Respond {
                    consumed,
                    written,
                    close: !request.keep_alive,
                    status,
                }
            }
            Err(Refusal(status)) => {
                let written = write_error(status, starts_with_head(input), true, out);
                // The rest of the input cannot be trusted to start a new request: consume it all.
                Outcome::Respond {
                    consumed: input.len(),
                    written,
                    close: true,
                    status,
                }
            }
        }
    }

    /// Frames the first request with its whole body: the head and the number of input bytes the
    /// request spans, or `None` if the head or body is incomplete.
    fn frame<'a>(&self, input: &'a [u8]) -> Result<Option<(RequestHead<'a>, usize)>, Refusal> {
        let Some(head) = frame_request(input, &self.limits)? else {
            return Ok(None);
        };
        let body = &input[head.head_len..];
        let body_len = match head.body {
            BodyFraming::None => 0,
            // At most `max_body` (a `usize`), checked by the framing.
            BodyFraming::Length(n) => n as usize,
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new(self.limits.max_body as u64);
                match decoder.feed(body) {
                    Ok(Feed { consumed, done: true }) => consumed,
                    // The chunked framing may not take more bytes than `max_body` either.
                    Ok(_) if body.len() > self.limits.max_body => return Err(Refusal(413)),
                    Ok(_) => return Ok(None),
                    Err(error) => return Err(Refusal(error.status())),
                }
            }
        };
        if body.len() < body_len {
            return Ok(None);
        }
        Ok(Some((head, head.head_len + body_len)))
    }
}

/// The fixed route table: (status, send `Allow`, body).
fn route(method: &str, path: &str) -> (u16, bool, &'static [u8]) {
    match (path, method) {
        ("/healthz", "GET" | "HEAD") => (200, false, b"ok\n"),
        ("/healthz", _) => (405, true, b"method not allowed\n"),
        _ => (404, false, b"not found\n"),
    }
}

/// What follows a response's head.
enum Body<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// A HEAD response: the length the GET body would have, no bytes.
    HeadOf(usize),
}

/// Writes a whole response into `out` and returns its length.
fn write_response(
    out: &mut [u8],
    status: u16,
    connection: Option<&str>,
    allow: bool,
    body: Body<'_>,
) -> usize {
    let (length, bytes): (usize, &[u8]) = match body {
        Body::Bytes(b) => (b.len(), b),
        Body::HeadOf(n) => (n, b""),
    };
    let mut cursor = Cursor::new(out);
    cursor
        .put(b"HTTP/1.1 ")
        .put_decimal(status as usize)
        .put(b" ")
        .put(reason(status).as_bytes())
        .put(b"\r\nServer: xgate\r\nContent-Type: text/plain\r\nContent-Length: ")
        .put_decimal(length)
        .put(b"\r\n");
    if let Some(value) = connection {
        cursor.put(b"Connection: ").put(value.as_bytes()).put(b"\r\n");
    }
    if allow {
        cursor.put(b"Allow: GET, HEAD\r\n");
    }
    cursor.put(b"\r\n").put(bytes);
    cursor.finish().expect("responses fit in MIN_RESPONSE_BUFFER")
}

#[cfg(test)]
mod tests;
