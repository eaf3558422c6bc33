//! The reaper: walks the XDP flow table on an interval, finds dead flows by the configured
//! policy, has the lane that owns each one abort its socket (the peer gets a RST, the socket and
//! its buffers are freed for reuse), then puts the 5-tuple into the XDP drop map for
//! `flows.drop_ttl_ms`, so that the flow's stray segments die in XDP.
//!
//! The policy ([`ReapPolicy::judge`]) is a pure function of a flow's entry and the time, tested
//! on its own. Only the owning lane knows whether the gateway has data unacknowledged, so a
//! stalled flow is confirmed there: the lane aborts it only if its socket's send queue did not
//! shrink since the previous walk's order and the lane never lacked a transmit frame in between
//! ([`StallMark`]): under overload a response can wait unsent for seconds, and a busy gateway
//! must not reap live clients for its own delay.
//!
//! The reaper also carries the lanes' notices of accepted handshakes into the SYN shield's
//! source table ([`HandshakeNotices`]): only the TCP stack knows that a client's ACK answered
//! its SYN-ACK, so only then does a source earn the trusted SYN rate.
//!
//! Invariants:
//! - The reaper runs on the main thread; it meets the lanes only through rtrb rings (orders
//!   out, replies back), never on their data path.
//! - A flow is counted as reaped once, by the lane that aborted it. A flow no lane owns (its
//!   socket already closed) is removed from the table as stale, not counted as reaped.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, SocketAddrV4},
    sync::Arc,
};

use xgate_xdp::{FlowKey, FlowMaps, FlowStats, ReapReason, FLOW_ESTABLISHED, FLOW_FIN, FLOW_RST, FLOW_SYN};

use crate::config::FlowsConfig;

/// Orders waiting per lane.
pub const ORDER_RING: usize = 4096;

/// How long a flow that ended (FIN or RST seen) stays in the table for `xgate flows` (ns).
const CLOSED_RETENTION_NS: u64 = 10_000_000_000;

/// The reaper's policy in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReapPolicy {
    pub max_retransmissions: u32,
    pub stall_ns: u64,
    pub idle_ns: u64,
    pub half_open_ns: u64,
}

impl ReapPolicy {
    pub fn from_config(config: &FlowsConfig) -> ReapPolicy {
        ReapPolicy {
            max_retransmissions: config.max_retransmissions,
            stall_ns: config.stall_ms * 1_000_000,
            idle_ns: config.idle_ms * 1_000_000,
            half_open_ns: config.half_open_ms * 1_000_000,
        }
    }

    /// Why the flow `stats` is dead at `now_ns`, if it is (a stalled flow still needs the
    /// owning lane's confirmation). The first reason that holds, in the order: half-open,
    /// retransmissions, idle, stalled.
    pub fn judge(&self, stats: &FlowStats, now_ns: u64) -> Option<ReapReason> {
        let established = stats.flags & FLOW_ESTABLISHED != 0;
        if stats.flags & FLOW_RST != 0 {
            return None;
        }
        if !established
            && stats.flags & FLOW_SYN != 0
            && now_ns.saturating_sub(stats.syn_ns) >= self.half_open_ns
        {
            return Some(ReapReason::HalfOpen);
        }
        if u32::from(stats.retransmit_streak) >= self.max_retransmissions {
            return Some(ReapReason::Retransmissions);
        }
        if now_ns.saturating_sub(stats.last_seen_ns) >= self.idle_ns {
            return Some(ReapReason::Idle);
        }
        if established && now_ns.saturating_sub(stats.ack_progress_ns) >= self.stall_ns {
            return Some(ReapReason::Stalled);
        }
        None
    }
}

/// Whether a flow that ended is old enough to leave the table.
fn closed_and_gone(stats: &FlowStats, now_ns: u64) -> bool {
    stats.flags & (FLOW_FIN | FLOW_RST) != 0
        && now_ns.saturating_sub(stats.last_seen_ns) >= CLOSED_RETENTION_NS
}

/// Ask a lane to reap the connection from `client`.
#[derive(Clone, Copy, Debug)]
pub struct ReapOrder {
    pub id: u64,
    pub client: SocketAddr,
    pub reason: ReapReason,
}

/// What a lane did with an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReapOutcome {
    /// The lane aborted the connection.
    Reaped,
    /// The lane owns the connection, which has data waiting: a stall to confirm at the next
    /// walk.
    Kept,
    /// The lane owns the connection and has nothing unacknowledged: quiet, not stalled.
    Quiet,
    /// The lane has no such connection.
    NotHere,
}

#[derive(Clone, Copy, Debug)]
pub struct ReapReply {
    pub id: u64,
    pub outcome: ReapOutcome,
}

/// A lane's memory of a stalled connection between two orders: its send queue then, and the
/// lane's transmit pressure then (how often, since it started, it had data to send and no free
/// transmit frame).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallMark {
    pub send_queue: usize,
    pub tx_pressure: u64,
    pub marked: bool,
}

impl StallMark {
    /// The lane's decision on a stall order for a socket with `send_queue` bytes unsent or
    /// unacknowledged, the lane's transmit pressure being `tx_pressure`: reap only if data was
    /// already waiting at the previous order, none of it left since, and the lane could transmit
    /// all the while. A lane short of transmit frames may itself have held the data back (the
    /// socket cannot tell unsent from unacknowledged bytes): an overloaded gateway must not blame
    /// its clients, so a stall is confirmed only over an interval without pressure.
    pub fn confirm(&mut self, send_queue: usize, tx_pressure: u64) -> bool {
        if send_queue == 0 {
            *self = StallMark::default();
            return false;
        }
        if self.marked && send_queue >= self.send_queue && tx_pressure == self.tx_pressure {
            return true;
        }
        *self = StallMark {
            send_queue,
            tx_pressure,
            marked: true,
        };
        false
    }
}

/// Counts the reaper keeps (read by the metrics listener).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReaperCounts {
    /// Flows in the table at the last walk.
    pub flows: u64,
    /// Flows of the last walk by state: half-open, established, closed.
    pub half_open: u64,
    pub established: u64,
    pub closed: u64,
    /// Flows removed because no lane had them any more.
    pub stale_removed: u64,
    /// Flows that ended (FIN/RST) removed after their retention.
    pub closed_removed: u64,
    /// Orders a full ring refused (sent again at the next walk).
    pub orders_refused: u64,
    /// Walks, and how long the last took (µs).
    pub walks: u64,
    pub last_walk_micros: u64,
    /// Drop-map entries alive, and their hits, at the last walk.
    pub drop_entries: u64,
    pub drop_hits: u64,
    /// Reaped flows by reason (from the lanes' replies).
    pub reaped: [u64; ReapReason::COUNT],
    /// Notices of accepted handshakes taken from the lanes (their sources are trusted).
    pub handshake_notices: u64,
}

struct Pending {
    key: FlowKey,
    reason: ReapReason,
    replies: usize,
    reaped: bool,
}

/// The main thread's side of the reaper.
pub struct Reaper {
    maps: Arc<FlowMaps>,
    policy: ReapPolicy,
    drop_ttl_ns: u64,
    interval_ns: u64,
    next_walk_ns: u64,
    orders: Vec<rtrb::Producer<ReapOrder>>,
    replies: Vec<rtrb::Consumer<ReapReply>>,
    handshakes: Vec<rtrb::Consumer<IpAddr>>,
    pending: HashMap<u64, Pending>,
    pending_keys: HashMap<FlowKey, u64>,
    /// Flows a lane found quiet (nothing unacknowledged), with their `last_seen_ns` then and
    /// the walk that last met them: not ordered again until something arrives from the client.
    quiet: HashMap<FlowKey, (u64, u64)>,
    next_id: u64,
    pub counts: ReaperCounts,
}

/// The rings between the reaper and one lane, lane side.
pub struct LaneReapRings {
    pub orders: rtrb::Consumer<ReapOrder>,
    pub replies: rtrb::Producer<ReapReply>,
    pub handshakes: HandshakeNotices,
}

/// Notices in flight per lane.
const NOTICE_RING: usize = 4096;
/// Addresses a lane remembers having sent (a power of two).
const NOTICE_MEMORY: usize = 1024;
/// How long a lane remembers them: a source the shield's table evicted since is sent again.
const NOTICE_MEMORY_MS: u64 = 10_000;

/// A lane's notices to the reaper of client addresses whose handshake the TCP stack accepted
/// (the client's ACK matched the SYN-ACK), so that the reaper marks them trusted in the SYN
/// shield. The XDP program cannot tell a real handshake from a spoofed ACK; the stack can.
///
/// A direct-mapped memory of addresses already sent keeps a busy client from costing a notice
/// per connection; it is cleared every [`NOTICE_MEMORY_MS`]. Nothing allocates after `new`.
pub struct HandshakeNotices {
    ring: rtrb::Producer<IpAddr>,
    sent: Box<[Option<IpAddr>]>,
    forget_at_ms: u64,
}

impl HandshakeNotices {
    fn new(ring: rtrb::Producer<IpAddr>) -> HandshakeNotices {
        HandshakeNotices {
            ring,
            sent: vec![None; NOTICE_MEMORY].into_boxed_slice(),
            forget_at_ms: NOTICE_MEMORY_MS,
        }
    }

    /// The stack accepted a handshake from `source` (lane time `now_ms`). A full ring loses
    /// the notice; the source's next connection sends it again.
    pub fn note(&mut self, source: IpAddr, now_ms: u64) {
        if now_ms >= self.forget_at_ms {
            self.sent.fill(None);
            self.forget_at_ms = now_ms + NOTICE_MEMORY_MS;
        }
        let key = match source {
            IpAddr::V4(ip) => u32::from_ne_bytes(ip.octets()),
            IpAddr::V6(ip) => {
                let words = ip.to_bits();
                (words as u32) ^ ((words >> 32) as u32) ^ ((words >> 64) as u32) ^ ((words >> 96) as u32)
            }
        };
        // Fibonacci hashing: the top bits of the product pick the slot.
        let slot = (key.wrapping_mul(0x9e37_79b9) >> (32 - NOTICE_MEMORY.trailing_zeros())) as usize;
        if self.sent[slot] == Some(source) {
            return;
        }
        if self.ring.push(source).is_ok() {
            self.sent[slot] = Some(source);
        }
    }
}

impl Reaper {
    /// A reaper over `maps` for `lanes` lanes, and each lane's ends of its rings.
    pub fn new(maps: Arc<FlowMaps>, config: &FlowsConfig, lanes: usize) -> (Reaper, Vec<LaneReapRings>) {
        let mut orders = Vec::with_capacity(lanes);
        let mut replies = Vec::with_capacity(lanes);
        let mut handshakes = Vec::with_capacity(lanes);
        let mut lane_ends = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (order_out, order_in) = rtrb::RingBuffer::new(ORDER_RING);
            let (reply_out, reply_in) = rtrb::RingBuffer::new(ORDER_RING);
            let (notice_out, notice_in) = rtrb::RingBuffer::new(NOTICE_RING);
            orders.push(order_out);
            replies.push(reply_in);
            handshakes.push(notice_in);
            lane_ends.push(LaneReapRings {
                orders: order_in,
                replies: reply_out,
                handshakes: HandshakeNotices::new(notice_out),
            });
        }
        let reaper = Reaper {
            maps,
            policy: ReapPolicy::from_config(config),
            drop_ttl_ns: config.drop_ttl_ms * 1_000_000,
            interval_ns: config.reap_interval_ms * 1_000_000,
            next_walk_ns: 0,
            orders,
            replies,
            handshakes,
            pending: HashMap::new(),
            pending_keys: HashMap::new(),
            quiet: HashMap::new(),
            next_id: 1,
            counts: ReaperCounts::default(),
        };
        (reaper, lane_ends)
    }

    /// Takes the lanes' replies and, when due, walks the table. Returns whether it sent orders
    /// (the caller wakes the lanes).
    pub fn tick(&mut self, now_ns: u64) -> bool {
        self.take_replies(now_ns);
        self.trust_handshakes();
        if now_ns < self.next_walk_ns {
            return false;
        }
        self.next_walk_ns = now_ns + self.interval_ns;
        match self.walk(now_ns) {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(error = %e, "reaper: reading the flow table failed");
                false
            }
        }
    }

    fn walk(&mut self, now_ns: u64) -> std::io::Result<bool> {
        let started = std::time::Instant::now();
        let flows = self.maps.flows()?;
        let (mut half_open, mut established, mut closed) = (0, 0, 0);
        let mut sent = false;
        for flow in &flows {
            let stats = &flow.stats;
            if stats.flags & (FLOW_FIN | FLOW_RST) != 0 {
                closed += 1;
            } else if stats.flags & FLOW_ESTABLISHED != 0 {
                established += 1;
            } else {
                half_open += 1;
            }
            if closed_and_gone(stats, now_ns) {
                self.maps.forget(&flow.key)?;
                self.counts.closed_removed += 1;
                continue;
            }
            let Some(reason) = self.policy.judge(stats, now_ns) else {
                continue;
            };
            if self.pending_keys.contains_key(&flow.key) {
                continue;
            }
            if reason == ReapReason::Stalled {
                if let Some((last_seen, walk)) = self.quiet.get_mut(&flow.key) {
                    if *last_seen == stats.last_seen_ns {
                        *walk = self.counts.walks;
                        continue;
                    }
                }
            }
            sent |= self.order(flow.key, reason);
        }
        let this_walk = self.counts.walks;
        self.quiet.retain(|_, (_, walk)| *walk == this_walk);
        let (drop_entries, drop_hits) = self.maps.sweep_drops(now_ns)?;
        self.counts.flows = flows.len() as u64;
        self.counts.half_open = half_open;
        self.counts.established = established;
        self.counts.closed = closed;
        self.counts.drop_entries = drop_entries;
        self.counts.drop_hits = drop_hits;
        self.counts.walks += 1;
        self.counts.last_walk_micros = started.elapsed().as_micros() as u64;
        Ok(sent)
    }

    /// Sends one order to every lane (the flow's owner is not known here).
    fn order(&mut self, key: FlowKey, reason: ReapReason) -> bool {
        let order = ReapOrder {
            id: self.next_id,
            client: SocketAddrV4::new(key.src().into(), key.src_port()).into(),
            reason,
        };
        if self.orders.iter().any(|ring| ring.slots() == 0) {
            self.counts.orders_refused += 1;
            return false;
        }
        for ring in &mut self.orders {
            ring.push(order).expect("room checked above");
        }
        self.pending.insert(
            order.id,
            Pending {
                key,
                reason,
                replies: 0,
                reaped: false,
            },
        );
        self.pending_keys.insert(key, order.id);
        self.next_id += 1;
        true
    }

    /// Marks the sources of the handshakes the lanes' stacks accepted as trusted in the SYN
    /// shield.
    fn trust_handshakes(&mut self) {
        for ring in &mut self.handshakes {
            while let Ok(source) = ring.pop() {
                // The shield's source table is IPv4 so far; an IPv6 source is not trusted there.
                let IpAddr::V4(v4) = source else {
                    continue;
                };
                match self.maps.trust_source(v4.octets()) {
                    Ok(()) => self.counts.handshake_notices += 1,
                    Err(e) => {
                        tracing::warn!(%source, error = %e, "reaper: the SYN shield refused a trusted source");
                    }
                }
            }
        }
    }

    fn take_replies(&mut self, now_ns: u64) {
        let lanes = self.replies.len();
        for ring in &mut self.replies {
            while let Ok(reply) = ring.pop() {
                let Some(pending) = self.pending.get_mut(&reply.id) else {
                    continue;
                };
                pending.replies += 1;
                pending.reaped |= reply.outcome == ReapOutcome::Reaped;
                let kept = matches!(reply.outcome, ReapOutcome::Kept | ReapOutcome::Quiet);
                if reply.outcome == ReapOutcome::Quiet {
                    if let Ok(Some(stats)) = self.maps.flow(&pending.key) {
                        self.quiet
                            .insert(pending.key, (stats.last_seen_ns, self.counts.walks));
                    }
                }
                if pending.replies < lanes && !kept {
                    continue;
                }
                let done = self.pending.remove(&reply.id).expect("looked up above");
                self.pending_keys.remove(&done.key);
                if kept && !done.reaped {
                    continue;
                }
                let client = SocketAddrV4::new(done.key.src().into(), done.key.src_port());
                if done.reaped {
                    self.counts.reaped[done.reason as usize] += 1;
                    let expires = now_ns + self.drop_ttl_ns;
                    if let Err(e) = self.maps.drop_flow(&done.key, done.reason, expires) {
                        tracing::warn!(%client, error = %e, "reaper: the drop map refused a flow");
                    }
                    tracing::debug!(%client, reason = done.reason.name(), "reaped a dead flow");
                } else {
                    self.counts.stale_removed += 1;
                    tracing::debug!(%client, reason = done.reason.name(), "removed a flow no lane holds");
                }
                let _ = self.maps.forget(&done.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy() -> ReapPolicy {
        ReapPolicy::from_config(&FlowsConfig::default())
    }

    fn established(at: u64) -> FlowStats {
        FlowStats {
            first_seen_ns: at,
            last_seen_ns: at,
            syn_ns: at,
            handshake_ns: 1000,
            ack_progress_ns: at,
            flags: FLOW_SYN | FLOW_ESTABLISHED,
            ..FlowStats::default()
        }
    }

    #[test]
    fn each_reason_fires_at_its_limit_and_not_before() {
        let p = policy();
        let half_open = FlowStats {
            syn_ns: 10 * S,
            last_seen_ns: 10 * S,
            flags: FLOW_SYN,
            ..FlowStats::default()
        };
        assert_eq!(p.judge(&half_open, 14 * S), None);
        assert_eq!(p.judge(&half_open, 15 * S), Some(ReapReason::HalfOpen));

        let mut retransmitting = established(10 * S);
        retransmitting.retransmit_streak = 4;
        assert_eq!(p.judge(&retransmitting, 10 * S), None);
        retransmitting.retransmit_streak = 5;
        assert_eq!(
            p.judge(&retransmitting, 10 * S),
            Some(ReapReason::Retransmissions)
        );
        // A lifetime's total does not count, only a streak.
        retransmitting.retransmit_streak = 0;
        retransmitting.retransmits = 500;
        assert_eq!(p.judge(&retransmitting, 10 * S), None);

        let mut quiet = established(10 * S);
        quiet.last_seen_ns = 12 * S;
        assert_eq!(p.judge(&quiet, 12 * S), None);
        assert_eq!(p.judge(&quiet, 13 * S), Some(ReapReason::Stalled));
        assert_eq!(p.judge(&quiet, 72 * S), Some(ReapReason::Idle));
    }

    #[test]
    fn reset_flows_are_left_to_expire_and_closed_ones_leave_after_retention() {
        let p = policy();
        let mut reset = established(0);
        reset.flags |= FLOW_RST;
        assert_eq!(p.judge(&reset, 1000 * S), None);
        assert!(!closed_and_gone(&reset, 5 * S));
        assert!(closed_and_gone(&reset, 10 * S));
        assert!(!closed_and_gone(&established(0), 100 * S));
    }

    #[test]
    fn a_stall_is_confirmed_only_when_queued_data_did_not_move() {
        let mut mark = StallMark::default();
        assert!(!mark.confirm(0, 0), "nothing unacknowledged: not stalled");
        assert!(!mark.confirm(4000, 0), "first sight: marked");
        assert!(!mark.confirm(3000, 0), "some left: progress, marked again");
        assert!(mark.confirm(3000, 0), "nothing left since the last order");
        let mut mark = StallMark::default();
        assert!(!mark.confirm(100, 0));
        assert!(!mark.confirm(0, 0), "all acknowledged: cleared");
        assert!(!mark.confirm(100, 0));
    }

    fn lab_ip(host: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 0, host))
    }

    #[test]
    fn a_source_is_noticed_once_per_memory_period_and_a_lost_notice_is_sent_again() {
        let (ring, mut reaper_end) = rtrb::RingBuffer::new(2);
        let mut notices = HandshakeNotices::new(ring);
        notices.note(lab_ip(1), 0);
        notices.note(lab_ip(1), 5);
        notices.note(lab_ip(9), 6);
        assert_eq!(reaper_end.pop(), Ok(lab_ip(1)));
        assert_eq!(reaper_end.pop(), Ok(lab_ip(9)));
        assert!(reaper_end.pop().is_err(), "the repeat was not sent");
        // A full ring loses a notice, which is not remembered as sent.
        notices.note(lab_ip(2), 7);
        notices.note(lab_ip(3), 8);
        notices.note(lab_ip(4), 9);
        assert_eq!(reaper_end.pop(), Ok(lab_ip(2)));
        assert_eq!(reaper_end.pop(), Ok(lab_ip(3)));
        notices.note(lab_ip(4), 10);
        assert_eq!(reaper_end.pop(), Ok(lab_ip(4)));
        // After the memory period, a known source is sent again.
        notices.note(lab_ip(1), NOTICE_MEMORY_MS + 1);
        assert_eq!(reaper_end.pop(), Ok(lab_ip(1)));
    }

    #[test]
    fn a_lane_short_of_transmit_frames_confirms_no_stall() {
        let mut mark = StallMark::default();
        assert!(!mark.confirm(4000, 10), "first sight: marked");
        assert!(
            !mark.confirm(4000, 11),
            "the lane lacked a transmit frame since: it may have held the data back itself"
        );
        assert!(
            mark.confirm(4000, 11),
            "a whole interval with no pressure and nothing left"
        );
    }
}
