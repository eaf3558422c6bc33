use super::*;

fn frame(input: &[u8]) -> Result<Option<RequestHead<'_>>, Refusal> {
    frame_request(input, &Limits::default())
}

fn head(input: &[u8]) -> RequestHead<'_> {
    match frame(input) {
        Ok(Some(head)) => head,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
    }
}

fn refused(input: &[u8]) -> u16 {
    match frame(input) {
        Err(Refusal(status)) => status,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn frames_a_simple_head() {
    let input = b"GET http://gw/a/b?q=1 HTTP/1.1\r\nHost:  gw:80 \r\n\r\nrest";
    let h = head(input);
    assert_eq!(h.method, "GET");
    assert_eq!(h.target, "http://gw/a/b?q=1");
    assert_eq!(h.path, "/a/b");
    // Absolute-form: the target's authority is the request's host, not the Host field.
    assert_eq!(h.host, Some(&b"gw"[..]));
    assert!(h.host_from_target);
    assert_eq!(h.head_len, input.len() - 4);
    assert_eq!(h.body, BodyFraming::None);
    assert!(!h.http10 && h.keep_alive && h.idempotent && !h.is_head && !h.expect_continue);
}

#[test]
fn body_bytes_need_not_be_present() {
    let h = head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
    assert_eq!(h.body, BodyFraming::Length(100));
    assert!(!h.idempotent);
    let h = head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(h.body, BodyFraming::Chunked);
    assert_eq!(frame(b"POST / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
}

#[test]
fn method_flags() {
    for (method, idempotent) in [
        ("GET", true),
        ("HEAD", true),
        ("PUT", true),
        ("DELETE", true),
        ("OPTIONS", true),
        ("TRACE", true),
        ("POST", false),
        ("PATCH", false),
        ("get", false),
    ] {
        let input = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
        let h = head(input.as_bytes());
        assert_eq!(h.idempotent, idempotent, "{method}");
        assert_eq!(h.is_head, method == "HEAD");
    }
}

#[test]
fn accepted_transfer_encodings() {
    for te in [
        "chunked",
        "Chunked",
        "gzip, chunked",
        "gzip,deflate ,  CHUNKED",
        "x-gzip, compress, x-compress, chunked",
    ] {
        let input = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(head(input.as_bytes()).body, BodyFraming::Chunked, "{te}");
    }
}

#[test]
fn smuggling_patterns_are_400() {
    for te in [
        "chunked, chunked",
        "chunked, gzip",
        "gzip",
        "identity",
        "identity, chunked",
        "chunked;q=1",
        "chunked,",
        ", chunked",
        "gzip,,chunked",
        "chunk",
        "\"chunked\"",
        "chunked x",
    ] {
        let input = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(refused(input.as_bytes()), 400, "{te}");
    }
    for bad in [
        // CL + TE, in both orders.
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        // Differing duplicate Content-Length, and list-valued ones.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 03 \r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,3\r\n\r\n",
        // Repeated TE fields are refused rather than combined.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        // TE in HTTP/1.0.
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        // obs-fold and whitespace before the colon.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 3\r\n\r\n",
        // Bare CR and bare LF in the head.
        b"POST / HTTP/1.1\r\nHost: a\rTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\nHost: a\n\n",
        // Host count.
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
        // Targets and versions.
        b"CONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(refused(bad), 400, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn expect_rules() {
    let h = head(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-CONTINUE\r\nContent-Length: 1\r\n\r\n");
    assert!(h.expect_continue);
    // HTTP/1.0 expectations of 100-continue are ignored.
    let h = head(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    assert!(!h.expect_continue);
    for value in ["200-ok", "100-continue, x", "", "100-continue; a=b"] {
        let input = format!("PUT / HTTP/1.1\r\nHost: a\r\nExpect: {value}\r\n\r\n");
        assert_eq!(refused(input.as_bytes()), 417, "{value}");
    }
    // A framing error wins over the expectation.
    assert_eq!(
        refused(b"PUT / HTTP/1.1\r\nExpect: nope\r\n\r\n"),
        400,
        "missing Host"
    );
}

#[test]
fn limits_give_413_414_431() {
    let limits = Limits {
        max_body: 10,
        max_request_line: 32,
        max_header_bytes: 64,
        max_headers: 2,
    };
    let f = |input: &[u8]| frame_request(input, &limits).map(|h| h.map(|h| h.body));
    assert_eq!(
        f(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"),
        Err(Refusal(413))
    );
    assert!(f(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n").is_ok());
    // Chunked bodies are limited by the decoder, not here.
    assert!(f(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").is_ok());
    assert_eq!(f(&[b'G'; 40]), Err(Refusal(414)));
    assert_eq!(
        f(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"),
        Err(Refusal(431))
    );
    assert_eq!(
        f(b"GET / HTTP/1.1\r\nHost: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        Err(Refusal(431))
    );
}

#[test]
fn keep_alive_and_head_detection() {
    assert!(!head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n\r\n").keep_alive);
    assert!(head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(starts_with_head(b"\r\nHEAD / HTTP/1.1\r\n"));
    assert!(!starts_with_head(b"HEADER / HTTP/1.1\r\n"));
}

#[test]
fn host_values_must_be_uri_host_and_port() {
    for (host, expected) in [
        ("gw", &b"gw"[..]),
        ("  gw:8080\t", b"gw:8080"),
        ("10.77.0.2", b"10.77.0.2"),
        ("[::1]:80", b"[::1]:80"),
        ("Example.COM.", b"Example.COM."),
        // An empty value is valid (RFC 9112 §3.2): the request has no authority.
        ("", b""),
    ] {
        let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let h = head(input.as_bytes());
        assert_eq!(h.host, Some(expected), "{host:?}");
        assert!(!h.host_from_target);
    }
    for host in [
        "a b",
        "a@b",
        "user@gw:80",
        "gw:65536",
        "gw:http",
        "gw:80:80",
        "gw/x",
        "[::1",
        "::1",
        "a%zz",
        "\"gw\"",
    ] {
        for version in ["1.1", "1.0"] {
            let input = format!("GET / HTTP/{version}\r\nHost: {host}\r\n\r\n");
            assert_eq!(refused(input.as_bytes()), 400, "{host:?} over HTTP/{version}");
        }
    }
    // Bytes httparse takes in a field value but no host may hold.
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: g\xc3\xa9\r\n\r\n"), 400);
}

#[test]
fn an_absolute_form_authority_wins_over_host_and_is_validated() {
    let h = head(b"GET http://api.example.com:8080/v1?x HTTP/1.1\r\nHost: other.example\r\n\r\n");
    assert_eq!(h.host, Some(&b"api.example.com:8080"[..]));
    assert!(h.host_from_target);
    assert_eq!(h.path, "/v1");
    let h = head(b"GET HTTPS://gw?x HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!((h.host, h.path), (Some(&b"gw"[..]), "/"));
    // HTTP/1.0 may leave Host out; the target still names the host.
    let h = head(b"GET http://[::1]:80/ HTTP/1.0\r\n\r\n");
    assert_eq!(h.host, Some(&b"[::1]:80"[..]));
    // Origin-form and `*` have no authority of their own.
    assert!(!head(b"OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n").host_from_target);
    for bad in [
        // HTTP/1.1 still needs its Host, and a valid one, even when the target names the host.
        &b"GET http://gw/ HTTP/1.1\r\n\r\n"[..],
        b"GET http://gw/ HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET http://gw/ HTTP/1.1\r\nHost: gw\r\nHost: gw\r\n\r\n",
        // The target's authority: empty host, userinfo, bad port, bad characters.
        b"GET http:/// HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET http://:80/ HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET http://user@gw/ HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET http://user:pw@gw/ HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET http://gw:99999/ HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET http://g%zzw/ HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET http://gw:x/ HTTP/1.1\r\nHost: gw\r\n\r\n",
    ] {
        assert_eq!(refused(bad), 400, "{:?}", String::from_utf8_lossy(bad));
    }
}
