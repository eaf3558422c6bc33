//! The client side of a connection: reading a request into its slot, handing the slot to the
//! HTTP stage and taking it back, writing the answer, keep-alive and pipelining, closing; the
//! counts and the access-log line of each response. Bytes move through the transport seam
//! ([`SocketStream`]).

use smoltcp::socket::tcp;
use xgate_proxy::{gateway::Verdict, stream::Stream};
use xgate_userstack::tcp_server::{ConnId, Settled};

use super::{
    proxy::{self, Proxied},
    Lane, NOT_SEEN,
};
use crate::{
    metrics::{
        phases::{between, Phase},
        COUNTED_STATUSES,
    },
    stage::BATCH,
    sys::monotonic_ns,
    tls::session::{FailureKind, HandshakeOutcome},
    transport::SocketStream,
};

/// Counts how a TLS handshake ended.
fn count_tls_outcome(values: &mut crate::counters::CounterValues, outcome: HandshakeOutcome) {
    match outcome {
        HandshakeOutcome::Done {
            tls13: true,
            resumed: false,
        } => values.tls13_full += 1,
        HandshakeOutcome::Done {
            tls13: true,
            resumed: true,
        } => values.tls13_resumed += 1,
        HandshakeOutcome::Done {
            tls13: false,
            resumed: false,
        } => values.tls12_full += 1,
        HandshakeOutcome::Done {
            tls13: false,
            resumed: true,
        } => values.tls12_resumed += 1,
        HandshakeOutcome::Failed(kind) => match kind {
            FailureKind::NotTls => values.tls_failed_not_tls += 1,
            FailureKind::UnknownName => values.tls_failed_unknown_name += 1,
            FailureKind::NoCommonParameters => values.tls_failed_no_common_parameters += 1,
            FailureKind::PeerAlert => values.tls_failed_peer_alert += 1,
            FailureKind::Protocol => values.tls_failed_protocol += 1,
        },
    }
}

impl Lane<'_> {
    /// Aborts client connection `id` (the peer gets a RST); an exchange in flight ends with it.
    pub(super) fn abort_connection(&mut self, id: ConnId) {
        let index = id as usize;
        if self.connections[index].proxy.is_some() {
            self.fail_exchange(index, proxy::BAD_GATEWAY);
        }
        self.server.abort(id);
        self.service(id);
    }

    /// Counts a response with `status` for `route` on connection `index`, with its latency
    /// from the request's arrival in XDP to now (when the arrival is known).
    pub(super) fn count_status(&mut self, index: usize, status: u16, route: Option<usize>) {
        let at = COUNTED_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(COUNTED_STATUSES.len() - 1);
        self.statuses[at] += 1;
        let arrival = self.connections.get(index).map_or(0, |c| c.request_arrival_ns);
        let latency = (arrival != 0).then(|| monotonic_ns().saturating_sub(arrival));
        self.metrics.record(route, at, latency);
    }

    /// The head of connection `index`'s request was complete when the lane last handed its slot
    /// to the HTTP stage: its read time counts for `route` (when its arrival is known).
    fn record_head_read(&self, index: usize, route: Option<usize>) {
        let conn = &self.connections[index];
        if let Some(ns) = between(conn.request_arrival_ns, conn.handed_ns) {
            self.metrics.record_phase(route, Phase::HeadRead, ns);
        }
    }

    /// One access-log line for the exchange of connection `index` (when the log is on).
    pub(super) fn log_access(&mut self, index: usize, proxied: &Proxied, status: u16) {
        let Some(log) = self.access_log.as_mut() else {
            return;
        };
        let client = self
            .server
            .socket(index as ConnId)
            .remote_endpoint()
            .map(|endpoint| std::net::SocketAddr::new(endpoint.addr.into(), endpoint.port));
        let upstream = proxied
            .upstream
            .map(|id| self.upstreams.conns[(id - self.upstreams.first) as usize].addr);
        let x = &proxied.exchange;
        log.write(
            self.now_ms,
            client,
            x.forward().route,
            upstream,
            status,
            x.response_bytes(),
            self.now_ms.saturating_sub(x.started_ms()),
        );
    }

    /// Handles coming back from the HTTP stage: count the verdict and serve the connection.
    pub(super) fn collect_responses(&mut self) -> bool {
        let mut any = false;
        while let Ok(mut handle) = self.stage.from_http.pop() {
            any = true;
            let index = handle.index();
            let slot = handle.slot();
            let verdict = slot.verdict;
            match verdict {
                Some(Verdict::Respond {
                    status,
                    route,
                    rate_limited,
                    ..
                }) => {
                    self.record_head_read(index, route);
                    self.count_status(index, status, route);
                    self.values.requests += 1;
                    if rate_limited {
                        self.metrics.record_rate_limited(route);
                        self.values.rate_limited += 1;
                    }
                }
                // More bytes are needed: the connection reads on.
                Some(Verdict::Incomplete) | None => slot.verdict = None,
                Some(Verdict::Forward(forward)) => {
                    self.record_head_read(index, Some(forward.route));
                    slot.verdict = None;
                }
            }
            let conn = &mut self.connections[index];
            conn.response_sent = 0;
            conn.slot = Some(handle);
            if let Some(Verdict::Forward(forward)) = verdict {
                self.values.in_flight += 1;
                self.start_forward(index, forward);
                continue;
            }
            self.service(index as ConnId);
        }
        any
    }

    /// Moves ready connections' slots to the HTTP stage, as far as the ring has room.
    pub(super) fn send_to_http(&mut self) -> bool {
        let mut sent = false;
        loop {
            let room = self.stage.to_http.slots().min(BATCH).min(self.stage.ready.len());
            if room == 0 {
                if !self.stage.ready.is_empty() && !sent {
                    self.values.http_ring_full += 1;
                }
                return sent;
            }
            let chunk = self
                .stage
                .to_http
                .write_chunk_uninit(room)
                .expect("room counted above");
            let handed_ns = monotonic_ns();
            let connections = &mut self.connections;
            let ready = &mut self.stage.ready;
            // Each ready connection still holds its slot (it reads nothing while queued).
            let moved = chunk.fill_from_iter(std::iter::from_fn(|| {
                let id = ready.pop_front()?;
                let conn = &mut connections[id as usize];
                conn.queued = false;
                conn.unseen_bytes = false;
                conn.handed_ns = handed_ns;
                Some(conn.slot.take().expect("a queued connection holds its slot"))
            }));
            sent |= moved > 0;
        }
    }

    /// Once the stack has accepted client connection `id`'s handshake (the client's ACK matched
    /// the SYN-ACK, which the XDP program cannot check), tells the reaper, which trusts the
    /// client's address in the SYN shield.
    pub(super) fn note_handshake(&mut self, id: ConnId) {
        let socket = self.server.socket(id);
        if matches!(
            socket.state(),
            tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived
        ) {
            return;
        }
        let Some(endpoint) = socket.remote_endpoint() else {
            return;
        };
        self.connections[id as usize].handshake_noted = true;
        self.control
            .reaps
            .handshakes
            .note(endpoint.addr.into(), self.now_ms);
    }

    /// Serves connection `id`: finishes its response, reads what arrived, closes and settles.
    pub(super) fn service(&mut self, id: ConnId) {
        let index = id as usize;
        if index >= self.connections.len() {
            self.service_upstream(id);
            return;
        }
        if !self.connections[index].handshake_noted {
            self.note_handshake(id);
        }
        if self.connections[index].proxy.is_some() {
            self.pump(index);
            return;
        }
        let now_ms = self.now_ms;
        let conn = &mut self.connections[index];
        if conn.queued {
            return;
        }
        let Some(handle) = conn.slot.as_mut() else {
            // At the HTTP stage: served again when the handle returns.
            return;
        };
        let slot = handle.slot();
        if conn.last_active_ms == NOT_SEEN {
            // A new connection: one on the HTTPS port gets its TLS session, any other none
            // (whatever a previous connection of this socket left).
            let local = self.server.socket(id).local_endpoint().map(|e| e.port);
            self.https.sessions[index] = match (&self.https.config, self.https.port) {
                (Some(config), Some(port)) if local == Some(port) => {
                    match crate::tls::session::TlsSession::new(
                        std::sync::Arc::clone(config),
                        now_ms,
                        monotonic_ns(),
                    ) {
                        Ok(session) => Some(Box::new(session)),
                        Err(error) => {
                            // Never served as plain HTTP: the connection is reset.
                            tracing::warn!(%error, "no TLS session for a new connection");
                            self.server.socket(id).abort();
                            self.server.touch(id);
                            None
                        }
                    }
                }
                _ => None,
            };
        }
        let mut stream =
            SocketStream::with_tls(&mut self.server, id, self.https.sessions[index].as_deref_mut());
        let mut touched = stream.pumped();
        if let Some(tls) = stream.tls() {
            if let Some(outcome) = tls.take_outcome() {
                count_tls_outcome(&mut self.values, outcome);
                if matches!(outcome, HandshakeOutcome::Done { .. }) {
                    self.metrics
                        .record_tls_handshake(monotonic_ns().saturating_sub(tls.started_ns));
                }
            }
            if tls.failure().is_some() && !conn.closing {
                // Its alert is on its way: close (the peer's further bytes are discarded).
                stream.close();
                conn.closing = true;
                touched = true;
            }
        }
        if conn.last_active_ms == NOT_SEEN {
            // A new connection: its keep-alive idle time starts now.
            conn.last_active_ms = now_ms;
            if let Some(ip) = stream.remote_ip() {
                slot.client_ip = ip;
            }
            slot.https = stream.tls().is_some();
        }
        // 1. Finish writing the current response.
        if let Some(Verdict::Respond {
            consumed,
            written,
            close,
            route,
            ..
        }) = slot.verdict
        {
            if conn.response_sent < written {
                let first = conn.response_sent == 0;
                let n = stream.send(&slot.response[conn.response_sent..written]);
                conn.response_sent += n;
                touched |= n > 0;
                if first && n > 0 && conn.response_sent < written {
                    // The rest waits for room in the socket's buffer.
                    conn.write_started_ns = monotonic_ns();
                }
            }
            if conn.response_sent >= written && written > 0 {
                let took = match conn.write_started_ns {
                    0 => 0,
                    started => monotonic_ns().saturating_sub(started),
                };
                self.metrics.record_phase(route, Phase::ResponseWrite, took);
            }
            if conn.response_sent >= written || !stream.may_send() {
                conn.write_started_ns = 0;
                slot.consume_request(consumed);
                slot.verdict = None;
                conn.response_sent = 0;
                conn.last_active_ms = now_ms;
                if slot.request_len > 0 {
                    // A pipelined request's head began before this response ended.
                    conn.head_started_ms = now_ms;
                    conn.request_arrival_ns = conn.last_arrival_ns;
                }
                if close || self.draining {
                    stream.close();
                    touched = true;
                    conn.closing = true;
                    slot.request_len = 0;
                } else if slot.request_len > 0 {
                    // Pipelined bytes already in the slot: hand them over again.
                    conn.unseen_bytes = true;
                }
            }
        }
        // 2. Read what arrived (not while a response is unfinished: one request at a time);
        //    after a closing response, read only to discard.
        if slot.verdict.is_none() {
            if conn.closing {
                touched |= stream.discard_received();
            } else if stream.can_recv() && slot.request_len < slot.request.len() {
                let start_len = slot.request_len;
                let n = stream.recv(&mut slot.request[start_len..]);
                if start_len == 0 && n > 0 {
                    conn.head_started_ms = now_ms;
                    conn.request_arrival_ns = conn.last_arrival_ns;
                }
                slot.request_len += n;
                conn.unseen_bytes |= n > 0;
                touched |= n > 0;
            }
        }
        // 3. The peer closed its side and nothing is left to answer: close ours.
        if stream.peer_closed() && !conn.unseen_bytes && slot.verdict.is_none() {
            stream.close();
            touched = true;
        }
        if touched {
            self.server.touch(id);
        }
        // 4. A finished connection frees its socket; its slot starts empty for the next one.
        if self.server.settle(id) == Settled::Closed {
            slot.request_len = 0;
            slot.verdict = None;
            conn.reset();
            self.https.sessions[index] = None;
            return;
        }
        if conn.unseen_bytes && slot.request_len > 0 && slot.verdict.is_none() {
            conn.queued = true;
            // Capacity is the number of connections and each is queued at most once.
            self.stage.ready.push_back(id);
        }
    }
}
