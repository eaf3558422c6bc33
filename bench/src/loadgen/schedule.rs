//! When each request of an open-loop run is due, without I/O.
//!
//! Open loop: requests are due at a fixed overall rate, whatever the server does. Request `k` is
//! due at `start + k / rate` and belongs to the connection at position `k mod n` of the `n`
//! connections, so each connection owns an arithmetic sequence of requests and no queue is needed.
//! A connection that is still waiting for a response when its next request falls due sends it
//! late, and its latency is measured from the time it was *due*: that is the coordinated-omission
//! correction (a slow server is charged for the requests it delayed, not only for those it
//! answered).

/// The open-loop timetable of one run.
#[derive(Clone, Copy, Debug)]
pub struct OpenLoop {
    start_ns: u64,
    interval_ns: f64,
    connections: u64,
}

impl OpenLoop {
    /// `rate` requests per second spread over `connections` connections, starting at `start_ns`.
    pub fn new(start_ns: u64, rate: f64, connections: usize) -> OpenLoop {
        assert!(rate > 0.0 && connections > 0);
        OpenLoop {
            start_ns,
            interval_ns: 1e9 / rate,
            connections: connections as u64,
        }
    }

    /// How many requests are due by `now_ns` (requests `0..count`).
    pub fn due_count(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        ((now_ns - self.start_ns) as f64 / self.interval_ns) as u64 + 1
    }

    /// When request `k` is due.
    pub fn due_at(&self, k: u64) -> u64 {
        self.start_ns + (k as f64 * self.interval_ns) as u64
    }

    /// The first request owned by the connection at `position`.
    pub fn first_request(&self, position: usize) -> u64 {
        position as u64
    }

    /// The request a connection owns after `k`.
    pub fn next_request(&self, k: u64) -> u64 {
        k + self.connections
    }

    /// The connection position that owns request `k`.
    pub fn owner(&self, k: u64) -> usize {
        (k % self.connections) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_due_at_the_rate() {
        // 1000 requests/s from t = 5 s.
        let plan = OpenLoop::new(5_000_000_000, 1000.0, 10);
        assert_eq!(plan.due_count(4_999_999_999), 0);
        assert_eq!(plan.due_count(5_000_000_000), 1);
        assert_eq!(plan.due_count(5_000_999_999), 1);
        assert_eq!(plan.due_count(5_001_000_000), 2);
        assert_eq!(plan.due_count(6_000_000_000), 1001);
        assert_eq!(plan.due_at(0), 5_000_000_000);
        assert_eq!(plan.due_at(1000), 6_000_000_000);
    }

    #[test]
    fn every_request_has_exactly_one_owner_in_order() {
        let plan = OpenLoop::new(0, 1e6, 7);
        let mut seen = vec![false; 700];
        for position in 0..7 {
            let mut k = plan.first_request(position);
            let mut last_due = 0;
            while k < 700 {
                assert_eq!(plan.owner(k), position);
                assert!(!seen[k as usize]);
                seen[k as usize] = true;
                assert!(plan.due_at(k) >= last_due);
                last_due = plan.due_at(k);
                k = plan.next_request(k);
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
