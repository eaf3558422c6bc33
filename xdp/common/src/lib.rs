//! Types shared between xgate's XDP program (`xdp/ebpf`) and its userspace loader (`xdp/loader`).
//!
//! Everything here is `#[repr(C)]` or a plain integer so that the eBPF side and the userspace side
//! agree on layout byte for byte. The crate is `no_std` so the eBPF program can use it; the `user`
//! feature adds the `aya::Pod` impls userspace needs to read maps.
#![no_std]

#[cfg(feature = "user")]
mod pod;
pub mod syncookie;

/// Name of the global in the XDP program holding the gateway's IPv4 address.
///
/// The value is the address's four octets as they appear on the wire, reinterpreted as a native
/// `u32` (`u32::from_ne_bytes(addr.octets())`), so the program compares it with packet bytes as is.
pub const GATEWAY_IPV4_GLOBAL: &str = "GATEWAY_IPV4";

/// Name of the XSKMAP (rx queue index → AF_XDP socket).
pub const XSK_MAP: &str = "XSKS";
/// Name of the per-CPU array of [`ActionStats`], indexed by [`XdpVerdict`].
pub const VERDICT_STATS_MAP: &str = "VERDICT_STATS";
/// Entries in the XSKMAP: the most rx queues one interface may have bound.
pub const MAX_QUEUES: u32 = 64;

/// What the XDP program decided for one frame: the XDP action it ends in ([`XdpVerdict::action`])
/// and why ([`XdpVerdict::reason`]); the index into [`VERDICT_STATS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpVerdict {
    /// Not addressed to the gateway: the host kernel keeps it (XDP_PASS).
    PassNotOurs = 0,
    /// Too short to parse as Ethernet/ARP/IPv4: left to the kernel (XDP_PASS).
    PassMalformed = 1,
    /// ARP whose target is the gateway address, redirected to the AF_XDP socket.
    RedirectArp = 2,
    /// IPv4 addressed to the gateway, redirected to the AF_XDP socket.
    RedirectIpv4 = 3,
    /// Addressed to the gateway but no AF_XDP socket is bound on this rx queue (XDP_DROP).
    DropNoSocket = 4,
    /// A segment of a flow the reaper removed, while its entry in [`FLOW_DROPS_MAP`] lives.
    DropReapedFlow = 5,
    /// A SYN over its source's rate ([`SYN_SOURCES_MAP`]).
    DropSynSourceRate = 6,
    /// A SYN from a source with no completed handshake while the global budget for such SYNs
    /// is spent.
    DropSynBudget = 7,
    /// Addressed to the gateway, but the driver left no headroom for the arrival stamp
    /// ([`FrameMeta`]); never seen with a driver that gives XDP its standard 256 bytes.
    DropNoHeadroom = 8,
    /// A SYN answered at once with a SYN cookie (XDP_TX), no state kept (see [`syncookie`]).
    TxSynCookie = 9,
}

impl XdpVerdict {
    /// Number of verdicts (size of [`VERDICT_STATS_MAP`]).
    pub const COUNT: u32 = 10;
    /// Every verdict, in index order.
    pub const ALL: [XdpVerdict; Self::COUNT as usize] = [
        XdpVerdict::PassNotOurs,
        XdpVerdict::PassMalformed,
        XdpVerdict::RedirectArp,
        XdpVerdict::RedirectIpv4,
        XdpVerdict::DropNoSocket,
        XdpVerdict::DropReapedFlow,
        XdpVerdict::DropSynSourceRate,
        XdpVerdict::DropSynBudget,
        XdpVerdict::DropNoHeadroom,
        XdpVerdict::TxSynCookie,
    ];

    /// Stable snake_case name, used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            XdpVerdict::PassNotOurs => "pass_not_ours",
            XdpVerdict::PassMalformed => "pass_malformed",
            XdpVerdict::RedirectArp => "redirect_arp",
            XdpVerdict::RedirectIpv4 => "redirect_ipv4",
            XdpVerdict::DropNoSocket => "drop_no_socket",
            XdpVerdict::DropReapedFlow => "drop_reaped_flow",
            XdpVerdict::DropSynSourceRate => "drop_syn_source_rate",
            XdpVerdict::DropSynBudget => "drop_syn_budget",
            XdpVerdict::DropNoHeadroom => "drop_no_headroom",
            XdpVerdict::TxSynCookie => "tx_syn_cookie",
        }
    }

    /// The XDP action this verdict ends in (`pass`, `redirect` or `drop`).
    pub const fn action(self) -> &'static str {
        match self {
            XdpVerdict::PassNotOurs | XdpVerdict::PassMalformed => "pass",
            XdpVerdict::RedirectArp | XdpVerdict::RedirectIpv4 => "redirect",
            XdpVerdict::TxSynCookie => "tx",
            _ => "drop",
        }
    }

    /// Why, within [`XdpVerdict::action`] (e.g. `not_ours`, `ipv4`, `syn_budget`).
    pub const fn reason(self) -> &'static str {
        match self {
            XdpVerdict::PassNotOurs => "not_ours",
            XdpVerdict::PassMalformed => "malformed",
            XdpVerdict::RedirectArp => "arp",
            XdpVerdict::RedirectIpv4 => "ipv4",
            XdpVerdict::DropNoSocket => "no_socket",
            XdpVerdict::DropReapedFlow => "reaped_flow",
            XdpVerdict::DropSynSourceRate => "syn_source_rate",
            XdpVerdict::DropSynBudget => "syn_budget",
            XdpVerdict::DropNoHeadroom => "no_headroom",
            XdpVerdict::TxSynCookie => "syn_cookie",
        }
    }
}

/// Packets and bytes counted for one [`XdpVerdict`] on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionStats {
    pub packets: u64,
    pub bytes: u64,
}

/// Name of the global holding the listening TCP port, in wire order reinterpreted as a native
/// `u16` and widened to `u32`: the flows the program watches are the TCP flows to that port.
pub const LISTEN_PORT_GLOBAL: &str = "LISTEN_PORT";
/// Name of the global holding a second listening port (HTTPS), in the same form; 0: none.
pub const EXTRA_LISTEN_PORT_GLOBAL: &str = "EXTRA_LISTEN_PORT";
/// Name of the global holding the SYN shield's limits ([`ShieldLimits`]).
pub const SHIELD_GLOBAL: &str = "SHIELD";
/// Name of the LRU hash of [`FlowKey`] → [`FlowStats`]: one entry per client flow to the
/// listening port, created by an admitted SYN.
pub const FLOWS_MAP: &str = "FLOWS";
/// Name of the hash of [`FlowKey`] → [`FlowDrop`]: flows the reaper removed, whose segments the
/// program drops until the entry expires.
pub const FLOW_DROPS_MAP: &str = "FLOW_DROPS";
/// Name of the LRU hash of source IPv4 (wire order as native `u32`) → [`SynSource`].
pub const SYN_SOURCES_MAP: &str = "SYN_SOURCES";
/// Name of the per-CPU array (one entry) of [`SynBudget`]: the budget for SYNs from sources
/// without a completed handshake.
pub const SYN_BUDGET_MAP: &str = "SYN_BUDGET";
/// Name of the per-CPU array of `u64`s: the handshake-latency histogram, entries
/// `0..LATENCY_BUCKETS` the counts and entry [`HANDSHAKE_SUM_SLOT`] the sum of the latencies.
pub const HANDSHAKE_HISTOGRAM_MAP: &str = "HANDSHAKE_HISTOGRAM";
/// Entry of [`HANDSHAKE_HISTOGRAM_MAP`] that sums the recorded handshake latencies (ns).
pub const HANDSHAKE_SUM_SLOT: u32 = LATENCY_BUCKETS;
/// Buckets of every latency histogram: bucket `i` counts latencies in `[2^i, 2^(i+1))` µs
/// (bucket 0 also counts everything under 1 µs; the last bucket everything above).
pub const LATENCY_BUCKETS: u32 = 32;
/// Default entries of [`FLOWS_MAP`] (the loader sets the configured size before load).
pub const DEFAULT_FLOWS: u32 = 131_072;
/// Default entries of [`FLOW_DROPS_MAP`].
pub const DEFAULT_FLOW_DROPS: u32 = 65_536;
/// Default entries of [`SYN_SOURCES_MAP`].
pub const DEFAULT_SYN_SOURCES: u32 = 65_536;
/// Bytes of the arrival stamp the program puts in front of each redirected packet ([`FrameMeta`]).
pub const FRAME_META_LEN: usize = 16;
/// First field of [`FrameMeta`]: tells a stamped frame from one that is not.
pub const FRAME_META_MAGIC: u32 = 0x5847_4154;

/// [`FrameMeta::flags`]: the segment is a TCP segment to the listening port, neither SYN nor
/// RST, of a flow the program does not track, and the program answered a SYN with a cookie within
/// [`syncookie::COOKIE_ACTIVE_NS`] (or answers every SYN so): it may be a cookie's ACK, and the
/// lane drops it if it is no valid one instead of answering with a RST.
pub const FRAME_FLAG_COOKIES_ACTIVE: u32 = 1;

/// The stamp in front of every packet the program redirects: when it arrived. The program grows
/// the frame's head by [`FRAME_META_LEN`] bytes for it, so an AF_XDP socket receives the stamp
/// followed by the packet; the receiver strips it and keeps it right before the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// [`FRAME_META_MAGIC`].
    pub magic: u32,
    /// `FRAME_FLAG_*` bits.
    pub flags: u32,
    /// CLOCK_MONOTONIC nanoseconds at the program's run (`bpf_ktime_get_ns`).
    pub arrival_ns: u64,
}

/// A TCP flow as the client sends it: the 5-tuple, addresses and ports in wire order
/// reinterpreted as native integers (as the program reads them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol (6, TCP).
    pub protocol: u8,
    /// Zero: keys are compared as bytes.
    pub pad: [u8; 3],
}

impl FlowKey {
    /// The key for a TCP flow from `src:src_port` to `dst:dst_port` (host-order ports).
    pub fn tcp(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> FlowKey {
        FlowKey {
            src_ip: u32::from_ne_bytes(src),
            dst_ip: u32::from_ne_bytes(dst),
            src_port: u16::from_ne_bytes(src_port.to_be_bytes()),
            dst_port: u16::from_ne_bytes(dst_port.to_be_bytes()),
            protocol: 6,
            pad: [0; 3],
        }
    }

    /// Source address octets.
    pub fn src(&self) -> [u8; 4] {
        self.src_ip.to_ne_bytes()
    }

    /// Destination address octets.
    pub fn dst(&self) -> [u8; 4] {
        self.dst_ip.to_ne_bytes()
    }

    /// Source port, host order.
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes(self.src_port.to_ne_bytes())
    }

    /// Destination port, host order.
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes(self.dst_port.to_ne_bytes())
    }
}

/// [`FlowStats::flags`]: the client's SYN was seen.
pub const FLOW_SYN: u16 = 1;
/// [`FlowStats::flags`]: the handshake completed (the client's first ACK was seen; its ACK
/// number is not checked here, so a spoofer can set this on its own flow, never on others').
pub const FLOW_ESTABLISHED: u16 = 2;
/// [`FlowStats::flags`]: the client sent a FIN.
pub const FLOW_FIN: u16 = 4;
/// [`FlowStats::flags`]: the client sent a RST.
pub const FLOW_RST: u16 = 8;

/// What the program knows about one client flow. Times are CLOCK_MONOTONIC nanoseconds. The
/// counters (`packets`, `bytes`, `retransmits`) are added atomically, so none is lost when a
/// flow's segments reach several CPUs at once. The other fields (times, sequence tracking,
/// flags) are plain stores by the CPU that runs the flow's rx queue; when steering moves a flow
/// mid-stream, a race there can cost one update, which operators and the reaper tolerate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// The client's (latest) SYN.
    pub syn_ns: u64,
    /// Client SYN → the client's first ACK; 0 until the handshake completes.
    pub handshake_ns: u64,
    /// When the client's acknowledgment number last moved forward (or the handshake ended).
    pub ack_progress_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// One past the highest sequence number of client data seen.
    pub next_seq: u32,
    /// The client's latest acknowledgment number.
    pub last_ack: u32,
    /// Client data segments whose sequence range was already seen, and repeated SYNs.
    pub retransmits: u32,
    /// Retransmissions since the client last sent new data (the reaper's measure: a long-lived
    /// flow on a lossy path is not dead for its lifetime's total).
    pub retransmit_streak: u16,
    /// `FLOW_*` bits.
    pub flags: u16,
}

/// Why the reaper removed a flow ([`FlowDrop::reason`], metrics labels).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReapReason {
    /// The client retransmitted too often.
    Retransmissions = 0,
    /// The gateway had data unacknowledged and the client's ACKs did not move.
    Stalled = 1,
    /// Nothing arrived from the client for too long.
    Idle = 2,
    /// The handshake did not complete in time.
    HalfOpen = 3,
}

impl ReapReason {
    pub const COUNT: usize = 4;
    pub const ALL: [ReapReason; Self::COUNT] = [
        ReapReason::Retransmissions,
        ReapReason::Stalled,
        ReapReason::Idle,
        ReapReason::HalfOpen,
    ];

    /// Stable snake_case name, used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            ReapReason::Retransmissions => "retransmissions",
            ReapReason::Stalled => "stalled",
            ReapReason::Idle => "idle",
            ReapReason::HalfOpen => "half_open",
        }
    }
}

/// An entry of [`FLOW_DROPS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowDrop {
    /// CLOCK_MONOTONIC nanoseconds after which the entry no longer drops anything (the program
    /// deletes it when it next meets it).
    pub expires_ns: u64,
    /// [`ReapReason`] as `u32`.
    pub reason: u32,
    /// Segments dropped because of this entry.
    pub hits: u32,
}

/// Per-source SYN state ([`SYN_SOURCES_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynSource {
    /// GCRA theoretical arrival time of the source's next SYN (ns).
    pub next_ns: u64,
    /// 1 once a handshake from this source completed (set by userspace when the TCP stack
    /// accepted the handshake's last ACK, never by the XDP program): its SYNs no longer draw on
    /// the global budget and get the trusted rate.
    pub trusted: u32,
    pub pad: u32,
}

/// The global budget's state on one CPU ([`SYN_BUDGET_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynBudget {
    /// GCRA theoretical arrival time of the next SYN (ns).
    pub next_ns: u64,
}

/// One rate limit as a GCRA: `interval_ns` between SYNs on average (0: no limit), with up to
/// `tolerance_ns / interval_ns` SYNs at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub interval_ns: u64,
    pub tolerance_ns: u64,
}

impl RateLimit {
    /// `per_second` SYNs a second on average, bursts of `burst` (0 per second: unlimited).
    pub const fn per_second(per_second: u64, burst: u64) -> RateLimit {
        if per_second == 0 {
            return RateLimit {
                interval_ns: 0,
                tolerance_ns: 0,
            };
        }
        let interval_ns = 1_000_000_000 / per_second;
        let burst = if burst == 0 { 1 } else { burst };
        RateLimit {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst - 1),
        }
    }
}

/// The SYN shield's limits ([`SHIELD_GLOBAL`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShieldLimits {
    /// Per source without a completed handshake.
    pub untrusted_source: RateLimit,
    /// Per source with a completed handshake.
    pub trusted_source: RateLimit,
    /// All SYNs from sources without a completed handshake, per CPU.
    pub budget: RateLimit,
}

/// Name of the benchmark receiver program: counts every frame into [`BENCH_DROP_STATS_MAP`] and
/// drops it (XDP_DROP). It measures the most frames per second the kernel can hand anyone on an
/// interface; it is never attached by the gateway itself.
pub const BENCH_DROP_PROGRAM: &str = "xgate_bench_drop";
/// Name of the per-CPU array of [`ActionStats`] written by `xgate_bench_drop`: one entry, at
/// index 0, counting every frame the program saw on that CPU.
pub const BENCH_DROP_STATS_MAP: &str = "BENCH_DROP_STATS";
/// Entries in [`BENCH_DROP_STATS_MAP`] and [`BENCH_TX_STATS_MAP`].
pub const BENCH_STATS_ENTRIES: u32 = 1;
/// Name of the benchmark generator program: counts every frame into [`BENCH_TX_STATS_MAP`] and
/// returns XDP_TX. Run with BPF_PROG_TEST_RUN in live-frames mode, the kernel transmits each frame
/// out of the interface named as ingress in the run's context.
pub const BENCH_TX_PROGRAM: &str = "xgate_bench_tx";
/// Name of the per-CPU array of [`ActionStats`] written by `xgate_bench_tx`: one entry, at index
/// 0, counting every frame the generator has sent on that CPU (readable while a run is going on).
pub const BENCH_TX_STATS_MAP: &str = "BENCH_TX_STATS";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_indices_match_their_position_and_names_are_unique() {
        for (i, verdict) in XdpVerdict::ALL.iter().enumerate() {
            assert_eq!(*verdict as usize, i);
            for other in &XdpVerdict::ALL[i + 1..] {
                assert_ne!(verdict.name(), other.name());
            }
        }
        assert_eq!(core::mem::size_of::<ActionStats>(), 16);
        assert_eq!(core::mem::size_of::<FlowKey>(), 16);
        assert_eq!(core::mem::size_of::<FlowStats>(), 72);
        assert_eq!(core::mem::size_of::<FlowDrop>(), 16);
        assert_eq!(core::mem::size_of::<FrameMeta>(), FRAME_META_LEN);
        assert_eq!(core::mem::size_of::<ShieldLimits>(), 48);
    }

    #[test]
    fn flow_key_keeps_wire_order() {
        let key = FlowKey::tcp([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        assert_eq!(key.src(), [10, 0, 0, 1]);
        assert_eq!(key.src_port(), 40000);
        assert_eq!(key.dst_port(), 80);
        assert_eq!(key.src_port.to_ne_bytes(), 40000u16.to_be_bytes());
    }

    #[test]
    fn rate_limits_turn_into_gcra_intervals() {
        let limit = RateLimit::per_second(1000, 10);
        assert_eq!(limit.interval_ns, 1_000_000);
        assert_eq!(limit.tolerance_ns, 9_000_000);
        assert_eq!(RateLimit::per_second(0, 10).interval_ns, 0);
        assert_eq!(RateLimit::per_second(5, 0).tolerance_ns, 0);
    }
}
