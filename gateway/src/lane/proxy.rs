//! The proxying half of a lane: upstream connections on the lane's own stack, their keep-alive
//! pools, health probes, and the exchange that streams one request to an upstream member and
//! its response back to the client.
//!
//! Data path of a proxied request (after the HTTP stage has framed and routed its head and
//! written the upstream's request head into the connection's slot):
//! ```text
//! slot (upstream head) ─send─▶ upstream socket tx
//! client socket rx ─peek─▶ lane scratch ─(body framing checked)─▶ upstream socket tx   [request body]
//! upstream socket rx ─peek─▶ lane scratch ─parse head─▶ client head written into the slot ─▶ client tx
//! upstream socket rx ─peek─▶ lane scratch ─(framing checked)─▶ client socket tx        [response body]
//! ```
//! Body bytes are copied twice (socket buffer → scratch → socket buffer): the two sockets live
//! in different socket sets, so the stack cannot lend both buffers at once. Nothing is buffered
//! beyond the two sockets' buffers and the scratch, so a slow reader on either side fills the
//! other side's receive buffer and TCP's window closes toward the fast sender.
//!
//! Invariants:
//! - An upstream connection belongs to exactly one owner: a client exchange, the idle list of
//!   its member, a health probe, or nobody (closing or free).
//! - A response is never cut short in a way that looks complete: when the upstream fails after
//!   the client head went out, the client connection is reset, not closed.
//! - An exchange's request bytes are consumed from the slot as they are sent upstream, so when
//!   the exchange ends the slot holds exactly the client's next (pipelined) bytes.
//! - Nothing here allocates per request: pools, idle lists and the scratch are sized at start.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::socket::tcp;
use xgate_proxy::{
    chunked::{ChunkError, ChunkedDecoder},
    gateway::{health_request, Forward, Verdict},
    request::BodyFraming,
    response::{frame_response, write_client_head, ClientHeadOptions, ResponseBody},
    upstream::Pool,
    write_error,
};
use xgate_userstack::tcp_server::{ConnId, ConnectError, TcpServer};

use super::Lane;
use crate::routing::{PoolLimits, Routing};

/// What is left of a message body, and how its end is found.
#[derive(Clone, Copy, Debug)]
pub(super) enum BodyLeft {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the sender closes (responses only).
    UntilClose,
}

impl BodyLeft {
    fn request(framing: BodyFraming, max_body: u64) -> BodyLeft {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => BodyLeft::Done,
            BodyFraming::Length(n) => BodyLeft::Length(n),
            BodyFraming::Chunked => BodyLeft::Chunked(ChunkedDecoder::new(max_body)),
        }
    }

    fn response(body: ResponseBody) -> BodyLeft {
        match body {
            ResponseBody::None | ResponseBody::Length(0) => BodyLeft::Done,
            ResponseBody::Length(n) => BodyLeft::Length(n),
            ResponseBody::Chunked => BodyLeft::Chunked(ChunkedDecoder::new(u64::MAX)),
            ResponseBody::UntilClose => BodyLeft::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyLeft::Done)
    }

    /// How many of `bytes` (the next bytes of the stream) belong to this body; the body is
    /// [`Done`](BodyLeft::Done) afterwards if it ended within them.
    fn advance(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
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

    /// The most bytes worth reading for this body now.
    fn want(&self, room: usize) -> usize {
        match self {
            BodyLeft::Done => 0,
            BodyLeft::Length(left) => room.min(usize::try_from(*left).unwrap_or(usize::MAX)),
            _ => room,
        }
    }
}

/// Where the response of an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ResponsePhase {
    /// Waiting for the upstream's response head.
    AwaitingHead,
    /// Sending the client head written into the slot.
    SendingHead { len: usize, sent: usize },
    /// Streaming the body.
    Body,
    /// The whole response went to the client's socket.
    Done,
}

/// One proxied request in flight on a client connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct ProxyExchange {
    pub forward: Forward,
    pub upstream: Option<ConnId>,
    pub member: u16,
    /// Upstream request head bytes (in the slot's response buffer) and how many went out.
    pub head_len: usize,
    pub head_sent: usize,
    pub request_body: BodyLeft,
    pub response_body: BodyLeft,
    pub phase: ResponsePhase,
    /// The upstream socket reached ESTABLISHED for this exchange.
    pub established: bool,
    /// The upstream connection came from the idle pool.
    pub reused: bool,
    /// The exchange already moved to another member once.
    pub retried: bool,
    /// `100 Continue` was sent to the client.
    pub continue_sent: bool,
    /// The client connection closes after this response.
    pub client_close: bool,
    /// The upstream said it keeps the connection open after this response.
    pub upstream_keep_alive: bool,
    pub status: u16,
    pub response_bytes: u64,
    pub started_ms: u64,
    /// When the current wait (connect, response, body) gives up.
    pub deadline_ms: u64,
}

/// Who holds an upstream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// Free (its socket is closed and settled).
    Free,
    /// Closing: settled once the socket has closed.
    Closing,
    /// In its member's idle list.
    Idle { since_ms: u64 },
    /// Carrying the exchange of this client connection.
    Client(ConnId),
    /// A health check of its member.
    Probe { deadline_ms: u64, sent: bool },
}

/// An upstream connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct UpstreamConn {
    pub owner: Owner,
    pub pool: u16,
    pub member: u16,
    pub addr: SocketAddrV4,
    /// Requests sent over this connection.
    pub requests: u32,
}

/// A lane's upstream side: pools (member choice and health), connections and idle lists.
pub(super) struct Upstreams {
    /// Connection id of the first outbound socket.
    pub first: ConnId,
    pub conns: Vec<UpstreamConn>,
    pub pools: Vec<Pool>,
    pub limits: Vec<PoolLimits>,
    /// Idle connections per pool and member (stacks: the most recently used is reused first).
    pub idle: Vec<Vec<Vec<ConnId>>>,
    /// Local ports this lane opens connections from, and the next to try.
    pub ports: std::ops::Range<u16>,
    pub next_port: u16,
    /// Steering that brings replies back to this lane (with more than one lane).
    pub steering: Option<xgate_userstack::rss::FlowSteering>,
}

/// The statuses an upstream failure maps to.
pub(super) const BAD_GATEWAY: u16 = 502;
const UNAVAILABLE: u16 = 503;
const GATEWAY_TIMEOUT: u16 = 504;
const REQUEST_TIMEOUT: u16 = 408;

/// The bytes of an HTTP/1.1 interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Upstreams {
    /// Pools built from `routing`, `outbound` connections starting at id `first`, local ports
    /// from `ports`.
    pub fn new(
        routing: &Routing,
        first: ConnId,
        outbound: usize,
        ports: std::ops::Range<u16>,
        steering: Option<xgate_userstack::rss::FlowSteering>,
    ) -> Upstreams {
        let unset = UpstreamConn {
            owner: Owner::Free,
            pool: 0,
            member: 0,
            addr: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            requests: 0,
        };
        let mut upstreams = Upstreams {
            first,
            conns: vec![unset; outbound],
            pools: Vec::new(),
            limits: Vec::new(),
            idle: Vec::new(),
            next_port: ports.start,
            ports,
            steering,
        };
        upstreams.install(routing);
        upstreams
    }

    /// Installs the pools of `routing`, keeping the state (health, ejections, outstanding
    /// requests) of members that stay. Idle lists are rebuilt empty: the caller closes the
    /// connections that were idle.
    fn install(&mut self, routing: &Routing) {
        let pools: Vec<Pool> = routing
            .pools
            .iter()
            .map(|spec| {
                let mut pool = Pool::new(spec.clone()).expect("validated when the config was loaded");
                if let Some(old) = self.pools.iter().find(|old| old.spec().name == spec.name) {
                    pool.carry_state_from(old);
                }
                pool
            })
            .collect();
        self.idle = routing
            .pools
            .iter()
            .zip(&routing.pool_limits)
            .map(|(spec, limits)| {
                (0..spec.members.len())
                    .map(|_| Vec::with_capacity(limits.max_idle))
                    .collect()
            })
            .collect();
        self.pools = pools;
        self.limits = routing.pool_limits.clone();
    }

    fn conn(&mut self, id: ConnId) -> &mut UpstreamConn {
        &mut self.conns[(id - self.first) as usize]
    }

    /// The pool and member index of `addr` in pool `pool` now (members may have moved after a
    /// reload), if it is still there.
    fn member_now(&self, pool: u16, member: u16, addr: SocketAddrV4) -> Option<(usize, usize)> {
        let pool = usize::from(pool);
        let p = self.pools.get(pool)?;
        if p.members().get(usize::from(member)).map(|m| m.addr) == Some(addr) {
            return Some((pool, usize::from(member)));
        }
        p.members().iter().position(|m| m.addr == addr).map(|m| (pool, m))
    }

    /// A local port for a connection to `remote` that no connection of `server` uses (and,
    /// with steering, whose replies come back to `lane`).
    fn local_port(&mut self, server: &TcpServer, remote: SocketAddrV4, lane: u16) -> Option<u16> {
        let span = self.ports.end - self.ports.start;
        let mut tried = 0u16;
        let mut fallback = None;
        while tried < span {
            let port = self.next_port;
            self.next_port = if port + 1 >= self.ports.end {
                self.ports.start
            } else {
                port + 1
            };
            tried += 1;
            if server.port_in_use(remote, port) {
                continue;
            }
            let Some(steering) = &self.steering else {
                return Some(port);
            };
            let steered = steering.pick_local_port(lane, [0; 4], remote.ip().octets(), remote.port(), [port]);
            if steered.is_some() {
                return Some(port);
            }
            fallback.get_or_insert(port);
            // About one port in `lanes` is steered home; give up on steering after a few dozen.
            if tried > 64 {
                return fallback;
            }
        }
        fallback
    }
}

impl Lane<'_> {
    /// The HTTP stage framed a request to proxy: set up its exchange and start it.
    pub(super) fn start_forward(&mut self, index: usize, forward: Forward) {
        let max_body = self.max_body;
        let now = self.now_ms;
        let conn = &mut self.connections[index];
        let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
        // The request head was rewritten into the response buffer: drop it from the request
        // buffer, which now starts with the body (if any).
        slot.consume_request(forward.head_len);
        conn.response_sent = 0;
        conn.proxy = Some(ProxyExchange {
            forward,
            upstream: None,
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
            client_close: forward.close || self.draining,
            upstream_keep_alive: false,
            status: 0,
            response_bytes: 0,
            started_ms: now,
            deadline_ms: now,
        });
        self.pump(index);
    }

    /// Picks a member and gives the exchange a connection to it (idle or new). On failure the
    /// client gets 503 (no member eligible) or 502 (no socket or port to connect from).
    /// `no_member` is the status when no member is eligible: 503 for a new request, the first
    /// failure's status for a retry that finds no other member.
    fn assign_upstream(&mut self, index: usize, exclude: Option<usize>, no_member: u16) -> bool {
        let now = self.now_ms;
        let x = self.connections[index].proxy.expect("an exchange");
        let pool_index = x.forward.pool;
        if pool_index >= self.upstreams.pools.len() {
            // A reload removed the pool while this request waited for a retry.
            self.fail_exchange(index, no_member);
            return false;
        }
        let pool = &mut self.upstreams.pools[pool_index];
        let Some(member) = pool.pick(x.forward.hash, exclude, now) else {
            self.fail_exchange(index, no_member);
            return false;
        };
        let addr = pool.members()[member].addr;
        // An idle connection, checked alive first.
        while let Some(id) = self.upstreams.idle[pool_index][member].pop() {
            let socket = self.server.socket(id);
            if socket.state() == tcp::State::Established && !socket.can_recv() {
                self.adopt(index, id, member, true);
                return true;
            }
            self.close_upstream(id, true);
        }
        let Some(port) = self.upstreams.local_port(&self.server, addr, self.index as u16) else {
            self.fail_exchange(index, BAD_GATEWAY);
            return false;
        };
        match self.server.connect(addr, port) {
            Ok(id) => {
                *self.upstreams.conn(id) = UpstreamConn {
                    owner: Owner::Free,
                    pool: pool_index as u16,
                    member: member as u16,
                    addr,
                    requests: 0,
                };
                self.adopt(index, id, member, false);
                true
            }
            Err(ConnectError::NoFreeSocket | ConnectError::PortInUse | ConnectError::Refused) => {
                self.values.upstream_connect_failures += 1;
                self.fail_exchange(index, BAD_GATEWAY);
                false
            }
        }
    }

    /// Gives upstream connection `id` to the exchange of client `index`.
    fn adopt(&mut self, index: usize, id: ConnId, member: usize, reused: bool) {
        let now = self.now_ms;
        let timeouts = &self.timeouts;
        let conn = self.upstreams.conn(id);
        conn.owner = Owner::Client(index as ConnId);
        conn.requests += 1;
        let pool = usize::from(conn.pool);
        self.upstreams.pools[pool].begin(member);
        let x = self.connections[index].proxy.as_mut().expect("an exchange");
        x.upstream = Some(id);
        x.member = member as u16;
        x.reused = reused;
        x.established = false;
        x.deadline_ms = now
            + if reused {
                timeouts.upstream_response_ms
            } else {
                timeouts.upstream_connect_ms
            };
        self.server.touch(id);
    }

    /// Ends the exchange of client `index` with an error answer `status` (if nothing of the
    /// response went out yet) or a reset (if it did). The upstream connection, if any, is
    /// aborted and its member's request finished.
    pub(super) fn fail_exchange(&mut self, index: usize, status: u16) {
        let Some(x) = self.connections[index].proxy.take() else {
            return;
        };
        self.values.in_flight -= 1;
        self.drop_upstream_of(&x, false);
        let client = index as ConnId;
        let response_begun = !matches!(x.phase, ResponsePhase::AwaitingHead);
        if response_begun {
            // Part of the response went out: the client must not take a cut response for a
            // whole one.
            self.server.socket(client).abort();
            self.values.client_resets += 1;
        } else {
            self.answer_and_close(index, status, x.forward.is_head, Some(x.forward.route));
        }
        self.log_access(index, &x, if response_begun { x.status } else { status });
        self.server.touch(client);
        self.server.wake(client);
    }

    /// Puts the gateway's own answer `status` in connection `index`'s slot, to be sent and the
    /// connection closed; the rest of its request (body, pipelined bytes) cannot be trusted any
    /// more and is dropped.
    fn answer_and_close(&mut self, index: usize, status: u16, is_head: bool, route: Option<usize>) {
        let conn = &mut self.connections[index];
        let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
        let written = write_error(status, is_head, true, &mut slot.response);
        slot.request_len = 0;
        slot.verdict = Some(Verdict::Respond {
            consumed: 0,
            written,
            close: true,
            status,
            route: None,
        });
        conn.response_sent = 0;
        self.count_status(index, status, route);
    }

    /// Releases the exchange's upstream connection: back to the idle list when `reusable`,
    /// else aborted. Its member's outstanding request ends either way.
    fn drop_upstream_of(&mut self, x: &ProxyExchange, reusable: bool) {
        let Some(id) = x.upstream else { return };
        let conn = *self.upstreams.conn(id);
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            self.upstreams.pools[pool].finish(member);
            let limits = &self.upstreams.limits[pool];
            let under_limit =
                limits.max_requests_per_connection == 0 || conn.requests < limits.max_requests_per_connection;
            let idle = &mut self.upstreams.idle[pool][member];
            if reusable && under_limit && idle.len() < limits.max_idle && !self.draining {
                idle.push(id);
                let now = self.now_ms;
                let conn = self.upstreams.conn(id);
                conn.owner = Owner::Idle { since_ms: now };
                conn.pool = pool as u16;
                conn.member = member as u16;
                return;
            }
            // A healthy connection over its limits is closed politely.
            self.close_upstream(id, !reusable);
            return;
        }
        self.close_upstream(id, true);
    }

    /// Takes idle connection `id` out of its member's idle list and closes it: politely when it
    /// is still a clean connection (open, or closed by the upstream with nothing unread), with a
    /// reset when the upstream sent bytes nobody asked for.
    fn retire_idle(&mut self, id: ConnId) {
        let conn = *self.upstreams.conn(id);
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            let idle = &mut self.upstreams.idle[pool][member];
            if let Some(at) = idle.iter().position(|&i| i == id) {
                idle.swap_remove(at);
            }
        }
        let socket = self.server.socket(id);
        let clean =
            matches!(socket.state(), tcp::State::Established | tcp::State::CloseWait) && !socket.can_recv();
        self.close_upstream(id, !clean);
    }

    /// Closes upstream connection `id` (a FIN, or a RST when `abort`); its socket is settled
    /// once closed.
    fn close_upstream(&mut self, id: ConnId, abort: bool) {
        let socket = self.server.socket(id);
        if abort {
            socket.abort();
        } else {
            socket.close();
        }
        self.upstreams.conn(id).owner = Owner::Closing;
        self.server.touch(id);
        self.settle_upstream(id);
    }

    fn settle_upstream(&mut self, id: ConnId) {
        if self.server.settle(id) == xgate_userstack::tcp_server::Settled::Closed {
            self.upstreams.conn(id).owner = Owner::Free;
        }
    }

    /// Something happened on upstream connection `id`: serve its owner.
    pub(super) fn service_upstream(&mut self, id: ConnId) {
        match self.upstreams.conn(id).owner {
            Owner::Client(client) => self.pump(client as usize),
            Owner::Idle { .. } => {
                // An idle connection that the upstream closed, or that sent bytes nobody asked
                // for, is of no more use.
                let socket = self.server.socket(id);
                if socket.state() != tcp::State::Established || socket.can_recv() {
                    self.retire_idle(id);
                }
            }
            Owner::Probe { .. } => self.pump_probe(id),
            Owner::Closing | Owner::Free => self.settle_upstream(id),
        }
    }

    /// Moves the exchange of client `index` as far as the sockets allow.
    pub(super) fn pump(&mut self, index: usize) {
        let client = index as ConnId;
        let Some(mut x) = self.connections[index].proxy else {
            return;
        };
        // The client went away (reset, or closed both ways): nothing to answer.
        let client_state = self.server.socket(client).state();
        if matches!(client_state, tcp::State::Closed | tcp::State::TimeWait) {
            self.connections[index].proxy = None;
            self.values.in_flight -= 1;
            self.drop_upstream_of(&x, false);
            self.log_access(index, &x, 499);
            self.server.wake(client);
            return;
        }
        if x.upstream.is_none() && !self.assign_upstream(index, None, UNAVAILABLE) {
            return;
        }
        x = self.connections[index].proxy.expect("an exchange");
        let up = x.upstream.expect("assigned above");
        let now = self.now_ms;
        let state = self.server.socket(up).state();
        if matches!(state, tcp::State::SynSent | tcp::State::SynReceived) {
            return;
        }
        if !x.established {
            if state == tcp::State::Established {
                x.established = true;
                x.deadline_ms = now + self.timeouts.upstream_response_ms;
            } else {
                // Refused (reset) or unreachable before the handshake ended.
                self.values.upstream_connect_failures += 1;
                self.upstream_failed(index, x, BAD_GATEWAY);
                return;
            }
        }
        let mut progress = false;
        let conn = &mut self.connections[index];
        let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
        // 1. The request head.
        if x.head_sent < x.head_len {
            let socket = self.server.socket(up);
            if socket.may_send() {
                if let Ok(n) = socket.send_slice(&slot.response[x.head_sent..x.head_len]) {
                    x.head_sent += n;
                    progress |= n > 0;
                }
            }
        }
        let head_out = x.head_sent >= x.head_len;
        // 2. `100 Continue`, once the upstream has the head and the client waits with its body.
        if head_out
            && x.forward.expect_continue
            && !x.continue_sent
            && !x.request_body.is_done()
            && slot.request_len == 0
            && x.phase == ResponsePhase::AwaitingHead
        {
            let socket = self.server.socket(client);
            if socket.send_capacity() - socket.send_queue() >= CONTINUE.len() {
                let _ = socket.send_slice(CONTINUE);
                x.continue_sent = true;
                progress = true;
            }
        }
        // 3. The request body: bytes already in the slot first, then the client's socket.
        if head_out && !x.request_body.is_done() {
            let result = if slot.request_len > 0 {
                let socket = self.server.socket(up);
                let room = socket.send_capacity() - socket.send_queue();
                let len = x.request_body.want(room.min(slot.request_len));
                x.request_body.advance(&slot.request[..len]).inspect(|&take| {
                    let sent = socket.send_slice(&slot.request[..take]).unwrap_or(0);
                    debug_assert_eq!(sent, take, "room was counted");
                    slot.consume_request(take);
                })
            } else {
                relay(
                    &mut self.server,
                    &mut self.scratch,
                    client,
                    up,
                    &mut x.request_body,
                )
            };
            match result {
                Ok(n) => {
                    if n > 0 {
                        progress = true;
                        x.deadline_ms =
                            now + self.timeouts.body_idle_ms.max(self.timeouts.upstream_response_ms);
                    }
                }
                Err(error) => {
                    self.connections[index].proxy = Some(x);
                    self.values.bad_bodies += 1;
                    self.fail_exchange(index, error.status());
                    return;
                }
            }
            if !x.request_body.is_done() && !self.server.socket(client).may_recv() {
                // The client closed before its body was complete: nobody to answer.
                self.connections[index].proxy = Some(x);
                self.fail_exchange(index, 400);
                self.server.socket(client).abort();
                return;
            }
        }
        // 4. The response head, once the request head is out (the slot's buffer is free).
        if head_out && x.phase == ResponsePhase::AwaitingHead {
            loop {
                let socket = self.server.socket(up);
                let peeked = socket.peek_slice(&mut self.scratch).unwrap_or(0);
                let closed = !socket.may_recv() || socket.recv_queue() == socket.recv_capacity();
                match frame_response(&self.scratch[..peeked], x.forward.is_head, self.max_response_head) {
                    Ok(None) => {
                        if closed || peeked >= self.max_response_head {
                            // Closed (or overfull) before a whole head: the upstream failed.
                            self.connections[index].proxy = Some(x);
                            self.upstream_failed(index, x, BAD_GATEWAY);
                            return;
                        }
                        break;
                    }
                    Err(_) => {
                        self.values.bad_upstream_responses += 1;
                        self.connections[index].proxy = Some(x);
                        self.upstream_failed(index, x, BAD_GATEWAY);
                        return;
                    }
                    Ok(Some(head)) => {
                        let head_len = head.head_len;
                        if head.informational {
                            // Interim answers end here: xgate answered `Expect` itself.
                            discard(self.server.socket(up), head_len);
                            progress = true;
                            continue;
                        }
                        let body = BodyLeft::response(head.body);
                        let close = x.client_close || matches!(body, BodyLeft::UntilClose) || self.draining;
                        let options = ClientHeadOptions {
                            close,
                            http10_keep_alive: x.forward.http10 && !close,
                        };
                        let Some(len) =
                            write_client_head(&head, &self.scratch[..peeked], &options, &mut slot.response)
                        else {
                            self.values.bad_upstream_responses += 1;
                            self.connections[index].proxy = Some(x);
                            self.upstream_failed(index, x, BAD_GATEWAY);
                            return;
                        };
                        let status = head.status;
                        x.status = status;
                        x.upstream_keep_alive = head.upstream_keep_alive;
                        x.client_close = close;
                        x.response_body = body;
                        x.phase = ResponsePhase::SendingHead { len, sent: 0 };
                        x.deadline_ms = now + self.timeouts.upstream_response_ms;
                        discard(self.server.socket(up), head_len);
                        self.count_status(index, status, Some(x.forward.route));
                        let conn = *self.upstreams.conn(up);
                        if let Some((pool, member)) =
                            self.upstreams.member_now(conn.pool, conn.member, conn.addr)
                        {
                            self.upstreams.pools[pool].record_response(member, status < 500, now);
                        }
                        progress = true;
                        break;
                    }
                }
            }
        }
        // 5. The client head.
        if let ResponsePhase::SendingHead { len, sent } = x.phase {
            let conn = &mut self.connections[index];
            let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
            let socket = self.server.socket(client);
            let n = socket.send_slice(&slot.response[sent..len]).unwrap_or(0);
            progress |= n > 0;
            x.phase = if sent + n >= len {
                ResponsePhase::Body
            } else {
                ResponsePhase::SendingHead { len, sent: sent + n }
            };
        }
        // 6. The response body.
        if x.phase == ResponsePhase::Body {
            match relay(
                &mut self.server,
                &mut self.scratch,
                up,
                client,
                &mut x.response_body,
            ) {
                Ok(n) => {
                    if n > 0 {
                        progress = true;
                        x.response_bytes += n as u64;
                        x.deadline_ms = now + self.timeouts.upstream_response_ms;
                    }
                }
                Err(_) => {
                    self.values.bad_upstream_responses += 1;
                    self.connections[index].proxy = Some(x);
                    self.upstream_failed(index, x, BAD_GATEWAY);
                    return;
                }
            }
            if x.response_body.is_done() {
                x.phase = ResponsePhase::Done;
            } else if !self.server.socket(up).may_recv() {
                if matches!(x.response_body, BodyLeft::UntilClose) {
                    x.phase = ResponsePhase::Done;
                    x.upstream_keep_alive = false;
                } else {
                    // Reset or closed mid-body: the client must see a failure, not an end.
                    self.connections[index].proxy = Some(x);
                    self.upstream_failed(index, x, BAD_GATEWAY);
                    return;
                }
            }
        }
        if progress {
            self.server.touch(up);
            self.server.touch(client);
        }
        // 7. The end of the exchange.
        if x.phase == ResponsePhase::Done {
            let request_done = x.request_body.is_done() && x.head_sent >= x.head_len;
            if !request_done {
                // The upstream answered before taking the whole body: the client's remaining
                // bytes cannot be told apart from a next request, so the connection ends.
                x.client_close = true;
            }
            let reusable = request_done
                && x.upstream_keep_alive
                && self.server.socket(up).state() == tcp::State::Established
                && !self.server.socket(up).can_recv();
            self.connections[index].proxy = None;
            self.values.in_flight -= 1;
            self.drop_upstream_of(&x, reusable);
            self.values.requests += 1;
            self.log_access(index, &x, x.status);
            let conn = &mut self.connections[index];
            let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
            if x.client_close {
                self.server.socket(client).close();
                conn.closing = true;
                slot.request_len = 0;
            } else if slot.request_len > 0 {
                conn.unseen_bytes = true;
            }
            conn.last_active_ms = now;
            self.server.touch(client);
            // Continue as a plain connection: read the next request.
            self.service(client);
            return;
        }
        self.connections[index].proxy = Some(x);
    }

    /// The upstream failed before or during the response. Before anything of it reached the
    /// client, an idempotent request whose connection never carried it (connect failed, or a
    /// pooled connection that had closed) moves once to another member; otherwise the client
    /// gets `status` (or a reset, once the response has begun).
    fn upstream_failed(&mut self, index: usize, x: ProxyExchange, status: u16) {
        let now = self.now_ms;
        // A pooled connection the upstream had closed while idle says nothing about its health
        // (the retry on a fresh connection will).
        let stale_pooled = x.reused && x.phase == ResponsePhase::AwaitingHead;
        if let Some(up) = x.upstream.filter(|_| !stale_pooled) {
            let conn = *self.upstreams.conn(up);
            if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
                self.upstreams.pools[pool].record_response(member, false, now);
            }
        }
        let untouched = x.phase == ResponsePhase::AwaitingHead && (!x.established || x.reused);
        let may_retry = untouched && x.forward.idempotent && !x.retried && x.request_body_untouched();
        if !may_retry {
            self.connections[index].proxy = Some(x);
            self.fail_exchange(index, status);
            return;
        }
        self.values.upstream_retries += 1;
        let exclude = if x.reused {
            None
        } else {
            Some(usize::from(x.member))
        };
        self.drop_upstream_of(&x, false);
        let mut retry = x;
        retry.upstream = None;
        retry.head_sent = 0;
        retry.retried = true;
        retry.established = false;
        self.connections[index].proxy = Some(retry);
        if self.assign_upstream(index, exclude, status) {
            self.pump(index);
        }
    }

    /// Publishes the half-open client connections the server counts, and those it evicted
    /// since the last sweep (the server keeps them within `shield.max_half_open`).
    fn publish_half_open(&mut self) {
        let stats = self.server.stats();
        let evicted = stats.half_open_evicted - self.half_open_evicted_seen;
        self.half_open_evicted_seen = stats.half_open_evicted;
        self.metrics
            .record_half_open(self.server.half_open() as u64, evicted);
    }

    /// Time limits of exchanges and idle connections, and health checks that are due.
    pub(super) fn sweep(&mut self) {
        let now = self.now_ms;
        let mut busy = 0u64;
        for index in 0..self.connections.len() {
            if self.draining && self.server.is_connected(index as ConnId) {
                let conn = &self.connections[index];
                let unsent = self.server.socket(index as ConnId).send_queue() > 0;
                if !conn.closing || unsent || conn.proxy.is_some() {
                    busy += 1;
                }
            }
            let id = index as ConnId;
            if let Some(x) = self.connections[index].proxy {
                if now < x.deadline_ms {
                    continue;
                }
                self.values.timeouts += 1;
                if x.upstream.is_some() && !x.established {
                    self.values.upstream_connect_failures += 1;
                    // No answer to the SYN: unreachable, like a refusal (502).
                    self.upstream_failed(index, x, BAD_GATEWAY);
                } else if !x.request_body.is_done() && x.phase == ResponsePhase::AwaitingHead {
                    self.fail_exchange(index, REQUEST_TIMEOUT);
                } else {
                    self.fail_exchange(index, GATEWAY_TIMEOUT);
                }
                continue;
            }
            if !self.server.is_connected(id) {
                continue;
            }
            let conn = &mut self.connections[index];
            if conn.closing || conn.queued || conn.slot.is_none() {
                continue;
            }
            let slot = conn.slot.as_mut().expect("checked").slot();
            if slot.verdict.is_some() {
                continue;
            }
            if slot.request_len > 0 {
                // A request head that has not ended in time (slow headers).
                if now >= conn.head_started_ms + self.timeouts.header_read_ms {
                    self.values.timeouts += 1;
                    self.answer_and_close(index, REQUEST_TIMEOUT, false, None);
                    self.service(id);
                }
            } else if now
                >= conn
                    .last_active_ms
                    .saturating_add(self.timeouts.keepalive_idle_ms)
                || self.draining
            {
                // Idle keep-alive connection (or draining: no request in flight).
                conn.closing = true;
                self.server.socket(id).close();
                self.server.touch(id);
                self.values.idle_closed += 1;
            }
        }
        self.publish_half_open();
        for i in 0..self.upstreams.conns.len() {
            let id = self.upstreams.first + i as ConnId;
            match self.upstreams.conns[i].owner {
                Owner::Idle { since_ms } => {
                    let pool = usize::from(self.upstreams.conns[i].pool);
                    let limit = self.upstreams.limits.get(pool).map_or(0, |l| l.idle_timeout_ms);
                    if now >= since_ms + limit || self.draining {
                        self.retire_idle(id);
                    }
                }
                Owner::Probe { deadline_ms, .. } if now >= deadline_ms => {
                    self.probe_done(id, false);
                }
                Owner::Closing => self.settle_upstream(id),
                _ => {}
            }
        }
        if self.draining {
            self.values.open_connections = busy;
        } else {
            self.start_probes();
        }
    }

    /// Opens a health-check connection for every member whose check is due.
    fn start_probes(&mut self) {
        let now = self.now_ms;
        for pool in 0..self.upstreams.pools.len() {
            while let Some(member) = self.upstreams.pools[pool].next_check_due(now) {
                let addr = self.upstreams.pools[pool].members()[member].addr;
                let timeout = self.upstreams.pools[pool]
                    .spec()
                    .health
                    .as_ref()
                    .map_or(1_000, |h| h.timeout_ms);
                let opened = self
                    .upstreams
                    .local_port(&self.server, addr, self.index as u16)
                    .and_then(|port| self.server.connect(addr, port).ok());
                let Some(id) = opened else {
                    self.upstreams.pools[pool].record_check(member, false, now);
                    continue;
                };
                *self.upstreams.conn(id) = UpstreamConn {
                    owner: Owner::Probe {
                        deadline_ms: now + timeout,
                        sent: false,
                    },
                    pool: pool as u16,
                    member: member as u16,
                    addr,
                    requests: 1,
                };
            }
        }
    }

    /// Drives a health check: send `GET path`, read the status line, close.
    fn pump_probe(&mut self, id: ConnId) {
        let Owner::Probe { deadline_ms, sent } = self.upstreams.conn(id).owner else {
            return;
        };
        let conn = *self.upstreams.conn(id);
        let socket = self.server.socket(id);
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => return,
            tcp::State::Established | tcp::State::CloseWait => {}
            _ if socket.can_recv() => {}
            _ => {
                self.probe_done(id, false);
                return;
            }
        }
        if !sent {
            // The pool may have gone with a reload while the probe connected.
            let path = self
                .upstreams
                .pools
                .get(usize::from(conn.pool))
                .and_then(|pool| pool.spec().health.as_ref())
                .map_or("/", |h| &h.path);
            let mut request = [0u8; 512];
            let len = health_request(path, conn.addr, &mut request);
            let socket = self.server.socket(id);
            if socket.send_capacity() - socket.send_queue() < len {
                return;
            }
            let _ = socket.send_slice(&request[..len]);
            self.upstreams.conn(id).owner = Owner::Probe {
                deadline_ms,
                sent: true,
            };
            self.server.touch(id);
            return;
        }
        let mut head = [0u8; 16];
        let n = self.server.socket(id).peek_slice(&mut head).unwrap_or(0);
        if n >= 12 {
            let ok = head.starts_with(b"HTTP/1.") && matches!(head[9], b'2' | b'3');
            self.probe_done(id, ok);
        } else if !self.server.socket(id).may_recv() {
            self.probe_done(id, false);
        }
    }

    fn probe_done(&mut self, id: ConnId, ok: bool) {
        let now = self.now_ms;
        let conn = *self.upstreams.conn(id);
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            self.upstreams.pools[pool].record_check(member, ok, now);
        }
        self.close_upstream(id, true);
    }

    /// Installs a new routing (a reload): the HTTP stage routes with it from its next request;
    /// exchanges in flight finish with the members they have; idle connections to members
    /// that left are closed.
    pub(super) fn apply_routing(&mut self, routing: &Routing) {
        for pool in 0..self.upstreams.idle.len() {
            for member in 0..self.upstreams.idle[pool].len() {
                while let Some(id) = self.upstreams.idle[pool][member].pop() {
                    self.close_upstream(id, false);
                }
            }
        }
        self.upstreams.install(routing);
    }
}

impl ProxyExchange {
    /// No byte of the request body has left the client side (so the request can be sent again).
    fn request_body_untouched(&self) -> bool {
        match (self.forward.body, self.request_body) {
            (BodyFraming::None | BodyFraming::Length(0), _) => true,
            (BodyFraming::Length(total), BodyLeft::Length(left)) => total == left,
            _ => false,
        }
    }
}

/// Moves the next bytes of `body` from socket `from` to socket `to` through `scratch`, as many
/// as `to` has room for. Returns how many moved.
fn relay(
    server: &mut TcpServer,
    scratch: &mut [u8],
    from: ConnId,
    to: ConnId,
    body: &mut BodyLeft,
) -> Result<usize, ChunkError> {
    let sink = server.socket(to);
    if !sink.may_send() {
        return Ok(0);
    }
    let room = body.want((sink.send_capacity() - sink.send_queue()).min(scratch.len()));
    if room == 0 {
        return Ok(0);
    }
    let peeked = server.socket(from).peek_slice(&mut scratch[..room]).unwrap_or(0);
    if peeked == 0 {
        return Ok(0);
    }
    let take = body.advance(&scratch[..peeked])?;
    let sent = server.socket(to).send_slice(&scratch[..take]).unwrap_or(0);
    debug_assert_eq!(sent, take, "room was counted");
    discard(server.socket(from), take);
    Ok(take)
}

/// Drops the first `count` received bytes of `socket` (already peeked and handled).
fn discard(socket: &mut tcp::Socket<'static>, mut count: usize) {
    while count > 0 {
        match socket.recv(|bytes| {
            let n = bytes.len().min(count);
            (n, n)
        }) {
            Ok(0) | Err(_) => break,
            Ok(n) => count -= n,
        }
    }
}
