//! Property checks over arbitrary bytes, shared by the fuzz targets (`proxy/fuzz`) and the corpus
//! test (`proxy/tests/corpus.rs`) so both exercise exactly the same assertions. Not part of the
//! gateway's API.
//!
//! Invariants: each check panics exactly when a property fails, and nothing else; none allocates.

use std::net::Ipv4Addr;

use crate::{
    authority::valid_host,
    chunked::{ChunkedDecoder, Feed},
    forward::{write_upstream_head, ForwardOptions},
    limits::Limits,
    request::{frame_request, BodyFraming, Refusal},
    responder::{Outcome, Responder, MIN_RESPONSE_BUFFER},
    response::{frame_response, write_client_head, ClientHeadOptions, ResponseBody},
};

/// Buffer for rewritten heads in the checks.
const OUT: usize = 16 * 1024;

/// Limits generous enough to re-frame any head the gateway wrote from a default-limited one.
fn reframe_limits() -> Limits {
    Limits {
        max_request_line: 64 * 1024,
        max_header_bytes: 64 * 1024,
        ..Limits::default()
    }
}

/// Frames `data` as a client request. If a head is framed: it lies within `data`; its host is
/// valid `uri-host [ ":" port ]`; the upstream head written from it (when it fits in 16 KiB)
/// frames again to the same method, target, body framing and the host the upstream should see;
/// a chunked body after it walks consistently. The fixed responder never panics on `data` and
/// stays inside its buffers.
pub fn check_request(data: &[u8]) {
    let limits = Limits::default();
    let mut out = [0u8; MIN_RESPONSE_BUFFER];
    match Responder::new(limits).handle(data, &mut out) {
        Outcome::Incomplete => {}
        Outcome::Respond {
            consumed, written, ..
        } => assert!(consumed <= data.len() && written <= out.len()),
        Outcome::Forward(_) => panic!("the responder has no upstream to forward to"),
    }
    let head = match frame_request(data, &limits) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(data.len() <= limits.max_header_bytes);
            return;
        }
        Err(Refusal(status)) => {
            assert!(matches!(status, 400 | 413 | 414 | 417 | 431), "{status}");
            return;
        }
    };
    assert!(head.head_len > 0 && head.head_len <= data.len());
    if let Some(host) = head.host {
        assert!(valid_host(host), "{host:?}");
        assert!(!head.host_from_target || !host.is_empty());
    }
    let options = ForwardOptions {
        client_ip: Ipv4Addr::new(192, 0, 2, 1).into(),
        host_rewrite: data.len().is_multiple_of(2).then_some("rewritten.test"),
        upstream_authority: "upstream.test:8080",
        strip_expect: data.len().is_multiple_of(3),
        https: data.len().is_multiple_of(5),
    };
    let mut upstream = [0u8; OUT];
    if let Some(n) = write_upstream_head(&head, data, &options, &mut upstream) {
        assert!(n <= upstream.len());
        match frame_request(&upstream[..n], &reframe_limits()) {
            // More fields than the parser's array: added fields can pass the limit.
            Err(Refusal(431)) => {}
            Ok(Some(again)) => {
                assert_eq!(again.head_len, n);
                assert_eq!(
                    (again.method, again.target, again.body),
                    (head.method, head.target, head.body)
                );
                assert!(again.http10 == head.http10 && again.keep_alive);
                // The host the upstream sees: an absolute-form target's authority, else the
                // rewrite, else the client's Host, else the upstream's authority.
                let expected = if head.host_from_target {
                    head.host
                } else {
                    options
                        .host_rewrite
                        .map(str::as_bytes)
                        .or(head.host)
                        .or(Some(options.upstream_authority.as_bytes()))
                };
                assert_eq!(again.host, expected);
            }
            other => panic!("upstream head does not frame: {other:?}"),
        }
    }
    if head.body == BodyFraming::Chunked {
        let body = &data[head.head_len..];
        let mut decoder = ChunkedDecoder::new(limits.max_body as u64);
        if let Ok(feed) = decoder.feed(body) {
            assert_feed(feed, body.len());
        }
    }
}

/// Walks `data` as a chunked body, first in one piece, then split at a point chosen by its first
/// two bytes, then (for short inputs) byte by byte: all three give the same outcome, and
/// `consumed` stops short of the input only at the body's end.
pub fn check_chunked(data: &[u8]) {
    let (max_body, split, body) = match data {
        [a, b, rest @ ..] => {
            let max_body = if a & 1 == 0 { u64::MAX } else { 64 };
            (max_body, usize::from(*b) % (rest.len() + 1), rest)
        }
        _ => (u64::MAX, 0, data),
    };
    let one_shot = walk(ChunkedDecoder::new(max_body), &[body]);
    let (left, right) = body.split_at(split);
    assert_eq!(walk(ChunkedDecoder::new(max_body), &[left, right]), one_shot);
    if body.len() <= 4096 {
        let mut decoder = ChunkedDecoder::new(max_body);
        let mut bytewise = Ok((0, false));
        for (i, byte) in body.iter().enumerate() {
            match decoder.feed(std::slice::from_ref(byte)) {
                Ok(Feed { consumed: 1, done }) => bytewise = Ok((i + 1, done)),
                Ok(Feed {
                    consumed: 0,
                    done: true,
                }) => break,
                Ok(feed) => panic!("one byte fed, {feed:?}"),
                Err(error) => {
                    bytewise = Err(error);
                    break;
                }
            }
        }
        assert_eq!(bytewise, one_shot);
    }
}

/// Feeds `pieces` in turn: the bytes consumed in all and whether the body ended, or the error.
fn walk(mut decoder: ChunkedDecoder, pieces: &[&[u8]]) -> Result<(usize, bool), crate::chunked::ChunkError> {
    let mut total = 0;
    for piece in pieces {
        let feed = decoder.feed(piece)?;
        assert_feed(feed, piece.len());
        total += feed.consumed;
        if feed.done {
            assert!(decoder.is_done());
            return Ok((total, true));
        }
    }
    Ok((total, false))
}

/// A feed's `consumed` is within its input, and short of it only when done.
fn assert_feed(feed: Feed, len: usize) {
    assert!(feed.consumed <= len);
    assert!(feed.done || feed.consumed == len, "{feed:?} of {len}");
}

/// Frames `data[1..]` as an upstream response (the first byte's bits choose whether it answers
/// HEAD and the client-head options). If a head is framed, it lies within the input, its body
/// framing is consistent, and the client head written from it (when it fits) frames again to the
/// same status and body framing.
pub fn check_response(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let is_head = flags & 1 != 0;
    let head = match frame_response(input, is_head, 16 * 1024) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(input.len() <= 16 * 1024);
            return;
        }
        Err(error) => {
            assert_eq!(error.status(), 502);
            return;
        }
    };
    assert!(head.head_len > 0 && head.head_len <= input.len());
    assert!((100..=999).contains(&head.status) && head.status != 101);
    assert_eq!(head.informational, head.status < 200);
    if is_head || head.informational || head.status == 204 || head.status == 304 {
        assert_eq!(head.body, ResponseBody::None);
    }
    if head.body == ResponseBody::UntilClose {
        assert!(!head.upstream_keep_alive);
    }
    let options = ClientHeadOptions {
        close: flags & 2 != 0 || head.body == ResponseBody::UntilClose,
        http10_keep_alive: flags & 4 != 0,
        hsts_max_age: (flags & 8 != 0).then_some(31_536_000),
    };
    let mut out = [0u8; OUT];
    if let Some(n) = write_client_head(&head, input, &options, &mut out) {
        match frame_response(&out[..n], is_head, 64 * 1024) {
            Err(crate::response::ResponseError::TooLarge) => {}
            Ok(Some(again)) => {
                assert_eq!(again.head_len, n);
                assert_eq!((again.status, again.body), (head.status, head.body));
            }
            other => panic!("client head does not frame: {other:?}"),
        }
    }
}
