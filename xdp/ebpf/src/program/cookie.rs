//! SYN cookies at driver level: a SYN the shield would drop for the budget (mode `auto`), or
//! every SYN within its source's rate (mode `always`), is answered here with a cookie SYN-ACK
//! written over the SYN itself and sent back out of the interface (XDP_TX); nothing is kept. The
//! cookie is `xgate_xdp_common::syncookie`'s, under the key the lanes have, so the lane that
//! receives the client's ACK checks it and takes the connection up.
//!
//! Invariants:
//! - The reply is 58 bytes: Ethernet, IPv4 without options, TCP with only the MSS option; it
//!   goes from the gateway's MAC to the MAC, address and port the SYN came from. A SYN with IPv4
//!   options or sent to another MAC, or a frame the kernel will not resize, is not answered (the
//!   caller drops it as before).
//! - The client's MSS is read from the SYN's first option, where every common stack puts it; a
//!   SYN with another first option (or none) gets the smallest table entry, 536.
//! - [`note_cookie_sent`] writes the shared activity stamp at most once a millisecond, so a flood
//!   does not bounce its cache line between CPUs.
//! - Every packet access is bounds-checked against `data_end`.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_tail, macros::map, maps::Array, programs::XdpContext,
};
use xgate_xdp_common::{
    syncookie::{self, CookieTuple, SynCookieConfig, SynCookieMode, COOKIE_ACTIVE_NS},
    FlowKey,
};

use super::{ETH_HDR_LEN, IPPROTO_TCP, IPV4_MIN_HDR_LEN, TCP_MIN_HDR_LEN};

/// The cookie settings. Set by the loader before load (mode `never` until then).
#[no_mangle]
static SYN_COOKIES: SynCookieConfig = SynCookieConfig {
    key: [0; 2],
    mode: 0,
    mss: 1460,
    window: 65535,
    mac: [0; 6],
    pad: [0; 2],
};

/// When a cookie was last sent (CLOCK_MONOTONIC ns), entry 0.
#[map(name = "COOKIE_ACTIVITY")]
static COOKIE_ACTIVITY: Array<u64> = Array::with_max_entries(1, 0);

/// Bytes of the cookie SYN-ACK.
const REPLY_LEN: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN + TCP_MIN_HDR_LEN + 4;
const TCP_OPT_MSS: u8 = 2;

/// The loader's cookie settings.
#[inline(always)]
pub(super) fn config() -> SynCookieConfig {
    // SAFETY: a plain global of integers; the volatile read keeps the loader's values.
    unsafe { core::ptr::read_volatile(&SYN_COOKIES) }
}

#[inline(always)]
pub(super) fn mode() -> SynCookieMode {
    SynCookieMode::from_u32(config().mode)
}

/// The cookie's view of a flow (host-order values from the wire-order key).
#[inline(always)]
fn tuple(key: &FlowKey) -> CookieTuple {
    CookieTuple {
        client_ip: u32::from_be(key.src_ip),
        client_port: u16::from_be(key.src_port),
        server_ip: u32::from_be(key.dst_ip),
        server_port: u16::from_be(key.dst_port),
    }
}

/// Whether cookies are in use: mode `always`, or one was sent within their lifetime.
#[inline(always)]
pub(super) fn active(now: u64) -> bool {
    match mode() {
        SynCookieMode::Always => true,
        SynCookieMode::Never => false,
        SynCookieMode::Auto => match COOKIE_ACTIVITY.get(0) {
            Some(&sent) => sent != 0 && now.wrapping_sub(sent) < COOKIE_ACTIVE_NS,
            None => false,
        },
    }
}

/// Whether an ACK with `seq` and `ack` acknowledges a valid cookie of flow `key`.
#[inline(always)]
pub(super) fn acknowledges_cookie(key: &FlowKey, seq: u32, ack: u32, now: u64) -> bool {
    syncookie::check(
        config().key,
        &tuple(key),
        seq.wrapping_sub(1),
        ack.wrapping_sub(1),
        now,
    )
    .is_some()
}

#[inline(always)]
fn note_cookie_sent(now: u64) {
    if let Some(sent) = COOKIE_ACTIVITY.get_ptr_mut(0) {
        // SAFETY: the pointer comes from a successful lookup of the array's one entry; a racing
        // writer on another CPU can only leave another recent time.
        unsafe {
            if now.wrapping_sub(*sent) > 1_000_000 {
                *sent = now;
            }
        }
    }
}

/// Folds a one's-complement sum into the 16-bit Internet checksum.
#[inline(always)]
fn checksum(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Writes `value` big-endian at `at`.
///
/// # Safety
/// `[at, at + 2)` must lie inside the packet (checked against `data_end` by the caller).
#[inline(always)]
unsafe fn put16(at: usize, value: u16) {
    // SAFETY: the caller checked the bounds; packet stores may be unaligned.
    unsafe { core::ptr::write_unaligned(at as *mut [u8; 2], value.to_be_bytes()) };
}

/// Writes `value` big-endian at `at`. Same contract as [`put16`].
#[inline(always)]
unsafe fn put32(at: usize, value: u32) {
    // SAFETY: as for `put16`.
    unsafe { core::ptr::write_unaligned(at as *mut [u8; 4], value.to_be_bytes()) };
}

/// Turns the SYN in `ctx` (flow `key`, sequence number `seq`) into its cookie SYN-ACK. Returns
/// the XDP action, or `None` if the SYN cannot be answered (see the module invariants).
#[inline(always)]
pub(super) fn answer(ctx: &XdpContext, key: &FlowKey, seq: u32, now: u64) -> Option<u32> {
    let config = config();
    let data = ctx.data();
    let ip = data + ETH_HDR_LEN;
    let tcp = ip + IPV4_MIN_HDR_LEN;
    if tcp + TCP_MIN_HDR_LEN > ctx.data_end() {
        return None;
    }
    // SAFETY: [data, tcp + 20) lies inside the packet, checked just above.
    let (version_ihl, offset) = unsafe { (*(ip as *const u8), *((tcp + 12) as *const u8)) };
    if version_ihl != 0x45 {
        return None;
    }
    let mut client_mss = None;
    if offset >> 4 >= 6 && tcp + TCP_MIN_HDR_LEN + 4 <= ctx.data_end() {
        // SAFETY: [tcp + 20, tcp + 24) lies inside the packet, checked just above.
        let option = unsafe { core::ptr::read_unaligned((tcp + TCP_MIN_HDR_LEN) as *const [u8; 4]) };
        if option[0] == TCP_OPT_MSS && option[1] == 4 {
            client_mss = Some(u16::from_be_bytes([option[2], option[3]]));
        }
    }
    // SAFETY: [data, data + 12) lies inside the packet (checked above: tcp + 20 > data + 12).
    let (dst_mac, src_mac) = unsafe {
        (
            core::ptr::read_unaligned(data as *const [u8; 6]),
            core::ptr::read_unaligned((data + 6) as *const [u8; 6]),
        )
    };
    // Only a SYN sent to the gateway's own MAC is answered (and from that MAC).
    if dst_mac != config.mac {
        return None;
    }
    let length = (ctx.data_end() - data) as i32;
    if length != REPLY_LEN as i32 {
        // SAFETY: bpf_xdp_adjust_tail only moves this frame's end (the kernel refuses a move
        // past its room); packet pointers are read again below.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, REPLY_LEN as i32 - length) } != 0 {
            return None;
        }
    }
    let data = ctx.data();
    if data + REPLY_LEN > ctx.data_end() {
        return None;
    }
    let ip = data + ETH_HDR_LEN;
    let tcp = ip + IPV4_MIN_HDR_LEN;

    let flow = tuple(key);
    let mss_index = syncookie::mss_index(client_mss.filter(|&mss| mss != 0));
    let cookie = syncookie::make(config.key, &flow, seq, mss_index, now);
    let server = flow.server_ip;
    let client = flow.client_ip;
    let ip_total = (IPV4_MIN_HDR_LEN + TCP_MIN_HDR_LEN + 4) as u16;
    let tcp_len = (TCP_MIN_HDR_LEN + 4) as u64;
    let ip_sum = 0x4500u64
        + u64::from(ip_total)
        + 0x4000
        + (64u64 << 8 | u64::from(IPPROTO_TCP))
        + u64::from(server >> 16)
        + u64::from(server & 0xffff)
        + u64::from(client >> 16)
        + u64::from(client & 0xffff);
    let ack = seq.wrapping_add(1);
    let tcp_sum = u64::from(server >> 16)
        + u64::from(server & 0xffff)
        + u64::from(client >> 16)
        + u64::from(client & 0xffff)
        + u64::from(IPPROTO_TCP)
        + tcp_len
        + u64::from(flow.server_port)
        + u64::from(flow.client_port)
        + u64::from(cookie >> 16)
        + u64::from(cookie & 0xffff)
        + u64::from(ack >> 16)
        + u64::from(ack & 0xffff)
        + 0x6012
        + u64::from(config.window)
        + (u64::from(TCP_OPT_MSS) << 8 | 4)
        + u64::from(config.mss);
    // SAFETY: [data, data + REPLY_LEN) lies inside the packet, checked after the resize.
    unsafe {
        core::ptr::write_unaligned(data as *mut [u8; 6], src_mac);
        core::ptr::write_unaligned((data + 6) as *mut [u8; 6], dst_mac);
        put16(ip, 0x4500);
        put16(ip + 2, ip_total);
        put32(ip + 4, 0x0000_4000);
        put16(ip + 8, 64 << 8 | u16::from(IPPROTO_TCP));
        put16(ip + 10, checksum(ip_sum));
        put32(ip + 12, server);
        put32(ip + 16, client);
        put16(tcp, flow.server_port);
        put16(tcp + 2, flow.client_port);
        put32(tcp + 4, cookie);
        put32(tcp + 8, ack);
        put16(tcp + 12, 0x6012);
        put16(tcp + 14, config.window);
        put16(tcp + 16, checksum(tcp_sum));
        put16(tcp + 18, 0);
        put16(tcp + 20, u16::from(TCP_OPT_MSS) << 8 | 4);
        put16(tcp + 22, config.mss);
    }
    note_cookie_sent(now);
    Some(xdp_action::XDP_TX)
}
