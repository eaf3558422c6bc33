use super::*;
use crate::stream::{MemoryStream, Pair, Stream};

const CONNECT_MS: u64 = 100;
const RESPONSE_MS: u64 = 500;
const BODY_IDLE_MS: u64 = 800;

const TIMEOUTS: ExchangeTimeouts = ExchangeTimeouts {
    upstream_connect_ms: CONNECT_MS,
    upstream_response_ms: RESPONSE_MS,
    body_idle_ms: BODY_IDLE_MS,
};

const GET_HEAD: &[u8] = b"GET /a HTTP/1.1\r\nHost: up\r\n\r\n";
const POST_HEAD: &[u8] = b"POST /a HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\n\r\n";
const CHUNKED_HEAD: &[u8] = b"POST /a HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n";
const OK_HI: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: gw\r\n\r\n";
/// The head the client gets for [`OK_HI`].
const CLIENT_OK_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 xgate\r\n\r\n";

/// A forward of `written` upstream head bytes with `body`; idempotent when it has no body.
fn forward(written: usize, body: BodyFraming) -> Forward {
    Forward {
        head_len: 40,
        written,
        route: 1,
        pool: 0,
        body,
        close: false,
        http10: false,
        is_head: false,
        expect_continue: false,
        idempotent: body == BodyFraming::None,
        hash: None,
        hsts_max_age: None,
    }
}

fn get() -> Forward {
    forward(GET_HEAD.len(), BodyFraming::None)
}

fn post() -> Forward {
    forward(POST_HEAD.len(), BodyFraming::Length(5))
}

fn chunked_post() -> Forward {
    forward(CHUNKED_HEAD.len(), BodyFraming::Chunked)
}

/// An exchange with its two streams and its connection's buffers.
struct Rig {
    client: MemoryStream,
    upstream: MemoryStream,
    request: Vec<u8>,
    request_len: usize,
    response: Vec<u8>,
    scratch: Vec<u8>,
    x: Exchange,
    cx: PumpContext,
}

impl Rig {
    /// `forward` at t=0, its upstream head `head` in the response buffer, assigned a new
    /// connection to member 3 that is established.
    fn new(forward: Forward, head: &[u8]) -> Rig {
        Rig::build(forward, head, 1 << 20, false)
    }

    fn build(forward: Forward, head: &[u8], max_body: u64, draining: bool) -> Rig {
        assert_eq!(forward.written, head.len());
        let mut response = vec![0u8; 4096];
        response[..head.len()].copy_from_slice(head);
        let mut x = Exchange::new(forward, max_body, draining, 0);
        x.assigned(3, false, 0, &TIMEOUTS);
        Rig {
            client: MemoryStream::new(4096, 4096),
            upstream: MemoryStream::new(4096, 4096),
            request: vec![0u8; 4096],
            request_len: 0,
            response,
            scratch: vec![0u8; 16 * 1024],
            x,
            cx: PumpContext {
                now_ms: 0,
                draining,
                max_response_head: 1024,
                timeouts: TIMEOUTS,
            },
        }
    }

    /// Client bytes already in the slot (after the consumed head).
    fn slot(mut self, bytes: &[u8]) -> Rig {
        self.request[self.request_len..self.request_len + bytes.len()].copy_from_slice(bytes);
        self.request_len += bytes.len();
        self
    }

    fn at(&mut self, now_ms: u64) -> &mut Rig {
        self.cx.now_ms = now_ms;
        self
    }

    fn pump(&mut self) -> Pumped {
        let mut io = Pair::new(&mut self.client, &mut self.upstream);
        let slot = SlotBuffers {
            request: &mut self.request,
            request_len: &mut self.request_len,
            response: &mut self.response,
        };
        self.x.pump(&mut io, slot, &mut self.scratch, &self.cx)
    }

    /// Pumps, expecting the exchange to go on.
    fn pump_on(&mut self) -> Pumped {
        let pumped = self.pump();
        assert_eq!(pumped.end, None, "{pumped:?}");
        pumped
    }

    fn slot_bytes(&self) -> &[u8] {
        &self.request[..self.request_len]
    }

    /// What the upstream received, taken.
    fn upstream_got(&mut self) -> Vec<u8> {
        self.upstream.take_sent()
    }

    fn client_got(&mut self) -> String {
        String::from_utf8(self.client.take_sent()).unwrap()
    }
}

fn complete(reusable: bool, close_client: bool) -> Option<End> {
    Some(End::Complete {
        reusable,
        close_client,
    })
}

fn upstream_fault(cause: UpstreamFault) -> Option<End> {
    Some(End::UpstreamFailed { status: 502, cause })
}

// Connecting.

#[test]
fn waits_while_the_upstream_connects_then_sends_the_head() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    assert_eq!(rig.x.deadline_ms(), CONNECT_MS);
    let pumped = rig.at(10).pump();
    assert_eq!(
        pumped,
        Pumped {
            progress: false,
            head: None,
            end: None,
            milestones: Milestones::default(),
        }
    );
    assert!(rig.upstream.sent().is_empty());
    assert!(!rig.x.established());
    rig.upstream.set_state(StreamState::Established);
    let pumped = rig.at(20).pump_on();
    assert!(pumped.progress);
    assert!(rig.x.established());
    assert_eq!(rig.x.deadline_ms(), 20 + RESPONSE_MS);
    assert_eq!(rig.upstream_got(), GET_HEAD);
    assert!(rig.x.request_done());
}

#[test]
fn refused_before_the_handshake_ends_is_a_connect_failure_that_may_retry() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    rig.pump_on();
    rig.upstream.reset();
    let pumped = rig.pump();
    assert_eq!(pumped.end, upstream_fault(UpstreamFault::ConnectFailed));
    assert!(!pumped.progress);
    assert!(!rig.x.response_begun());
    assert!(rig.x.counts_against_member());
    assert!(rig.x.may_retry());
    assert_eq!(rig.x.retry(), Some(3), "the failed member is excluded");
    assert!(rig.x.retried() && !rig.x.is_assigned() && !rig.x.established());
    assert!(!rig.x.may_retry(), "one retry only");
}

#[test]
fn an_upstream_seen_half_closed_before_established_counts_as_a_connect_failure() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.peer_close();
    assert_eq!(rig.upstream.state(), StreamState::Closing);
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ConnectFailed));
}

// The request head and body.

#[test]
fn the_request_head_goes_out_in_pieces_and_no_response_is_read_before_it_is_out() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream = MemoryStream::new(10, 4096);
    rig.upstream.deliver(OK_HI);
    let pumped = rig.pump_on();
    assert!(pumped.progress);
    assert_eq!(pumped.head, None);
    assert_eq!(rig.x.head_progress(), (10, GET_HEAD.len()));
    assert_eq!(rig.x.phase(), ResponsePhase::AwaitingHead);
    let pumped = rig.pump_on();
    assert!(!pumped.progress, "no send room");
    let mut got = rig.upstream_got();
    let pumped = loop {
        assert_eq!(rig.x.phase(), ResponsePhase::AwaitingHead);
        let pumped = rig.pump();
        got.extend(rig.upstream_got());
        if rig.x.head_progress().0 == GET_HEAD.len() {
            break pumped;
        }
        assert_eq!(
            pumped,
            Pumped {
                progress: true,
                head: None,
                end: None,
                milestones: Milestones::default(),
            }
        );
    };
    assert_eq!(got, GET_HEAD);
    // The pump that sent the head's last bytes took the response too.
    assert_eq!(pumped.head, Some(200));
    assert_eq!(pumped.end, complete(true, false));
}

#[test]
fn a_length_body_in_the_slot_goes_out_and_pipelined_bytes_stay() {
    let mut rig = Rig::new(post(), POST_HEAD).slot(b"hello").slot(NEXT);
    let pumped = rig.at(7).pump_on();
    assert!(pumped.progress);
    assert_eq!(rig.upstream_got(), [POST_HEAD, b"hello"].concat());
    assert_eq!(rig.slot_bytes(), NEXT);
    assert!(rig.x.request_done());
    assert_eq!(rig.x.deadline_ms(), 7 + BODY_IDLE_MS.max(RESPONSE_MS));
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, false));
    assert_eq!(rig.slot_bytes(), NEXT, "the next request waits in the slot");
}

#[test]
fn a_length_body_from_the_client_stream_stops_at_its_end() {
    let mut rig = Rig::new(post(), POST_HEAD);
    rig.pump_on();
    assert_eq!(rig.upstream_got(), POST_HEAD);
    rig.client.deliver(b"hel");
    rig.pump_on();
    assert_eq!(rig.upstream_got(), b"hel");
    assert_eq!(rig.x.request_body(), BodyLeft::Length(2));
    rig.client.deliver(b"lo");
    rig.client.deliver(NEXT);
    rig.pump_on();
    assert_eq!(rig.upstream_got(), b"lo");
    assert!(rig.x.request_done());
    assert_eq!(
        rig.client.unread(),
        NEXT.len(),
        "the next request stays in the client stream"
    );
}

#[test]
fn slot_bytes_go_first_and_the_stream_is_read_on_a_later_pump() {
    let mut rig = Rig::new(post(), POST_HEAD).slot(b"he");
    rig.client.deliver(b"llo");
    rig.pump_on();
    assert_eq!(rig.upstream_got(), [POST_HEAD, b"he"].concat());
    assert_eq!(rig.x.request_body(), BodyLeft::Length(3));
    rig.pump_on();
    assert_eq!(rig.upstream_got(), b"llo");
    assert!(rig.x.request_done());
}

#[test]
fn a_slot_body_waits_for_upstream_send_room() {
    let mut rig = Rig::new(post(), POST_HEAD).slot(b"hello").slot(NEXT);
    rig.upstream = MemoryStream::new(POST_HEAD.len() + 2, 4096);
    rig.pump_on();
    assert_eq!(rig.upstream_got(), [POST_HEAD, b"he"].concat());
    assert_eq!(&rig.slot_bytes()[..3], b"llo");
    rig.pump_on();
    assert_eq!(rig.upstream_got(), b"llo");
    assert_eq!(rig.slot_bytes(), NEXT);
}

#[test]
fn a_slot_body_for_an_upstream_reset_meanwhile_stays_in_the_slot_and_the_upstream_failed() {
    let mut rig = Rig::new(post(), POST_HEAD).slot(b"hello");
    rig.upstream = MemoryStream::new(POST_HEAD.len(), 4096);
    rig.pump_on();
    assert_eq!(rig.upstream_got(), POST_HEAD, "the body waits for room");
    rig.upstream.reset();
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));
    assert_eq!(
        rig.slot_bytes(),
        b"hello",
        "nothing taken for a stream that cannot send"
    );
}

#[test]
fn a_chunked_body_ends_at_its_last_chunk() {
    let mut rig = Rig::new(chunked_post(), CHUNKED_HEAD);
    rig.pump_on();
    rig.upstream_got();
    rig.client.deliver(b"5\r\nhel");
    rig.pump_on();
    assert!(!rig.x.request_body().is_done());
    rig.client.deliver(b"lo\r\n0\r\n\r\n");
    rig.client.deliver(NEXT);
    rig.pump_on();
    assert_eq!(rig.upstream_got(), b"5\r\nhello\r\n0\r\n\r\n");
    assert!(rig.x.request_done());
    assert_eq!(rig.client.unread(), NEXT.len());
}

#[test]
fn a_bad_chunked_body_fails_the_request_with_the_chunk_status() {
    let mut rig = Rig::new(chunked_post(), CHUNKED_HEAD).slot(b"5 \r\nhello\r\n0\r\n\r\n");
    let pumped = rig.pump();
    assert_eq!(
        pumped.end,
        Some(End::RequestFailed {
            status: ChunkError::InvalidSize.status(),
            cause: RequestFault::BadBody,
            abort_client: false
        })
    );
    assert_eq!(rig.upstream_got(), CHUNKED_HEAD, "no body byte went out");
}

#[test]
fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let mut rig = Rig::build(chunked_post(), CHUNKED_HEAD, 4, false);
    rig.pump_on();
    rig.client.deliver(b"5\r\nhello\r\n0\r\n\r\n");
    let pumped = rig.pump();
    assert_eq!(
        pumped.end,
        Some(End::RequestFailed {
            status: 413,
            cause: RequestFault::BadBody,
            abort_client: false
        })
    );
}

#[test]
fn a_client_closing_mid_body_is_aborted() {
    let mut rig = Rig::new(post(), POST_HEAD);
    rig.pump_on();
    rig.client.deliver(b"he");
    rig.client.peer_close();
    let failed = Some(End::RequestFailed {
        status: 400,
        cause: RequestFault::ClientClosedMidBody,
        abort_client: true,
    });
    let pumped = rig.pump();
    assert_eq!(pumped.end, failed);
    assert!(pumped.progress);
    // The buffered bytes were taken first.
    assert_eq!(rig.upstream_got(), [POST_HEAD, b"he"].concat());
}

#[test]
fn a_client_half_closed_after_its_whole_body_is_not_aborted() {
    let mut rig = Rig::new(post(), POST_HEAD);
    rig.client.deliver(b"hello");
    rig.client.peer_close();
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, false));
}

// `100 Continue`.

#[test]
fn continue_is_sent_once_after_the_head_when_the_client_waits_with_its_body() {
    let mut f = post();
    f.expect_continue = true;
    let mut rig = Rig::new(f, POST_HEAD);
    rig.upstream = MemoryStream::new(10, 4096);
    rig.pump_on();
    assert!(
        rig.client.sent().is_empty(),
        "not before the upstream has the head"
    );
    while rig.x.head_progress().0 < POST_HEAD.len() {
        rig.upstream.take_sent();
        rig.pump_on();
    }
    assert_eq!(rig.client_got(), "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(rig.x.continue_sent());
    rig.pump_on();
    rig.pump_on();
    assert!(rig.client.sent().is_empty(), "sent once only");
}

#[test]
fn continue_waits_for_client_send_room() {
    let mut f = post();
    f.expect_continue = true;
    let mut rig = Rig::new(f, POST_HEAD);
    rig.client = MemoryStream::new(CONTINUE.len() - 1, 4096);
    rig.pump_on();
    assert!(!rig.x.continue_sent());
    assert!(rig.client.sent().is_empty());
    rig.client = MemoryStream::new(CONTINUE.len(), 4096);
    rig.pump_on();
    assert!(rig.x.continue_sent());
    assert_eq!(rig.client.sent(), CONTINUE);
}

#[test]
fn no_continue_while_body_bytes_are_in_the_slot() {
    let mut f = post();
    f.expect_continue = true;
    let mut rig = Rig::new(f, POST_HEAD).slot(b"hello");
    rig.pump_on();
    assert!(rig.x.request_done());
    assert!(!rig.x.continue_sent(), "the client did not wait");
    assert!(rig.client.sent().is_empty());
}

/// Today's rule looks at the slot only: once the slot's part of the body went upstream, the
/// client gets `100 Continue` even though it had started sending its body.
#[test]
fn continue_follows_once_the_slot_part_of_the_body_went_out() {
    let mut f = post();
    f.expect_continue = true;
    let mut rig = Rig::new(f, POST_HEAD).slot(b"he");
    rig.pump_on();
    assert!(!rig.x.continue_sent());
    rig.client.deliver(b"llo");
    rig.pump_on();
    assert!(rig.x.request_done());
    assert!(rig.x.continue_sent());
    assert_eq!(rig.client.sent(), CONTINUE);
}

#[test]
fn no_continue_without_expect_or_once_the_response_began() {
    let mut rig = Rig::new(post(), POST_HEAD);
    rig.pump_on();
    assert!(rig.client.sent().is_empty());

    let mut f = post();
    f.expect_continue = true;
    let mut rig = Rig::new(f, POST_HEAD);
    rig.upstream = MemoryStream::new(POST_HEAD.len(), 4096);
    // An answer already there when the head goes out: `100 Continue` (step 2) still precedes
    // it (step 4).
    rig.upstream
        .deliver(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let pumped = rig.pump();
    assert_eq!(pumped.head, Some(413));
    assert!(rig
        .client_got()
        .starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413"));

    // Once the response head was taken, no interim answer may follow it.
    let mut f = post();
    f.expect_continue = true;
    let mut rig = Rig::new(f, POST_HEAD);
    rig.client = MemoryStream::new(4, 4096);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    let pumped = rig.pump_on();
    assert_eq!(pumped.head, Some(200));
    assert!(!rig.x.continue_sent());
    rig.client = MemoryStream::new(4096, 4096);
    rig.pump_on();
    assert!(!rig.x.continue_sent());
    assert!(!rig.client_got().contains("100 Continue"));
}

// The response head.

#[test]
fn the_client_gets_the_rewritten_head_and_the_body() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.deliver(OK_HI);
    let pumped = rig.at(30).pump();
    assert_eq!(pumped.head, Some(200));
    assert!(pumped.progress);
    assert_eq!(pumped.end, complete(true, false));
    assert_eq!(rig.client_got(), format!("{CLIENT_OK_HEAD}hi"));
    assert_eq!(rig.x.status(), 200);
    assert_eq!(rig.x.response_bytes(), 2);
    assert_eq!(rig.x.phase(), ResponsePhase::Done);
    assert_eq!(rig.x.started_ms(), 0);
    assert_eq!(rig.x.member(), 3);
    assert_eq!(rig.x.forward().route, 1);
    assert_eq!(rig.upstream.unread(), 0);
}

#[test]
fn a_response_head_in_pieces_is_taken_once_whole() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.deliver(b"HTTP/1.1 200 OK\r\nContent-");
    let pumped = rig.pump_on();
    assert_eq!(pumped.head, None);
    assert_eq!(rig.x.phase(), ResponsePhase::AwaitingHead);
    assert!(rig.client.sent().is_empty());
    rig.upstream.deliver(b"Length: 2\r\n\r\nhi");
    assert_eq!(rig.pump().head, Some(200));
}

#[test]
fn interim_answers_are_skipped() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    let pumped = rig.pump_on();
    assert!(pumped.progress);
    assert_eq!(pumped.head, None, "interim answers are not reported");
    assert_eq!(rig.upstream.unread(), 0);
    assert!(rig.client.sent().is_empty(), "nor forwarded");
    rig.upstream.deliver(OK_HI);
    let pumped = rig.pump();
    assert_eq!(pumped.head, Some(200));
    assert!(rig.client_got().starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn the_client_head_goes_out_in_pieces() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.client = MemoryStream::new(8, 4096);
    rig.upstream.deliver(OK_HI);
    let pumped = rig.pump_on();
    assert_eq!(pumped.head, Some(200));
    assert_eq!(
        rig.x.phase(),
        ResponsePhase::SendingHead {
            len: CLIENT_OK_HEAD.len(),
            sent: 8
        }
    );
    let mut got = rig.client_got();
    let end = loop {
        let pumped = rig.pump();
        got += &rig.client_got();
        if let Some(end) = pumped.end {
            break end;
        }
        assert_eq!(pumped.head, None, "the head is taken once");
    };
    assert_eq!(
        end,
        End::Complete {
            reusable: true,
            close_client: false
        }
    );
    assert_eq!(got, format!("{CLIENT_OK_HEAD}hi"));
}

#[test]
fn a_bad_response_head_is_a_bad_response() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi");
    let pumped = rig.pump();
    assert_eq!(pumped.end, upstream_fault(UpstreamFault::BadResponse));
    assert_eq!(pumped.head, None);
    assert!(!rig.x.response_begun());
    assert!(rig.client.sent().is_empty());
    assert!(rig.x.counts_against_member());
    assert!(
        !rig.x.may_retry(),
        "an established fresh connection carried the request"
    );
}

#[test]
fn a_client_head_that_does_not_fit_the_slot_is_a_bad_response() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.response.truncate(64);
    let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
    long.extend([b'a'; 100]);
    long.extend(b"\r\nContent-Length: 0\r\n\r\n");
    rig.upstream.deliver(&long);
    let pumped = rig.pump();
    assert_eq!(pumped.end, upstream_fault(UpstreamFault::BadResponse));
    assert_eq!(pumped.head, None);
    assert!(!rig.x.response_begun());
}

#[test]
fn an_upstream_closed_before_any_head_failed() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.pump_on();
    rig.upstream.peer_close();
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));

    let mut rig = Rig::new(get(), GET_HEAD);
    rig.pump_on();
    rig.upstream.reset();
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));
}

/// Today's rule: `may_recv` stays true while unread bytes are buffered, so an upstream that
/// sends part of a head and closes is only caught by the response deadline.
#[test]
fn a_partial_head_then_a_close_waits_for_the_deadline() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.pump_on();
    rig.upstream.deliver(b"HTTP/1.1 200 OK\r\n");
    rig.upstream.peer_close();
    assert_eq!(rig.at(5).pump().end, None);
    assert_eq!(rig.at(6).pump().end, None);
    assert_eq!(rig.x.phase(), ResponsePhase::AwaitingHead);
    // The deadline set when the connection was seen established (t=0) stands.
    assert_eq!(rig.x.expire(RESPONSE_MS - 1), None);
    assert_eq!(rig.x.expire(RESPONSE_MS), Some(Expiry::GatewayTimeout));
}

#[test]
fn a_head_filling_the_receive_buffer_or_the_limit_failed() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream = MemoryStream::new(4096, 32);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nX-Filler: aaaaaaaaaaaaaaaaaaaaaaaa");
    assert!(rig.upstream.recv_full());
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));

    // Exactly the limit without a whole head.
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.cx.max_response_head = 20;
    rig.upstream.deliver(b"HTTP/1.1 200 OK\r\nX-F");
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));

    // Past the limit, the framing refuses it as too large: a bad response.
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.cx.max_response_head = 20;
    rig.upstream.deliver(b"HTTP/1.1 200 OK\r\nX-F:");
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::BadResponse));
}

// The response body.

#[test]
fn a_chunked_response_ends_at_its_last_chunk() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n");
    assert_eq!(rig.pump_on().head, Some(200));
    rig.upstream.deliver(b"0\r\n\r\n");
    assert_eq!(rig.pump().end, complete(true, false));
    assert!(rig
        .client_got()
        .ends_with("Transfer-Encoding: chunked\r\nVia: 1.1 xgate\r\n\r\n2\r\nhi\r\n0\r\n\r\n"));
    assert_eq!(rig.x.response_bytes(), 12);
}

#[test]
fn a_bad_chunked_response_fails_after_its_head_was_taken() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    let pumped = rig.pump();
    assert_eq!(pumped.head, Some(200), "counted before the failure");
    assert_eq!(pumped.end, upstream_fault(UpstreamFault::BadResponse));
    assert!(rig.x.response_begun());
    assert!(!rig.x.may_retry());
}

#[test]
fn a_response_until_close_ends_with_the_upstream_and_closes_the_client() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.deliver(b"HTTP/1.1 200 OK\r\n\r\nsome");
    let pumped = rig.pump_on();
    assert_eq!(pumped.head, Some(200));
    assert!(rig.x.client_close());
    rig.upstream.deliver(b" more");
    rig.pump_on();
    rig.upstream.peer_close();
    assert_eq!(rig.pump().end, complete(false, true));
    assert_eq!(
        rig.client_got(),
        "HTTP/1.1 200 OK\r\nVia: 1.1 xgate\r\nConnection: close\r\n\r\nsome more"
    );
    assert_eq!(rig.x.response_bytes(), 9);
}

#[test]
fn a_head_request_gets_no_body() {
    let mut f = get();
    f.is_head = true;
    let mut rig = Rig::new(f, GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(rig.pump().end, complete(true, false));
    assert_eq!(
        rig.client_got(),
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nVia: 1.1 xgate\r\n\r\n"
    );
    assert_eq!(rig.x.response_bytes(), 0);
}

#[test]
fn an_upstream_cut_mid_body_resets_rather_than_ends() {
    for cut in [MemoryStream::peer_close, MemoryStream::reset] {
        let mut rig = Rig::new(get(), GET_HEAD);
        rig.upstream
            .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        rig.pump_on();
        cut(&mut rig.upstream);
        let pumped = rig.pump();
        assert_eq!(pumped.end, upstream_fault(UpstreamFault::CutMidBody));
        assert!(rig.x.response_begun());
        assert!(rig.x.counts_against_member());
        assert!(!rig.x.may_retry());
        assert_eq!(rig.x.response_bytes(), 5);
    }
}

// The end of the exchange.

#[test]
fn an_upstream_saying_close_is_not_reused() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    assert_eq!(rig.pump().end, complete(false, false));
    assert!(
        !rig.client_got().contains("Connection"),
        "the client keeps its connection"
    );
}

#[test]
fn unread_upstream_bytes_after_the_response_forbid_reuse() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA");
    assert_eq!(rig.pump().end, complete(false, false));
    assert_eq!(rig.upstream.unread(), 5);
}

#[test]
fn an_upstream_half_closed_after_the_response_is_not_reused() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.pump_on();
    rig.upstream.deliver(OK_HI);
    rig.upstream.peer_close();
    assert_eq!(rig.pump().end, complete(false, false));
}

#[test]
fn an_answer_before_the_whole_body_closes_the_client() {
    let mut rig = Rig::new(post(), POST_HEAD).slot(b"he");
    rig.upstream = MemoryStream::new(POST_HEAD.len() + 2, 4096);
    rig.upstream
        .deliver(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n");
    let pumped = rig.pump();
    assert_eq!(pumped.head, Some(413));
    assert_eq!(pumped.end, complete(false, true));
    assert!(!rig.x.request_done());
    assert!(rig.x.client_close());
    // The head was written before the rule closed the connection.
    assert!(!rig.client_got().contains("Connection: close"));
}

#[test]
fn the_client_asking_to_close_or_draining_closes_it() {
    let mut f = get();
    f.close = true;
    let mut rig = Rig::new(f, GET_HEAD);
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, true));
    assert!(rig.client_got().contains("Connection: close\r\n"));

    // Draining when the exchange started.
    let mut rig = Rig::build(get(), GET_HEAD, 1 << 20, true);
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, true));
    assert!(rig.client_got().contains("Connection: close\r\n"));

    // Draining that began while the exchange waited for its response.
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.pump_on();
    rig.cx.draining = true;
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, true));
    assert!(rig.client_got().contains("Connection: close\r\n"));
}

#[test]
fn an_http10_client_keeps_its_connection_when_it_may() {
    let mut f = get();
    f.http10 = true;
    let mut rig = Rig::new(f, GET_HEAD);
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, false));
    assert!(rig.client_got().contains("Connection: keep-alive\r\n"));
}

#[test]
fn a_client_gone_ends_the_exchange_in_any_phase() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.client.reset();
    assert_eq!(rig.pump().end, Some(End::ClientGone));
    assert!(rig.upstream.sent().is_empty(), "nothing more is done");

    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    rig.pump_on();
    rig.client.set_state(StreamState::Closed);
    let pumped = rig.pump();
    assert_eq!(pumped.end, Some(End::ClientGone));
    assert!(!pumped.progress);

    // A client that only half-closed is still there.
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.client.peer_close();
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, false));
}

// Time limits.

#[test]
fn expiry_while_connecting_is_a_connect_timeout() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    rig.at(50).pump_on();
    assert_eq!(rig.x.expire(CONNECT_MS - 1), None);
    assert_eq!(rig.x.expire(CONNECT_MS), Some(Expiry::ConnectTimeout));
}

#[test]
fn expiry_waiting_for_the_body_is_a_request_timeout() {
    let mut rig = Rig::new(post(), POST_HEAD).slot(b"he");
    rig.at(10).pump_on();
    let deadline = 10 + BODY_IDLE_MS.max(RESPONSE_MS);
    assert_eq!(rig.x.deadline_ms(), deadline);
    assert_eq!(rig.x.expire(deadline - 1), None);
    assert_eq!(rig.x.expire(deadline), Some(Expiry::RequestTimeout));
    // More body moves the deadline.
    rig.client.deliver(b"l");
    rig.at(600).pump_on();
    assert_eq!(rig.x.expire(deadline), None);
    assert_eq!(rig.x.deadline_ms(), 600 + BODY_IDLE_MS);
}

#[test]
fn expiry_waiting_for_the_response_is_a_gateway_timeout() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.at(10).pump_on();
    assert_eq!(rig.x.expire(10 + RESPONSE_MS - 1), None);
    assert_eq!(rig.x.expire(10 + RESPONSE_MS), Some(Expiry::GatewayTimeout));

    // A response that began and stalls: the same limit, and the response has begun.
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel");
    rig.at(100).pump_on();
    assert_eq!(rig.x.expire(100 + RESPONSE_MS - 1), None);
    assert_eq!(rig.x.expire(100 + RESPONSE_MS), Some(Expiry::GatewayTimeout));
    assert!(rig.x.response_begun());
}

#[test]
fn a_reused_connection_waits_for_the_response_limit() {
    let mut x = Exchange::new(get(), 1 << 20, false, 0);
    x.assigned(2, true, 40, &TIMEOUTS);
    assert_eq!(x.deadline_ms(), 40 + RESPONSE_MS);
    assert!(x.reused());
    assert_eq!(x.expire(40 + CONNECT_MS), None);
}

#[test]
fn body_backpressure_moves_a_bit_per_pump_and_extends_the_deadline() {
    let mut rig = Rig::new(get(), GET_HEAD);
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 30\r\nVia: 1.1 xgate\r\n\r\n";
    rig.client = MemoryStream::new(head.len() + 10, 4096);
    rig.upstream
        .deliver(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n");
    rig.upstream.deliver(&[b'x'; 30]);
    rig.at(10).pump_on();
    assert_eq!(rig.x.response_bytes(), 10);
    assert_eq!(rig.x.deadline_ms(), 10 + RESPONSE_MS);
    assert_eq!(rig.client_got().len(), head.len() + 10);
    assert_eq!(
        rig.upstream.unread(),
        20,
        "the rest waits in the upstream's buffer"
    );
    // No room: nothing moves and the deadline stays.
    rig.client = MemoryStream::new(0, 4096);
    let pumped = rig.at(200).pump_on();
    assert!(!pumped.progress);
    assert_eq!(rig.x.deadline_ms(), 10 + RESPONSE_MS);
    rig.client = MemoryStream::new(10, 4096);
    let pumped = rig.at(300).pump_on();
    assert!(pumped.progress);
    assert_eq!(rig.x.deadline_ms(), 300 + RESPONSE_MS);
    assert_eq!(rig.client_got(), "x".repeat(10));
    rig.client = MemoryStream::new(10, 4096);
    assert_eq!(rig.at(400).pump().end, complete(true, false));
    assert_eq!(rig.x.response_bytes(), 30);
}

// Retries.

#[test]
fn retry_rules_for_requests_with_a_body() {
    // POST is not idempotent.
    let mut rig = Rig::new(post(), POST_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    rig.pump_on();
    rig.upstream.reset();
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ConnectFailed));
    assert!(!rig.x.may_retry());

    // PUT is, while no byte of its body was taken.
    let mut f = post();
    f.idempotent = true;
    let mut rig = Rig::new(f, POST_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    rig.pump_on();
    rig.upstream.reset();
    rig.pump();
    assert!(rig.x.may_retry());

    // Not once a byte went, even on a pooled connection.
    let mut rig = Rig::new(f, POST_HEAD).slot(b"h");
    rig.x.assigned(3, true, 0, &TIMEOUTS);
    rig.pump_on();
    assert_eq!(rig.x.request_body(), BodyLeft::Length(4));
    rig.upstream.reset();
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));
    assert!(!rig.x.counts_against_member(), "a stale pooled connection");
    assert!(!rig.x.may_retry());

    // Never with a chunked body.
    let mut f = chunked_post();
    f.idempotent = true;
    let mut rig = Rig::new(f, CHUNKED_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    rig.pump_on();
    rig.upstream.reset();
    rig.pump();
    assert!(!rig.x.may_retry());
}

#[test]
fn a_stale_pooled_connection_retries_without_excluding_or_blaming_its_member() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.x.assigned(5, true, 0, &TIMEOUTS);
    rig.pump_on();
    assert!(rig.x.established());
    rig.upstream.peer_close();
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));
    assert!(!rig.x.counts_against_member());
    assert!(rig.x.may_retry());
    assert_eq!(rig.x.retry(), None);
    assert_eq!(rig.x.head_progress(), (0, GET_HEAD.len()), "the head goes again");

    // The retry on a fresh connection to another member.
    rig.upstream = MemoryStream::new(4096, 4096);
    rig.x.assigned(6, false, 50, &TIMEOUTS);
    assert_eq!(rig.x.deadline_ms(), 50 + CONNECT_MS);
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump().end, complete(true, false));
    assert_eq!(rig.upstream_got(), GET_HEAD);
    assert_eq!(rig.x.member(), 6);
}

#[test]
fn a_fresh_connection_that_carried_the_request_does_not_retry() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.pump_on();
    rig.upstream.peer_close();
    assert_eq!(rig.pump().end, upstream_fault(UpstreamFault::ClosedBeforeHead));
    assert!(rig.x.counts_against_member());
    assert!(!rig.x.may_retry());
}

// Milestones of the request's phases.

/// Milestones with the given moments reached.
fn reached(ready: bool, head_sent: bool, first_byte: bool, response_started: bool) -> Milestones {
    Milestones {
        upstream_ready: ready,
        request_head_sent: head_sent,
        upstream_first_byte: first_byte,
        response_started,
    }
}

#[test]
fn a_new_connection_is_ready_once_its_handshake_completes_then_each_moment_comes_once() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    assert_eq!(rig.pump_on().milestones, Milestones::default());
    assert!(!rig.pump_on().milestones.any(), "still connecting");
    rig.upstream.set_state(StreamState::Established);
    // Ready and the head out in one pump; the upstream has not answered yet.
    assert_eq!(rig.pump_on().milestones, reached(true, true, false, false));
    assert_eq!(rig.pump_on().milestones, Milestones::default(), "nothing new");
    // The first byte, alone: no head yet, nothing for the client.
    rig.upstream.deliver(b"HTTP/1.1 2");
    assert_eq!(rig.pump_on().milestones, reached(false, false, true, false));
    rig.upstream.deliver(b"00 OK\r\nContent-Length: 2\r\n\r\nh");
    // The head taken and its first byte to the client in the same pump.
    let pumped = rig.pump_on();
    assert_eq!(pumped.head, Some(200));
    assert_eq!(pumped.milestones, reached(false, false, false, true));
    rig.upstream.deliver(b"i");
    let pumped = rig.pump();
    assert_eq!(pumped.milestones, Milestones::default());
    assert_eq!(
        pumped.end,
        complete(true, false),
        "the end of the write is the completion"
    );
}

#[test]
fn a_pooled_connection_is_ready_on_its_first_pump_and_a_quick_answer_reaches_every_moment_at_once() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.x.assigned(3, true, 0, &TIMEOUTS);
    rig.upstream.deliver(OK_HI);
    let pumped = rig.pump();
    assert_eq!(pumped.milestones, reached(true, true, true, true));
    assert_eq!(pumped.end, complete(true, false));
}

#[test]
fn a_head_sent_in_pieces_is_out_at_its_last_piece() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream = MemoryStream::new(10, 4096);
    assert_eq!(rig.pump_on().milestones, reached(true, false, false, false));
    while rig.x.head_progress().0 < GET_HEAD.len() {
        rig.upstream_got();
        let milestones = rig.pump_on().milestones;
        let out = rig.x.head_progress().0 == GET_HEAD.len();
        assert_eq!(milestones, reached(false, out, false, false));
    }
}

#[test]
fn an_interim_answer_is_the_first_byte_and_continue_does_not_start_the_response() {
    let mut f = post();
    f.expect_continue = true;
    let mut rig = Rig::new(f, POST_HEAD);
    let pumped = rig.pump_on();
    assert!(rig.x.continue_sent());
    assert_eq!(
        pumped.milestones,
        reached(true, true, false, false),
        "100 Continue is ours"
    );
    rig.upstream.deliver(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(rig.pump_on().milestones, reached(false, false, true, false));
    rig.client.deliver(b"hello");
    rig.upstream.deliver(OK_HI);
    let pumped = rig.pump();
    assert_eq!(pumped.milestones, reached(false, false, false, true));
    assert_eq!(pumped.end, complete(true, false));
}

#[test]
fn a_client_head_sent_in_pieces_starts_the_response_once() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.client = MemoryStream::new(10, 4096);
    rig.upstream.deliver(OK_HI);
    assert_eq!(rig.pump_on().milestones, reached(true, true, true, true));
    rig.client_got();
    rig.client = MemoryStream::new(4096, 4096);
    let pumped = rig.pump();
    assert_eq!(pumped.milestones, Milestones::default());
    assert_eq!(pumped.end, complete(true, false));
}

#[test]
fn a_retry_reaches_ready_head_out_and_first_byte_again_on_its_new_connection() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream = MemoryStream::new(4096, 8);
    rig.x.assigned(5, true, 0, &TIMEOUTS);
    assert_eq!(rig.pump_on().milestones, reached(true, true, false, false));
    // A pooled connection that fails before a whole head: its receive buffer fills with part
    // of one.
    assert_eq!(rig.upstream.deliver(b"HTTP/1.1 200"), 8);
    let pumped = rig.pump();
    assert_eq!(pumped.end, upstream_fault(UpstreamFault::ClosedBeforeHead));
    assert_eq!(pumped.milestones, reached(false, false, true, false));
    assert!(rig.x.may_retry());
    rig.x.retry();
    rig.upstream = MemoryStream::new(4096, 4096);
    rig.upstream.set_state(StreamState::Connecting);
    rig.x.assigned(6, false, 10, &TIMEOUTS);
    assert!(!rig.pump_on().milestones.any());
    rig.upstream.set_state(StreamState::Established);
    assert_eq!(rig.pump_on().milestones, reached(true, true, false, false));
    rig.upstream.deliver(OK_HI);
    let pumped = rig.pump();
    assert_eq!(pumped.milestones, reached(false, false, true, true));
    assert_eq!(pumped.end, complete(true, false));
}

#[test]
fn a_connect_failure_reaches_no_moment() {
    let mut rig = Rig::new(get(), GET_HEAD);
    rig.upstream.set_state(StreamState::Connecting);
    rig.pump_on();
    rig.upstream.reset();
    let pumped = rig.pump();
    assert_eq!(pumped.end, upstream_fault(UpstreamFault::ConnectFailed));
    assert!(!pumped.milestones.any());
}

// Pieces.

#[test]
fn body_left_follows_its_framing() {
    let mut body = BodyLeft::request(BodyFraming::Length(3), 100);
    assert_eq!(body.want(10), 3);
    assert_eq!(body.advance(b"abcdef"), Ok(3));
    assert!(body.is_done());
    assert_eq!(body.want(10), 0);
    assert_eq!(body.advance(b"x"), Ok(0));
    assert!(BodyLeft::request(BodyFraming::Length(0), 100).is_done());
    assert!(BodyLeft::request(BodyFraming::None, 100).is_done());
    assert!(BodyLeft::response(ResponseBody::None).is_done());
    let mut until = BodyLeft::response(ResponseBody::UntilClose);
    assert_eq!(until.want(7), 7);
    assert_eq!(until.advance(b"abc"), Ok(3));
    assert!(!until.is_done());
    let mut chunked = BodyLeft::request(BodyFraming::Chunked, 100);
    assert_eq!(chunked.advance(b"0\r\n\r\nGET"), Ok(5));
    assert!(chunked.is_done());
}

#[test]
fn consume_request_keeps_the_remainder_at_the_front() {
    let mut request = *b"abcdefghij";
    let mut len = 8;
    let mut response = [0u8; 0];
    let mut slot = SlotBuffers {
        request: &mut request,
        request_len: &mut len,
        response: &mut response,
    };
    slot.consume_request(3);
    assert_eq!(*slot.request_len, 5);
    assert_eq!(&slot.request[..5], b"defgh");
    slot.consume_request(100);
    assert_eq!(*slot.request_len, 0);
}

#[test]
fn memory_stream_behaves_like_a_tcp_socket() {
    let mut s = MemoryStream::new(4, 3);
    assert_eq!(s.send(b"hello"), 4);
    assert_eq!(s.send_room(), 0);
    s.drain_sent(2);
    assert_eq!(s.send_room(), 2);
    assert_eq!(s.sent(), b"hell");
    assert_eq!(s.deliver(b"abcd"), 3);
    assert!(s.recv_full());
    let mut buf = [0u8; 2];
    assert_eq!(s.peek(&mut buf), 2);
    assert_eq!(&buf, b"ab");
    assert_eq!(s.recv(&mut buf), 2);
    assert_eq!(s.unread(), 1);
    s.peer_close();
    assert_eq!(s.state(), StreamState::Closing);
    assert!(s.may_send(), "CLOSE-WAIT may send");
    assert!(s.may_recv(), "a buffered byte is still to read");
    s.consume(1);
    assert!(!s.may_recv());
    s.reset();
    assert!(!s.may_send());
    assert_eq!(s.send(b"x"), 0);
    assert_eq!(s.state(), StreamState::Closed);
}

#[test]
fn a_queued_exchange_expires_as_a_queue_timeout_and_assignment_ends_the_wait() {
    let mut x = Exchange::new(get(), 1 << 20, false, 0);
    assert!(!x.is_waiting());
    x.wait(100, 2_000);
    assert!(x.is_waiting() && !x.is_assigned());
    assert_eq!(x.expire(2_099), None);
    assert_eq!(x.expire(2_100), Some(Expiry::QueueTimeout));

    // A connection came before the limit: the wait is over and the connect limit applies.
    x.assigned(0, false, 500, &TIMEOUTS);
    assert!(!x.is_waiting() && x.is_assigned());
    assert_eq!(x.expire(500 + CONNECT_MS - 1), None);
    assert_eq!(x.expire(500 + CONNECT_MS), Some(Expiry::ConnectTimeout));
}
