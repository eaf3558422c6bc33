//! Responses the gateway makes itself: the status reason table, direct answers with a body
//! ([`write_direct`]), gateway errors ([`write_error`]) and the interim [`CONTINUE`].
//!
//! Invariants:
//! - every response is `HTTP/1.1 <status> <reason>` with `Server: xgate` and, where the status
//!   allows a body, `Content-Length`; a response to HEAD carries the length but no body bytes;
//!   1xx and 204 carry neither, 304 no body;
//! - [`write_error`] output fits in [`MIN_RESPONSE_BUFFER`](crate::MIN_RESPONSE_BUFFER) bytes and
//!   is byte-for-byte the refusal the fixed responder sends;
//! - nothing is allocated; a response that does not fit in `out` is never reported as written.

use crate::{chunked::is_tchar, fields::is_safe_value, writer::Cursor};

/// The interim response the gateway sends a client waiting on `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The reason phrase for `status` (RFC 9110 §15), `Error` for statuses not in the table.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Writes a whole response into `out` and returns its length: status line, `Server: xgate`,
/// `headers` in order, `Content-Length`, `Connection: <connection>` if given, then `body`
/// (omitted for HEAD). `None` if `out` is too small or a header name is not a token or a value
/// contains CR, LF or NUL.
pub fn write_direct(
    status: u16,
    headers: &[(impl AsRef<str>, impl AsRef<str>)],
    body: &[u8],
    is_head: bool,
    connection: Option<&str>,
    out: &mut [u8],
) -> Option<usize> {
    write_direct_with(status, headers, None, body, is_head, connection, out)
}

/// [`write_direct`] with one more header after `headers` (a redirect's `Location`, a route's
/// HSTS), under the same checks.
pub fn write_direct_with(
    status: u16,
    headers: &[(impl AsRef<str>, impl AsRef<str>)],
    extra: Option<(&str, &str)>,
    body: &[u8],
    is_head: bool,
    connection: Option<&str>,
    out: &mut [u8],
) -> Option<usize> {
    let extra_safe = extra
        .is_none_or(|(name, value)| !name.is_empty() && name.bytes().all(is_tchar) && is_safe_value(value));
    let safe = extra_safe
        && headers.iter().all(|(name, value)| {
            let name = name.as_ref();
            !name.is_empty() && name.bytes().all(is_tchar) && is_safe_value(value.as_ref())
        });
    if !safe || !connection.is_none_or(is_safe_value) {
        return None;
    }
    let mut c = Cursor::new(out);
    put_head(&mut c, status);
    for (name, value) in headers {
        c.put(name.as_ref().as_bytes())
            .put(b": ")
            .put(value.as_ref().as_bytes())
            .put(b"\r\n");
    }
    if let Some((name, value)) = extra {
        c.put(name.as_bytes())
            .put(b": ")
            .put(value.as_bytes())
            .put(b"\r\n");
    }
    put_tail(&mut c, status, &[body], is_head, connection);
    c.finish()
}

/// Writes a gateway error (`text/plain`, the reason phrase and a newline as body, no body for
/// HEAD, `Connection: close` if `close`) into `out` and returns its length.
///
/// # Panics
///
/// If `out` is too small, which cannot happen when it holds at least
/// [`MIN_RESPONSE_BUFFER`](crate::MIN_RESPONSE_BUFFER) bytes.
pub fn write_error(status: u16, is_head: bool, close: bool, out: &mut [u8]) -> usize {
    let mut c = Cursor::new(out);
    put_head(&mut c, status);
    c.put(b"Content-Type: text/plain\r\n");
    let body: [&[u8]; 2] = [reason(status).as_bytes(), b"\n"];
    put_tail(&mut c, status, &body, is_head, close.then_some("close"));
    c.finish().expect("errors fit in MIN_RESPONSE_BUFFER bytes")
}

/// The status line and `Server` field.
fn put_head(c: &mut Cursor<'_>, status: u16) {
    c.put(b"HTTP/1.1 ")
        .put_decimal(usize::from(status))
        .put(b" ")
        .put(reason(status).as_bytes())
        .put(b"\r\nServer: xgate\r\n");
}

/// `Content-Length` (the total of `body`), `Connection`, the empty line and the body.
fn put_tail(c: &mut Cursor<'_>, status: u16, body: &[&[u8]], is_head: bool, connection: Option<&str>) {
    let no_length = status < 200 || status == 204;
    if !no_length {
        let length = body.iter().map(|part| part.len()).sum();
        c.put(b"Content-Length: ").put_decimal(length).put(b"\r\n");
    }
    if let Some(value) = connection {
        c.put(b"Connection: ").put(value.as_bytes()).put(b"\r\n");
    }
    c.put(b"\r\n");
    if !(is_head || no_length || status == 304) {
        for part in body {
            c.put(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_answer_has_exact_bytes() {
        let mut out = [0u8; 256];
        let n = write_direct(
            200,
            &[("Content-Type", "text/plain"), ("X-A", "1")],
            b"hi",
            false,
            Some("keep-alive"),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out[..n]).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: xgate\r\nContent-Type: text/plain\r\nX-A: 1\r\n\
             Content-Length: 2\r\nConnection: keep-alive\r\n\r\nhi"
        );
        let headers: [(String, &str); 0] = [];
        let n = write_direct(404, &headers, b"nope", true, None, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out[..n]).unwrap(),
            "HTTP/1.1 404 Not Found\r\nServer: xgate\r\nContent-Length: 4\r\n\r\n"
        );
    }

    #[test]
    fn bodiless_statuses_have_no_body() {
        let mut out = [0u8; 256];
        let none: [(&str, &str); 0] = [];
        let n = write_direct(204, &none, b"x", false, None, &mut out).unwrap();
        assert_eq!(&out[..n], b"HTTP/1.1 204 No Content\r\nServer: xgate\r\n\r\n");
        let n = write_direct(304, &none, b"x", false, None, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            b"HTTP/1.1 304 Not Modified\r\nServer: xgate\r\nContent-Length: 1\r\n\r\n"
        );
    }

    #[test]
    fn direct_answer_refuses_small_buffers_and_injection() {
        let mut small = [0u8; 10];
        let none: [(&str, &str); 0] = [];
        assert_eq!(write_direct(200, &none, b"", false, None, &mut small), None);
        let mut out = [0u8; 256];
        for bad in [("X", "a\r\nY: b"), ("X\n", "a"), ("X: y", "a")] {
            assert_eq!(write_direct(200, &[bad], b"", false, None, &mut out), None);
        }
        assert_eq!(
            write_direct(200, &none, b"", false, Some("close\r\n"), &mut out),
            None
        );
    }

    #[test]
    fn errors_have_exact_bytes_and_fit() {
        let mut out = [0u8; crate::MIN_RESPONSE_BUFFER];
        let n = write_error(502, false, true, &mut out);
        assert_eq!(
            std::str::from_utf8(&out[..n]).unwrap(),
            "HTTP/1.1 502 Bad Gateway\r\nServer: xgate\r\nContent-Type: text/plain\r\n\
             Content-Length: 12\r\nConnection: close\r\n\r\nBad Gateway\n"
        );
        let n = write_error(417, true, false, &mut out);
        assert_eq!(
            std::str::from_utf8(&out[..n]).unwrap(),
            "HTTP/1.1 417 Expectation Failed\r\nServer: xgate\r\nContent-Type: text/plain\r\n\
             Content-Length: 19\r\n\r\n"
        );
        for status in [400, 413, 414, 417, 431, 500, 501, 502, 503, 504, 999] {
            assert!(write_error(status, false, true, &mut out) < out.len());
            assert_ne!(reason(status), "", "{status}");
        }
        assert_eq!(reason(100), "Continue");
        assert_eq!(CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
