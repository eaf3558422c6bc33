use super::*;

fn responder() -> Responder {
    Responder::new(Limits::default())
}

/// Runs `input` through a default responder; returns the outcome and the response text.
fn answer(input: &[u8]) -> (Outcome, String) {
    answer_with(&responder(), input)
}

fn answer_with(r: &Responder, input: &[u8]) -> (Outcome, String) {
    let mut out = [0u8; MIN_RESPONSE_BUFFER];
    let outcome = r.handle(input, &mut out);
    let written = match outcome {
        Outcome::Respond { written, .. } => written,
        Outcome::Incomplete => 0,
    };
    (outcome, String::from_utf8(out[..written].to_vec()).unwrap())
}

fn status(outcome: Outcome) -> u16 {
    match outcome {
        Outcome::Respond { status, .. } => status,
        Outcome::Incomplete => panic!("incomplete"),
    }
}

fn closes(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Respond { close: true, .. })
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";

#[test]
fn healthz_is_200_with_exact_bytes() {
    let (outcome, text) = answer(HEALTHZ);
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nServer: xgate\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
    );
    assert_eq!(
        outcome,
        Outcome::Respond {
            consumed: HEALTHZ.len(),
            written: text.len(),
            close: false,
            status: 200
        }
    );
}

#[test]
fn head_has_headers_but_no_body() {
    let (outcome, text) = answer(b"HEAD /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(status(outcome), 200);
    assert!(text.contains("Content-Length: 3\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
}

#[test]
fn query_strings_do_not_change_the_route() {
    assert_eq!(
        status(answer(b"GET /healthz?x=1 HTTP/1.1\r\nHost: gw\r\n\r\n").0),
        200
    );
}

#[test]
fn unknown_path_is_404_and_keeps_alive() {
    let (outcome, text) = answer(b"GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(status(outcome), 404);
    assert!(!closes(outcome));
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
}

#[test]
fn other_methods_on_healthz_are_405_with_allow() {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let input = format!("{method} /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n");
        let (outcome, text) = answer(input.as_bytes());
        assert_eq!(status(outcome), 405, "{method}");
        assert!(text.contains("Allow: GET, HEAD\r\n"), "{text}");
    }
}

#[test]
fn keep_alive_matrix_for_http_10_and_11() {
    let cases: [(&[u8], bool, Option<&str>); 5] = [
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", false, None),
        (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n",
            true,
            Some("close"),
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n",
            true,
            Some("close"),
        ),
        (b"GET /healthz HTTP/1.0\r\n\r\n", true, Some("close")),
        (
            b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            false,
            Some("keep-alive"),
        ),
    ];
    for (input, close, header) in cases {
        let (outcome, text) = answer(input);
        assert_eq!(closes(outcome), close, "{}", String::from_utf8_lossy(input));
        match header {
            Some(v) => assert!(text.contains(&format!("Connection: {v}\r\n")), "{text}"),
            None => assert!(!text.contains("Connection:"), "{text}"),
        }
    }
}

#[test]
fn pipelined_requests_are_answered_one_at_a_time() {
    let second = b"GET /other HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    let input = [HEALTHZ, second].concat();
    let (outcome, _) = answer(&input);
    let Outcome::Respond {
        consumed,
        status,
        close,
        ..
    } = outcome
    else {
        panic!()
    };
    assert_eq!((consumed, status, close), (HEALTHZ.len(), 200, false));
    let (outcome, _) = answer(&input[consumed..]);
    assert_eq!(outcome.clone_status_close(), (404, true));
}

impl Outcome {
    fn clone_status_close(self) -> (u16, bool) {
        match self {
            Outcome::Respond { status, close, .. } => (status, close),
            Outcome::Incomplete => panic!("incomplete"),
        }
    }
}

#[test]
fn every_prefix_of_a_valid_request_is_incomplete() {
    let input = b"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello";
    for end in 0..input.len() {
        assert_eq!(
            answer(&input[..end]).0,
            Outcome::Incomplete,
            "prefix of {end} bytes"
        );
    }
    let (outcome, _) = answer(input);
    assert!(matches!(outcome, Outcome::Respond { consumed, status: 405, .. } if consumed == input.len()));
}

#[test]
fn content_length_rules() {
    let ok = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
    assert!(matches!(answer(ok).0, Outcome::Respond { consumed, status: 404, .. } if consumed == ok.len()));
    for bad in [
        &b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ] {
        let (outcome, _) = answer(bad);
        assert_eq!(status(outcome), 400, "{}", String::from_utf8_lossy(bad));
        assert!(closes(outcome));
    }
}

#[test]
fn transfer_encoding_rules() {
    let both = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(status(answer(both).0), 400);
    let chunked = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (outcome, _) = answer(chunked);
    assert_eq!(status(outcome), 501);
    assert!(closes(outcome));
    let gzip = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(status(answer(gzip).0), 400);
}

#[test]
fn oversized_body_is_413() {
    let r = Responder::new(Limits {
        max_body: 10,
        ..Limits::default()
    });
    let (outcome, _) = answer_with(&r, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n");
    assert_eq!(status(outcome), 413);
    assert!(closes(outcome));
}

#[test]
fn long_request_line_is_414_even_before_it_ends() {
    let r = Responder::new(Limits {
        max_request_line: 64,
        ..Limits::default()
    });
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100));
    assert_eq!(status(answer_with(&r, long.as_bytes()).0), 414);
    assert_eq!(status(answer_with(&r, &long.as_bytes()[..80]).0), 414);
}

#[test]
fn too_many_or_too_large_headers_are_431() {
    let r = Responder::new(Limits {
        max_headers: 4,
        ..Limits::default()
    });
    let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_eq!(status(answer_with(&r, many).0), 431);
    let r = Responder::new(Limits {
        max_header_bytes: 100,
        ..Limits::default()
    });
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(100));
    assert_eq!(status(answer_with(&r, big.as_bytes()).0), 431);
    // No terminator yet, but already over the limit: refused without waiting.
    assert_eq!(status(answer_with(&r, &big.as_bytes()[..120]).0), 431);
}

#[test]
fn syntax_the_framing_rules_forbid_is_400() {
    for bad in [
        &b"GET /healthz HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET /healthz HTTP/1.1\nHost: a\n\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GARBAGE\x01 / HTTP/1.1\r\n\r\n",
    ] {
        let (outcome, text) = answer(bad);
        assert_eq!(status(outcome), 400, "{:?}", String::from_utf8_lossy(bad));
        assert!(closes(outcome));
        assert!(text.contains("Connection: close\r\n"));
        assert!(matches!(outcome, Outcome::Respond { consumed, .. } if consumed == bad.len()));
    }
}

/// Pseudo-random inputs, some built from request fragments: never a panic, and the outcome always
/// stays inside its buffers.
#[test]
fn arbitrary_bytes_never_panic_or_overrun() {
    let r = responder();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces: [&[u8]; 10] = [
        b"GET ",
        b"/healthz",
        b" HTTP/1.1",
        b"\r\n",
        b"Host: a",
        b"Content-Length: 4",
        b"Transfer-Encoding: chunked",
        b"\n",
        b": ",
        b"\x00\xff",
    ];
    for _ in 0..20_000 {
        let mut input = Vec::new();
        for _ in 0..(next() % 12) {
            if next() % 3 == 0 {
                input.push(next() as u8);
            } else {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
        }
        let mut out = [0u8; MIN_RESPONSE_BUFFER];
        match r.handle(&input, &mut out) {
            Outcome::Incomplete => {}
            Outcome::Respond {
                consumed, written, ..
            } => {
                assert!(consumed <= input.len() && written <= out.len() && consumed > 0);
            }
        }
    }
}
