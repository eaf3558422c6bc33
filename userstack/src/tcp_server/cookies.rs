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
        EthernetAddress, EthernetFrame, EthernetProtocol, IpEndpoint, Ipv4Packet, Ipv4Repr, TcpControl,
        TcpPacket, TcpRepr, TcpSeqNumber,
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
/// [`COOKIE_SYN_ACK_LEN`] bytes): from `own_mac` and the SYN's destination to its source, the
/// cookie as sequence number, an MSS of `mss`, a window of `window`, no other option. `None` if
/// `frame` is no well-formed TCP SYN over IPv4 with valid checksums, or was sent to another MAC
/// (nothing is answered then).
pub fn cookie_syn_ack(
    frame: &[u8],
    own_mac: EthernetAddress,
    key: CookieKey,
    now_ns: u64,
    mss: u16,
    window: u16,
    reply: &mut [u8],
) -> Option<usize> {
    let checksums = ChecksumCapabilities::default();
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 || ethernet.dst_addr() != own_mac {
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
        src_mac: own_mac,
        dst_mac: ethernet.src_addr(),
        src_ip: ip.dst_addr,
        dst_ip: ip.src_addr,
    };
    Some(wire::write_tcp_frame(reply, &ends, &answer))
}

impl TcpServer<'_> {
    fn own_mac(&self) -> EthernetAddress {
        match self.iface.hardware_addr() {
            smoltcp::wire::HardwareAddress::Ethernet(mac) => mac,
        }
    }

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
        let own_mac = self.own_mac();
        let mut reply = [0u8; COOKIE_SYN_ACK_LEN];
        let written =
            rx.consume(|frame| cookie_syn_ack(frame, own_mac, key, now_ns, mss, window, &mut reply));
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
        if segment.dst_mac != self.own_mac().0 {
            // Not for this interface: the stack drops it (it would not take the ACK either).
            return None;
        }
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use smoltcp::wire::TcpSeqNumber;
    use xgate_xdp_common::syncookie::COUNTER_SHIFT;

    use super::*;
    use crate::{
        fuzz_support::{server, MemoryDevice, CLIENT_IP, CLIENT_MAC, LISTEN_PORT, SERVER_IP, SERVER_MAC},
        tcp_server::{ServerConfig, SocketMemory, TcpServer},
        wire::{classify, tcp_frame, FrameKind},
    };

    const KEY: CookieKey = CookieKey([0x1234, 0x5678]);
    const CLIENT_ISN: u32 = 0x0abc_0000;

    thread_local! {
        /// The cookie clock of this test's server (each test runs on its own thread).
        static CLOCK_NS: Cell<u64> = const { Cell::new(5 << COUNTER_SHIFT) };
    }

    fn clock() -> u64 {
        CLOCK_NS.with(Cell::get)
    }

    fn config(mode: SynCookieMode, sockets: usize, max_half_open: usize) -> ServerConfig {
        ServerConfig {
            listen_port: LISTEN_PORT,
            extra_listen_port: None,
            sockets,
            rx_buffer: 4096,
            tx_buffer: 4096,
            keep_alive: None,
            timeout: None,
            outbound_sockets: 0,
            max_half_open,
            reset_when_full: false,
            isn_key: crate::isn::IsnKey([1, 2]),
            syn_cookies: mode,
            cookie_key: KEY,
            monotonic_ns: clock,
        }
    }

    fn client_frame(port: u16, tcp: TcpRepr<'_>) -> Vec<u8> {
        let ends = FrameEnds {
            src_mac: CLIENT_MAC,
            dst_mac: SERVER_MAC,
            src_ip: CLIENT_IP,
            dst_ip: SERVER_IP,
        };
        tcp_frame(
            &ends,
            &TcpRepr {
                src_port: port,
                dst_port: LISTEN_PORT,
                ..tcp
            },
        )
    }

    fn syn(port: u16) -> Vec<u8> {
        client_frame(
            port,
            TcpRepr {
                control: TcpControl::Syn,
                max_seg_size: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                ..bare(CLIENT_ISN, None)
            },
        )
    }

    /// The client's segment after the handshake: `payload` (maybe empty) acknowledging `ack`.
    fn ack(port: u16, ack: u32, payload: &[u8]) -> Vec<u8> {
        client_frame(
            port,
            TcpRepr {
                payload,
                ..bare(CLIENT_ISN.wrapping_add(1), Some(ack))
            },
        )
    }

    fn bare(seq: u32, ack: Option<u32>) -> TcpRepr<'static> {
        TcpRepr {
            src_port: 0,
            dst_port: 0,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 1024,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        }
    }

    /// Feeds `frame` to the server and runs its egress; returns what it sent.
    fn exchange(server: &mut TcpServer<'_>, device: &mut MemoryDevice, frame: &[u8]) -> Vec<Vec<u8>> {
        let now = Instant::from_millis(10);
        device.put_rx(frame);
        let kind = classify(frame);
        assert!(server.ingress(now, device, &kind), "the server took the frame");
        server.egress(now, device);
        device.take_sent()
    }

    /// The TCP header of a frame the server sent.
    fn parsed(frame: &[u8]) -> (TcpRepr<'_>, EthernetAddress) {
        let ethernet = EthernetFrame::new_checked(frame).unwrap();
        let packet = Ipv4Packet::new_checked(ethernet.payload()).unwrap();
        let ip = Ipv4Repr::parse(&packet, &ChecksumCapabilities::default()).unwrap();
        assert_eq!((ip.src_addr, ip.dst_addr), (SERVER_IP, CLIENT_IP));
        let segment = TcpPacket::new_checked(packet.payload()).unwrap();
        let repr = TcpRepr::parse(
            &segment,
            &ip.src_addr.into(),
            &ip.dst_addr.into(),
            &ChecksumCapabilities::default(),
        )
        .unwrap();
        (repr, ethernet.dst_addr())
    }

    fn tuple_of(port: u16) -> CookieTuple {
        CookieTuple {
            client_ip: u32::from(CLIENT_IP),
            client_port: port,
            server_ip: u32::from(SERVER_IP),
            server_port: LISTEN_PORT,
        }
    }

    #[test]
    fn a_cookie_syn_ack_carries_a_valid_cookie_and_only_an_mss() {
        let mut reply = [0u8; COOKIE_SYN_ACK_LEN];
        let now = 7 << COUNTER_SHIFT;
        let len = cookie_syn_ack(&syn(40_000), SERVER_MAC, KEY, now, 1400, 4096, &mut reply).unwrap();
        assert_eq!(len, COOKIE_SYN_ACK_LEN);
        let (answer, to) = parsed(&reply);
        assert_eq!(to, CLIENT_MAC);
        assert_eq!(answer.control, TcpControl::Syn);
        assert_eq!(answer.ack_number, Some(TcpSeqNumber(CLIENT_ISN as i32 + 1)));
        assert_eq!((answer.max_seg_size, answer.window_len), (Some(1400), 4096));
        assert_eq!(answer.window_scale, None, "no window scaling without timestamps");
        assert!(!answer.sack_permitted && answer.timestamp.is_none());
        let cookie = answer.seq_number.0 as u32;
        assert_eq!(
            syncookie::check(KEY.0, &tuple_of(40_000), CLIENT_ISN, cookie, now),
            Some(1460)
        );
        // Not a SYN, or broken: no answer.
        assert_eq!(
            cookie_syn_ack(&ack(40_000, 1, b""), SERVER_MAC, KEY, now, 1400, 4096, &mut reply),
            None
        );
        let mut broken = syn(40_000);
        let last = broken.len() - 1;
        broken[last] ^= 0xff;
        assert_eq!(
            cookie_syn_ack(&broken, SERVER_MAC, KEY, now, 1400, 4096, &mut reply),
            None
        );
        // Sent to another MAC: not for us.
        assert_eq!(
            cookie_syn_ack(&syn(40_000), CLIENT_MAC, KEY, now, 1400, 4096, &mut reply),
            None
        );
    }

    #[test]
    fn with_cookies_always_a_syn_takes_no_socket_and_its_ack_makes_a_connection() {
        let config = config(SynCookieMode::Always, 4, 0);
        let mut memory = SocketMemory::new(&config);
        let mut device = MemoryDevice::new();
        let mut server = server(&config, &mut device, &mut memory);
        let sent = exchange(&mut server, &mut device, &syn(40_000));
        assert_eq!(sent.len(), 1, "one SYN-ACK, straight away");
        let (answer, _) = parsed(&sent[0]);
        let cookie = answer.seq_number.0 as u32;
        assert_eq!(server.connected(), 0, "no state for the SYN");
        assert_eq!(server.stats().syn_cookies_sent, 1);

        // The handshake's ACK carries the request too.
        let sent = exchange(
            &mut server,
            &mut device,
            &ack(40_000, cookie.wrapping_add(1), b"GET /"),
        );
        assert_eq!(server.stats().syn_cookies_accepted, 1);
        let id = server.next_woken().expect("the connection is woken");
        let socket = server.socket(id);
        assert_eq!(socket.state(), tcp::State::Established);
        let mut got = [0u8; 16];
        let n = socket.recv_slice(&mut got).unwrap();
        assert_eq!(&got[..n], b"GET /");
        // The answer goes out at once: the ACK taught the stack the client's MAC (no ARP).
        socket.send_slice(b"hello").unwrap();
        server.touch(id);
        let sent = [sent, exchange_egress(&mut server, &mut device)].concat();
        let data: Vec<_> = sent
            .iter()
            .map(|f| parsed(f).0)
            .filter(|r| !r.payload.is_empty())
            .collect();
        assert_eq!(data.len(), 1, "{sent:?}");
        assert_eq!(data[0].payload, b"hello");
        assert_eq!(data[0].seq_number, TcpSeqNumber(cookie as i32 + 1));
    }

    fn exchange_egress(server: &mut TcpServer<'_>, device: &mut MemoryDevice) -> Vec<Vec<u8>> {
        server.egress(Instant::from_millis(11), device);
        device.take_sent()
    }

    #[test]
    fn a_wrong_cookie_is_dropped_and_counted_while_cookies_are_in_use_and_reset_otherwise() {
        let config = config(SynCookieMode::Auto, 4, 0);
        let mut memory = SocketMemory::new(&config);
        let mut device = MemoryDevice::new();
        let mut server = server(&config, &mut device, &mut memory);
        // The client is a known neighbour (the stray sockets' RST needs its MAC).
        server.iface().fill_neighbor(
            CLIENT_IP.into(),
            smoltcp::wire::HardwareAddress::Ethernet(CLIENT_MAC),
            Instant::ZERO,
        );
        // No cookie sent yet: an ACK of an unknown flow is answered with a RST, as before.
        let sent = exchange(&mut server, &mut device, &ack(40_001, 0x5555, b""));
        assert_eq!(sent.len(), 1);
        assert_eq!(parsed(&sent[0]).0.control, TcpControl::Rst);
        assert_eq!(server.stats().syn_cookies_rejected, 0);
        // The XDP program says it has sent cookies lately: the same ACK is dropped and counted.
        let mut flagged = ack(40_001, 0x5555, b"");
        let kind = match classify(&flagged) {
            FrameKind::Tcp(mut segment) => {
                segment.cookies_active = true;
                FrameKind::Tcp(segment)
            }
            other => panic!("{other:?}"),
        };
        device.put_rx(&flagged);
        assert!(server.ingress(Instant::from_millis(10), &mut device, &kind));
        server.egress(Instant::from_millis(10), &mut device);
        assert!(device.take_sent().is_empty(), "no answer to a wrong cookie");
        assert_eq!(server.stats().syn_cookies_rejected, 1);
        assert_eq!(server.connected(), 0);
        // A valid one (the XDP program's cookie) is taken up whatever the flag says.
        let now = clock();
        let cookie = syncookie::make(KEY.0, &tuple_of(40_002), CLIENT_ISN, 3, now);
        flagged = ack(40_002, cookie.wrapping_add(1), b"");
        exchange(&mut server, &mut device, &flagged);
        assert_eq!(server.stats().syn_cookies_accepted, 1);
        assert_eq!(server.connected(), 1);
    }

    #[test]
    fn an_expired_cookie_is_refused() {
        let config = config(SynCookieMode::Always, 4, 0);
        let mut memory = SocketMemory::new(&config);
        let mut device = MemoryDevice::new();
        let mut server = server(&config, &mut device, &mut memory);
        let sent = exchange(&mut server, &mut device, &syn(40_000));
        let cookie = parsed(&sent[0]).0.seq_number.0 as u32;
        CLOCK_NS.with(|clock| clock.set(clock.get() + (2 << COUNTER_SHIFT)));
        let sent = exchange(
            &mut server,
            &mut device,
            &ack(40_000, cookie.wrapping_add(1), b""),
        );
        assert!(sent.is_empty());
        assert_eq!(server.stats().syn_cookies_rejected, 1);
        assert_eq!(server.connected(), 0);
    }

    /// Without cookies, the bound's old ways: a SYN meeting only young half-open connections is
    /// dropped for the client to send again; once the oldest has waited `EVICTABLE_AFTER` it is
    /// reset and the SYN takes its place.
    #[test]
    fn without_cookies_the_oldest_half_open_connection_makes_room() {
        let config = config(SynCookieMode::Never, 8, 2);
        let mut memory = SocketMemory::new(&config);
        let mut device = MemoryDevice::new();
        let mut server = server(&config, &mut device, &mut memory);
        for port in 0..2 {
            exchange(&mut server, &mut device, &syn(42_000 + port));
        }
        assert!(
            exchange(&mut server, &mut device, &syn(42_002)).is_empty(),
            "deferred"
        );
        let later = Instant::from_millis(10) + crate::tcp_server::EVICTABLE_AFTER;
        device.put_rx(&syn(42_002));
        assert!(server.ingress(later, &mut device, &classify(&syn(42_002))));
        server.egress(later, &mut device);
        let sent = device.take_sent();
        let controls: Vec<TcpControl> = sent.iter().map(|f| parsed(f).0.control).collect();
        assert!(
            controls.contains(&TcpControl::Rst),
            "the oldest is reset: {controls:?}"
        );
        assert!(
            controls.contains(&TcpControl::Syn),
            "the new SYN is answered: {controls:?}"
        );
        assert_eq!(server.stats().half_open_evicted, 1);
        assert_eq!(server.stats().syn_deferred, 1);
    }

    #[test]
    fn at_the_half_open_bound_auto_answers_with_a_cookie_and_never_drops() {
        for (mode, cookies) in [(SynCookieMode::Auto, true), (SynCookieMode::Never, false)] {
            let config = config(mode, 8, 2);
            let mut memory = SocketMemory::new(&config);
            let mut device = MemoryDevice::new();
            let mut server = server(&config, &mut device, &mut memory);
            for port in 0..2 {
                exchange(&mut server, &mut device, &syn(41_000 + port));
            }
            assert_eq!(server.half_open(), 2, "{mode:?}");
            let sent = exchange(&mut server, &mut device, &syn(41_002));
            let stats = server.stats();
            if cookies {
                assert_eq!(sent.len(), 1, "{mode:?}: a cookie SYN-ACK");
                let cookie = parsed(&sent[0]).0.seq_number.0 as u32;
                assert_eq!((stats.syn_cookies_sent, stats.syn_deferred), (1, 0));
                exchange(
                    &mut server,
                    &mut device,
                    &ack(41_002, cookie.wrapping_add(1), b""),
                );
                assert_eq!(server.stats().syn_cookies_accepted, 1);
                assert_eq!(server.connected(), 3);
                assert_eq!(server.half_open(), 2, "the cookie connection was never half-open");
            } else {
                assert!(sent.is_empty(), "{mode:?}: dropped");
                assert_eq!((stats.syn_cookies_sent, stats.syn_deferred), (0, 1));
            }
        }
    }
}
