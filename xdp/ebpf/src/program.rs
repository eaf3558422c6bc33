//! The XDP entry point and its maps.
//!
//! Invariants:
//! - Only frames addressed to the gateway leave the kernel path: ARP whose target protocol address
//!   is the gateway IPv4 address, and IPv4 whose destination is that address. Everything else is
//!   `XDP_PASS`, so the host keeps its own traffic on the same interface.
//! - Every frame is counted exactly once, per CPU, under the verdict it received.
//! - Every packet access is bounds-checked against `data_end` (the verifier insists).
//!
//! The same object also carries two benchmark programs for `xgate-bench packets`, never attached
//! by the gateway: `xgate_bench_drop` (count into `BENCH_DROP_STATS`, then XDP_DROP) and
//! `xgate_bench_tx` (count into `BENCH_TX_STATS`, then XDP_TX: the frame generator, run through
//! BPF_PROG_TEST_RUN live frames).

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{PerCpuArray, XskMap},
    programs::XdpContext,
};
use xgate_xdp_common::{ActionStats, Verdict, BENCH_STATS_ENTRIES, MAX_QUEUES};

/// The gateway's IPv4 address, wire octets as a native u32. Set by the loader before load.
#[no_mangle]
static GATEWAY_IPV4: u32 = 0;

#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "VERDICT_STATS")]
static VERDICT_STATS: PerCpuArray<ActionStats> = PerCpuArray::with_max_entries(Verdict::COUNT, 0);

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

#[xdp]
pub fn xgate_steer(ctx: XdpContext) -> u32 {
    let (verdict, action) = match classify(&ctx) {
        pass @ (Verdict::PassNotOurs | Verdict::PassMalformed) => (pass, xdp_action::XDP_PASS),
        redirect @ (Verdict::RedirectArp | Verdict::RedirectIpv4) => {
            match XSKS.redirect(ctx.rx_queue_index(), 0) {
                Ok(action) => (redirect, action),
                Err(_) => (Verdict::DropNoSocket, xdp_action::XDP_DROP),
            }
        }
        Verdict::DropNoSocket => (Verdict::DropNoSocket, xdp_action::XDP_DROP),
    };
    count(verdict, ctx.data_end() - ctx.data());
    action
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
fn classify(ctx: &XdpContext) -> Verdict {
    let gateway = unsafe {
        // SAFETY: GATEWAY_IPV4 is a plain u32 global; the volatile read stops the compiler from
        // folding the zero initialiser that the loader rewrites before load.
        core::ptr::read_volatile(&GATEWAY_IPV4)
    };
    let Some(ether_type) = read_be16(ctx, 12) else {
        return Verdict::PassMalformed;
    };
    match ether_type {
        ETH_P_ARP => match read_u32(ctx, ETH_HDR_LEN + ARP_TPA_OFFSET) {
            Some(target) if target == gateway => Verdict::RedirectArp,
            Some(_) => Verdict::PassNotOurs,
            None => Verdict::PassMalformed,
        },
        ETH_P_IPV4 => {
            if ctx.data() + ETH_HDR_LEN + IPV4_MIN_HDR_LEN > ctx.data_end() {
                return Verdict::PassMalformed;
            }
            match read_u32(ctx, ETH_HDR_LEN + IPV4_DST_OFFSET) {
                Some(dst) if dst == gateway => Verdict::RedirectIpv4,
                Some(_) => Verdict::PassNotOurs,
                None => Verdict::PassMalformed,
            }
        }
        _ => Verdict::PassNotOurs,
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
fn count(verdict: Verdict, bytes: usize) {
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
