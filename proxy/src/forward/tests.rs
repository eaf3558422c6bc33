use super::*;
use crate::{limits::Limits, request::frame_request};
use std::net::{Ipv4Addr, Ipv6Addr};

const IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn options() -> ForwardOptions<'static> {
    ForwardOptions {
        client_ip: IpAddr::V4(IP),
        host_rewrite: None,
        upstream_authority: "backend:8080",
        strip_expect: false,
        https: false,
    }
}

/// The upstream head for `input` under `opts`.
fn forward(input: &[u8], opts: &ForwardOptions<'_>) -> String {
    let head = frame_request(input, &Limits::default()).unwrap().unwrap();
    let mut out = [0u8; 4096];
    let n = write_upstream_head(&head, input, opts, &mut out).unwrap();
    String::from_utf8(out[..n].to_vec()).unwrap()
}

#[test]
fn plain_request_has_exact_bytes() {
    let text = forward(
        b"GET /a?b HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\n\r\n",
        &options(),
    );
    assert_eq!(
        text,
        "GET /a?b HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.7\r\n\
         X-Forwarded-Proto: http\r\nVia: 1.1 xgate\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn an_ipv6_client_is_forwarded_in_its_text_form() {
    let mut opts = options();
    opts.client_ip = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1));
    let text = forward(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n", &opts);
    assert!(text.contains("\r\nX-Forwarded-For: fd77::1\r\n"), "{text}");
    opts.client_ip = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped());
    let text = forward(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n", &opts);
    assert!(
        text.contains("\r\nX-Forwarded-For: ::ffff:203.0.113.7\r\n"),
        "{text}"
    );
}

#[test]
fn hop_by_hop_fields_and_connection_named_ones_are_removed() {
    let input = b"POST /u HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, X-Private, x-other\r\n\
        Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n\
        Upgrade: websocket\r\nProxy-Authorization: Basic x\r\nProxy-Authenticate: Basic\r\n\
        X-Private: secret\r\nX-Other: 1\r\nX-Kept: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
    let text = forward(input, &options());
    assert_eq!(
        text,
        "POST /u HTTP/1.1\r\nHost: gw\r\nX-Kept: 2\r\nTransfer-Encoding: chunked\r\n\
         X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: http\r\nVia: 1.1 xgate\r\n\
         Connection: keep-alive\r\n\r\n"
    );
}

#[test]
fn connection_cannot_strip_framing_fields() {
    let input = b"POST /u HTTP/1.1\r\nHost: gw\r\nConnection: Content-Length, Host, Transfer-Encoding\r\n\
        Content-Length: 2\r\n\r\nhi";
    let text = forward(input, &options());
    assert!(text.contains("\r\nHost: gw\r\nContent-Length: 2\r\n"), "{text}");
    let input = b"POST /u HTTP/1.1\r\nHost: gw\r\nConnection: transfer-encoding\r\n\
        Transfer-Encoding: chunked\r\n\r\n";
    assert!(forward(input, &options()).contains("\r\nTransfer-Encoding: chunked\r\n"));
}

#[test]
fn forwarded_for_is_appended_and_merged() {
    let input =
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nHost: gw\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\n\
        X-Forwarded-For:\r\nX-Forwarded-Proto: https\r\n\r\n";
    let text = forward(input, &options());
    assert_eq!(
        text,
        "GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 203.0.113.7\r\n\
         Host: gw\r\nX-Forwarded-Proto: http\r\nVia: 1.1 xgate\r\nConnection: keep-alive\r\n\r\n"
    );
    let text = forward(
        b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n",
        &ForwardOptions {
            client_ip: Ipv4Addr::new(0, 0, 0, 0).into(),
            ..options()
        },
    );
    assert!(text.contains("\r\nX-Forwarded-For: 0.0.0.0\r\n"), "{text}");
    // A client naming X-Forwarded-For in Connection loses its chain; the gateway's entry stays.
    let text = forward(
        b"GET / HTTP/1.1\r\nHost: gw\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        &options(),
    );
    assert!(text.contains("\r\nX-Forwarded-For: 203.0.113.7\r\n"), "{text}");
    assert!(!text.contains("1.2.3.4"), "{text}");
}

#[test]
fn via_is_appended_with_the_client_version() {
    let text = forward(
        b"GET / HTTP/1.1\r\nVia: 1.1 a\r\nHost: gw\r\nVia: 1.0 b\r\n\r\n",
        &options(),
    );
    assert_eq!(
        text,
        "GET / HTTP/1.1\r\nVia: 1.1 a, 1.0 b, 1.1 xgate\r\nHost: gw\r\nX-Forwarded-For: 203.0.113.7\r\n\
         X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n"
    );
    let text = forward(b"GET / HTTP/1.0\r\nHost: gw\r\n\r\n", &options());
    assert!(text.starts_with("GET / HTTP/1.0\r\n"), "{text}");
    assert!(text.contains("\r\nVia: 1.0 xgate\r\n"), "{text}");
}

#[test]
fn host_rewrite_and_http10_without_host() {
    let rewrite = ForwardOptions {
        host_rewrite: Some("internal.svc"),
        ..options()
    };
    let text = forward(b"GET / HTTP/1.1\r\nA: 1\r\nHost: gw\r\nB: 2\r\n\r\n", &rewrite);
    assert!(
        text.contains("\r\nA: 1\r\nHost: internal.svc\r\nB: 2\r\n"),
        "{text}"
    );
    let text = forward(b"GET / HTTP/1.0\r\nA: 1\r\n\r\n", &options());
    assert!(
        text.starts_with("GET / HTTP/1.0\r\nHost: backend:8080\r\nA: 1\r\n"),
        "{text}"
    );
    let text = forward(b"GET / HTTP/1.0\r\n\r\n", &rewrite);
    assert!(
        text.starts_with("GET / HTTP/1.0\r\nHost: internal.svc\r\n"),
        "{text}"
    );
    let text = forward(b"GET / HTTP/1.0\r\nHost: old\r\n\r\n", &options());
    assert!(
        text.contains("\r\nHost: old\r\n") && !text.contains("backend"),
        "{text}"
    );
}

#[test]
fn expect_is_kept_or_stripped() {
    let input = b"PUT / HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    assert!(forward(input, &options()).contains("\r\nExpect: 100-continue\r\n"));
    let strip = ForwardOptions {
        strip_expect: true,
        https: false,
        ..options()
    };
    assert!(!forward(input, &strip).contains("Expect"));
    let http10 = b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    assert!(!forward(http10, &options()).contains("Expect"));
}

#[test]
fn the_head_frames_again_the_same_way() {
    for input in [
        &b"POST /x HTTP/1.0\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"[..],
        b"POST http://gw/x?y HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"\r\nDELETE * HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    ] {
        let head = frame_request(input, &Limits::default()).unwrap().unwrap();
        let text = forward(input, &options());
        let again = frame_request(text.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.method, again.target, again.body),
            (head.method, head.target, head.body)
        );
        // The version is the client's; the upstream connection is kept alive either way.
        assert_eq!(again.http10, head.http10);
        assert!(again.keep_alive);
    }
}

#[test]
fn small_buffers_and_bad_options_give_none() {
    let input = b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n";
    let head = frame_request(input, &Limits::default()).unwrap().unwrap();
    let full = forward(input, &options()).len();
    let mut out = [0u8; 256];
    assert_eq!(
        write_upstream_head(&head, input, &options(), &mut out[..full]),
        Some(full)
    );
    assert_eq!(
        write_upstream_head(&head, input, &options(), &mut out[..full - 1]),
        None
    );
    // Not the bytes the head was framed from.
    assert_eq!(
        write_upstream_head(&head, &input[..10], &options(), &mut out),
        None
    );
    let bad = ForwardOptions {
        host_rewrite: Some("a\r\nX: y"),
        ..options()
    };
    assert_eq!(write_upstream_head(&head, input, &bad, &mut out), None);
}
