//! SYN cookies in the lane (the scheme is `xgate_xdp_common::syncookie`, shared with the XDP
//! program, which answers most cookie SYNs itself):
//! - a SYN the server would leave unanswered at its half-open bound (or, with
//!   [`SynCookieMode::Always`], every SYN that reaches it) is answered with a cookie SYN-ACK
//!   written straight into the frame the device lends for the reply: no socket, no state;
//! - an ACK of a flow no socket has, to the listening port, is checked as a cookie's ACK. A valid
//!   one is taken up by the shard's designated listener (smoltcp's `accept_syn_cookie`, xgate's
//!   patch, see `vendor/README.md`), which the ACK then makes ESTABLISHED like any other;
//!   an invalid one is dropped and counted while cookies are in use (sent by this lane or, as the
//!   frame's flag says, by the XDP program within their lifetime), and otherwise goes to the
//!   stray sockets, which answer it with a RST as before.
//!
//! The cookie clock is CLOCK_MONOTONIC (the XDP program's), given by the server's owner
//! ([`ServerConfig::monotonic_ns`](super::ServerConfig)), so tests can drive it.

use smoltcp::{
    phy::{ChecksumCapabilities, Device, RxToken as _, TxToken as _},
    socket::tcp,
    time::Instant,
    wire::{
        EthernetFrame, EthernetProtocol, IpEndpoint, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
        TcpSeqNumber,
    },
};
use xgate_xdp_common::syncookie::{self, CookieTuple, SynCookieMode, COOKIE_ACTIVE_NS};

use super::TcpServer;
use crate::wire::{self, FrameEnds, TcpSegmentInfo};

/// The secret of the cookies: two 64-bit halves of a SipHash key, the XDP program's too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieKey(pub [u64; 2]);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key in a log would let anyone forge handshakes.
        f.write_str("CookieKey(..)")
    }
}

/// Bytes of a cookie SYN-ACK: Ethernet, IPv4 without options, TCP with the MSS option.
pub const COOKIE_SYN_ACK_LEN: usize = 14 + 20 + 24;

/// A server's cookie settings and state.
#[derive(Debug)]
pub(super) struct SynCookies {
    pub(super) mode: SynCookieMode,
    key: CookieKey,
    clock: fn() -> u64,
    /// The receive window a cookie SYN-ACK offers (a socket's receive buffer, at most 65,535).
    window: u16,
    /// When this server last answered a SYN with a cookie (CLOCK_MONOTONIC ns), if ever.
    last_sent_ns: Option<u64>,
}

impl SynCookies {
    pub(super) fn new(
        mode: SynCookieMode,
        key: CookieKey,
        clock: fn() -> u64,
        rx_buffer: usize,
    ) -> SynCookies {
        SynCookies {
            mode,
            key,
            clock,
            window: rx_buffer.min(usize::from(u16::MAX)) as u16,
            last_sent_ns: None,
        }
    }

    /// Whether an ACK that is no valid cookie's may still be one sent lately (and is dropped
    /// rather than answered with a RST).
    fn active(&self, segment: &TcpSegmentInfo, now_ns: u64) -> bool {
        self.mode == SynCookieMode::Always
            || segment.cookies_active
            || self
                .last_sent_ns
                .is_some_and(|sent| now_ns.saturating_sub(sent) < COOKIE_ACTIVE_NS)
    }
}

/// The cookie's view of a segment's connection.
fn tuple(segment: &TcpSegmentInfo) -> CookieTuple {
    CookieTuple {
        client_ip: u32::from_be_bytes(segment.flow.src_ip),
        client_port: segment.flow.src_port,
        server_ip: u32::from_be_bytes(segment.flow.dst_ip),
        server_port: segment.flow.dst_port,
    }
}

/// Writes the cookie SYN-ACK answering the SYN `frame` into `reply` (at least
/// [`COOKIE_SYN_ACK_LEN`] bytes): addresses swapped, the cookie as sequence number, an MSS of
/// `mss`, a window of `window`, no other option. `None` if `frame` is no well-formed TCP SYN
/// over IPv4 with valid checksums (nothing is answered then).
pub fn cookie_syn_ack(
    frame: &[u8],
    key: CookieKey,
    now_ns: u64,
    mss: u16,
    window: u16,
    reply: &mut [u8],
) -> Option<usize> {
    let checksums = ChecksumCapabilities::default();
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet, &checksums).ok()?;
    let segment = TcpPacket::new_checked(packet.payload()).ok()?;
    let syn = TcpRepr::parse(&segment, &ip.src_addr.into(), &ip.dst_addr.into(), &checksums).ok()?;
    if syn.control != TcpControl::Syn || syn.ack_number.is_some() {
        return None;
    }
    let client = CookieTuple {
        client_ip: u32::from(ip.src_addr),
        client_port: syn.src_port,
        server_ip: u32::from(ip.dst_addr),
        server_port: syn.dst_port,
    };
    let mss_index = syncookie::mss_index(syn.max_seg_size.filter(|&mss| mss != 0));
    let cookie = syncookie::make(key.0, &client, syn.seq_number.0 as u32, mss_index, now_ns);
    let answer = TcpRepr {
        src_port: syn.dst_port,
        dst_port: syn.src_port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(cookie as i32),
        ack_number: Some(syn.seq_number + 1),
        window_len: window,
        window_scale: None,
        max_seg_size: Some(mss),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ends = FrameEnds {
        src_mac: ethernet.dst_addr(),
        dst_mac: ethernet.src_addr(),
        src_ip: ip.dst_addr,
        dst_ip: ip.src_addr,
    };
    Some(wire::write_tcp_frame(reply, &ends, &answer))
}

impl TcpServer<'_> {
    /// Answers the SYN the device holds with a cookie SYN-ACK (see the module doc). Returns
    /// whether the device gave the stack a frame.
    pub(super) fn answer_with_cookie<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        let link_mtu = device.capabilities().max_transmission_unit.saturating_sub(14);
        let mss = link_mtu.saturating_sub(40).clamp(536, usize::from(u16::MAX)) as u16;
        let Some((rx, tx)) = device.receive(now) else {
            return false;
        };
        let now_ns = (self.cookies.clock)();
        let (key, window) = (self.cookies.key, self.cookies.window);
        let mut reply = [0u8; COOKIE_SYN_ACK_LEN];
        let written = rx.consume(|frame| cookie_syn_ack(frame, key, now_ns, mss, window, &mut reply));
        match written {
            Some(len) => {
                tx.consume(len, |buffer| buffer.copy_from_slice(&reply[..len]));
                self.cookies.last_sent_ns = Some(now_ns);
                self.stats.syn_cookies_sent += 1;
            }
            None => self.stats.syn_cookies_unanswered += 1,
        }
        true
    }

    /// An ACK of a flow no socket has, to the listening port, with cookies on: takes it up if it
    /// is a valid cookie's ACK, drops it if cookies are in use, and otherwise leaves it to the
    /// stray sockets (`None`). `Some(took)`: handled, and whether the device gave a frame.
    pub(super) fn ingress_cookie_ack<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        segment: &TcpSegmentInfo,
    ) -> Option<bool> {
        let now_ns = (self.cookies.clock)();
        let client_isn = segment.seq.wrapping_sub(1);
        let cookie = segment.ack_number.wrapping_sub(1);
        let Some(mss) = syncookie::check(self.cookies.key.0, &tuple(segment), client_isn, cookie, now_ns)
        else {
            if !self.cookies.active(segment, now_ns) {
                return None;
            }
            self.stats.syn_cookies_rejected += 1;
            return Some(self.drop_frame(now, device));
        };
        let Some(&shard) = self.listening.front() else {
            // Every socket is taken: the client sends its data again, with the same ACK, and
            // is taken up once a socket is free (while the cookie lives).
            self.stats.syn_cookies_no_socket += 1;
            return Some(self.drop_frame(now, device));
        };
        let listener = self.shards[shard as usize]
            .listener
            .expect("a listening shard has a listener");
        let local = IpEndpoint::new(
            smoltcp::wire::IpAddress::Ipv4(segment.flow.dst_ip.into()),
            segment.flow.dst_port,
        );
        let remote = IpEndpoint::new(
            smoltcp::wire::IpAddress::Ipv4(segment.flow.src_ip.into()),
            segment.flow.src_port,
        );
        let window = self.cookies.window;
        let taken = self.socket(listener).accept_syn_cookie(
            local,
            remote,
            TcpSeqNumber(cookie as i32),
            TcpSeqNumber(client_isn as i32),
            usize::from(mss),
            window,
            now,
        );
        if taken.is_err() || !self.accept(listener, segment.flow.connection_key()) {
            self.stats.syn_cookies_no_socket += 1;
            return Some(self.drop_frame(now, device));
        }
        self.stats.syn_cookies_accepted += 1;
        // Its answers need no ARP exchange first (see `learn_neighbour`).
        self.learn_neighbour(segment, now);
        // The ACK itself (and any data or FIN with it) goes to the socket, now SYN-RECEIVED.
        let took = self.deliver(now, device, shard);
        debug_assert!(
            !took || self.socket(listener).state() != tcp::State::SynReceived,
            "the cookie's ACK completes the handshake"
        );
        Some(took)
    }
}
