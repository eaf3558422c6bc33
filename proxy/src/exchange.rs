//! The exchange of one proxied request, free of I/O: it streams the request (the upstream head
//! written into the connection's slot, then the client's body) to an upstream connection and the
//! response back to the client, through the two [`Stream`](crate::stream::Stream)s of a
//! [`StreamPair`]. The owner (a lane) keeps the sockets, the slot, the scratch, the pools and the
//! counters, and does what [`Pumped`] and [`Expiry`] say.
//!
//! Data path (after the HTTP stage has framed and routed the head and written the upstream's
//! request head into the slot's response buffer):
//! ```text
//! slot (upstream head) ─send─▶ upstream tx
//! client rx ─peek─▶ scratch ─(body framing checked)─▶ upstream tx   [request body]
//! upstream rx ─peek─▶ scratch ─parse head─▶ client head written into the slot ─▶ client tx
//! upstream rx ─peek─▶ scratch ─(framing checked)─▶ client tx        [response body]
//! ```
//! Body bytes are copied twice (stream buffer → scratch → stream buffer): the two sockets may
//! live in different socket sets, so the stack cannot lend both buffers at once. Nothing is
//! buffered beyond the two streams' buffers and the scratch, so a slow reader on either side
//! fills the other side's receive buffer and TCP's window closes toward the fast sender.
//!
//! The owner's part, per call:
//! - [`Exchange::new`] once the head is framed (the owner has consumed the client's head from
//!   the slot), [`Exchange::assigned`] once it gave the exchange an upstream connection;
//! - [`Exchange::pump`] whenever either stream may have moved. The owner checks that the client
//!   is still there before it assigns an upstream (the pump checks again first);
//! - on [`Pumped::head`], the status is counted and the member's response recorded
//!   (`status < 500`), before [`Pumped::end`] is handled;
//! - [`Pumped::milestones`] say which moments of the request's phases the call reached (the
//!   upstream connection ready, the request head out, the upstream's first byte, the client's
//!   first response byte); the owner, which has the clock, stamps them;
//! - [`Exchange::expire`] from its sweep; [`Exchange::may_retry`] and [`Exchange::retry`] when
//!   the upstream failed.
//!
//! Invariants:
//! - A response is never cut short in a way that looks complete: an upstream failure after the
//!   client head went out is reported with [`Exchange::response_begun`] true, and the owner
//!   resets the client rather than closing it.
//! - The request bytes are consumed from the slot as they are sent upstream, so when the
//!   exchange ends the slot holds exactly the client's next (pipelined) bytes.
//! - [`Exchange::pump`] allocates nothing and has no clock: time comes in [`PumpContext`].

use crate::{
    chunked::{ChunkError, ChunkedDecoder},
    gateway::Forward,
    request::BodyFraming,
    response::{frame_response, write_client_head, ClientHeadOptions, ResponseBody},
    stream::{Side, StreamPair, StreamState},
};

/// The status an upstream failure maps to.
const BAD_GATEWAY: u16 = 502;

/// The status of a client that closed before its body was complete (never seen by it).
const BAD_REQUEST: u16 = 400;

/// The bytes of an HTTP/1.1 interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What is left of a message body, and how its end is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLeft {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the sender closes (responses only).
    UntilClose,
}

impl BodyLeft {
    /// The body of a request framed as `framing`; a chunked one may carry `max_body` bytes.
    pub fn request(framing: BodyFraming, max_body: u64) -> BodyLeft {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => BodyLeft::Done,
            BodyFraming::Length(n) => BodyLeft::Length(n),
            BodyFraming::Chunked => BodyLeft::Chunked(ChunkedDecoder::new(max_body)),
        }
    }

    /// The body of a response framed as `body`.
    pub fn response(body: ResponseBody) -> BodyLeft {
        match body {
            ResponseBody::None | ResponseBody::Length(0) => BodyLeft::Done,
            ResponseBody::Length(n) => BodyLeft::Length(n),
            ResponseBody::Chunked => BodyLeft::Chunked(ChunkedDecoder::new(u64::MAX)),
            ResponseBody::UntilClose => BodyLeft::UntilClose,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyLeft::Done)
    }

    /// How many of `bytes` (the next bytes of the stream) belong to this body; the body is
    /// [`Done`](BodyLeft::Done) afterwards if it ended within them.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        match self {
            BodyLeft::Done => Ok(0),
            BodyLeft::Length(left) => {
                let take = (*left).min(bytes.len() as u64);
                *left -= take;
                if *left == 0 {
                    *self = BodyLeft::Done;
                }
                Ok(take as usize)
            }
            BodyLeft::Chunked(decoder) => {
                let feed = decoder.feed(bytes)?;
                if feed.done {
                    *self = BodyLeft::Done;
                }
                Ok(feed.consumed)
            }
            BodyLeft::UntilClose => Ok(bytes.len()),
        }
    }

    /// The most bytes worth reading for this body now, given `room`.
    pub fn want(&self, room: usize) -> usize {
        match self {
            BodyLeft::Done => 0,
            BodyLeft::Length(left) => room.min(usize::try_from(*left).unwrap_or(usize::MAX)),
            _ => room,
        }
    }
}

/// Where the response of an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponsePhase {
    /// Waiting for the upstream's response head.
    AwaitingHead,
    /// Sending the client head written into the slot.
    SendingHead { len: usize, sent: usize },
    /// Streaming the body.
    Body,
    /// The whole response went to the client's socket.
    Done,
}

/// The time limits of an exchange, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeTimeouts {
    /// Connecting to an upstream member.
    pub upstream_connect_ms: u64,
    /// From the request sent to the upstream's response head, and the longest silence inside a
    /// response body.
    pub upstream_response_ms: u64,
    /// Longest silence while a request body is being received.
    pub body_idle_ms: u64,
}

/// What a pump needs from its owner besides the streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PumpContext {
    pub now_ms: u64,
    /// The gateway is draining: the client connection closes after this response.
    pub draining: bool,
    /// The largest upstream response head accepted.
    pub max_response_head: usize,
    pub timeouts: ExchangeTimeouts,
}

/// The connection's buffers: the client's received-but-unanswered bytes (`request[..request_len]`:
/// the rest of the request body, then pipelined bytes) and the response buffer (holds the
/// upstream head to send, later the client head).
#[derive(Debug)]
pub struct SlotBuffers<'a> {
    pub request: &'a mut [u8],
    pub request_len: &'a mut usize,
    pub response: &'a mut [u8],
}

impl SlotBuffers<'_> {
    /// Drops the first `consumed` request bytes, keeping any pipelined remainder at the front.
    pub fn consume_request(&mut self, consumed: usize) {
        let len = *self.request_len;
        let consumed = consumed.min(len);
        self.request.copy_within(consumed..len, 0);
        *self.request_len = len - consumed;
    }
}

/// What one [`Exchange::pump`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pumped {
    /// Bytes moved (the owner touches both sockets; today only when the exchange goes on or
    /// completes).
    pub progress: bool,
    /// A final response head with this status was taken this call (interim 1xx are not
    /// reported).
    pub head: Option<u16>,
    /// The exchange ended this call; `None` while it goes on.
    pub end: Option<End>,
    /// Moments of the request's phases reached this call (the end of the response write is
    /// [`End::Complete`]).
    pub milestones: Milestones,
}

/// Moments of a proxied request's phases that one [`Exchange::pump`] reached. The exchange has
/// no clock: the owner stamps them when the pump returns. Each is reported once per upstream
/// connection the exchange is given (again after [`Exchange::retry`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Milestones {
    /// The upstream connection is ready to send on: the exchange saw it ESTABLISHED for the
    /// first time (a pooled connection on the first pump after [`Exchange::assigned`], a new one
    /// once its handshake completed).
    pub upstream_ready: bool,
    /// The last byte of the upstream request head went into the upstream stream.
    pub request_head_sent: bool,
    /// The first byte of the upstream's response was seen (an interim 1xx counts). The exchange
    /// looks at the upstream's bytes only once the request head is out.
    pub upstream_first_byte: bool,
    /// The first byte of the final response (the client head) went into the client stream;
    /// `100 Continue` does not count.
    pub response_started: bool,
}

impl Milestones {
    /// Whether any moment was reached.
    pub fn any(&self) -> bool {
        self.upstream_ready || self.request_head_sent || self.upstream_first_byte || self.response_started
    }
}

/// How an exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The whole response went to the client's socket. `reusable`: the upstream connection may
    /// go back to the idle pool (request fully sent, upstream keep-alive, upstream established
    /// and nothing unread). `close_client`: the client connection ends now (the owner closes it
    /// and drops the slot's remaining bytes); else the slot holds the client's next bytes.
    Complete { reusable: bool, close_client: bool },
    /// The client went away (closed or reset): nothing to answer (logged as 499).
    ClientGone,
    /// The upstream failed: the owner records it against the member (if
    /// [`Exchange::counts_against_member`]), retries if [`Exchange::may_retry`], else answers
    /// `status` (or resets the client if [`Exchange::response_begun`]).
    UpstreamFailed { status: u16, cause: UpstreamFault },
    /// The request side failed: answer `status` and close (or reset if the response began).
    /// `abort_client`: then also reset the client (it closed before its body was complete).
    RequestFailed {
        status: u16,
        cause: RequestFault,
        abort_client: bool,
    },
}

/// Why the upstream failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFault {
    /// Refused (reset) or unreachable before the handshake ended.
    ConnectFailed,
    /// Closed before a whole response head, or its receive buffer (or the head limit) filled
    /// without one.
    ClosedBeforeHead,
    /// A response head or body framing refused, or a client head that could not be written.
    BadResponse,
    /// Reset or closed in the middle of a delimited body.
    CutMidBody,
}

/// Why the request side failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFault {
    /// The client's chunked body framing is invalid or too large.
    BadBody,
    /// The client closed before its body was complete.
    ClientClosedMidBody,
}

/// Which time limit an exchange passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No answer to the SYN: unreachable, like a refusal (the 502 upstream-failure path, counted
    /// as a connect failure).
    ConnectTimeout,
    /// The client's body did not arrive in time (408).
    RequestTimeout,
    /// The upstream's response did not (504, or a reset once the response has begun).
    GatewayTimeout,
    /// The request waited its pool's `queue_timeout` for a connection (503).
    QueueTimeout,
}

/// One proxied request in flight on a client connection.
#[derive(Clone, Copy, Debug)]
pub struct Exchange {
    forward: Forward,
    /// An upstream connection is assigned (the owner holds which).
    assigned: bool,
    /// Not assigned, and waiting in the owner's queue for a connection.
    waiting: bool,
    member: u16,
    /// Upstream request head bytes (in the slot's response buffer) and how many went out.
    head_len: usize,
    head_sent: usize,
    request_body: BodyLeft,
    response_body: BodyLeft,
    phase: ResponsePhase,
    /// The upstream connection reached ESTABLISHED for this exchange.
    established: bool,
    /// The upstream connection came from the idle pool.
    reused: bool,
    /// The exchange already moved to another member once.
    retried: bool,
    /// `100 Continue` was sent to the client.
    continue_sent: bool,
    /// A byte of the upstream's response was seen on the current upstream connection.
    first_byte_seen: bool,
    /// The client connection closes after this response.
    client_close: bool,
    /// The upstream said it keeps the connection open after this response.
    upstream_keep_alive: bool,
    status: u16,
    response_bytes: u64,
    started_ms: u64,
    /// When the current wait (connect, response, body) gives up.
    deadline_ms: u64,
}

/// What the request side found: nothing, or how it failed.
type Step = Result<(), End>;

impl Exchange {
    /// The exchange of `forward`, framed at `now_ms`. The caller has consumed the client's head
    /// (`forward.head_len`) from the slot's request buffer, which now starts with the body (if
    /// any), and the slot's response buffer holds the upstream head (`forward.written` bytes).
    /// A chunked body may carry `max_body` bytes. `close`: the client connection closes after
    /// the response whatever the request says (the owner is draining).
    pub fn new(forward: Forward, max_body: u64, close: bool, now_ms: u64) -> Exchange {
        Exchange {
            forward,
            assigned: false,
            waiting: false,
            member: 0,
            head_len: forward.written,
            head_sent: 0,
            request_body: BodyLeft::request(forward.body, max_body),
            response_body: BodyLeft::Done,
            phase: ResponsePhase::AwaitingHead,
            established: false,
            reused: false,
            retried: false,
            continue_sent: false,
            first_byte_seen: false,
            client_close: forward.close || close,
            upstream_keep_alive: false,
            status: 0,
            response_bytes: 0,
            started_ms: now_ms,
            deadline_ms: now_ms,
        }
    }

    /// The owner gave the exchange a connection to `member`: an idle one (`reused`) or a new
    /// one, connecting.
    pub fn assigned(&mut self, member: u16, reused: bool, now_ms: u64, timeouts: &ExchangeTimeouts) {
        self.assigned = true;
        self.waiting = false;
        self.member = member;
        self.reused = reused;
        self.established = false;
        self.deadline_ms = now_ms
            + if reused {
                timeouts.upstream_response_ms
            } else {
                timeouts.upstream_connect_ms
            };
    }

    /// The owner has no connection for the exchange now and queued it at `now_ms`; it gives up
    /// after `timeout_ms` ([`Expiry::QueueTimeout`]). Ends with [`Exchange::assigned`].
    pub fn wait(&mut self, now_ms: u64, timeout_ms: u64) {
        debug_assert!(!self.assigned, "a waiting exchange has no connection");
        self.waiting = true;
        self.deadline_ms = now_ms + timeout_ms;
    }

    /// Whether the exchange waits in the owner's queue for a connection.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Moves the exchange as far as the streams allow. The exchange must have an upstream
    /// ([`Exchange::assigned`]). `slot` is the client connection's buffers, `scratch` a buffer
    /// for the bytes on their way between the two streams (at least as large as the largest
    /// response head).
    pub fn pump(
        &mut self,
        io: &mut impl StreamPair,
        mut slot: SlotBuffers<'_>,
        scratch: &mut [u8],
        cx: &PumpContext,
    ) -> Pumped {
        debug_assert!(self.assigned, "pumped without an upstream");
        let mut out = Pumped {
            progress: false,
            head: None,
            end: None,
            milestones: Milestones::default(),
        };
        // The client went away (reset, or closed both ways): nothing to answer.
        if io.state(Side::Client) == StreamState::Closed {
            out.end = Some(End::ClientGone);
            return out;
        }
        let now = cx.now_ms;
        let state = io.state(Side::Upstream);
        if state == StreamState::Connecting {
            return out;
        }
        if !self.established {
            if state == StreamState::Established {
                self.established = true;
                out.milestones.upstream_ready = true;
                self.deadline_ms = now + cx.timeouts.upstream_response_ms;
            } else {
                // Refused (reset) or unreachable before the handshake ended.
                out.end = Some(upstream_failed(UpstreamFault::ConnectFailed));
                return out;
            }
        }
        // 1. The request head.
        if self.head_sent < self.head_len && io.may_send(Side::Upstream) {
            let n = io.send(Side::Upstream, &slot.response[self.head_sent..self.head_len]);
            self.head_sent += n;
            out.progress |= n > 0;
            out.milestones.request_head_sent = self.head_sent >= self.head_len;
        }
        let head_out = self.head_sent >= self.head_len;
        // 2. `100 Continue`, once the upstream has the head and the client waits with its body.
        if head_out
            && self.forward.expect_continue
            && !self.continue_sent
            && !self.request_body.is_done()
            && *slot.request_len == 0
            && self.phase == ResponsePhase::AwaitingHead
            && io.send_room(Side::Client) >= CONTINUE.len()
        {
            io.send(Side::Client, CONTINUE);
            self.continue_sent = true;
            out.progress = true;
        }
        // 3. The request body: bytes already in the slot first, then the client's stream.
        if head_out && !self.request_body.is_done() {
            if let Err(end) = self.request_step(io, &mut slot, scratch, cx, &mut out.progress) {
                out.end = Some(end);
                return out;
            }
        }
        // 4. The response head, once the request head is out (the slot's buffer is free).
        if head_out && self.phase == ResponsePhase::AwaitingHead {
            match self.response_head(io, &mut slot, scratch, cx, &mut out) {
                Ok(head) => out.head = head,
                Err(end) => {
                    out.end = Some(end);
                    return out;
                }
            }
        }
        // 5. The client head.
        if let ResponsePhase::SendingHead { len, sent } = self.phase {
            let n = io.send(Side::Client, &slot.response[sent..len]);
            out.progress |= n > 0;
            out.milestones.response_started |= sent == 0 && n > 0;
            self.phase = if sent + n >= len {
                ResponsePhase::Body
            } else {
                ResponsePhase::SendingHead { len, sent: sent + n }
            };
        }
        // 6. The response body.
        if self.phase == ResponsePhase::Body {
            match relay(io, scratch, Side::Upstream, Side::Client, &mut self.response_body) {
                Ok(n) => {
                    if n > 0 {
                        out.progress = true;
                        self.response_bytes += n as u64;
                        self.deadline_ms = now + cx.timeouts.upstream_response_ms;
                    }
                }
                Err(_) => {
                    out.end = Some(upstream_failed(UpstreamFault::BadResponse));
                    return out;
                }
            }
            if self.response_body.is_done() {
                self.phase = ResponsePhase::Done;
            } else if !io.may_recv(Side::Upstream) {
                if matches!(self.response_body, BodyLeft::UntilClose) {
                    self.phase = ResponsePhase::Done;
                    self.upstream_keep_alive = false;
                } else {
                    // Reset or closed mid-body: the client must see a failure, not an end.
                    out.end = Some(upstream_failed(UpstreamFault::CutMidBody));
                    return out;
                }
            }
        }
        // 7. The end of the exchange.
        if self.phase == ResponsePhase::Done {
            let request_done = self.request_done();
            if !request_done {
                // The upstream answered before taking the whole body: the client's remaining
                // bytes cannot be told apart from a next request, so the connection ends.
                self.client_close = true;
            }
            let reusable = request_done
                && self.upstream_keep_alive
                && io.state(Side::Upstream) == StreamState::Established
                && !io.can_recv(Side::Upstream);
            out.end = Some(End::Complete {
                reusable,
                close_client: self.client_close,
            });
        }
        out
    }

    /// Step 3: moves request body bytes upstream, from the slot if it holds any, else from the
    /// client's stream.
    fn request_step(
        &mut self,
        io: &mut impl StreamPair,
        slot: &mut SlotBuffers<'_>,
        scratch: &mut [u8],
        cx: &PumpContext,
        progress: &mut bool,
    ) -> Step {
        let result = if *slot.request_len > 0 {
            // An upstream that may not send any more (reset, or closed) takes nothing: the bytes
            // stay in the slot and step 4 sees the upstream gone.
            let room = if io.may_send(Side::Upstream) {
                io.send_room(Side::Upstream)
            } else {
                0
            };
            let len = self.request_body.want(room.min(*slot.request_len));
            self.request_body.advance(&slot.request[..len]).inspect(|&take| {
                let sent = io.send(Side::Upstream, &slot.request[..take]);
                debug_assert_eq!(sent, take, "room was counted");
                slot.consume_request(take);
            })
        } else {
            relay(io, scratch, Side::Client, Side::Upstream, &mut self.request_body)
        };
        match result {
            Ok(n) => {
                if n > 0 {
                    *progress = true;
                    self.deadline_ms =
                        cx.now_ms + cx.timeouts.body_idle_ms.max(cx.timeouts.upstream_response_ms);
                }
            }
            Err(error) => {
                return Err(End::RequestFailed {
                    status: error.status(),
                    cause: RequestFault::BadBody,
                    abort_client: false,
                })
            }
        }
        if !self.request_body.is_done() && !io.may_recv(Side::Client) {
            // The client closed before its body was complete: nobody to answer.
            return Err(End::RequestFailed {
                status: BAD_REQUEST,
                cause: RequestFault::ClientClosedMidBody,
                abort_client: true,
            });
        }
        Ok(())
    }

    /// Step 4: takes the upstream's response head (skipping interim 1xx answers) and writes the
    /// client head into the slot's response buffer. Returns the status of a head taken.
    fn response_head(
        &mut self,
        io: &mut impl StreamPair,
        slot: &mut SlotBuffers<'_>,
        scratch: &mut [u8],
        cx: &PumpContext,
        out: &mut Pumped,
    ) -> Result<Option<u16>, End> {
        loop {
            let peeked = io.peek(Side::Upstream, scratch);
            if peeked > 0 && !self.first_byte_seen {
                self.first_byte_seen = true;
                out.milestones.upstream_first_byte = true;
            }
            let closed = !io.may_recv(Side::Upstream) || io.recv_full(Side::Upstream);
            match frame_response(&scratch[..peeked], self.forward.is_head, cx.max_response_head) {
                Ok(None) => {
                    if closed || peeked >= cx.max_response_head {
                        // Closed (or overfull) before a whole head: the upstream failed.
                        return Err(upstream_failed(UpstreamFault::ClosedBeforeHead));
                    }
                    return Ok(None);
                }
                Err(_) => return Err(upstream_failed(UpstreamFault::BadResponse)),
                Ok(Some(head)) => {
                    let head_len = head.head_len;
                    if head.informational {
                        // Interim answers end here: xgate answered `Expect` itself.
                        io.consume(Side::Upstream, head_len);
                        out.progress = true;
                        continue;
                    }
                    let body = BodyLeft::response(head.body);
                    let close = self.client_close || matches!(body, BodyLeft::UntilClose) || cx.draining;
                    let options = ClientHeadOptions {
                        close,
                        http10_keep_alive: self.forward.http10 && !close,
                        hsts_max_age: self.forward.hsts_max_age,
                    };
                    let Some(len) = write_client_head(&head, &scratch[..peeked], &options, slot.response)
                    else {
                        return Err(upstream_failed(UpstreamFault::BadResponse));
                    };
                    let status = head.status;
                    self.status = status;
                    self.upstream_keep_alive = head.upstream_keep_alive;
                    self.client_close = close;
                    self.response_body = body;
                    self.phase = ResponsePhase::SendingHead { len, sent: 0 };
                    self.deadline_ms = cx.now_ms + cx.timeouts.upstream_response_ms;
                    io.consume(Side::Upstream, head_len);
                    out.progress = true;
                    return Ok(Some(status));
                }
            }
        }
    }

    /// Which time limit the exchange has passed at `now_ms`, if any (the sweep's rules).
    pub fn expire(&self, now_ms: u64) -> Option<Expiry> {
        if now_ms < self.deadline_ms {
            return None;
        }
        Some(if self.waiting {
            Expiry::QueueTimeout
        } else if self.assigned && !self.established {
            Expiry::ConnectTimeout
        } else if !self.request_body.is_done() && self.phase == ResponsePhase::AwaitingHead {
            Expiry::RequestTimeout
        } else {
            Expiry::GatewayTimeout
        })
    }

    /// Whether an upstream failure now says something about the member's health. A pooled
    /// connection the upstream had closed while idle says nothing about it (the retry on a fresh
    /// connection will).
    pub fn counts_against_member(&self) -> bool {
        !(self.reused && self.phase == ResponsePhase::AwaitingHead)
    }

    /// Whether the request may move once to another member after an upstream failure: before
    /// anything of the response reached the client, an idempotent request whose connection never
    /// carried it (connect failed, or a pooled connection that had closed), not retried yet,
    /// with no byte of its body taken from the client.
    pub fn may_retry(&self) -> bool {
        let untouched = self.phase == ResponsePhase::AwaitingHead && (!self.established || self.reused);
        untouched && self.forward.idempotent && !self.retried && self.request_body_untouched()
    }

    /// Makes the exchange ready to be assigned another connection (the owner drops the failed
    /// one); only when [`Exchange::may_retry`]. Returns the member to exclude from the choice:
    /// the failed one, unless its connection came from the idle pool.
    pub fn retry(&mut self) -> Option<u16> {
        debug_assert!(self.may_retry(), "retried an exchange that may not retry");
        let exclude = if self.reused { None } else { Some(self.member) };
        self.assigned = false;
        self.head_sent = 0;
        self.retried = true;
        self.established = false;
        self.first_byte_seen = false;
        exclude
    }

    /// Part of the response went to the client (its head at least): a failure must reset the
    /// client, not answer it.
    pub fn response_begun(&self) -> bool {
        !matches!(self.phase, ResponsePhase::AwaitingHead)
    }

    /// No byte of the request body has left the client side (so the request can be sent again).
    fn request_body_untouched(&self) -> bool {
        match (self.forward.body, self.request_body) {
            (BodyFraming::None | BodyFraming::Length(0), _) => true,
            (BodyFraming::Length(total), BodyLeft::Length(left)) => total == left,
            _ => false,
        }
    }

    /// The whole request (head and body) went to the upstream.
    pub fn request_done(&self) -> bool {
        self.request_body.is_done() && self.head_sent >= self.head_len
    }

    /// The request being forwarded.
    pub fn forward(&self) -> &Forward {
        &self.forward
    }

    /// The status of the response (0 before its head).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Response body bytes sent to the client.
    pub fn response_bytes(&self) -> u64 {
        self.response_bytes
    }

    /// When the exchange started.
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// When the current wait (connect, response, body) gives up.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// The member of the upstream connection (last) assigned.
    pub fn member(&self) -> u16 {
        self.member
    }

    /// An upstream connection is assigned.
    pub fn is_assigned(&self) -> bool {
        self.assigned
    }

    /// The upstream connection reached ESTABLISHED for this exchange.
    pub fn established(&self) -> bool {
        self.established
    }

    /// The upstream connection came from the idle pool.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The exchange already moved to another member once.
    pub fn retried(&self) -> bool {
        self.retried
    }

    /// `100 Continue` was sent to the client.
    pub fn continue_sent(&self) -> bool {
        self.continue_sent
    }

    /// Where the response is.
    pub fn phase(&self) -> ResponsePhase {
        self.phase
    }

    /// The client connection closes after this response.
    pub fn client_close(&self) -> bool {
        self.client_close
    }

    /// What is left of the request body.
    pub fn request_body(&self) -> BodyLeft {
        self.request_body
    }

    /// What is left of the response body.
    pub fn response_body(&self) -> BodyLeft {
        self.response_body
    }

    /// Upstream request head bytes sent, of how many.
    pub fn head_progress(&self) -> (usize, usize) {
        (self.head_sent, self.head_len)
    }
}

/// The upstream failed with `cause`: 502.
fn upstream_failed(cause: UpstreamFault) -> End {
    End::UpstreamFailed {
        status: BAD_GATEWAY,
        cause,
    }
}

/// Moves the next bytes of `body` from stream `from` to stream `to` through `scratch`, as many
/// as `to` has room for. Returns how many moved.
fn relay(
    io: &mut impl StreamPair,
    scratch: &mut [u8],
    from: Side,
    to: Side,
    body: &mut BodyLeft,
) -> Result<usize, ChunkError> {
    if !io.may_send(to) {
        return Ok(0);
    }
    let room = body.want(io.send_room(to).min(scratch.len()));
    if room == 0 {
        return Ok(0);
    }
    let peeked = io.peek(from, &mut scratch[..room]);
    if peeked == 0 {
        return Ok(0);
    }
    let take = body.advance(&scratch[..peeked])?;
    let sent = io.send(to, &scratch[..take]);
    debug_assert_eq!(sent, take, "room was counted");
    io.consume(from, take);
    Ok(take)
}

#[cfg(test)]
mod tests;
