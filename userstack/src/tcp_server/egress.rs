//! Egress and timers: shards with work (a frame came in, the application wrote) or a due timer
//! are polled, a few rounds each; shards' deadlines are kept with `TIMER_GRANULARITY`.

use smoltcp::{
    iface::PollResult,
    phy::Device,
    socket::tcp,
    time::{Duration, Instant},
};

use super::{TcpServer, TIMER_GRANULARITY};

/// Egress passes per shard and call (smoltcp sends at most one segment per socket per pass).
const EGRESS_ROUNDS: u32 = 4;

impl TcpServer<'_> {
    /// Polls egress for shards with work and for shards whose timer is due, and keeps the
    /// shards' deadlines. Returns whether anything was sent.
    ///
    /// Timers run with [`TIMER_GRANULARITY`]: a shard's next deadline is recomputed at most once
    /// per tick however many segments it sends (the stack's own timers are 10 ms and longer),
    /// because computing it visits every socket of the shard.
    pub fn egress<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        self.now = now;
        if self.next_timer.is_some_and(|at| at <= now) {
            self.fire_timers(now);
        }
        let mut sent = false;
        let mut again = std::mem::take(&mut self.dirty_again);
        while let Some(index) = self.dirty.pop() {
            let shard = &mut self.shards[index as usize];
            shard.listed = false;
            if !shard.dirty {
                continue;
            }
            shard.dirty = false;
            // Bounded: each round sends what the sockets have; a few rounds cover sockets that
            // had more than one segment ready.
            let mut rounds_left = EGRESS_ROUNDS;
            while rounds_left > 0 {
                if self.iface.poll_egress(now, device, &mut shard.sockets) == PollResult::None {
                    break;
                }
                sent = true;
                rounds_left -= 1;
            }
            if rounds_left == 0 {
                // Every round sent something: more may be waiting. Poll again next turn rather
                // than at the next timer tick.
                shard.dirty = true;
                again.push(index);
            } else {
                shard.egress_passes = shard.egress_passes.wrapping_add(1);
            }
            if !shard.timer_stale {
                shard.timer_stale = true;
                self.stale_timers.push(index);
            }
            self.restore_listener(index, rounds_left > 0);
        }
        for index in again.drain(..) {
            self.shards[index as usize].listed = false;
            self.mark_dirty(index);
        }
        self.dirty_again = again;
        self.wake_timed_out();
        if now >= self.timer_tick + TIMER_GRANULARITY {
            self.timer_tick = now;
            while let Some(index) = self.stale_timers.pop() {
                let shard = &mut self.shards[index as usize];
                shard.timer_stale = false;
                shard.poll_at = self.iface.poll_at(now, &shard.sockets);
                if let Some(at) = shard.poll_at {
                    self.next_timer = Some(self.next_timer.map_or(at, |t| t.min(at)));
                }
            }
        }
        sent
    }

    /// Marks every shard whose deadline has come for egress. The stack handles its timers
    /// itself (retransmission, keep-alive, delayed ACK); the application only needs to hear of
    /// connections the timers ended, so after the shard's egress its sockets' states are
    /// checked, not served.
    fn fire_timers(&mut self, now: Instant) {
        self.next_timer = None;
        for index in 0..self.shards.len() {
            match self.shards[index].poll_at {
                Some(at) if at <= now => {
                    self.shards[index].poll_at = None;
                    self.fired.push(index as u32);
                    self.mark_dirty(index as u32);
                }
                Some(at) => self.next_timer = Some(self.next_timer.map_or(at, |t| t.min(at))),
                None => {}
            }
        }
    }

    /// Wakes the connections of shards whose timers fired that the timers closed.
    fn wake_timed_out(&mut self) {
        while let Some(index) = self.fired.pop() {
            let index = index as usize;
            for member in 0..self.shards[index].members.len() {
                let id = self.shards[index].members[member];
                if !self.socket(id).is_open() || self.socket(id).state() == tcp::State::Listen {
                    self.wake(id);
                }
            }
        }
    }

    /// How long the lane may sleep before the stack needs it (None: until a frame arrives).
    pub fn poll_delay(&self, now: Instant) -> Option<Duration> {
        if !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        self.next_timer
            .map(|at| if at > now { at - now } else { Duration::ZERO })
    }
}
