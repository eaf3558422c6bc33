use super::*;

fn frame(input: &[u8]) -> ResponseHead<'_> {
    match frame_response(input, false, 16 * 1024) {
        Ok(Some(head)) => head,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
    }
}

fn refused(input: &[u8]) -> ResponseError {
    match frame_response(input, false, 16 * 1024) {
        Err(error) => error,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
    }
}

fn client_head(input: &[u8], opts: ClientHeadOptions) -> String {
    let head = frame(input);
    let mut out = [0u8; 4096];
    let n = write_client_head(&head, input, &opts, &mut out).unwrap();
    String::from_utf8(out[..n].to_vec()).unwrap()
}

#[test]
fn body_framing() {
    let cases: [(&[u8], ResponseBody, bool); 10] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            ResponseBody::Length(5),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            ResponseBody::Length(5),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            ResponseBody::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseBody::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            ResponseBody::UntilClose,
            false,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", ResponseBody::UntilClose, false),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
            ResponseBody::UntilClose,
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            ResponseBody::Length(0),
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n",
            ResponseBody::Length(0),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ResponseBody::Length(0),
            false,
        ),
    ];
    for (input, body, keep_alive) in cases {
        let head = frame(input);
        assert_eq!(head.body, body, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(
            head.upstream_keep_alive,
            keep_alive,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(head.head_len, input.len());
        assert!(!head.informational);
    }
}

#[test]
fn bodiless_responses() {
    for input in [
        &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    ] {
        let head = frame(input);
        assert_eq!(head.body, ResponseBody::None);
        assert!(head.upstream_keep_alive);
        assert_eq!(head.informational, head.status < 200);
    }
    let to_head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    let head = frame_response(to_head, true, 1024).unwrap().unwrap();
    assert_eq!(head.body, ResponseBody::None);
    let head = frame_response(b"HTTP/1.1 200 OK\r\n\r\n", true, 1024)
        .unwrap()
        .unwrap();
    assert_eq!(head.body, ResponseBody::None);
    assert!(head.upstream_keep_alive);
    // The final response after an interim one starts at head_len.
    let both = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let interim = frame(both);
    assert_eq!(frame(&both[interim.head_len..]).status, 200);
}

#[test]
fn refusals() {
    for (input, error) in [
        (
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"[..],
            ResponseError::Upgrade,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseError::LengthWithTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x3\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            ResponseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ResponseError::TransferEncodingInHttp10,
        ),
        (
            b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
            ResponseError::Malformed,
        ),
        (
            b"HTTP/1.1 200 OK\r\nA: b\rContent-Length: 0\r\n\r\n",
            ResponseError::Malformed,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
            ResponseError::Malformed,
        ),
        (
            b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            ResponseError::Malformed,
        ),
        (b"HTTP/2.0 200 OK\r\n\r\n", ResponseError::Malformed),
        (b"HTTP/1.1 099 Low\r\n\r\n", ResponseError::Malformed),
        (b"HTTP/1.1 20 OK\r\n\r\n", ResponseError::Malformed),
    ] {
        assert_eq!(refused(input), error, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(error.status(), 502);
    }
    assert_eq!(frame(b"HTTP/1.1 999 Odd\r\n\r\n").status, 999);
    assert_eq!(frame_response(b"HTTP/1.1 200 OK\r\nA: b", false, 100), Ok(None));
    assert_eq!(
        frame_response(&[b'a'; 101], false, 100),
        Err(ResponseError::Malformed)
    );
    assert_eq!(
        frame_response(
            b"HTTP/1.1 200 OK\r\nA: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            false,
            30
        ),
        Err(ResponseError::TooLarge)
    );
}

#[test]
fn client_head_has_exact_bytes() {
    let input = b"HTTP/1.1 200 Fine Thanks\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
        X-Hop: 1\r\nContent-Length: 2\r\nVia: 1.1 origin\r\nUpgrade: h2c\r\nTrailer: X\r\n\
        Proxy-Authenticate: Basic\r\nX-End: 2\r\n\r\nhi";
    assert_eq!(
        client_head(input, ClientHeadOptions::default()),
        "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\nVia: 1.1 origin, 1.1 xgate\r\nX-End: 2\r\n\r\n"
    );
    let close = ClientHeadOptions {
        close: true,
        http10_keep_alive: true,
        hsts_max_age: None,
    };
    assert_eq!(
        client_head(b"HTTP/1.0 404 \r\nTransfer-Encoding-X: a\r\n\r\n", close),
        "HTTP/1.1 404 \r\nTransfer-Encoding-X: a\r\nVia: 1.0 xgate\r\nConnection: close\r\n\r\n"
    );
    let keep = ClientHeadOptions {
        close: false,
        http10_keep_alive: true,
        hsts_max_age: None,
    };
    assert!(client_head(b"HTTP/1.1 204 No Content\r\n\r\n", keep)
        .ends_with("\r\nVia: 1.1 xgate\r\nConnection: keep-alive\r\n\r\n"));
}

#[test]
fn client_head_keeps_framing_fields() {
    let input = b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding, content-length\r\n\
        Transfer-Encoding: chunked\r\n\r\n";
    let text = client_head(input, ClientHeadOptions::default());
    assert!(text.contains("\r\nTransfer-Encoding: chunked\r\n"), "{text}");
    assert!(!text.contains("Connection"), "{text}");
    let again = frame(text.as_bytes());
    assert_eq!(again.body, ResponseBody::Chunked);
}

#[test]
fn client_head_needs_room_and_the_framed_bytes() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let head = frame(input);
    let full = client_head(input, ClientHeadOptions::default()).len();
    let mut out = [0u8; 256];
    let opts = ClientHeadOptions::default();
    assert_eq!(
        write_client_head(&head, input, &opts, &mut out[..full]),
        Some(full)
    );
    assert_eq!(write_client_head(&head, input, &opts, &mut out[..full - 1]), None);
    assert_eq!(write_client_head(&head, &input[..5], &opts, &mut out), None);
}
