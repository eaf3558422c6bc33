//! The XDP entry point and its maps.
//!
//! Invariants:
//! - Only frames addressed to the gateway leave the kernel path: ARP whose target protocol address
//!   is the gateway IPv4 address, and IPv4 whose destination is that address. Everything else is
//!   `XDP_PASS`, so the host keeps its own traffic on the same interface.
//! - Every frame is counted exactly once, per CPU, under the verdict it received.
//! - Every packet access is bounds-checked against `data_end` (the verifier insists).

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{PerCpuArray, XskMap},
    programs::XdpContext,
};
use xgate_xdp_common::{ActionStats, Verdict, MAX_QUEUES};

/// The gateway's IPv4 address, wire octets as a native u32. Set by the loader before load.
#[no_mangle]
static GATEWAY_IPV4: u32 = 0;

#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "VERDICT_STATS")]
static VERDICT_STATS: PerCpuArray<ActionStats> = PerCpuArray::with_max_entries(Verdict::COUNT, 0);

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
