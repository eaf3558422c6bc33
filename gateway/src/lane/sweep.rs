//! The lane's sweep, every 50 ms: time limits of exchanges, slow request heads and idle
//! keep-alive connections, the drain's count of busy connections, the half-open figures, and
//! the upstream side's own timers and health checks.

use xgate_userstack::tcp_server::ConnId;

use super::{proxy::REQUEST_TIMEOUT, Lane};

impl Lane<'_> {
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
            if self.connections[index].proxy.is_some() {
                self.check_deadline(index);
                continue;
            }
            if !self.server.is_connected(id) {
                continue;
            }
            if let Some(tls) = self.https.sessions[index].as_deref() {
                if tls.is_handshaking() && now >= tls.started_ms + self.https.handshake_timeout_ms {
                    // A handshake that stalls: the connection is reset and its session dropped.
                    self.values.tls_handshake_timeouts += 1;
                    self.abort_connection(id);
                    continue;
                }
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
                if now >= conn.head_started_ms + self.proxying.timeouts.header_read_ms {
                    self.values.timeouts += 1;
                    self.answer_and_close(index, REQUEST_TIMEOUT, false, None);
                    self.service(id);
                }
            } else if now
                >= conn
                    .last_active_ms
                    .saturating_add(self.proxying.timeouts.keepalive_idle_ms)
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
        self.sweep_upstreams();
        if self.draining {
            self.values.open_connections = busy;
        } else {
            self.start_probes();
        }
    }
}
