//! Framing an upstream server's response head, and writing the head the client receives.
//!
//! Framing rules ([`frame_response`]); any violation is a [`ResponseError`], answered with 502 and
//! the upstream connection closed:
//! - HTTP/1.0 or HTTP/1.1, status 100..=999, every line of the head ends in CRLF, the head is at
//!   most `max_header_bytes` and [`MAX_HEADERS`] fields;
//! - `101 Switching Protocols` is refused: no upgrades pass through the gateway;
//! - `Content-Length`: digits only, duplicates must agree, never with `Transfer-Encoding`;
//! - `Transfer-Encoding` in an HTTP/1.0 response is refused (RFC 9112 §6.1: faulty framing);
//! - the body ([`ResponseBody`]), in RFC 9112 §6.3 order: none for a HEAD request, 1xx, 204 and
//!   304; chunked if the last coding of all `Transfer-Encoding` fields (combined as one list) is
//!   `chunked`, else until close; `Content-Length` bytes; else until close.
//!
//! The client head ([`write_client_head`]) is `HTTP/1.1 <status> <reason as received>`, the
//! upstream's fields minus the hop-by-hop ones (the same list as for requests, plus the fields
//! the upstream's `Connection` names, never `Content-Length` or `Transfer-Encoding`), `Via`
//! merged with `1.1 xgate` (`1.0 xgate` for an HTTP/1.0 upstream) appended, then
//! `Connection: close` or `Connection: keep-alive` as [`ClientHeadOptions`] say.
//!
//! Caller duties this module cannot see:
//! - an [`ResponseBody::UntilClose`] response to an HTTP/1.1 client must be written with
//!   `close: true`: only closing the client connection delimits that body;
//! - 1xx responses are forwarded to HTTP/1.1 clients only, and the final response follows;
//! - the body bytes are passed through unchanged, so a chunked response can only go to an
//!   HTTP/1.1 client.
//!
//! Invariants: nothing is allocated; a head that does not fit in `out` is never reported as
//! written.

use httparse::{Header, Response, Status, EMPTY_HEADER};

use crate::{
    fields::{is_hop_by_hop, put_field, put_merged},
    limits::MAX_HEADERS,
    request::{crlf_only, list_items, parse_content_length},
    writer::Cursor,
};

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: a response to HEAD, 1xx, 204 or 304.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// A chunked body follows the head.
    Chunked,
    /// The body is everything until the upstream closes the connection.
    UntilClose,
}

/// An upstream response head, framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The status code, 100..=999 (never 101).
    pub status: u16,
    /// The reason phrase as received (possibly empty).
    pub reason: &'a str,
    /// The response is HTTP/1.0 (else HTTP/1.1).
    pub http10: bool,
    /// Bytes of the head, including the final empty line.
    pub head_len: usize,
    /// How the body that follows the head is delimited.
    pub body: ResponseBody,
    /// The upstream connection may be reused after this response: HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `keep-alive`; never for `UntilClose`.
    pub upstream_keep_alive: bool,
    /// A 1xx (interim) response: the final response follows on the same connection.
    pub informational: bool,
}

/// Why an upstream response head is refused; the gateway answers the client 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// Not a valid HTTP/1.x response head (syntax, bare CR/LF, version, status).
    Malformed,
    /// The head exceeds `max_header_bytes` or [`MAX_HEADERS`] fields.
    TooLarge,
    /// `101 Switching Protocols`: upgrades are not forwarded.
    Upgrade,
    /// A `Content-Length` that is not digits only, or duplicates that differ.
    InvalidContentLength,
    /// `Content-Length` together with `Transfer-Encoding`.
    LengthWithTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 response.
    TransferEncodingInHttp10,
}

impl ResponseError {
    /// The status the gateway answers the client with: always 502.
    pub fn status(self) -> u16 {
        502
    }
}

/// How the client's response head ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHeadOptions {
    /// The client connection closes after this response (the client asked, the body is
    /// `UntilClose`, or the gateway is draining): write `Connection: close`.
    pub close: bool,
    /// An HTTP/1.0 client asked for keep-alive and gets it: write `Connection: keep-alive`
    /// (ignored when `close` is set).
    pub http10_keep_alive: bool,
    /// Add `Strict-Transport-Security: max-age=N` (a route's HSTS, on a response over TLS).
    pub hsts_max_age: Option<u32>,
}

/// Frames the response head at the start of `input`; `request_is_head` says whether it answers a
/// HEAD request. `Ok(None)` means the head is not complete yet (never once `input` holds more than
/// `max_header_bytes` bytes).
pub fn frame_response(
    input: &[u8],
    request_is_head: bool,
    max_header_bytes: usize,
) -> Result<Option<ResponseHead<'_>>, ResponseError> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut response = Response::new(&mut headers);
    let head_len = match response.parse(input) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if input.len() > max_header_bytes => return Err(ResponseError::TooLarge),
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(_) => return Err(ResponseError::Malformed),
    };
    if head_len > max_header_bytes {
        return Err(ResponseError::TooLarge);
    }
    if !crlf_only(&input[..head_len]) {
        return Err(ResponseError::Malformed);
    }
    let http10 = match response.version {
        Some(0) => true,
        Some(1) => false,
        _ => return Err(ResponseError::Malformed),
    };
    let status = response.code.ok_or(ResponseError::Malformed)?;
    if !(100..=999).contains(&status) {
        return Err(ResponseError::Malformed);
    }
    if status == 101 {
        return Err(ResponseError::Upgrade);
    }
    let reason = response.reason.unwrap_or("");
    let headers: &[Header<'_>] = response.headers;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close_token = false;
    let mut keep_alive_token = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(header.value).ok_or(ResponseError::InvalidContentLength)?;
            if content_length.is_some_and(|previous| previous != value) {
                return Err(ResponseError::InvalidContentLength);
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // The fields combine into one list: only the last coding of the last
            // non-empty field decides.
            if let Some(last) = list_items(header.value).last() {
                chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list_items(header.value) {
                close_token |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if transfer_encoding && content_length.is_some() {
        return Err(ResponseError::LengthWithTransferEncoding);
    }
    if transfer_encoding && http10 {
        return Err(ResponseError::TransferEncodingInHttp10);
    }
    let informational = status < 200;
    let body = if request_is_head || informational || status == 204 || status == 304 {
        ResponseBody::None
    } else if transfer_encoding {
        if chunked {
            ResponseBody::Chunked
        } else {
            ResponseBody::UntilClose
        }
    } else if let Some(length) = content_length {
        ResponseBody::Length(length)
    } else {
        ResponseBody::UntilClose
    };
    let upstream_keep_alive = body != ResponseBody::UntilClose
        && if http10 {
            keep_alive_token && !close_token
        } else {
            !close_token
        };
    Ok(Some(ResponseHead {
        status,
        reason,
        http10,
        head_len,
        body,
        upstream_keep_alive,
        informational,
    }))
}

/// Writes the head the client receives for the upstream response `head` into `out` and returns
/// its length. `input` must hold the bytes `head` was framed from (at least `head.head_len`).
/// `None` if `out` is too small or `input` does not hold that head.
pub fn write_client_head(
    head: &ResponseHead<'_>,
    input: &[u8],
    opts: &ClientHeadOptions,
    out: &mut [u8],
) -> Option<usize> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut response = Response::new(&mut headers);
    match response.parse(input.get(..head.head_len)?) {
        Ok(Status::Complete(n)) if n == head.head_len => {}
        _ => return None,
    }
    let headers: &[Header<'_>] = response.headers;
    let via: &[u8] = if head.http10 { b"1.0 xgate" } else { b"1.1 xgate" };
    let mut c = Cursor::new(out);
    c.put(b"HTTP/1.1 ")
        .put_decimal(usize::from(head.status))
        .put(b" ")
        .put(head.reason.as_bytes())
        .put(b"\r\n");
    let mut via_written = false;
    for header in headers {
        if is_hop_by_hop(header.name, headers) {
            continue;
        }
        if header.name.eq_ignore_ascii_case("via") {
            if !via_written {
                put_merged(&mut c, "Via", headers, |c| {
                    c.put(via);
                });
                via_written = true;
            }
        } else {
            put_field(&mut c, header);
        }
    }
    if !via_written {
        c.put(b"Via: ").put(via).put(b"\r\n");
    }
    if let Some(max_age) = opts.hsts_max_age {
        c.put(b"Strict-Transport-Security: max-age=")
            .put_decimal(max_age as usize)
            .put(b"\r\n");
    }
    if opts.close {
        c.put(b"Connection: close\r\n");
    } else if opts.http10_keep_alive {
        c.put(b"Connection: keep-alive\r\n");
    }
    c.put(b"\r\n");
    c.finish()
}

#[cfg(test)]
mod tests;
