use httparse::{Request, EMPTY_HEADER};

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
        Outcome::Forward(f) => panic!("forwarded: {f:?}"),
    };
    (outcome, String::from_utf8(out[..written].to_vec()).unwrap())
}

fn status(outcome: Outcome) -> u16 {
    match outcome {
        Outcome::Respond { status, .. } => status,
        other => panic!("{other:?}"),
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
            status: 200,
            route: Some(0),
            rate_limited: false,
        }
    );
}

#[test]
fn head_has_headers_but_no_body() {
    let (outcome, text) = answer(b"HEAD /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(status(outcome), 200);
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nServer: xgate\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
    );
    let (outcome, text) = answer(b"HEAD /nope HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(status(outcome), 404);
    assert_eq!(
        text,
        "HTTP/1.1 404 Not Found\r\nServer: xgate\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"
    );
}

#[test]
fn refusals_of_head_requests_have_no_body_either() {
    let (outcome, text) = answer(b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(status(outcome), 400);
    assert_eq!(
        text,
        "HTTP/1.1 400 Bad Request\r\nServer: xgate\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn refusals_have_exact_bytes_and_close() {
    let input = b"GET /healthz HTTP/1.1\r\nHost : a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let (outcome, text) = answer(input);
    assert_eq!(
        text,
        "HTTP/1.1 400 Bad Request\r\nServer: xgate\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n"
    );
    assert_eq!(
        outcome,
        Outcome::Respond {
            consumed: input.len(),
            written: text.len(),
            close: true,
            status: 400,
            route: None,
            rate_limited: false,
        }
    );
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
    assert_eq!(
        text,
        "HTTP/1.1 404 Not Found\r\nServer: xgate\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"
    );
    // Only the health path (on whole segments: `/healthz/…` is under it) is the health check.
    for path in ["/", "/HEALTHZ", "/healthzz", "/health", "*"] {
        let input = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(status(answer(input.as_bytes()).0), 404, "{path}");
    }
}

#[test]
fn absolute_form_targets_route_on_their_path() {
    for (target, expected) in [
        ("http://gw/healthz", 200),
        ("HTTP://gw:80/healthz?x", 200),
        ("https://gw/other", 404),
        ("http://gw", 404),
        ("http://gw?healthz", 404),
    ] {
        let input = format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(status(answer(input.as_bytes()).0), expected, "{target}");
    }
    for target in ["ftp://gw/healthz", "gw:80", "healthz"] {
        let input = format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(status(answer(input.as_bytes()).0), 400, "{target}");
    }
}

#[test]
fn empty_lines_before_the_request_line_are_skipped_and_consumed() {
    let input = [b"\r\n\r\n", HEALTHZ].concat();
    let (outcome, _) = answer(&input);
    assert!(
        matches!(outcome, Outcome::Respond { consumed, status: 200, close: false, .. } if consumed == input.len())
    );
}

#[test]
fn other_methods_on_healthz_are_405_with_allow() {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let input = format!("{method} /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n");
        let (outcome, text) = answer(input.as_bytes());
        assert_eq!(status(outcome), 405, "{method}");
        assert!(!closes(outcome));
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nServer: xgate\r\nContent-Type: text/plain\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\n\r\nmethod not allowed\n"
        );
    }
}

#[test]
fn keep_alive_matrix_for_http_10_and_11() {
    let cases: [(&[u8], bool, Option<&str>); 10] = [
        (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            false,
            None,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
            false,
            None,
        ),
        (
            b"GET /healthz HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n",
            true,
            Some("close"),
        ),
        (
            b"GET /healthz HTTP/1.0\r\nConnection: TE,KEEP-ALIVE\r\n\r\n",
            false,
            Some("keep-alive"),
        ),
        (
            b"GET /healthz HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n",
            true,
            Some("close"),
        ),
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
        assert_eq!(status(outcome), 200);
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

#[test]
fn pipelined_requests_with_bodies_drain_exactly() {
    let requests: [&[u8]; 4] = [
        b"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nGET ",
        b"GET /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
        b"HEAD /healthz HTTP/1.1\r\nHost: gw\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi",
    ];
    let input = requests.concat();
    let mut rest = &input[..];
    for (request, expected) in requests.iter().zip([405, 200, 200, 404]) {
        let (outcome, _) = answer(rest);
        assert!(
            matches!(outcome, Outcome::Respond { consumed, status, close: false, .. }
                if consumed == request.len() && status == expected),
            "{outcome:?}"
        );
        rest = &rest[request.len()..];
    }
    assert_eq!(answer(rest).0, Outcome::Incomplete);
}

impl Outcome {
    fn clone_status_close(self) -> (u16, bool) {
        match self {
            Outcome::Respond { status, close, .. } => (status, close),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn every_prefix_of_a_valid_request_is_incomplete() {
    let cases: [(&[u8], u16); 4] = [
        (
            b"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello",
            405,
        ),
        (HEALTHZ, 200),
        (b"HEAD /a?b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 404),
        (b"\r\nGET /healthz HTTP/1.1\r\nHost: gw\r\nX-A: \r\n\r\n", 200),
    ];
    for (input, expected) in cases {
        for end in 0..input.len() {
            assert_eq!(
                answer(&input[..end]).0,
                Outcome::Incomplete,
                "prefix of {end} bytes of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let (outcome, _) = answer(input);
        assert!(
            matches!(outcome, Outcome::Respond { consumed, status, .. }
                if consumed == input.len() && status == expected),
            "{outcome:?}"
        );
    }
}

#[test]
fn content_length_rules() {
    // The body is consumed with its request: the pipelined request after it is untouched.
    let with_body = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789";
    let input = [&with_body[..], HEALTHZ].concat();
    assert!(
        matches!(answer(&input).0, Outcome::Respond { consumed, status: 404, close: false, .. } if consumed == with_body.len())
    );
    assert_eq!(answer(&with_body[..with_body.len() - 1]).0, Outcome::Incomplete);
    let ok = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
    assert!(matches!(answer(ok).0, Outcome::Respond { consumed, status: 404, .. } if consumed == ok.len()));
    for bad in [
        &b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\nabc",
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
    for bad in [
        &b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"[..],
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let (outcome, _) = answer(bad);
        assert_eq!(status(outcome), 400, "{}", String::from_utf8_lossy(bad));
        assert!(closes(outcome));
    }
}

/// Chunked bodies are read whole (trailers included) and consumed with their request; they used
/// to be refused with 501.
#[test]
fn chunked_bodies_are_consumed_whole() {
    let chunked: &[u8] =
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n";
    let input = [chunked, HEALTHZ].concat();
    let (outcome, _) = answer(&input);
    assert!(
        matches!(outcome, Outcome::Respond { consumed, status: 404, close: false, .. } if consumed == chunked.len()),
        "{outcome:?}"
    );
    for end in 0..chunked.len() {
        assert_eq!(answer(&chunked[..end]).0, Outcome::Incomplete, "{end}");
    }
    for (bad, expected) in [
        (
            &b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"[..],
            400,
        ),
        (
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
            400,
        ),
        (
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n",
            413,
        ),
    ] {
        let (outcome, _) = answer(bad);
        assert_eq!(status(outcome), expected, "{}", String::from_utf8_lossy(bad));
        assert!(matches!(outcome, Outcome::Respond { consumed, close: true, .. } if consumed == bad.len()));
    }
    // Chunked framing may not take more than `max_body` bytes either.
    let r = Responder::new(Limits {
        max_body: 10,
        ..Limits::default()
    });
    let head = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let framing = [&head[..], b"1;aaaaaaa\r\n"].concat();
    assert_eq!(
        answer_with(&r, &framing[..framing.len() - 1]).0,
        Outcome::Incomplete
    );
    assert_eq!(status(answer_with(&r, &framing).0), 413);
}

#[test]
fn unknown_expectations_are_417() {
    let (outcome, _) = answer(b"GET /healthz HTTP/1.1\r\nHost: a\r\nExpect: gzip\r\n\r\n");
    assert_eq!(status(outcome), 417);
    assert!(closes(outcome));
    let ok = b"GET /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n";
    assert_eq!(status(answer(ok).0), 200);
}

#[test]
fn oversized_body_is_413() {
    let r = Responder::new(Limits {
        max_body: 10,
        ..Limits::default()
    });
    // Refused from the head alone, before any body byte arrives.
    let (outcome, _) = answer_with(&r, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n");
    assert_eq!(status(outcome), 413);
    assert!(closes(outcome));
    let at_limit = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789";
    assert_eq!(status(answer_with(&r, at_limit).0), 404);
    // The default limit is 1 MiB.
    let big = format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        1024 * 1024 + 1
    );
    assert_eq!(status(answer(big.as_bytes()).0), 413);
    let ok = format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        1024 * 1024
    );
    assert_eq!(answer(ok.as_bytes()).0, Outcome::Incomplete);
}

#[test]
fn long_request_line_is_414_even_before_it_ends() {
    let r = Responder::new(Limits {
        max_request_line: 64,
        ..Limits::default()
    });
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100));
    let (outcome, _) = answer_with(&r, long.as_bytes());
    assert_eq!(status(outcome), 414);
    assert!(closes(outcome));
    assert_eq!(status(answer_with(&r, &long.as_bytes()[..80]).0), 414);
    // The boundary: a line of exactly 64 bytes (CRLF excluded) is fine, 65 is not.
    let line = |len: usize| format!("GET /{} HTTP/1.1", "a".repeat(len - 14));
    let exact = format!("{}\r\nHost: a\r\n\r\n", line(64));
    assert_eq!(status(answer_with(&r, exact.as_bytes()).0), 404);
    for end in 0..exact.len() {
        assert_eq!(
            answer_with(&r, &exact.as_bytes()[..end]).0,
            Outcome::Incomplete,
            "{end}"
        );
    }
    let over = format!("{}\r\nHost: a\r\n\r\n", line(65));
    assert_eq!(status(answer_with(&r, over.as_bytes()).0), 414);
    assert_eq!(status(answer_with(&r, &over.as_bytes()[..65]).0), 414);
    assert_eq!(answer_with(&r, &over.as_bytes()[..64]).0, Outcome::Incomplete);
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
    assert_eq!(answer_with(&r, &big.as_bytes()[..100]).0, Outcome::Incomplete);
}

#[test]
fn default_header_limits_are_64_fields_and_16_kib() {
    let with_fields = |n: usize| {
        let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: a\r\n");
        for i in 1..n {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        head + "\r\n"
    };
    assert_eq!(status(answer(with_fields(64).as_bytes()).0), 200);
    let (outcome, _) = answer(with_fields(65).as_bytes());
    assert_eq!(status(outcome), 431);
    assert!(closes(outcome));
    let unterminated = format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX: {}", "v".repeat(20_000));
    assert_eq!(answer(&unterminated.as_bytes()[..16_384]).0, Outcome::Incomplete);
    let (outcome, _) = answer(&unterminated.as_bytes()[..16_385]);
    assert_eq!(status(outcome), 431);
    assert!(closes(outcome));
}

/// The responder relies on httparse's defaults to refuse obs-fold and whitespace before a colon.
#[test]
fn httparse_defaults_refuse_obs_fold_and_space_before_colon() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
    ] {
        let mut headers = [EMPTY_HEADER; 8];
        assert!(
            Request::new(&mut headers).parse(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(status(answer(bad).0), 400);
    }
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
        b"GET /healthz\r\nHost: a\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        b"\r\n\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
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
    let mut responses = 0;
    for round in 0..30_000 {
        let mut input = Vec::new();
        if round % 4 == 0 {
            // Pure noise.
            for _ in 0..(next() % 64) {
                input.push(next() as u8);
            }
        } else {
            for _ in 0..(next() % 12) {
                if next() % 3 == 0 {
                    input.push(next() as u8);
                } else {
                    input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
                }
            }
        }
        let mut out = [0u8; MIN_RESPONSE_BUFFER];
        let outcome = r.handle(&input, &mut out);
        let mut again = [0u8; MIN_RESPONSE_BUFFER];
        assert_eq!(r.handle(&input, &mut again), outcome, "not deterministic");
        match outcome {
            Outcome::Incomplete => {}
            Outcome::Respond {
                consumed,
                written,
                close,
                status,
                ..
            } => {
                responses += 1;
                assert!(consumed > 0 && consumed <= input.len(), "{input:?}");
                assert!(written > 0 && written <= out.len());
                assert_eq!(out[..written], again[..written]);
                let text = std::str::from_utf8(&out[..written]).unwrap();
                assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
                assert!(text.contains("\r\nServer: xgate\r\n"), "{text}");
                assert_eq!(text.contains("\r\nConnection: close\r\n"), close, "{text}");
                if status >= 400 && status != 404 && status != 405 {
                    assert!(close && consumed == input.len(), "{text}");
                }
            }
            Outcome::Forward(f) => panic!("forwarded: {f:?}"),
        }
    }
    // The generator reaches answers, not only incomplete input.
    assert!(responses > 10_000, "{responses}");
}
