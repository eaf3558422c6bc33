//! The XDP entry point and its maps.
//!
//! Invariants:
//! - Only frames addressed to the gateway leave the kernel path: ARP whose target protocol address
//!   is the gateway IPv4 address, and IPv4 whose destination is that address. Everything else is
//!   `XDP_PASS`, so the host keeps its own traffic on the same interface.
//! - Every frame is counted exactly once, per CPU, under the verdict it received.
//! - Every packet access is bounds-checked against `data_end` (the verifier insists).
//! - TCP segments to the listening port are also watched, per flow, in `FLOWS` (an LRU hash, so
//!   its size is bounded whatever arrives). Only a SYN the shield admits creates an entry; other
//!   segments only update one. Segments of a flow the reaper put in `FLOW_DROPS` die here until
//!   the entry expires; a new SYN on that 5-tuple clears the entry (a new connection).
//! - Counters in shared (non-per-CPU) entries are atomic adds; per-CPU arrays are plain `+=`.
//! - The SYN shield admits a SYN only within its source's rate (GCRA per source, in the LRU hash
//!   `SYN_SOURCES`), and, for a source that never completed a handshake, within the global
//!   budget too (GCRA per CPU). Only userspace marks a source as having completed one, once the
//!   TCP stack accepted the client's ACK of its SYN-ACK: this program cannot check an ACK
//!   number against a SYN-ACK it never sees, and a blind spoofer can send an ACK after its SYN.
//!   So a flood of spoofed sources spends only the budget, while clients that really connected
//!   keep their own rate.
//! - SYN cookies (`cookie`): with mode `auto` a stranger's SYN over the budget, with `always`
//!   every SYN within its source's rate, is answered at once with a cookie SYN-ACK (XDP_TX) and
//!   leaves no state, neither a flow entry nor a source entry. While cookies are in use, an ACK
//!   of a flow without an entry is flagged for the lane (`FRAME_FLAG_COOKIES_ACTIVE`), and gets
//!   its entry if it acknowledges a valid cookie. The program cannot drop a bad one itself: the
//!   ACK may belong to a connection whose entry the LRU evicted; the lane, which knows its
//!   sockets, decides.
//! - Every redirected frame carries its arrival time (`FrameMeta`, 16 bytes) in front of the
//!   packet: the program grows the frame's head by 16 bytes (`bpf_xdp_adjust_head`) and writes the
//!   stamp there, so the socket receives stamp + packet and userspace strips the stamp on receipt.
//!   A frame the program cannot stamp (no headroom) is dropped (`DropNoHeadroom`), never
//!   redirected unstamped. (The XDP metadata area would be the natural place, but kernels may
//!   refuse `bpf_xdp_adjust_meta` to XDP programs, as this lab's does; the head works everywhere.)
//!
//! The same object also carries two benchmark programs for `xgate-bench packets`, never attached
//! by the gateway: `xgate_bench_drop` (count into `BENCH_DROP_STATS`, then XDP_DROP) and
//! `xgate_bench_tx` (count into `BENCH_TX_STATS`, then XDP_TX: the frame generator, run through
//! BPF_PROG_TEST_RUN live frames).

mod cookie;

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_head},
    macros::{map, xdp},
    maps::{HashMap, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use xgate_xdp_common::syncookie::SynCookieMode;
use xgate_xdp_common::{
    ActionStats, FlowDrop, FlowKey, FlowStats, FrameMeta, RateLimit, ShieldLimits, SynBudget, SynSource,
    XdpVerdict, BENCH_STATS_ENTRIES, DEFAULT_FLOWS, DEFAULT_FLOW_DROPS, DEFAULT_SYN_SOURCES,
    FLOW_ESTABLISHED, FLOW_FIN, FLOW_RST, FLOW_SYN, FRAME_FLAG_COOKIES_ACTIVE, FRAME_META_LEN,
    FRAME_META_MAGIC, HANDSHAKE_SUM_SLOT, LATENCY_BUCKETS, MAX_QUEUES,
};

/// The gateway's IPv4 address, wire octets as a native u32. Set by the loader before load.
#[no_mangle]
static GATEWAY_IPV4: u32 = 0;

/// The listening TCP port, wire order as a native u16, widened. Set by the loader before load.
#[no_mangle]
static LISTEN_PORT: u32 = 0;

/// A second listening port (HTTPS) in the same form, 0 for none. Set by the loader before load.
#[no_mangle]
static EXTRA_LISTEN_PORT: u32 = 0;

/// The SYN shield's limits. Set by the loader before load.
#[no_mangle]
static SHIELD: ShieldLimits = ShieldLimits {
    untrusted_source: RateLimit {
        interval_ns: 0,
        tolerance_ns: 0,
    },
    trusted_source: RateLimit {
        interval_ns: 0,
        tolerance_ns: 0,
    },
    budget: RateLimit {
        interval_ns: 0,
        tolerance_ns: 0,
    },
};

#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(DEFAULT_FLOWS, 0);

#[map(name = "FLOW_DROPS")]
static FLOW_DROPS: HashMap<FlowKey, FlowDrop> = HashMap::with_max_entries(DEFAULT_FLOW_DROPS, 0);

#[map(name = "SYN_SOURCES")]
static SYN_SOURCES: LruHashMap<u32, SynSource> = LruHashMap::with_max_entries(DEFAULT_SYN_SOURCES, 0);

#[map(name = "SYN_BUDGET")]
static SYN_BUDGET: PerCpuArray<SynBudget> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "HANDSHAKE_HISTOGRAM")]
static HANDSHAKE_HISTOGRAM: PerCpuArray<u64> = PerCpuArray::with_max_entries(LATENCY_BUCKETS + 1, 0);

#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "VERDICT_STATS")]
static VERDICT_STATS: PerCpuArray<ActionStats> = PerCpuArray::with_max_entries(XdpVerdict::COUNT, 0);

/// Every frame `xgate_bench_drop` saw, per CPU, at index 0. Written only by that benchmark
/// program; the steering program never touches it.
#[map(name = "BENCH_DROP_STATS")]
static BENCH_DROP_STATS: PerCpuArray<ActionStats> = PerCpuArray::with_max_entries(BENCH_STATS_ENTRIES, 0);

/// Every frame `xgate_bench_tx` sent, per CPU, at index 0, so that a benchmark can read how much
/// it generated while one long BPF_PROG_TEST_RUN call is still running.
#[map(name = "BENCH_TX_STATS")]
static BENCH_TX_STATS: PerCpuArray<ActionStats> = PerCpuArray::with_max_entries(BENCH_STATS_ENTRIES, 0);

const ETH_HDR_LEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
/// Offset of the ARP target protocol address from the start of the ARP header (Ethernet/IPv4 ARP).
const ARP_TPA_OFFSET: usize = 24;
/// Offset of the destination address in the IPv4 header.
const IPV4_DST_OFFSET: usize = 16;
const IPV4_MIN_HDR_LEN: usize = 20;

const IPPROTO_TCP: u8 = 6;
const TCP_MIN_HDR_LEN: usize = 20;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

#[xdp]
pub fn xgate_steer(ctx: XdpContext) -> u32 {
    let bytes = ctx.data_end() - ctx.data();
    let mut verdict = classify(&ctx);
    let mut flags = 0;
    let mut action = xdp_action::XDP_DROP;
    if verdict == XdpVerdict::RedirectIpv4 {
        if let Some(segment) = read_segment(&ctx) {
            // SAFETY: bpf_ktime_get_ns has no preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            verdict = watch(&segment, bytes, now, &mut flags);
            if verdict == XdpVerdict::TxSynCookie {
                match cookie::answer(&ctx, &segment.key, segment.seq, now) {
                    Some(tx) => action = tx,
                    // Not answerable (IPv4 options, no room): dropped, as the budget would.
                    None => verdict = XdpVerdict::DropSynBudget,
                }
            }
        }
    }
    let action = match verdict {
        XdpVerdict::PassNotOurs | XdpVerdict::PassMalformed => xdp_action::XDP_PASS,
        XdpVerdict::TxSynCookie => action,
        XdpVerdict::RedirectArp | XdpVerdict::RedirectIpv4 => {
            if !stamp_arrival(&ctx, flags) {
                verdict = XdpVerdict::DropNoHeadroom;
                xdp_action::XDP_DROP
            } else {
                match XSKS.redirect(ctx.rx_queue_index(), 0) {
                    Ok(action) => action,
                    Err(_) => {
                        verdict = XdpVerdict::DropNoSocket;
                        xdp_action::XDP_DROP
                    }
                }
            }
        }
        _ => xdp_action::XDP_DROP,
    };
    count(verdict, bytes);
    action
}

/// The fields of a TCP segment to the listening port that the flow table needs.
struct Segment {
    key: FlowKey,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: u32,
}

/// Reads the TCP header of an IPv4 frame already classified as ours, if it is a whole-header
/// segment to the listening port.
#[inline(always)]
fn read_segment(ctx: &XdpContext) -> Option<Segment> {
    let ip = ctx.data() + ETH_HDR_LEN;
    if ip + IPV4_MIN_HDR_LEN > ctx.data_end() {
        return None;
    }
    // SAFETY: [ip, ip + 20) lies inside the packet, checked just above.
    let (version_ihl, total_len, frag, protocol, src) = unsafe {
        (
            *(ip as *const u8),
            u16::from_be_bytes(core::ptr::read_unaligned((ip + 2) as *const [u8; 2])),
            u16::from_be_bytes(core::ptr::read_unaligned((ip + 6) as *const [u8; 2])),
            *((ip + 9) as *const u8),
            core::ptr::read_unaligned((ip + 12) as *const u32),
        )
    };
    // Fragments (other than a whole datagram) carry no usable TCP header.
    if protocol != IPPROTO_TCP || frag & 0x3fff != 0 || version_ihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if ihl < IPV4_MIN_HDR_LEN {
        return None;
    }
    let tcp = ip + ihl;
    if tcp + TCP_MIN_HDR_LEN > ctx.data_end() {
        return None;
    }
    // SAFETY: [tcp, tcp + 20) lies inside the packet, checked just above.
    let (src_port, dst_port, seq, ack, offset, flags) = unsafe {
        (
            core::ptr::read_unaligned(tcp as *const u16),
            core::ptr::read_unaligned((tcp + 2) as *const u16),
            u32::from_be_bytes(core::ptr::read_unaligned((tcp + 4) as *const [u8; 4])),
            u32::from_be_bytes(core::ptr::read_unaligned((tcp + 8) as *const [u8; 4])),
            *((tcp + 12) as *const u8),
            *((tcp + 13) as *const u8),
        )
    };
    // SAFETY: a plain u32 global; the volatile read keeps the loader's value from being folded.
    let listen = unsafe { core::ptr::read_volatile(&LISTEN_PORT) } as u16;
    // SAFETY: as for `listen`.
    let extra = unsafe { core::ptr::read_volatile(&EXTRA_LISTEN_PORT) } as u16;
    if dst_port != listen && (extra == 0 || dst_port != extra) {
        return None;
    }
    let headers = ihl as u32 + u32::from(offset >> 4) * 4;
    let payload = u32::from(total_len).saturating_sub(headers);
    // SAFETY: as for `listen`.
    let gateway = unsafe { core::ptr::read_volatile(&GATEWAY_IPV4) };
    Some(Segment {
        key: FlowKey {
            src_ip: src,
            dst_ip: gateway,
            src_port,
            dst_port,
            protocol: IPPROTO_TCP,
            pad: [0; 3],
        },
        flags,
        seq,
        ack,
        payload,
    })
}

/// Applies the drop map and the SYN shield to `segment` and records it in its flow. Returns
/// `RedirectIpv4`, `TxSynCookie` (the SYN is to be answered with a cookie) or the drop verdict;
/// sets the frame's `FRAME_FLAG_*` bits in `flags`.
#[inline(always)]
fn watch(segment: &Segment, bytes: usize, now: u64, flags: &mut u32) -> XdpVerdict {
    let opens = segment.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    if let Some(drop) = FLOW_DROPS.get_ptr_mut(&segment.key) {
        // SAFETY: the pointer comes from a successful lookup; concurrent writers can only lose
        // a hit count, never corrupt memory.
        let expires = unsafe { (*drop).expires_ns };
        if now < expires && !opens {
            // SAFETY: as above; `hits` is a field of that live entry.
            add_u32(unsafe { core::ptr::addr_of_mut!((*drop).hits) }, 1);
            return XdpVerdict::DropReapedFlow;
        }
        let _ = FLOW_DROPS.remove(&segment.key);
    }
    if opens {
        if let Some(refused) = shield(segment.key.src_ip, now) {
            return refused;
        }
        open_flow(segment, bytes, now);
        return XdpVerdict::RedirectIpv4;
    }
    let Some(flow) = FLOWS.get_ptr_mut(&segment.key) else {
        let plain_ack = segment.flags & (TCP_ACK | TCP_SYN | TCP_RST) == TCP_ACK;
        if plain_ack && cookie::active(now) {
            // Maybe the ACK of a cookie: the lane checks it (and drops it if it is none). A
            // valid one gets its flow entry here, as an admitted SYN would have.
            *flags |= FRAME_FLAG_COOKIES_ACTIVE;
            if cookie::acknowledges_cookie(&segment.key, segment.seq, segment.ack, now) {
                adopt_flow(segment, bytes, now);
            }
        }
        return XdpVerdict::RedirectIpv4;
    };
    count_segment(flow, bytes);
    // SAFETY: the pointer comes from a successful lookup of an LRU entry, which stays valid for
    // the program's run. The counters are added atomically (`count_segment`, `add_u32`); the
    // other fields are written by the CPU of the flow's rx queue (see `FlowStats`).
    let flow = unsafe { &mut *flow };
    flow.last_seen_ns = now;
    if segment.flags & TCP_RST != 0 {
        flow.flags |= FLOW_RST;
    }
    if segment.flags & TCP_FIN != 0 {
        flow.flags |= FLOW_FIN;
    }
    if segment.flags & TCP_ACK != 0 {
        if flow.flags & FLOW_ESTABLISHED == 0 {
            if flow.flags & FLOW_SYN != 0 {
                flow.handshake_ns = now - flow.syn_ns;
                flow.flags |= FLOW_ESTABLISHED;
                flow.last_ack = segment.ack;
                flow.ack_progress_ns = now;
                record_handshake(flow.handshake_ns);
            }
        } else if (segment.ack.wrapping_sub(flow.last_ack) as i32) > 0 {
            flow.last_ack = segment.ack;
            flow.ack_progress_ns = now;
        }
    }
    if segment.payload > 0 {
        let end = segment.seq.wrapping_add(segment.payload);
        if (end.wrapping_sub(flow.next_seq) as i32) <= 0 {
            add_u32(&mut flow.retransmits, 1);
            flow.retransmit_streak = flow.retransmit_streak.saturating_add(1);
        } else {
            flow.next_seq = end;
            flow.retransmit_streak = 0;
            // New data is progress too: the client is alive and talking.
            flow.ack_progress_ns = now;
        }
    }
    XdpVerdict::RedirectIpv4
}

/// A client SYN: a new flow entry, or a repeated SYN of a handshake not yet complete.
#[inline(always)]
fn open_flow(segment: &Segment, bytes: usize, now: u64) {
    if let Some(entry) = FLOWS.get_ptr_mut(&segment.key) {
        // SAFETY: the pointer comes from a successful lookup of an LRU entry.
        let flow = unsafe { &mut *entry };
        if flow.flags & FLOW_ESTABLISHED == 0 && flow.next_seq == segment.seq.wrapping_add(1) {
            add_u32(&mut flow.retransmits, 1);
            flow.retransmit_streak = flow.retransmit_streak.saturating_add(1);
            flow.last_seen_ns = now;
            count_segment(entry, bytes);
            return;
        }
    }
    let fresh = FlowStats {
        first_seen_ns: now,
        last_seen_ns: now,
        syn_ns: now,
        handshake_ns: 0,
        ack_progress_ns: now,
        packets: 1,
        bytes: bytes as u64,
        next_seq: segment.seq.wrapping_add(1),
        last_ack: 0,
        retransmits: 0,
        retransmit_streak: 0,
        flags: FLOW_SYN,
    };
    let _ = FLOWS.insert(&segment.key, &fresh, 0);
}

/// The ACK of a valid cookie: a flow entry, established (its handshake took no SYN entry, so no
/// handshake latency is recorded).
#[inline(always)]
fn adopt_flow(segment: &Segment, bytes: usize, now: u64) {
    let adopted = FlowStats {
        first_seen_ns: now,
        last_seen_ns: now,
        syn_ns: now,
        handshake_ns: 0,
        ack_progress_ns: now,
        packets: 1,
        bytes: bytes as u64,
        next_seq: segment.seq.wrapping_add(segment.payload),
        last_ack: segment.ack,
        retransmits: 0,
        retransmit_streak: 0,
        flags: FLOW_SYN | FLOW_ESTABLISHED,
    };
    let _ = FLOWS.insert(&segment.key, &adopted, 0);
}

/// Adds one segment of `bytes` to the flow's packet and byte counters, as atomic adds: a flow's
/// segments can reach several CPUs at once (steering that changes, generic XDP), and a plain
/// `+=` on a shared entry would lose counts.
#[inline(always)]
fn count_segment(flow: *mut FlowStats, bytes: usize) {
    // SAFETY: `flow` points at a live map entry (the callers looked it up); the fields are
    // aligned u64s that every writer updates atomically.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(core::ptr::addr_of_mut!((*flow).packets), 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            core::ptr::addr_of_mut!((*flow).bytes),
            bytes as u64,
        );
    }
}

/// Adds `n` to a u32 counter of a shared map entry as one atomic add (see [`count_segment`]).
#[inline(always)]
fn add_u32(counter: *mut u32, n: u32) {
    // SAFETY: `counter` is an aligned u32 field of a live map entry that every writer updates
    // atomically.
    unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(counter, n) };
}

/// GCRA: whether one more event fits `limit` given the theoretical arrival time `next`, which
/// it moves on when it does.
#[inline(always)]
fn admit(next: &mut u64, limit: &RateLimit, now: u64) -> bool {
    if limit.interval_ns == 0 {
        return true;
    }
    let start = if *next > now { *next } else { now };
    if start - now > limit.tolerance_ns {
        return false;
    }
    *next = start + limit.interval_ns;
    true
}

/// The SYN shield: `None` if a SYN from `source` may pass to the lane, else the drop verdict or
/// `TxSynCookie`. The per-source rates come first; then, with cookies `always`, every SYN gets a
/// cookie, and with `auto` a stranger's SYN over the budget gets one instead of being dropped.
#[inline(always)]
fn shield(source: u32, now: u64) -> Option<XdpVerdict> {
    // SAFETY: a plain global of integers; the volatile read keeps the loader's values.
    let limits = unsafe { core::ptr::read_volatile(&SHIELD) };
    let trusted = match SYN_SOURCES.get_ptr_mut(&source) {
        Some(state) => {
            // SAFETY: the pointer comes from a successful lookup of an LRU entry.
            let state = unsafe { &mut *state };
            let trusted = state.trusted != 0;
            let limit = if trusted {
                &limits.trusted_source
            } else {
                &limits.untrusted_source
            };
            if !admit(&mut state.next_ns, limit, now) {
                return Some(XdpVerdict::DropSynSourceRate);
            }
            trusted
        }
        None => false,
    };
    let cookies = cookie::mode();
    if cookies == SynCookieMode::Always {
        return Some(XdpVerdict::TxSynCookie);
    }
    if !trusted {
        if let Some(budget) = SYN_BUDGET.get_ptr_mut(0) {
            // SAFETY: per-CPU array entries are private to this CPU while the program runs.
            if !admit(unsafe { &mut (*budget).next_ns }, &limits.budget, now) {
                return Some(if cookies == SynCookieMode::Auto {
                    XdpVerdict::TxSynCookie
                } else {
                    XdpVerdict::DropSynBudget
                });
            }
        }
        if SYN_SOURCES.get_ptr(&source).is_none() {
            let mut first = SynSource::default();
            admit(&mut first.next_ns, &limits.untrusted_source, now);
            let _ = SYN_SOURCES.insert(&source, &first, 0);
        }
    }
    None
}

/// Adds a handshake latency to this CPU's log2 histogram (µs buckets) and to its sum (ns).
#[inline(always)]
fn record_handshake(ns: u64) {
    let bucket = log2_bucket(ns / 1000);
    if let Some(count) = HANDSHAKE_HISTOGRAM.get_ptr_mut(bucket) {
        // SAFETY: per-CPU array entries are private to this CPU while the program runs.
        unsafe { *count += 1 };
    }
    if let Some(sum) = HANDSHAKE_HISTOGRAM.get_ptr_mut(HANDSHAKE_SUM_SLOT) {
        // SAFETY: as above.
        unsafe { *sum += ns };
    }
}

/// ⌊log2(v)⌋ for v ≥ 1 (0 for 0), capped at the last bucket; branches only, no loop.
#[inline(always)]
fn log2_bucket(mut v: u64) -> u32 {
    let mut bucket = 0u32;
    if v >= 1 << 16 {
        v >>= 16;
        bucket += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        bucket += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        bucket += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        bucket += 2;
    }
    if v >= 1 << 1 {
        bucket += 1;
    }
    if bucket >= LATENCY_BUCKETS {
        LATENCY_BUCKETS - 1
    } else {
        bucket
    }
}

/// Puts the arrival time (and `flags`) in front of the packet: grows the frame's head by [`FRAME_META_LEN`]
/// bytes and writes the stamp there. `false` if the driver left no headroom for it.
#[inline(always)]
fn stamp_arrival(ctx: &XdpContext, flags: u32) -> bool {
    // SAFETY: bpf_xdp_adjust_head only moves this frame's data pointer (the kernel checks the
    // headroom and refuses a move past it); packet pointers are read again below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(FRAME_META_LEN as i32)) } != 0 {
        return false;
    }
    let start = ctx.data();
    if start + FRAME_META_LEN > ctx.data_end() {
        return false;
    }
    let stamp = FrameMeta {
        magic: FRAME_META_MAGIC,
        flags,
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        arrival_ns: unsafe { bpf_ktime_get_ns() },
    };
    // SAFETY: [start, start + 16) lies inside the frame, checked against `data_end` above.
    unsafe { core::ptr::write_unaligned(start as *mut FrameMeta, stamp) };
    true
}

/// Benchmark receiver: counts the frame (packets and bytes, per CPU) and drops it. Attached in
/// place of `xgate_steer`, it gives the rate at which the interface can hand frames to XDP at all,
/// the ceiling for the AF_XDP path. Not used by the gateway.
#[xdp]
pub fn xgate_bench_drop(ctx: XdpContext) -> u32 {
    count_into(&BENCH_DROP_STATS, ctx.data_end() - ctx.data());
    xdp_action::XDP_DROP
}

/// Benchmark generator: counts the frame and sends it back out (XDP_TX). Never attached: the
/// loader runs it with BPF_PROG_TEST_RUN in live-frames mode, where the kernel turns XDP_TX into a
/// transmit out of the ingress interface named in the run's context, `repeat` times per call.
#[xdp]
pub fn xgate_bench_tx(ctx: XdpContext) -> u32 {
    count_into(&BENCH_TX_STATS, ctx.data_end() - ctx.data());
    xdp_action::XDP_TX
}

/// Adds one frame of `bytes` to entry 0 of a benchmark's per-CPU counter.
#[inline(always)]
fn count_into(stats: &PerCpuArray<ActionStats>, bytes: usize) {
    if let Some(entry) = stats.get_ptr_mut(0) {
        // SAFETY: per-CPU array entries are private to this CPU while the program runs, so a plain
        // read-modify-write cannot race; the pointer comes from a successful map lookup.
        unsafe {
            (*entry).packets += 1;
            (*entry).bytes += bytes as u64;
        }
    }
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> XdpVerdict {
    let gateway = unsafe {
        // SAFETY: GATEWAY_IPV4 is a plain u32 global; the volatile read stops the compiler from
        // folding the zero initialiser that the loader rewrites before load.
        core::ptr::read_volatile(&GATEWAY_IPV4)
    };
    let Some(ether_type) = read_be16(ctx, 12) else {
        return XdpVerdict::PassMalformed;
    };
    match ether_type {
        ETH_P_ARP => match read_u32(ctx, ETH_HDR_LEN + ARP_TPA_OFFSET) {
            Some(target) if target == gateway => XdpVerdict::RedirectArp,
            Some(_) => XdpVerdict::PassNotOurs,
            None => XdpVerdict::PassMalformed,
        },
        ETH_P_IPV4 => {
            if ctx.data() + ETH_HDR_LEN + IPV4_MIN_HDR_LEN > ctx.data_end() {
                return XdpVerdict::PassMalformed;
            }
            match read_u32(ctx, ETH_HDR_LEN + IPV4_DST_OFFSET) {
                Some(dst) if dst == gateway => XdpVerdict::RedirectIpv4,
                Some(_) => XdpVerdict::PassNotOurs,
                None => XdpVerdict::PassMalformed,
            }
        }
        _ => XdpVerdict::PassNotOurs,
    }
}

/// Reads a big-endian u16 at `offset`, or `None` if the frame is too short.
#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let start = ctx.data() + offset;
    if start + 2 > ctx.data_end() {
        return None;
    }
    // SAFETY: [start, start + 2) lies inside [data, data_end), checked just above; the read is
    // unaligned-safe.
    let raw = unsafe { core::ptr::read_unaligned(start as *const [u8; 2]) };
    Some(u16::from_be_bytes(raw))
}

/// Reads four octets at `offset` as a native u32 (wire order preserved), or `None` if too short.
#[inline(always)]
fn read_u32(ctx: &XdpContext, offset: usize) -> Option<u32> {
    let start = ctx.data() + offset;
    if start + 4 > ctx.data_end() {
        return None;
    }
    // SAFETY: [start, start + 4) lies inside [data, data_end), checked just above.
    let raw = unsafe { core::ptr::read_unaligned(start as *const [u8; 4]) };
    Some(u32::from_ne_bytes(raw))
}

#[inline(always)]
fn count(verdict: XdpVerdict, bytes: usize) {
    if let Some(stats) = VERDICT_STATS.get_ptr_mut(verdict as u32) {
        // SAFETY: per-CPU array entries are private to this CPU while the program runs, so a plain
        // read-modify-write cannot race; the pointer comes from a successful map lookup.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += bytes as u64;
        }
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The program has no panicking path (every access is checked first); were one ever compiled
    // in, this loop would make the verifier refuse the program rather than run it.
    loop {}
}
