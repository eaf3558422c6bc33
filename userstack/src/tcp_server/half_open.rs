//! The SYN cache: accepted connections whose handshake has not completed are counted against
//! `ServerConfig::max_half_open` and kept in the order they were accepted, so that a new SYN can
//! evict the oldest one once it has waited [`EVICTABLE_AFTER`].

use smoltcp::{socket::tcp, time::Instant};

use super::{ConnId, TcpServer, EVICTABLE_AFTER};

/// An accepted connection in the order of acceptance, for eviction of the oldest.
#[derive(Clone, Copy)]
pub(super) struct HalfOpenEntry {
    id: ConnId,
    generation: u32,
    since: Instant,
}

impl TcpServer<'_> {
    /// Counts the just-accepted connection `id` as half-open, youngest in the order.
    pub(super) fn enter_half_open(&mut self, id: ConnId, now: Instant) {
        let conn = &mut self.conns[id as usize];
        conn.generation = conn.generation.wrapping_add(1);
        conn.half_open = true;
        let entry = HalfOpenEntry {
            id,
            generation: conn.generation,
            since: now,
        };
        self.half_open += 1;
        if self.half_open_order.len() == self.half_open_order.capacity() {
            // Only stale entries can fill it (live ones are at most the sockets, this one not
            // among them yet): drop those rather than grow.
            let conns = &self.conns;
            self.half_open_order.retain(|e| {
                conns[e.id as usize].half_open && conns[e.id as usize].generation == e.generation
            });
        }
        self.half_open_order.push_back(entry);
    }

    /// Stops counting `id` as half-open once its socket left SYN-RECEIVED (the handshake
    /// completed, or the connection ended).
    pub(super) fn note_half_open_left(&mut self, id: ConnId) {
        if self.conns[id as usize].half_open && self.socket(id).state() != tcp::State::SynReceived {
            self.conns[id as usize].half_open = false;
            self.half_open -= 1;
        }
    }

    /// Aborts the oldest half-open connection if it has waited [`EVICTABLE_AFTER`]; returns
    /// whether it did. Its socket is free once the application settles it (it is woken).
    pub(super) fn evict_oldest_half_open(&mut self, now: Instant) -> bool {
        while let Some(&entry) = self.half_open_order.front() {
            let conn = &self.conns[entry.id as usize];
            if !conn.half_open || conn.generation != entry.generation {
                self.half_open_order.pop_front();
                continue;
            }
            if now < entry.since + EVICTABLE_AFTER {
                return false;
            }
            self.half_open_order.pop_front();
            self.abort(entry.id);
            self.stats.half_open_evicted += 1;
            return true;
        }
        false
    }

    /// Accepted connections whose handshake has not completed (as of their last segment or
    /// settle).
    pub fn half_open(&self) -> usize {
        self.half_open
    }
}
