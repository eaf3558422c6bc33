//! The frame → TCP path of one lane, driven by arbitrary bytes: shared by the `frame` fuzz target
//! (`proxy/fuzz`) and the corpus test (`userstack/tests/frame_corpus.rs`), so both run exactly
//! the same assertions. Not part of the crate's API.
//!
//! This module owns:
//! - [`MemoryDevice`]: a `smoltcp::phy::Device` in memory: one frame in at a time, every frame
//!   the stack sends kept until taken.
//! - [`server`]: a [`TcpServer`] over a [`MemoryDevice`] at [`SERVER_IP`] / [`SERVER_MAC`],
//!   listening on [`LISTEN_PORT`].
//! - [`check_frames`]: the input format below, the set-up of real connections, and the
//!   invariants checked after every frame.
//!
//! Input: one config byte, then records `flags, time, length (u16, big endian), frame bytes`
//! (the last frame is cut to what is left). The config byte sets the socket count
//! (`1 + (byte & 0x1f)`), whether there are two outbound sockets (0x20), small socket buffers
//! (0x40) and keep-alive and time-out (0x80). Before the records, a client ([`CLIENT_IP`]) is
//! introduced by ARP and opens one connection to the listen port with a real handshake, and
//! (with outbound sockets) the server opens one to [`UPSTREAM_PORT`] on the same host, so
//! established-connection code is reachable. For each record the clock moves `time²` ms, the
//! frame is rewritten as `flags` say ([`TO_INBOUND`] .. [`APP_ABORTS`]), classified with
//! [`crate::wire::classify`] and given to [`TcpServer::ingress`]; then the application serves
//! every woken connection as a lane does (reads, writes, closes or aborts as `flags` say, then
//! settles it) and [`TcpServer::egress`] runs.
//!
//! Invariants checked (each a panic when broken):
//! - nothing panics, in the stack, the server or the steering;
//! - the stack takes every frame it is given;
//! - [`crate::wire::classify`] agrees with the stack: a frame the stack parses as a TCP segment
//!   is classified TCP with the same ports, and a frame classified TCP has an IPv4 header the
//!   stack accepts, with the same addresses;
//! - the server's connected count never exceeds its sockets, agrees with [`TcpServer::is_connected`]
//!   over all sockets, and outbound sockets are each free or connected;
//! - a socket without a connection is closed (or in TIME-WAIT) or listening, and only inbound
//!   sockets listen, at most one per shard (which socket is in which shard: `SHARD_SIZE`);
//! - a woken connection is connected;
//! - the server's half-open count stays within its bound (half the sockets here) and counts
//!   every connected socket in SYN-RECEIVED;
//! - every frame the device is given to send fits the MTU and parses as Ethernet from the server's
//!   MAC: ARP, or IPv4 from the server's address with correct checksums (and TCP's), and no
//!   segment is both SYN and RST.

mod device;
mod frames;

use smoltcp::{
    iface::{Config, Interface},
    socket::tcp,
    time::{Duration, Instant},
    wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, TcpControl},
};

pub use self::device::{MemoryDevice, MemoryRxToken, MemoryTxToken};
use self::frames::{
    arp_request, check_classify, check_sent_frame, fill_checksums, single_segment, tcp_frame, tcp_header_mut,
    tcp_segment_len,
};
use crate::{
    tcp_server::{ConnId, CookieKey, ServerConfig, SocketMemory, SynCookieMode, TcpServer, SHARD_SIZE},
    wire::{arp_request_as_reply, arp_target_ip, classify, FrameKind},
};

/// Largest Ethernet frame (without FCS) the device sends.
pub const MTU: usize = 1514;
/// The server's address, prefix and MAC.
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const SERVER_PREFIX: u8 = 24;
pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
/// The port the server listens on.
pub const LISTEN_PORT: u16 = 80;
/// The client's (and the upstream's) address and MAC.
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
/// The client port of the connection set up before the records.
pub const CLIENT_PORT: u16 = 10_000;
/// The upstream port and the server's local port of the outbound connection.
pub const UPSTREAM_PORT: u16 = 8080;
pub const OUTBOUND_LOCAL_PORT: u16 = 40_000;
/// New flows ([`TO_NEW_FLOW`]) come from client ports from here on.
pub const NEW_FLOW_FIRST_PORT: u16 = 20_000;

/// Record flags, bits 0-1: which connection the frame is addressed to. The harness writes the
/// Ethernet header (client MAC to server MAC, IPv4), the IPv4 addresses and the TCP ports, as
/// far as the frame holds them. 0: the frame is left as it is.
pub const ADDRESS_MASK: u8 = 0x03;
/// To the connection the client opened.
pub const TO_INBOUND: u8 = 0x01;
/// To the connection the server opened (as if it came from the upstream; as it is without one).
pub const TO_OUTBOUND: u8 = 0x02;
/// From a new client port (one more per such record) to the listen port.
pub const TO_NEW_FLOW: u8 = 0x03;
/// The TCP sequence and acknowledgment numbers are offsets from what the addressed connection
/// expects next (from the client) and sent last (from the server).
pub const RELATIVE_SEQ: u8 = 0x04;
/// Checksums are left as they are (otherwise IPv4, TCP and ICMP checksums are filled in).
pub const RAW_CHECKSUMS: u8 = 0x08;
/// The device does not ask the stack to verify TCP checksums (as with NIC offload).
pub const NO_TCP_CHECKSUM_CHECK: u8 = 0x10;
/// The application writes [`RESPONSE`] to each woken connection.
pub const APP_WRITES: u8 = 0x20;
/// The application closes each woken connection.
pub const APP_CLOSES: u8 = 0x40;
/// The application aborts each woken connection.
pub const APP_ABORTS: u8 = 0x80;

/// What the application writes when [`APP_WRITES`] is set.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

/// Config byte: outbound sockets, small buffers, keep-alive and time-out.
pub const CONFIG_OUTBOUND: u8 = 0x20;
pub const CONFIG_SMALL_BUFFERS: u8 = 0x40;
pub const CONFIG_TIMERS: u8 = 0x80;

/// Bytes of a record's header: flags, time, length.
pub const RECORD_HEADER: usize = 4;

const ETHERNET_HEADER: usize = 14;
/// The interface's random seed (it picks the server's initial sequence numbers).
const RANDOM_SEED: u64 = 0x6675_7a7a_6672_616d;
const CLIENT_ISS: u32 = 0x1000_0000;
const UPSTREAM_ISS: u32 = 0xffff_ff00;

/// A server over `device` at [`SERVER_IP`]/[`SERVER_PREFIX`] and [`SERVER_MAC`], with a fixed
/// random seed (so its initial sequence numbers repeat), its buffers in `memory`.
pub fn server<'m>(
    config: &ServerConfig,
    device: &mut MemoryDevice,
    memory: &'m mut SocketMemory,
) -> TcpServer<'m> {
    let mut iface_config = Config::new(HardwareAddress::Ethernet(SERVER_MAC));
    iface_config.random_seed = RANDOM_SEED;
    let mut iface = Interface::new(iface_config, device, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::Ipv4(SERVER_IP), SERVER_PREFIX))
            .expect("one address fits");
    });
    TcpServer::new(iface, config, memory)
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// One end of a connection as the harness sees it from the peer's side.
#[derive(Clone, Copy)]
struct Peer {
    /// The next sequence number the server expects from the peer.
    rcv_next: u32,
    /// The sequence number after the server's last segment to the peer.
    snd_next: u32,
}

struct Run<'m> {
    server: TcpServer<'m>,
    device: MemoryDevice,
    now_ms: i64,
    sockets: usize,
    outbound: usize,
    inbound_peer: Option<Peer>,
    outbound_peer: Option<Peer>,
    new_flows: u16,
    scratch: Box<[u8]>,
    frame: Vec<u8>,
}

/// Runs `data` (see the module's documentation for the format) through a lane's frame → TCP
/// path, panicking if an invariant breaks.
pub fn check_frames(data: &[u8]) {
    let (config_byte, mut rest) = data.split_first().map_or((0, data), |(&b, rest)| (b, rest));
    let mut memory = memory_for(config_byte);
    let mut run = Run::new(config_byte, &mut memory);
    while let [flags, time, len_hi, len_lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (frame, after) = tail.split_at(len);
        run.record(*flags, *time, frame);
        rest = after;
    }
}

/// The server configuration `config_byte` describes.
fn config(config_byte: u8) -> ServerConfig {
    let sockets = 1 + usize::from(config_byte & 0x1f);
    let outbound = if config_byte & CONFIG_OUTBOUND != 0 { 2 } else { 0 };
    let buffer = if config_byte & CONFIG_SMALL_BUFFERS != 0 {
        1024
    } else {
        16 * 1024
    };
    let timers = config_byte & CONFIG_TIMERS != 0;
    ServerConfig {
        listen_port: LISTEN_PORT,
        extra_listen_port: None,
        sockets,
        rx_buffer: buffer,
        tx_buffer: buffer,
        keep_alive: timers.then(|| Duration::from_millis(1000)),
        timeout: timers.then(|| Duration::from_millis(3000)),
        outbound_sockets: outbound,
        max_half_open: (sockets / 2).max(1),
        reset_when_full: false,
        isn_key: crate::isn::IsnKey([0x6675_7a7a, 0x6973_6e73]),
        // Cookies as the gateway has them by default (under pressure); their clock stands
        // still, so a run's cookies never expire.
        syn_cookies: SynCookieMode::Auto,
        cookie_key: CookieKey([0x636f_6f6b, 0x6965_7321]),
        monotonic_ns: || 10 << xgate_xdp_common::syncookie::COUNTER_SHIFT,
    }
}

/// The socket buffers of a run with `config_byte`.
fn memory_for(config_byte: u8) -> SocketMemory {
    SocketMemory::new(&config(config_byte))
}

impl<'m> Run<'m> {
    /// A run with `config_byte`, the server's buffers in `memory` (made by [`memory_for`]).
    fn new(config_byte: u8, memory: &'m mut SocketMemory) -> Run<'m> {
        let config = config(config_byte);
        let (sockets, outbound) = (config.sockets, config.outbound_sockets);
        let mut device = MemoryDevice::new();
        let server = server(&config, &mut device, memory);
        let mut run = Run {
            server,
            device,
            now_ms: 1,
            sockets,
            outbound,
            inbound_peer: None,
            outbound_peer: None,
            new_flows: 0,
            scratch: vec![0; 4096].into_boxed_slice(),
            frame: Vec::with_capacity(MTU),
        };
        run.set_up();
        run
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.now_ms)
    }

    /// Introduces the client by ARP, opens the inbound connection and (with outbound sockets)
    /// the outbound one, each with a real handshake.
    fn set_up(&mut self) {
        let arp = arp_request(CLIENT_IP);
        self.deliver(&arp);
        self.turn(0);
        let sent = self.device.take_sent();
        assert_eq!(sent.len(), 1, "one ARP reply");
        self.check_sent(&sent);

        // Inbound: SYN, SYN-ACK, ACK.
        let syn = tcp_frame(CLIENT_PORT, LISTEN_PORT, TcpControl::Syn, CLIENT_ISS, None);
        self.deliver(&syn);
        self.turn(0);
        let sent = self.device.take_sent();
        self.check_sent(&sent);
        let syn_ack = single_segment(&sent, CLIENT_PORT).expect("a SYN-ACK");
        assert!(syn_ack.syn && syn_ack.ack == Some(CLIENT_ISS.wrapping_add(1)));
        let ack = tcp_frame(
            CLIENT_PORT,
            LISTEN_PORT,
            TcpControl::None,
            CLIENT_ISS.wrapping_add(1),
            Some(syn_ack.seq.wrapping_add(1)),
        );
        self.deliver(&ack);
        self.turn(0);
        self.check_sent_now();
        assert_eq!(
            self.server.inbound_connected(),
            1,
            "the client's connection is open"
        );
        self.inbound_peer = Some(Peer {
            rcv_next: CLIENT_ISS.wrapping_add(1),
            snd_next: syn_ack.seq.wrapping_add(1),
        });

        if self.outbound == 0 {
            return;
        }
        // Outbound: the server's SYN, the upstream's SYN-ACK, the server's ACK.
        let upstream = std::net::SocketAddrV4::new(CLIENT_IP, UPSTREAM_PORT);
        let id = self
            .server
            .connect(upstream, OUTBOUND_LOCAL_PORT)
            .expect("an outbound socket is free");
        self.turn(0);
        let sent = self.device.take_sent();
        self.check_sent(&sent);
        let syn = single_segment(&sent, UPSTREAM_PORT).expect("the server's SYN");
        assert!(syn.syn && syn.ack.is_none());
        let syn_ack = tcp_frame(
            UPSTREAM_PORT,
            OUTBOUND_LOCAL_PORT,
            TcpControl::Syn,
            UPSTREAM_ISS,
            Some(syn.seq.wrapping_add(1)),
        );
        self.deliver(&syn_ack);
        self.turn(0);
        self.check_sent_now();
        assert_eq!(self.server.socket(id).state(), tcp::State::Established);
        self.outbound_peer = Some(Peer {
            rcv_next: UPSTREAM_ISS.wrapping_add(1),
            snd_next: syn.seq.wrapping_add(1),
        });
        self.check_counts();
    }

    /// One record: the clock moves, the frame is rewritten, delivered and served.
    fn record(&mut self, flags: u8, time: u8, frame: &[u8]) {
        self.now_ms += i64::from(time) * i64::from(time);
        let mut buffer = std::mem::take(&mut self.frame);
        buffer.clear();
        buffer.extend_from_slice(frame);
        let peer = self.address(flags, &mut buffer);
        let mut advance = None;
        if let (Some(which), true) = (peer, flags & RELATIVE_SEQ != 0) {
            advance = self.relative_seq(which, &mut buffer);
        }
        if flags & RAW_CHECKSUMS == 0 {
            fill_checksums(&mut buffer);
        }
        self.device
            .set_verify_tcp_checksums(flags & NO_TCP_CHECKSUM_CHECK == 0);
        self.deliver(&buffer);
        if let (Some(which), Some(len)) = (peer, advance) {
            if let Some(peer) = self.peer_mut(which) {
                peer.rcv_next = peer.rcv_next.wrapping_add(len);
            }
        }
        self.frame = buffer;
        self.turn(flags);
        self.check_sent_now();
        self.check_counts();
        self.check_roles();
    }

    /// Writes the addressing `flags` ask for; returns the connection's peer, if it has one.
    fn address(&mut self, flags: u8, frame: &mut [u8]) -> Option<bool> {
        let (peer, ports) = match flags & ADDRESS_MASK {
            TO_INBOUND => (Some(true), (CLIENT_PORT, LISTEN_PORT)),
            TO_OUTBOUND if self.outbound > 0 => (Some(false), (UPSTREAM_PORT, OUTBOUND_LOCAL_PORT)),
            TO_NEW_FLOW => {
                self.new_flows = self.new_flows.wrapping_add(1);
                (None, (NEW_FLOW_FIRST_PORT + self.new_flows % 1000, LISTEN_PORT))
            }
            _ => return None,
        };
        if let Some(header) = frame.get_mut(..ETHERNET_HEADER) {
            header[0..6].copy_from_slice(&SERVER_MAC.0);
            header[6..12].copy_from_slice(&CLIENT_MAC.0);
            header[12..14].copy_from_slice(&[0x08, 0x00]);
        }
        if let Some(addresses) = frame.get_mut(ETHERNET_HEADER + 12..ETHERNET_HEADER + 20) {
            addresses[..4].copy_from_slice(&CLIENT_IP.octets());
            addresses[4..].copy_from_slice(&SERVER_IP.octets());
        }
        if let Some(tcp) = tcp_header_mut(frame, 4) {
            tcp[0..2].copy_from_slice(&ports.0.to_be_bytes());
            tcp[2..4].copy_from_slice(&ports.1.to_be_bytes());
        }
        peer
    }

    fn peer_mut(&mut self, inbound: bool) -> Option<&mut Peer> {
        if inbound {
            self.inbound_peer.as_mut()
        } else {
            self.outbound_peer.as_mut()
        }
    }

    /// Adds the connection's expected numbers to the segment's; returns how far the peer's
    /// sequence moves if the segment starts at the expected number.
    fn relative_seq(&mut self, inbound: bool, frame: &mut [u8]) -> Option<u32> {
        let peer = *self.peer_mut(inbound)?;
        let total = tcp_segment_len(frame);
        let tcp = tcp_header_mut(frame, 14)?;
        let seq_offset = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let ack_offset = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
        tcp[4..8].copy_from_slice(&peer.rcv_next.wrapping_add(seq_offset).to_be_bytes());
        tcp[8..12].copy_from_slice(&peer.snd_next.wrapping_add(ack_offset).to_be_bytes());
        let flags = tcp[13];
        (seq_offset == 0).then(|| total.unwrap_or(0) + u32::from(flags & 0x01) + u32::from(flags & 0x02 != 0))
    }

    /// Classifies `frame` and gives it to the server, as a lane does.
    fn deliver(&mut self, frame: &[u8]) {
        let kind = classify(frame);
        check_classify(frame, &kind);
        self.ingress(frame, &kind);
        if kind == FrameKind::Arp && arp_target_ip(frame) == Some(SERVER_IP.octets()) {
            // The copy other lanes are given.
            if let Some(copy) = arp_request_as_reply(frame) {
                self.ingress(&copy, &FrameKind::Arp);
            }
            self.server.neighbours_changed();
        }
    }

    fn ingress(&mut self, frame: &[u8], kind: &FrameKind) {
        self.device.put_rx(frame);
        let now = self.now();
        let took = self.server.ingress(now, &mut self.device, kind);
        assert!(
            took && !self.device.has_frame(),
            "the stack did not take a {kind:?} frame"
        );
    }

    /// The application's turn (as `flags` say), then egress.
    fn turn(&mut self, flags: u8) {
        while let Some(id) = self.server.next_woken() {
            assert!(
                self.server.is_connected(id),
                "woken connection {id} is not connected"
            );
            let socket = self.server.socket(id);
            while let Ok(n) = socket.recv_slice(&mut self.scratch) {
                if n == 0 {
                    break;
                }
            }
            if flags & APP_WRITES != 0 && socket.may_send() {
                let _ = socket.send_slice(RESPONSE);
            }
            if flags & APP_CLOSES != 0 {
                socket.close();
            }
            if flags & APP_ABORTS != 0 {
                socket.abort();
            }
            self.server.touch(id);
            self.server.settle(id);
        }
        let now = self.now();
        self.server.egress(now, &mut self.device);
        let _ = self.server.poll_delay(now);
    }

    fn check_sent_now(&mut self) {
        let sent = self.device.take_sent();
        self.check_sent(&sent);
    }

    /// Every sent frame is well formed; TCP segments to a tracked connection update it.
    fn check_sent(&mut self, sent: &[Vec<u8>]) {
        for frame in sent {
            if let Some(segment) = check_sent_frame(frame) {
                let which = match (segment.dst_port, segment.src_port) {
                    (CLIENT_PORT, LISTEN_PORT) => true,
                    (UPSTREAM_PORT, OUTBOUND_LOCAL_PORT) => false,
                    _ => continue,
                };
                if let Some(peer) = self.peer_mut(which) {
                    let end = segment.seq.wrapping_add(segment.len);
                    if end.wrapping_sub(peer.snd_next) as i32 > 0 {
                        peer.snd_next = end;
                    }
                    if let Some(ack) = segment.ack {
                        peer.rcv_next = ack;
                    }
                }
            }
        }
    }

    fn check_counts(&self) {
        let total = self.sockets + self.outbound;
        let connected = self.server.connected();
        assert!(connected <= total, "{connected} connected, {total} sockets");
        let inbound = self.server.inbound_connected();
        assert!(
            inbound <= self.sockets,
            "{inbound} inbound connected, {} sockets",
            self.sockets
        );
        let by_socket = (0..total as ConnId)
            .filter(|&id| self.server.is_connected(id))
            .count();
        assert_eq!(by_socket, connected, "sockets connected vs connected count");
        let half_open = self.server.half_open();
        assert!(
            half_open <= (self.sockets / 2).max(1),
            "{half_open} half-open connections, over the bound"
        );
        assert_eq!(
            self.server.outbound_free() + (connected - inbound),
            self.outbound,
            "outbound sockets are free or connected"
        );
    }

    /// A socket without a connection is free (closed, or in TIME-WAIT when it was left so) or
    /// listening, and only inbound sockets listen, at most one per shard.
    fn check_roles(&mut self) {
        let mut listening = vec![0usize; self.sockets.div_ceil(SHARD_SIZE) + 1];
        let mut syn_received = 0;
        for id in 0..(self.sockets + self.outbound) as ConnId {
            if self.server.is_connected(id) {
                syn_received += usize::from(self.server.socket(id).state() == tcp::State::SynReceived);
                continue;
            }
            let state = self.server.socket(id).state();
            match state {
                tcp::State::Closed | tcp::State::TimeWait => {}
                tcp::State::Listen if (id as usize) < self.sockets => {
                    listening[id as usize / SHARD_SIZE] += 1;
                }
                _ => panic!("socket {id} has no connection but is in state {state}"),
            }
        }
        assert!(
            listening.iter().all(|&n| n <= 1),
            "more than one listener in a shard: {listening:?}"
        );
        // The server's count may still include a connection a timer ended since its last
        // segment (until the application settles it), never miss one.
        assert!(
            self.server.half_open() >= syn_received,
            "{syn_received} sockets in SYN-RECEIVED, {} counted half-open",
            self.server.half_open()
        );
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::wire::{Ipv4Packet, TcpPacket};

    use super::*;
    use crate::tcp_server::{ConnectError, Settled, EVICTABLE_AFTER};

    /// Whether `sent` holds a RST to the client's port `port`.
    fn rst_to(sent: &[Vec<u8>], port: u16) -> bool {
        sent.iter().any(|frame| {
            let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER..]);
            let tcp = TcpPacket::new_unchecked(ip.payload());
            tcp.dst_port() == port && tcp.rst()
        })
    }

    #[test]
    fn set_up_opens_both_connections() {
        let mut memory = memory_for(CONFIG_OUTBOUND | 3);
        let run = Run::new(CONFIG_OUTBOUND | 3, &mut memory);
        assert_eq!(run.server.connected(), 2);
        assert_eq!(run.server.inbound_connected(), 1);
        assert!(run.inbound_peer.is_some() && run.outbound_peer.is_some());
    }

    #[test]
    fn empty_and_short_inputs_only_set_up() {
        for data in [&[][..], &[0], &[0xff, 1, 2, 3]] {
            check_frames(data);
        }
    }

    #[test]
    fn relative_data_reaches_the_application_and_is_acknowledged() {
        let mut memory = memory_for(0);
        let mut run = Run::new(0, &mut memory);
        let before = run.inbound_peer.unwrap();
        // An empty IPv4/TCP skeleton with 5 bytes of data: addresses, numbers and checksums are
        // the harness's.
        let mut frame = vec![0u8; ETHERNET_HEADER + 20 + 20 + 5];
        frame[ETHERNET_HEADER] = 0x45;
        frame[ETHERNET_HEADER + 2..ETHERNET_HEADER + 4].copy_from_slice(&45u16.to_be_bytes());
        frame[ETHERNET_HEADER + 8] = 64;
        frame[ETHERNET_HEADER + 9] = 6;
        let tcp = ETHERNET_HEADER + 20;
        frame[tcp + 12] = 5 << 4;
        frame[tcp + 13] = 0x18;
        frame[tcp + 14..tcp + 16].copy_from_slice(&u16::MAX.to_be_bytes());
        frame[tcp + 20..].copy_from_slice(b"hello");
        run.record(TO_INBOUND | RELATIVE_SEQ | APP_WRITES, 0, &frame);
        let after = run.inbound_peer.unwrap();
        assert_eq!(after.rcv_next, before.rcv_next.wrapping_add(5));
        assert_eq!(
            after.snd_next,
            before.snd_next.wrapping_add(RESPONSE.len() as u32)
        );
    }

    /// The server's SYN-ACK and its own SYN carry the keyed ISNs of their 4-tuples (RFC 6528),
    /// not numbers from smoltcp's generator.
    #[test]
    fn handshakes_start_at_the_keyed_isn_of_their_tuple() {
        use crate::isn::{IsnGenerator, IsnKey};
        let mut memory = memory_for(CONFIG_OUTBOUND);
        let run = Run::new(CONFIG_OUTBOUND, &mut memory);
        let isn = IsnGenerator::new(IsnKey([0x6675_7a7a, 0x6973_6e73]));
        let clock_us = (run.now_ms * 1000) as u64;
        let server = |port: u16| std::net::SocketAddrV4::new(SERVER_IP, port);
        let client = |port: u16| std::net::SocketAddrV4::new(CLIENT_IP, port);
        let accepted = run.inbound_peer.unwrap().snd_next.wrapping_sub(1);
        assert_eq!(
            accepted,
            isn.isn(server(LISTEN_PORT), client(CLIENT_PORT), clock_us)
        );
        let opened = run.outbound_peer.unwrap().snd_next.wrapping_sub(1);
        assert_eq!(
            opened,
            isn.isn(server(OUTBOUND_LOCAL_PORT), client(UPSTREAM_PORT), clock_us)
        );
    }

    /// With every socket held by an established connection, a new SYN is dropped unanswered
    /// (counted), as a full listen backlog drops it: the client sends it again and is served once
    /// a socket is free. Configured to, the server refuses it with a RST instead.
    #[test]
    fn a_syn_that_finds_every_socket_taken_is_dropped_and_served_once_one_frees() {
        // One socket, held by the set-up's established connection.
        let mut memory = memory_for(0);
        let mut run = Run::new(0, &mut memory);
        let syn = tcp_frame(30_000, LISTEN_PORT, TcpControl::Syn, CLIENT_ISS, None);
        run.deliver(&syn);
        run.turn(0);
        let sent = run.device.take_sent();
        assert!(
            sent.is_empty(),
            "no answer to a SYN at a full pool: {}",
            sent.len()
        );
        assert_eq!(run.server.stats().syn_dropped_full, 1);
        assert_eq!(run.server.stats().refused, 0);

        run.server.set_reset_when_full(true);
        run.deliver(&syn);
        run.turn(0);
        let sent = run.device.take_sent();
        assert!(
            rst_to(&sent, 30_000),
            "configured to, a full pool refuses with a RST"
        );
        assert_eq!(run.server.stats().refused, 1);
        run.server.set_reset_when_full(false);

        // The established connection ends; the client's SYN, sent again, is answered.
        let peer = run.inbound_peer.unwrap();
        let ack = tcp_frame(
            CLIENT_PORT,
            LISTEN_PORT,
            TcpControl::None,
            peer.rcv_next,
            Some(peer.snd_next),
        );
        run.deliver(&ack);
        run.turn(APP_ABORTS);
        run.device.take_sent();
        run.deliver(&syn);
        run.turn(0);
        let sent = run.device.take_sent();
        let syn_ack = single_segment(&sent, 30_000).expect("a SYN-ACK once a socket is free");
        assert!(syn_ack.syn);
        assert_eq!(run.server.stats().syn_dropped_full, 1);
        run.check_counts();
        run.check_roles();
    }

    /// A freed outbound socket connects again only after its shard's egress has run: the RST of
    /// its aborted connection goes out first, and is not lost to the next connect.
    #[test]
    fn a_freed_outbound_socket_sends_its_last_segment_before_it_connects_again() {
        // Two outbound sockets; the set-up's connection holds one.
        let mut memory = memory_for(CONFIG_OUTBOUND);
        let mut run = Run::new(CONFIG_OUTBOUND, &mut memory);
        let upstream = |port: u16| std::net::SocketAddrV4::new(CLIENT_IP, port);
        assert!(run.server.can_connect(), "a socket never used connects at once");
        let id = run
            .server
            .connect(upstream(8081), 40_001)
            .expect("the second socket");
        run.turn(0);
        run.device.take_sent();
        run.server.abort(id);
        while run.server.next_woken().is_some() {}
        assert_eq!(run.server.settle(id), Settled::Closed);
        assert_eq!(run.server.outbound_free(), 1);
        assert!(!run.server.can_connect(), "its RST has not gone out yet");
        assert_eq!(
            run.server.connect(upstream(8082), 40_002),
            Err(ConnectError::NoFreeSocket)
        );
        run.turn(0);
        let sent = run.device.take_sent();
        assert!(rst_to(&sent, 8081), "the aborted connection's RST went out");
        assert!(run.server.can_connect());
        run.server
            .connect(upstream(8082), 40_002)
            .expect("the socket connects once its RST is out");
        run.check_counts();
    }

    /// At the half-open bound, a new SYN evicts the oldest half-open connection once it has
    /// waited `EVICTABLE_AFTER` (its peer gets a RST) and is accepted; while all are younger, a
    /// new SYN is answered with a SYN cookie and takes no socket (without cookies it is dropped
    /// unanswered: `tcp_server::cookies`' tests).
    #[test]
    fn at_the_half_open_bound_the_oldest_makes_room_and_young_ones_are_kept() {
        // Eight sockets (bound: four), one held by the set-up's connection.
        let mut memory = memory_for(7);
        let mut run = Run::new(7, &mut memory);
        let syn = |port: u16| tcp_frame(port, LISTEN_PORT, TcpControl::Syn, CLIENT_ISS, None);
        let answer_to = |run: &mut Run, port: u16| {
            let sent = run.device.take_sent();
            (single_segment(&sent, port).map(|s| s.syn), rst_to(&sent, port))
        };
        for port in 30_000..30_004 {
            run.deliver(&syn(port));
            run.turn(0);
            assert_eq!(answer_to(&mut run, port), (Some(true), false), "a SYN-ACK");
        }
        assert_eq!(run.server.half_open(), 4);
        // All four are young: the fifth SYN is answered with a SYN cookie (the harness has
        // cookies `auto`, as the gateway does by default), and takes no socket.
        run.deliver(&syn(30_004));
        run.turn(0);
        assert_eq!(answer_to(&mut run, 30_004), (Some(true), false));
        assert_eq!(run.server.stats().syn_cookies_sent, 1);
        assert_eq!(run.server.stats().syn_deferred, 0);
        assert_eq!(run.server.inbound_connected(), 5);
        // Later, the fifth SYN again: the oldest (port 30,000) is reset, the new one accepted.
        run.now_ms += EVICTABLE_AFTER.total_millis() as i64;
        run.deliver(&syn(30_004));
        run.turn(0);
        let sent = run.device.take_sent();
        assert!(rst_to(&sent, 30_000), "the oldest half-open connection is reset");
        let syn_ack = single_segment(&sent, 30_004).expect("the new SYN is answered");
        assert!(syn_ack.syn);
        assert_eq!(run.server.half_open(), 4);
        assert_eq!(run.server.stats().half_open_evicted, 1);
        assert_eq!(run.server.inbound_connected(), 5);
        run.check_counts();
        run.check_roles();
    }

    /// A RST sends a half-open socket back to LISTEN. Before the application settles it, a new
    /// SYN in the same receive batch must still go to the shard's designated listener, so that
    /// the new flow is in the table and its handshake completes.
    #[test]
    fn a_socket_reset_in_syn_received_takes_no_new_syn() {
        let mut memory = memory_for(7);
        let mut run = Run::new(7, &mut memory);
        run.deliver(&tcp_frame(31_000, LISTEN_PORT, TcpControl::Syn, CLIENT_ISS, None));
        run.turn(0);
        run.device.take_sent();
        assert_eq!(run.server.half_open(), 1);
        // The RST and the next client's SYN arrive together.
        run.deliver(&tcp_frame(
            31_000,
            LISTEN_PORT,
            TcpControl::Rst,
            CLIENT_ISS.wrapping_add(1),
            None,
        ));
        run.deliver(&tcp_frame(31_001, LISTEN_PORT, TcpControl::Syn, CLIENT_ISS, None));
        run.turn(0);
        let sent = run.device.take_sent();
        let syn_ack = single_segment(&sent, 31_001).expect("a SYN-ACK");
        assert_eq!(run.server.half_open(), 1, "only the new client is half-open");
        run.deliver(&tcp_frame(
            31_001,
            LISTEN_PORT,
            TcpControl::None,
            CLIENT_ISS.wrapping_add(1),
            Some(syn_ack.seq.wrapping_add(1)),
        ));
        run.turn(0);
        let sent = run.device.take_sent();
        assert!(!rst_to(&sent, 31_001), "the new client's ACK was refused");
        assert_eq!(run.server.half_open(), 0);
        assert_eq!(run.server.inbound_connected(), 2, "the set-up's and the new one");
        run.check_roles();
    }

    /// With one socket, the client's connection holds it, so its shard has no listener and the
    /// socket, once free, must listen again. Listening forgets the connection, so the RST of an
    /// abort has to go out first: aborted, settled and freed in one turn, the peer still gets it,
    /// and the socket then takes the next connect.
    #[test]
    fn an_aborted_connection_gets_its_rst_before_its_socket_listens_again() {
        let mut memory = memory_for(0);
        let mut run = Run::new(0, &mut memory);
        let peer = run.inbound_peer.unwrap();
        let ack = tcp_frame(
            CLIENT_PORT,
            LISTEN_PORT,
            TcpControl::None,
            peer.rcv_next,
            Some(peer.snd_next),
        );
        run.deliver(&ack);
        run.turn(APP_ABORTS);
        let sent = run.device.take_sent();
        let rst = single_segment(&sent, CLIENT_PORT).expect("a segment to the aborted peer");
        assert!(
            rst_to(&sent, CLIENT_PORT) && rst.seq == peer.snd_next,
            "not the RST: {rst:?}"
        );
        assert_eq!(run.server.connected(), 0);
        run.check_roles();

        let syn = tcp_frame(CLIENT_PORT + 1, LISTEN_PORT, TcpControl::Syn, CLIENT_ISS, None);
        run.deliver(&syn);
        run.turn(0);
        let sent = run.device.take_sent();
        let syn_ack = single_segment(&sent, CLIENT_PORT + 1).expect("a SYN-ACK");
        assert!(syn_ack.syn && syn_ack.ack == Some(CLIENT_ISS.wrapping_add(1)));
        assert_eq!(run.server.inbound_connected(), 1);
    }
}
