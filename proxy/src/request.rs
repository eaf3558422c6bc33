//! Request framing: finds the extent and semantics of the first request head in a connection's
//! bytes. This is the one implementation of the framing rules, shared by the fixed
//! [`Responder`](crate::Responder) and the forwarding path ([`forward`](crate::forward)).
//!
//! Rules (httparse checks token syntax, and by default already rejects obs-fold continuation
//! lines and whitespace between a field name and its colon):
//! - every line of the head ends in CRLF (bare LF or bare CR → 400);
//! - the request line is at most `max_request_line` bytes without its CRLF (else 414, decided as
//!   soon as the limit is passed, without waiting for the line to end);
//! - the head is at most `max_header_bytes` and `max_headers` fields (else 431, likewise early);
//! - the target is origin-form, absolute-form (`http`/`https`) or `*`; anything else → 400;
//! - the version is HTTP/1.0 or HTTP/1.1; HTTP/1.1 needs exactly one `Host`, HTTP/1.0 at most one;
//! - a `Host` value must be `uri-host [ ":" port ]` (RFC 9112 §3.2, see [`authority`](crate::authority)): else 400;
//! - an absolute-form target's authority must be a valid, non-empty host without `userinfo@`
//!   (else 400), and it is the request's host: it wins over the `Host` field (RFC 9112 §3.2.2),
//!   which must still be present (HTTP/1.1) and valid, but is not what routing sees;
//! - `Content-Length`: digits only, duplicate fields must agree (else 400), at most `max_body`
//!   (else 413);
//! - `Transfer-Encoding`: a list of known codings (`chunked`, `gzip`, `deflate`, `compress`,
//!   `x-gzip`, `x-compress`) whose last one, and only that one, is `chunked`; anything else → 400,
//!   and so is an empty list element. With `Content-Length`, or in an HTTP/1.0 request → 400.
//!   A repeated `Transfer-Encoding` field is refused with 400 rather than combined into one list:
//!   no legitimate client splits it, and intermediaries disagree on how to join it;
//! - `Expect`: only `100-continue` (case-insensitive) is accepted, any other value → 417; an
//!   HTTP/1.0 request's `100-continue` is ignored (RFC 9110 §10.1.1);
//! - refusals are checked in the order 414/431, 400, 417, 413.
//!
//! Invariants:
//! - nothing is allocated: headers parse into a fixed array on the stack;
//! - only the head must be in the input: body bytes are the caller's to read (or stream) using
//!   [`RequestHead::body`]; `head_len` is never more than the input's length;
//! - `Ok(None)` (incomplete) is never returned once the input holds more than `max_header_bytes`
//!   bytes, so a caller buffering that many bytes always gets an answer.

use httparse::{Header, Request, Status, EMPTY_HEADER};

use crate::{
    authority::{valid_host, valid_target_authority},
    limits::{Limits, MAX_HEADERS},
};

/// A request the framing rules refuse; the status to answer with. The connection must close,
/// since the bytes after a refused head cannot be trusted to start a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal(pub u16);

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    None,
    /// Exactly this many bytes follow the head (`Content-Length`, at most `max_body`).
    Length(u64),
    /// A chunked body follows the head: find its end with a
    /// [`ChunkedDecoder`](crate::chunked::ChunkedDecoder).
    Chunked,
}

/// The first request head of an input, framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method token, as sent.
    pub method: &'a str,
    /// The request target, as sent (query and absolute-form included).
    pub target: &'a str,
    /// The target's path without query: absolute-form resolved to its path (`/` if empty),
    /// `*` as is.
    pub path: &'a str,
    /// The authority the request is for, which routing matches: an absolute-form target's
    /// authority, else the value of the `Host` field (trimmed; HTTP/1.0 may omit it, and it may
    /// be empty). Always valid `uri-host [ ":" port ]`.
    pub host: Option<&'a [u8]>,
    /// `host` comes from an absolute-form target, not from the `Host` field: a `Host` sent on
    /// must be replaced by it (RFC 9112 §3.2.2).
    pub host_from_target: bool,
    /// The request is HTTP/1.0 (else HTTP/1.1).
    pub http10: bool,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// Bytes of the head, including empty lines before it and the final empty line.
    pub head_len: usize,
    /// How the body that follows the head is delimited.
    pub body: BodyFraming,
    /// The client sent `Expect: 100-continue` (HTTP/1.1 only) and waits for a `100 Continue`.
    pub expect_continue: bool,
    /// The method is idempotent (GET, HEAD, PUT, DELETE, OPTIONS, TRACE): safe to retry.
    pub idempotent: bool,
    /// The method is HEAD: the response carries no body.
    pub is_head: bool,
}

/// The transfer codings a request's `Transfer-Encoding` may list.
const KNOWN_CODINGS: [&[u8]; 6] = [
    b"chunked",
    b"gzip",
    b"deflate",
    b"compress",
    b"x-gzip",
    b"x-compress",
];

/// Frames the first request head at the start of `input` under `limits` (`max_headers` is
/// clamped to `1..=MAX_HEADERS`). `Ok(None)` means the head is not complete yet.
pub fn frame_request<'a>(input: &'a [u8], limits: &Limits) -> Result<Option<RequestHead<'a>>, Refusal> {
    // Request line length, checked before parsing so a huge target gets 414, not 431.
    if request_line_too_long(skip_empty_lines(input), limits.max_request_line) {
        return Err(Refusal(414));
    }
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let max_headers = limits.max_headers.clamp(1, MAX_HEADERS);
    let mut request = Request::new(&mut headers[..max_headers]);
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
    let target = request.path.ok_or(Refusal(400))?;
    let path = route_path(target).ok_or(Refusal(400))?;
    let http10 = match request.version {
        Some(0) => true,
        Some(1) => false,
        _ => return Err(Refusal(400)),
    };
    let headers: &[Header<'a>] = request.headers;
    let mut hosts = 0;
    let mut host = None;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut close_token = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut expect_other = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = Some(header.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(header.value).ok_or(Refusal(400))?;
            if content_length.is_some_and(|previous| previous != value) {
                return Err(Refusal(400));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(Refusal(400));
            }
            transfer_encoding = Some(header.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list_items(header.value) {
                close_token |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if trim(header.value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                expect_other = true;
            }
        }
    }
    if (!http10 && hosts != 1) || hosts > 1 {
        return Err(Refusal(400));
    }
    let host = host.map(trim);
    if host.is_some_and(|value| !valid_host(value)) {
        return Err(Refusal(400));
    }
    let target_authority = target_authority(target);
    if target_authority.is_some_and(|a| !valid_target_authority(a.as_bytes())) {
        return Err(Refusal(400));
    }
    let body = match (transfer_encoding, content_length) {
        (Some(_), Some(_)) => return Err(Refusal(400)),
        (Some(_), None) if http10 => return Err(Refusal(400)),
        (Some(codings), None) if chunked_last(codings) => BodyFraming::Chunked,
        (Some(_), None) => return Err(Refusal(400)),
        (None, Some(length)) => BodyFraming::Length(length),
        (None, None) => BodyFraming::None,
    };
    if expect_other {
        return Err(Refusal(417));
    }
    if matches!(body, BodyFraming::Length(n) if n > limits.max_body as u64) {
        return Err(Refusal(413));
    }
    let keep_alive = if http10 {
        keep_alive_token && !close_token
    } else {
        !close_token
    };
    Ok(Some(RequestHead {
        method,
        target,
        path,
        host: target_authority.map(str::as_bytes).or(host),
        host_from_target: target_authority.is_some(),
        http10,
        keep_alive,
        head_len,
        body,
        expect_continue: expect_continue && !http10,
        idempotent: matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"),
        is_head: method == "HEAD",
    }))
}

/// Whether `input`, refused or not, starts with a `HEAD` request line (after empty lines): a
/// refusal of a HEAD request must not carry a body either.
pub fn starts_with_head(input: &[u8]) -> bool {
    skip_empty_lines(input).starts_with(b"HEAD ")
}

/// Whether a `Transfer-Encoding` value lists known codings only, with `chunked` once and last.
fn chunked_last(value: &[u8]) -> bool {
    let mut codings = value.split(|&b| b == b',').map(trim).peekable();
    while let Some(coding) = codings.next() {
        let last = codings.peek().is_none();
        if coding.eq_ignore_ascii_case(b"chunked") != last
            || !KNOWN_CODINGS.iter().any(|k| coding.eq_ignore_ascii_case(k))
        {
            return false;
        }
    }
    true
}

/// The non-empty, trimmed elements of a comma-separated field value.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

/// The path a request target routes on, without its query: origin-form (`/p?q`) as is,
/// absolute-form (`http://host/p?q`, scheme case-insensitive) by its path (`/` if empty), and
/// asterisk-form (`*`) as `*`. `None` for any other form (authority-form has no route here).
pub(crate) fn route_path(target: &str) -> Option<&str> {
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

/// The authority of an absolute-form target (`http://authority/p?q`: up to the first `/`, `?`
/// or `#`), `None` for the other forms. Whether it is valid is
/// [`authority`](crate::authority)'s question.
pub(crate) fn target_authority(target: &str) -> Option<&str> {
    if target.starts_with('/') || target == "*" {
        return None;
    }
    let (_, rest) = target.split_once("://")?;
    Some(rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]))
}

/// `input` after the empty lines a server ignores before a request line (httparse skips them too;
/// a bare LF among them is refused later by [`crlf_only`]).
pub(crate) fn skip_empty_lines(input: &[u8]) -> &[u8] {
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

/// A `Content-Length` value: ASCII digits only (after the optional whitespace around a field
/// value), not overflowing `u64`.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// `bytes` without leading and trailing ASCII whitespace.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
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
pub(crate) fn crlf_only(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && head[i - 1] == b'\r',
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

#[cfg(test)]
mod tests;
