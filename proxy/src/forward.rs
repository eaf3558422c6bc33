//! Writing the head of a request the gateway forwards to an upstream server, from the client's
//! framed head ([`frame_request`](crate::request::frame_request)).
//!
//! The upstream head is `METHOD target HTTP/1.1` — `HTTP/1.0` for an HTTP/1.0 client, so that
//! the upstream never answers it with a chunked body the client could not read — with
//! `Connection: keep-alive` either way (upstream connections are pooled), then the client's
//! fields in their order, except:
//! - hop-by-hop fields (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//!   `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`) and every field the client's
//!   `Connection` names — but never `Host`, `Content-Length` or `Transfer-Encoding`, which frame
//!   the message (the body is passed through as the client framed it);
//! - `Host` is replaced by [`ForwardOptions::host_rewrite`] when set, else, for an absolute-form
//!   target, by the target's authority (RFC 9112 §3.2.2: the received `Host` is ignored); an
//!   HTTP/1.0 request without `Host` gets one (the rewrite, else the target's authority, else
//!   [`ForwardOptions::upstream_authority`]) right after the request line;
//! - every `X-Forwarded-For` field is merged into one, at the first one's place, with the client's
//!   address appended (`a, b, client`); one is added at the end if there was none;
//! - a client's `X-Forwarded-Proto` is dropped and `X-Forwarded-Proto: http` (`https` for a
//!   client over TLS) added at the end;
//! - `Via` is merged the same way with `1.1 xgate` (`1.0 xgate` for an HTTP/1.0 client) appended;
//! - `Expect` is dropped when [`ForwardOptions::strip_expect`] is set (the gateway answers
//!   `100 Continue` itself) and always for an HTTP/1.0 client (whose expectation is ignored);
//! - the head ends with `Connection: keep-alive` and the empty line.
//!
//! Invariants: nothing is allocated (the head is re-parsed into a stack array and written into
//! the caller's buffer); a head that does not fit is never reported as written.

use std::net::IpAddr;

use httparse::{Header, Request, Status, EMPTY_HEADER};

use crate::{
    fields::{is_hop_by_hop, is_safe_value, put_field, put_merged},
    limits::MAX_HEADERS,
    request::RequestHead,
    writer::Cursor,
};

/// How the gateway rewrites a request for its upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardOptions<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// A `Host` value replacing the client's, if set.
    pub host_rewrite: Option<&'a str>,
    /// The upstream's `host[:port]`, the `Host` of an HTTP/1.0 request that has none.
    pub upstream_authority: &'a str,
    /// Drop `Expect: 100-continue`: the gateway answers `100 Continue` to the client itself.
    pub strip_expect: bool,
    /// The client came over TLS: `X-Forwarded-Proto: https`.
    pub https: bool,
}

/// Writes the upstream request head for `head` into `out` and returns its length. `input` must
/// hold the bytes `head` was framed from (at least `head.head_len` of them). `None` if `out` is
/// too small, if `input` does not hold that head, or if a configured value in `opts` contains
/// CR, LF or NUL.
pub fn write_upstream_head(
    head: &RequestHead<'_>,
    input: &[u8],
    opts: &ForwardOptions<'_>,
    out: &mut [u8],
) -> Option<usize> {
    // The Host sent on: the rewrite, else an absolute-form target's authority, else the client's.
    let host_rewrite = opts
        .host_rewrite
        .map(str::as_bytes)
        .or(head.host.filter(|_| head.host_from_target));
    if !opts.host_rewrite.is_none_or(is_safe_value) || !is_safe_value(opts.upstream_authority) {
        return None;
    }
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut request = Request::new(&mut headers);
    match request.parse(input.get(..head.head_len)?) {
        Ok(Status::Complete(n)) if n == head.head_len => {}
        _ => return None,
    }
    let headers: &[Header<'_>] = request.headers;
    let via: &[u8] = if head.http10 { b"1.0 xgate" } else { b"1.1 xgate" };
    let put_client_ip = |c: &mut Cursor<'_>| {
        c.put_ip(opts.client_ip);
    };

    let mut c = Cursor::new(out);
    c.put(head.method.as_bytes())
        .put(b" ")
        .put(head.target.as_bytes())
        .put(if head.http10 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
    if !headers.iter().any(|h| h.name.eq_ignore_ascii_case("host")) {
        let host = host_rewrite.unwrap_or(opts.upstream_authority.as_bytes());
        c.put(b"Host: ").put(host).put(b"\r\n");
    }
    let mut forwarded_for = false;
    let mut via_written = false;
    for header in headers {
        let name = header.name;
        if is_hop_by_hop(name, headers) || name.eq_ignore_ascii_case("x-forwarded-proto") {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            c.put(b"Host: ")
                .put(host_rewrite.unwrap_or(header.value))
                .put(b"\r\n");
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            if !forwarded_for {
                put_merged(&mut c, "X-Forwarded-For", headers, put_client_ip);
                forwarded_for = true;
            }
        } else if name.eq_ignore_ascii_case("via") {
            if !via_written {
                put_merged(&mut c, "Via", headers, |c| {
                    c.put(via);
                });
                via_written = true;
            }
        } else if name.eq_ignore_ascii_case("expect") && (opts.strip_expect || head.http10) {
            continue;
        } else {
            put_field(&mut c, header);
        }
    }
    if !forwarded_for {
        put_merged(&mut c, "X-Forwarded-For", headers, put_client_ip);
    }
    c.put(if opts.https {
        b"X-Forwarded-Proto: https\r\n".as_slice()
    } else {
        b"X-Forwarded-Proto: http\r\n".as_slice()
    });
    if !via_written {
        c.put(b"Via: ").put(via).put(b"\r\n");
    }
    c.put(b"Connection: keep-alive\r\n\r\n");
    c.finish()
}

#[cfg(test)]
mod tests;
