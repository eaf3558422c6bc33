//! How many idle connections a pool member's idle list keeps: as many as its recent demand
//! needs. A lane that had 200 requests in flight to a member a moment ago will likely have 200
//! again; closing the connections of every dip below that peak and opening new ones at the next
//! rise turns the load's own jitter into connection churn (a handshake, a close and a local
//! port per request beyond the list). So a member keeps an idle connection while its busy
//! connections plus its idle ones stay below the peak of busy connections seen in the last
//! [`DEMAND_WINDOW_MS`] to two windows, within the operator's `max_idle`; when the load falls,
//! the peak follows within two windows and the surplus is closed.
//!
//! Pure arithmetic on counts and times (milliseconds), tested on its own.

/// Length of one window of the recent peak (ms). The peak remembers the current and the previous
/// window, so a burst is remembered for one to two windows.
pub const DEMAND_WINDOW_MS: u64 = 10_000;

/// The recent peak of one member's busy connections (requests in flight on one lane).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeakDemand {
    current: u32,
    previous: u32,
    window_start_ms: u64,
}

impl PeakDemand {
    /// Notes `busy` connections at `now_ms` (after a request began).
    pub fn note(&mut self, busy: u32, now_ms: u64) {
        self.roll(now_ms);
        self.current = self.current.max(busy);
    }

    /// Moves the windows on to `now_ms`: a window that ended becomes the previous one, and one
    /// that ended more than a window ago is forgotten.
    pub fn roll(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed < DEMAND_WINDOW_MS {
            return;
        }
        self.previous = if elapsed < 2 * DEMAND_WINDOW_MS {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.window_start_ms = now_ms - elapsed % DEMAND_WINDOW_MS;
    }

    /// The peak of busy connections over the current and the previous window.
    pub fn peak(&self) -> u32 {
        self.current.max(self.previous)
    }

    /// Idle connections the member should keep with `busy` connections in use now, at most
    /// `max_idle`.
    pub fn idle_wanted(&self, busy: u32, max_idle: usize) -> usize {
        (self.peak().saturating_sub(busy) as usize).min(max_idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_load_keeps_an_idle_connection_for_every_dip_below_its_peak() {
        let mut demand = PeakDemand::default();
        demand.note(200, 1_000);
        // 150 requests in flight at the moment a response completes: 50 idle connections are
        // wanted, so the next rise to 200 finds them.
        assert_eq!(demand.idle_wanted(150, 4096), 50);
        assert_eq!(demand.idle_wanted(200, 4096), 0);
        // The operator's bound wins.
        assert_eq!(demand.idle_wanted(0, 64), 64);
    }

    #[test]
    fn the_peak_is_remembered_one_to_two_windows_then_follows_the_load_down() {
        let mut demand = PeakDemand::default();
        demand.note(200, 500);
        demand.note(10, DEMAND_WINDOW_MS + 500);
        assert_eq!(demand.peak(), 200, "the previous window still counts");
        demand.roll(2 * DEMAND_WINDOW_MS + 500);
        assert_eq!(demand.peak(), 10, "two windows later only the recent load counts");
        demand.roll(5 * DEMAND_WINDOW_MS);
        assert_eq!(demand.peak(), 0, "a silent member keeps nothing");
        assert_eq!(demand.idle_wanted(0, 4096), 0);
    }

    #[test]
    fn windows_stay_aligned_when_rolled_late() {
        let mut demand = PeakDemand::default();
        demand.note(5, 0);
        demand.roll(DEMAND_WINDOW_MS + 3);
        demand.note(7, DEMAND_WINDOW_MS + 4);
        demand.roll(2 * DEMAND_WINDOW_MS - 1);
        assert_eq!(demand.peak(), 7);
        demand.roll(2 * DEMAND_WINDOW_MS);
        assert_eq!(demand.peak(), 7, "the window that ended is now the previous one");
        demand.roll(3 * DEMAND_WINDOW_MS);
        assert_eq!(demand.peak(), 0);
    }
}
