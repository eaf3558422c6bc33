//! The walking skeleton's responder: frames the first HTTP/1.1 request in a connection's bytes,
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
pub const MIN_RESPONSE_BUFFER: usize = 512;

/// What to do with the bytes a connection has received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The first request is not complete yet; nothing was consumed or written.
    Incomplete,
    /// The first `consumed` input bytes were one request, answered by `out[..written]`; the
    /// connection closes after the response when `close` is set.
    Respond {
        consumed: usize,
        written: usize,
        close: bool,
        status: u16,
    },
}

/// Answers requests from the fixed route table under `limits`.
#[derive(Clone, Debug)]
pub struct Responder {
    limits: Limits,
}

/// A refusal: status and reason phrase; the connection always closes.
struct Refusal(u16);

impl Responder {
    pub fn new(limits: Limits) -> Responder {
        let max_headers = limits.max_headers.clamp(1, MAX_HEADERS);
        Responder {
            limits: Limits {
                max_headers,
                ..limits
            },
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Handles the first request at the start of `input`. `out` must hold at least
    /// [`MIN_RESPONSE_BUFFER`] bytes.
    pub fn handle(&self, input: &[u8], out: &mut [u8]) -> Outcome {
        debug_assert!(
            out.len() >= MIN_RESPONSE_BUFFER,
            "response buffer below MIN_RESPONSE_BUFFER"
        );
        match self.frame(input) {
            Ok(None) => Outcome::Incomplete,
            Ok(Some(request)) => {
                let (status, allow, body): (u16, bool, &[u8]) = route(request.method, request.path);
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
                let body = reason(status).as_bytes();
                let written = write_response(out, status, Some("close"), false, Body::Text(body));
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
        let line_end = input
            .iter()
            .take(limits.max_request_line + 2)
            .position(|&b| b == b'\n');
        match line_end {
            None if input.len() > limits.max_request_line => return Err(Refusal(414)),
            Some(end) if end > limits.max_request_line => return Err(Refusal(414)),
            _ => {}
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
        let path = request.path.ok_or(Refusal(400))?;
        if !(path.starts_with('/') || path == "*") {
            return Err(Refusal(400));
        }
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
    path: &'a str,
    /// Head plus body bytes.
    length: usize,
    keep_alive: bool,
    http10: bool,
}

/// The fixed route table: (status, send `Allow`, body).
fn route(method: &str, target: &str) -> (u16, bool, &'static [u8]) {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (path, method) {
        ("/healthz", "GET" | "HEAD") => (200, false, b"ok\n"),
        ("/healthz", _) => (405, true, b"method not allowed\n"),
        _ => (404, false, b"not found\n"),
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

enum Body<'a> {
    Bytes(&'a [u8]),
    /// Error bodies: the reason phrase and a newline.
    Text(&'a [u8]),
    /// A HEAD response: the length the GET body would have, no bytes.
    HeadOf(usize),
}

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

fn parse_content_length(value: &[u8]) -> Option<usize> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

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
