//! xgate's fixed responder: frames the first HTTP/1.1 request in a connection's bytes,
//! checks the framing rules the parser leaves to its caller, and answers from a fixed route table.
//!
//! Routes: `GET`/`HEAD /healthz` → 200 `ok\n`; `/healthz` with any other method → 405 with
//! `Allow: GET, HEAD`; any other path → 404. The query string never affects routing, and an
//! absolute-form target (`http://host/healthz`) routes on its path.
//!
//! Framing rules enforced here (httparse checks token syntax, and by default already rejects
//! obs-fold continuation lines and whitespace between a field name and its colon):
//! - every line of the head ends in CRLF (bare LF or bare CR → 400);
//! - the request line is at most `max_request_line` bytes without its CRLF (else 414, decided as
//!   soon as the limit is passed, without waiting for the line to end);
//! - the head is at most `max_header_bytes` and `max_headers` fields (else 431, likewise early);
//! - the version is HTTP/1.0 or HTTP/1.1; HTTP/1.1 needs exactly one `Host`, HTTP/1.0 at most one;
//! - `Content-Length`: digits only, duplicate fields must agree, at most `max_body` (else 400 /
//!   413); the body is consumed with the request and ignored by every route;
//! - `Transfer-Encoding` with `Content-Length` → 400 (a request-smuggling pattern);
//!   `Transfer-Encoding: chunked` alone → 501 (this responder reads no chunked bodies yet); any
//!   other coding, or a repeated field → 400.
//!
//! Invariants:
//! - every refusal (any status ≥ 400 decided by framing) closes the connection and consumes the
//!   whole input, since the bytes after a refused head cannot be trusted to start a request;
//!   routed answers (200/404/405) keep the connection open unless the keep-alive rules say not;
//! - a response to `HEAD` never carries a body, refusals included;
//! - every response is `HTTP/1.1`, carries `Server`, `Content-Type` and `Content-Length`, carries
//!   `Connection: close` when `close` is set and `Connection: keep-alive` when an HTTP/1.0 client
//!   asked to keep the connection, and fits in [`MIN_RESPONSE_BUFFER`] bytes.

use httparse::{Header, Request, Status, EMPTY_HEADER};

use crate::{
    limits::{Limits, MAX_HEADERS},
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

/// A refusal: the status to answer with; the connection always closes.
struct Refusal(u16);

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
            Ok(Some(request)) => {
                let (status, allow, body) = route(request.method, request.path);
                let body = if request.method == "HEAD" {
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
                    consumed: request.length,
                    written,
                    close: !request.keep_alive,
                    status,
                }
            }
            Err(Refusal(status)) => {
                let text = reason(status).as_bytes();
                let body = if skip_empty_lines(input).starts_with(b"HEAD ") {
                    Body::HeadOf(text.len() + 1)
                } else {
                    Body::Text(text)
                };
                let written = write_response(out, status, Some("close"), false, body);
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

    /// Finds the first request's extent and connection semantics, or `None` if incomplete.
    fn frame<'a>(&self, input: &'a [u8]) -> Result<Option<Framed<'a>>, Refusal> {
        let limits = &self.limits;
        // Request line length, checked before parsing so a huge target gets 414, not 431.
        if request_line_too_long(skip_empty_lines(input), limits.max_request_line) {
            return Err(Refusal(414));
        }
        let mut headers = [EMPTY_HEADER; MAX_HEADERS];
        let mut request = Request::new(&mut headers[..limits.max_headers]);
        let head_len = match request.parse(input) {
            Ok(Status::Complete(n)) => n,
            Ok(Status::Partial) => {
                if input.len() > limits.max_header_bytes {
                    return Err(Refusal(431));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(Refusal(431)),
            Err(_) => return Err(Refusal(400)),
        };
        if head_len > limits.max_header_bytes {
            return Err(Refusal(431));
        }
        if !crlf_only(&input[..head_len]) {
            return Err(Refusal(400));
        }
        let method = request.method.ok_or(Refusal(400))?;
        let path = request.path.and_then(route_path).ok_or(Refusal(400))?;
        let http10 = match request.version {
            Some(0) => true,
            Some(1) => false,
            _ => return Err(Refusal(400)),
        };
        let headers: &[Header<'_>] = request.headers;
        let mut hosts = 0;
        let mut content_length: Option<usize> = None;
        let mut transfer_encoding: Option<&[u8]> = None;
        let mut close_token = false;
        let mut keep_alive_token = false;
        for header in headers {
            if header.name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if header.name.eq_ignore_ascii_case("content-length") {
                let value = parse_content_length(header.value).ok_or(Refusal(400))?;
                if content_length.is_some_and(|previous| previous != value) {
                    return Err(Refusal(400));
                }
                content_length = Some(value);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                if transfer_encoding.is_some() {
                    return Err(Refusal(400));
                }
                transfer_encoding = Some(header.value);
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = trim(token);
                    close_token |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        if (!http10 && hosts != 1) || hosts > 1 {
            return Err(Refusal(400));
        }
        if let Some(coding) = transfer_encoding {
            if content_length.is_some() {
                return Err(Refusal(400));
            }
            return Err(Refusal(if trim(coding).eq_ignore_ascii_case(b"chunked") {
                501
            } else {
                400
            }));
        }
        let body = content_length.unwrap_or(0);
        if body > limits.max_body {
            return Err(Refusal(413));
        }
        let length = head_len + body;
        if input.len() < length {
            return Ok(None);
        }
        let keep_alive = if http10 {
            keep_alive_token && !close_token
        } else {
            !close_token
        };
        Ok(Some(Framed {
            method,
            path,
            length,
            keep_alive,
            http10,
        }))
    }
}

/// The first request of an input, framed.
struct Framed<'a> {
    method: &'a str,
    /// The target's path, without query: see [`route_path`].
    path: &'a str,
    /// Head plus body bytes.
    length: usize,
    keep_alive: bool,
    http10: bool,
}

/// The fixed route table: (status, send `Allow`, body).
fn route(method: &str, path: &str) -> (u16, bool, &'static [u8]) {
    match (path, method) {
        ("/healthz", "GET" | "HEAD") => (200, false, b"ok\n"),
        ("/healthz", _) => (405, true, b"method not allowed\n"),
        _ => (404, false, b"not found\n"),
    }
}

/// The path a request target routes on, without its query: origin-form (`/p?q`) as is,
/// absolute-form (`http://host/p?q`, scheme case-insensitive) by its path (`/` if empty), and
/// asterisk-form (`*`) as `*`. `None` for any other form (authority-form has no route here).
fn route_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') || target == "*" {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return None;
        }
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            _ => "/",
        }
    };
    Some(path.split_once('?').map_or(path, |(p, _)| p))
}

/// `input` after the empty lines a server ignores before a request line (httparse skips them too;
/// a bare LF among them is refused later by [`crlf_only`]).
fn skip_empty_lines(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len());
    &input[start..]
}

/// Whether the request line at the start of `line` is already known to exceed `max` bytes
/// (without its CRLF), whether or not it has ended yet.
fn request_line_too_long(line: &[u8], max: usize) -> bool {
    match line.iter().take(max.saturating_add(2)).position(|&b| b == b'\n') {
        Some(end) => end - usize::from(end > 0 && line[end - 1] == b'\r') > max,
        // Unterminated: `max` bytes and a CR may still be a valid line; anything longer is not.
        None => line.get(max).is_some_and(|&b| b != b'\r' || line.len() > max + 1),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "Error",
    }
}

/// What follows a response's head.
enum Body<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// Refusal bodies: the reason phrase and a newline.
    Text(&'a [u8]),
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
        Body::Text(b) => (b.len() + 1, b),
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
    if matches!(body, Body::Text(_)) {
        cursor.put(b"\n");
    }
    cursor.finish().expect("responses fit in MIN_RESPONSE_BUFFER")
}

/// A `Content-Length` value: ASCII digits only (after the optional whitespace around a field
/// value), not overflowing `usize`.
fn parse_content_length(value: &[u8]) -> Option<usize> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

/// `bytes` without leading and trailing ASCII whitespace.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Whether every LF in `head` follows a CR and every CR precedes an LF.
fn crlf_only(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && head[i - 1] == b'\r',
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

#[cfg(test)]
mod tests;
