//! The proxying half of a lane: it carries out what the proxy crate's sans-I/O
//! [`Exchange`] decides. The exchange owns the rules (framing both ways, `100 Continue`, when a
//! response is complete, what a failure means); this module owns the sockets and the pools, and
//! does what each [`Pumped`] result says: count a response head, put the upstream connection
//! back in its idle list or drop it, retry on another member, answer or reset the client.
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
//! other side's receive buffer and TCP's window closes toward the fast sender. Both sockets are
//! reached through [`SocketPair`], the transport seam.
//!
//! Invariants:
//! - A response is never cut short in a way that looks complete: when the upstream fails after
//!   the client head went out, the client connection is reset, not closed.
//! - An exchange's request bytes are consumed from the slot as they are sent upstream, so when
//!   the exchange ends the slot holds exactly the client's next (pipelined) bytes.
//! - Nothing here allocates per request.

use smoltcp::socket::tcp;
use xgate_proxy::{
    exchange::{
        End, Exchange, ExchangeTimeouts, Expiry, PumpContext, Pumped, RequestFault, SlotBuffers,
        UpstreamFault,
    },
    gateway::{Forward, Verdict},
    write_error,
};
use xgate_userstack::tcp_server::ConnId;

use super::{upstream::Assigned, Lane};
use crate::{
    metrics::phases::ExchangeStamps, routing::TimeoutsConfig, sys::monotonic_ns, transport::SocketPair,
};

/// One proxied request in flight on a client connection: its exchange, the upstream
/// connection carrying it (the lane's, once assigned), and the moments of its phases.
#[derive(Clone, Copy, Debug)]
pub(super) struct Proxied {
    pub exchange: Exchange,
    pub upstream: Option<ConnId>,
    pub stamps: ExchangeStamps,
    /// While the exchange waits in its pool's queue: its entry's ticket (older entries of the
    /// same connection are stale).
    pub ticket: u32,
}

/// The statuses an upstream failure maps to.
pub(super) const BAD_GATEWAY: u16 = 502;
pub(super) const UNAVAILABLE: u16 = 503;
const GATEWAY_TIMEOUT: u16 = 504;
pub(super) const REQUEST_TIMEOUT: u16 = 408;
/// The status of a client gone before its response (logged only: nobody is there to read it).
const CLIENT_GONE: u16 = 499;

/// The exchange's time limits, from the configuration's.
pub(super) fn exchange_timeouts(timeouts: &TimeoutsConfig) -> ExchangeTimeouts {
    ExchangeTimeouts {
        upstream_connect_ms: timeouts.upstream_connect_ms,
        upstream_response_ms: timeouts.upstream_response_ms,
        body_idle_ms: timeouts.body_idle_ms,
    }
}

impl Lane<'_> {
    /// The HTTP stage framed a request to proxy: set up its exchange and start it.
    pub(super) fn start_forward(&mut self, index: usize, forward: Forward) {
        let conn = &mut self.connections[index];
        let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
        // The request head was rewritten into the response buffer: drop it from the request
        // buffer, which now starts with the body (if any).
        slot.consume_request(forward.head_len);
        conn.response_sent = 0;
        conn.proxy = Some(Proxied {
            exchange: Exchange::new(forward, self.proxying.max_body, self.draining, self.now_ms),
            upstream: None,
            stamps: ExchangeStamps::forwarded(monotonic_ns()),
            ticket: 0,
        });
        self.pump(index);
    }

    /// Moves the exchange of client `index` as far as the sockets allow, and carries out what
    /// it decided.
    pub(super) fn pump(&mut self, index: usize) {
        let client = index as ConnId;
        let Some(mut proxied) = self.connections[index].proxy else {
            return;
        };
        if proxied.upstream.is_none() {
            // The client went away (reset, or closed both ways): nothing to answer.
            let state = self.server.socket(client).state();
            if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                self.client_gone(index);
                return;
            }
            if self.assign_upstream(index, None, UNAVAILABLE) != Assigned::Yes {
                return;
            }
            proxied = self.connections[index].proxy.expect("an exchange");
        }
        let up = proxied.upstream.expect("assigned above");
        let cx = PumpContext {
            now_ms: self.now_ms,
            draining: self.draining,
            max_response_head: self.proxying.max_response_head,
            timeouts: exchange_timeouts(&self.proxying.timeouts),
        };
        let slot = self.connections[index]
            .slot
            .as_mut()
            .expect("the lane holds the slot")
            .slot();
        let buffers = SlotBuffers {
            request: slot.request,
            request_len: &mut slot.request_len,
            response: slot.response,
        };
        let mut io = SocketPair {
            server: &mut self.server,
            client,
            client_tls: self.https.sessions[index].as_deref_mut(),
            upstream: up,
        };
        let pumped = proxied
            .exchange
            .pump(&mut io, buffers, &mut self.proxying.scratch, &cx);
        self.connections[index].proxy = Some(proxied);
        self.carry_out(index, up, pumped);
    }

    /// Does what one pump of the exchange of client `index` (upstream connection `up`) decided.
    fn carry_out(&mut self, index: usize, up: ConnId, pumped: Pumped) {
        let client = index as ConnId;
        let completed = matches!(pumped.end, Some(End::Complete { .. }));
        if pumped.milestones.any() || completed {
            let now_ns = monotonic_ns();
            if let Some(proxied) = self.connections[index].proxy.as_mut() {
                proxied.stamps.note(&pumped.milestones, completed, now_ns);
            }
        }
        if let Some(status) = pumped.head {
            let route = self.connections[index].proxy.map(|p| p.exchange.forward().route);
            self.count_status(index, status, route);
            self.record_member_response(up, status < 500);
        }
        match pumped.end {
            None => {
                if pumped.progress {
                    self.server.touch(up);
                    self.server.touch(client);
                }
            }
            Some(End::Complete {
                reusable,
                close_client,
            }) => {
                if pumped.progress {
                    self.server.touch(up);
                    self.server.touch(client);
                }
                self.complete(index, reusable, close_client);
            }
            Some(End::ClientGone) => self.client_gone(index),
            Some(End::UpstreamFailed { status, cause }) => {
                match cause {
                    UpstreamFault::ConnectFailed => self.values.upstream_connect_failures += 1,
                    UpstreamFault::BadResponse => self.values.bad_upstream_responses += 1,
                    UpstreamFault::ClosedBeforeHead | UpstreamFault::CutMidBody => {}
                }
                self.upstream_failed(index, status);
            }
            Some(End::RequestFailed {
                status,
                cause,
                abort_client,
            }) => {
                if cause == RequestFault::BadBody {
                    self.values.bad_bodies += 1;
                }
                self.fail_exchange(index, status);
                if abort_client {
                    self.server.socket(client).abort();
                }
            }
        }
    }

    /// The whole response of client `index`'s exchange is in its socket: the upstream
    /// connection goes back to its idle list (`reusable`) or is dropped, and the connection
    /// goes on as a plain one (or closes, `close_client`).
    fn complete(&mut self, index: usize, reusable: bool, close_client: bool) {
        let client = index as ConnId;
        let proxied = self.end_exchange(index, reusable).expect("an exchange");
        self.values.requests += 1;
        self.log_access(index, &proxied, proxied.exchange.status());
        let conn = &mut self.connections[index];
        let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
        if close_client {
            self.server.socket(client).close();
            conn.closing = true;
            slot.request_len = 0;
        } else if slot.request_len > 0 {
            conn.unseen_bytes = true;
        }
        conn.last_active_ms = self.now_ms;
        self.server.touch(client);
        // Continue as a plain connection: read the next request.
        self.service(client);
    }

    /// The client of exchange `index` went away: its upstream connection is aborted, nothing
    /// is answered.
    fn client_gone(&mut self, index: usize) {
        let proxied = self.end_exchange(index, false).expect("an exchange");
        self.log_access(index, &proxied, CLIENT_GONE);
        self.server.wake(index as ConnId);
    }

    /// Takes the exchange of client `index` off its connection, if it has one: it is no longer in
    /// flight, the phases it reached are recorded, and its upstream connection goes back to the
    /// idle list (`reusable`) or is dropped.
    fn end_exchange(&mut self, index: usize, reusable: bool) -> Option<Proxied> {
        let proxied = self.connections[index].proxy.take()?;
        self.values.in_flight -= 1;
        let route = Some(proxied.exchange.forward().route);
        for (phase, took) in proxied.stamps.phases() {
            if let Some(ns) = took {
                self.metrics.record_phase(route, phase, ns);
            }
        }
        self.drop_upstream_of(proxied.upstream, reusable);
        Some(proxied)
    }

    /// Records a response (or a failure) of the member behind upstream connection `up`.
    fn record_member_response(&mut self, up: ConnId, ok: bool) {
        let now = self.now_ms;
        let conn = *self.upstreams.conn(up);
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            self.upstreams.pools[pool].record_response(member, ok, now);
        }
    }

    /// Ends the exchange of client `index` with an error answer `status` (if nothing of the
    /// response went out yet) or a reset (if it did). The upstream connection, if any, is
    /// aborted and its member's request finished.
    pub(super) fn fail_exchange(&mut self, index: usize, status: u16) {
        let Some(proxied) = self.end_exchange(index, false) else {
            return;
        };
        let client = index as ConnId;
        let response_begun = proxied.exchange.response_begun();
        if response_begun {
            // Part of the response went out: the client must not take a cut response for a
            // whole one.
            self.server.socket(client).abort();
            self.values.client_resets += 1;
        } else {
            let forward = proxied.exchange.forward();
            self.answer_and_close(index, status, forward.is_head, Some(forward.route));
        }
        let logged = if response_begun {
            proxied.exchange.status()
        } else {
            status
        };
        self.log_access(index, &proxied, logged);
        self.server.touch(client);
        self.server.wake(client);
    }

    /// Puts the gateway's own answer `status` in connection `index`'s slot, to be sent and the
    /// connection closed; the rest of its request (body, pipelined bytes) cannot be trusted any
    /// more and is dropped.
    pub(super) fn answer_and_close(
        &mut self,
        index: usize,
        status: u16,
        is_head: bool,
        route: Option<usize>,
    ) {
        let conn = &mut self.connections[index];
        let slot = conn.slot.as_mut().expect("the lane holds the slot").slot();
        let written = write_error(status, is_head, true, slot.response);
        slot.request_len = 0;
        slot.verdict = Some(Verdict::Respond {
            consumed: 0,
            written,
            close: true,
            status,
            route,
            rate_limited: false,
        });
        conn.response_sent = 0;
        self.count_status(index, status, route);
    }

    /// The upstream of client `index`'s exchange failed before or during the response. An
    /// exchange that may retry (see [`Exchange::may_retry`]) moves once to another member;
    /// otherwise the client gets `status` (or a reset, once the response has begun).
    fn upstream_failed(&mut self, index: usize, status: u16) {
        let mut proxied = self.connections[index].proxy.expect("an exchange");
        if let Some(up) = proxied
            .upstream
            .filter(|_| proxied.exchange.counts_against_member())
        {
            self.record_member_response(up, false);
        }
        if !proxied.exchange.may_retry() {
            self.fail_exchange(index, status);
            return;
        }
        self.values.upstream_retries += 1;
        let exclude = proxied.exchange.retry().map(usize::from);
        self.drop_upstream_of(proxied.upstream, false);
        proxied.upstream = None;
        proxied.stamps.retried();
        self.connections[index].proxy = Some(proxied);
        if self.assign_upstream(index, exclude, status) == Assigned::Yes {
            self.pump(index);
        }
    }

    /// The exchange of client `index` passed a time limit at `now` (the sweep): a connect that
    /// never finished fails like a refusal (502, or the retry), a request body that stopped
    /// arriving is 408, a response that does not come or stalls is 504.
    pub(super) fn check_deadline(&mut self, index: usize) {
        let Some(proxied) = self.connections[index].proxy else {
            return;
        };
        let Some(expiry) = proxied.exchange.expire(self.now_ms) else {
            return;
        };
        self.values.timeouts += 1;
        match expiry {
            Expiry::ConnectTimeout => {
                self.values.upstream_connect_failures += 1;
                // No answer to the SYN: unreachable, like a refusal (502).
                self.upstream_failed(index, BAD_GATEWAY);
            }
            Expiry::RequestTimeout => self.fail_exchange(index, REQUEST_TIMEOUT),
            Expiry::GatewayTimeout => self.fail_exchange(index, GATEWAY_TIMEOUT),
            Expiry::QueueTimeout => {
                self.values.upstream_queue_timeouts += 1;
                self.fail_exchange(index, UNAVAILABLE);
            }
        }
    }
}
