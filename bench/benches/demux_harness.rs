//! The in-process harness behind xgate's per-packet TCP cost benchmark (`benches/demux.rs`) and
//! its instruction-count example (`examples/per_packet_cost.rs`): one lane's [`TcpServer`] over an
//! in-memory device, with N client connections established by hand-made frames, and the measured
//! unit, [`Harness::one_packet`].
//!
//! This file owns:
//! - [`MemoryDevice`]: a `smoltcp::phy::Device` with one reusable receive buffer (a frame is put
//!   in, the stack takes it out) and one reusable transmit buffer that keeps the last frame the
//!   stack sent and a count of sent frames. Nothing is allocated per frame.
//! - [`Harness`]: builds the server (10.0.0.1/24, 02:00:00:00:00:01, port 80, `connections + 64`
//!   sockets of 16 KiB buffers in a [`SocketMemory`] the caller owns ([`Harness::memory`]), no
//!   keep-alive, no time-out, delayed or immediate ACKs: [`Acks`]),
//!   introduces the client by an ARP request and opens every connection with a real handshake
//!   (SYN, the server's SYN-ACK read back from the device, ACK). Frames are built with smoltcp's
//!   `wire` representations with correct checksums, so the stack verifies them as it would on a
//!   NIC.
//!
//! The measured unit is one client data segment of one byte, on the next connection in
//! round-robin order: building the frame into the device, classifying it
//! (`xgate_userstack::wire::classify`), `TcpServer::ingress`, the application's turn (every woken
//! connection is read with `recv_slice`, touched and settled, as xgate's lane does), then
//! `TcpServer::egress`. Time for smoltcp is a fake clock that advances 1 µs per packet, so a run is
//! deterministic: the same frames, in the same order, at the same stack times.
//!
//! Round robin is the worst order for the server's caches (every packet lands on a different
//! socket; at 10,000 connections the working set is far bigger than L2), which is the point: the
//! question is whether the cost of a packet depends on how many connections the lane holds.
//!
//! What the protocol does per packet is the same at every N except the ACKs ([`Acks`]). With
//! smoltcp's delayed ACK (10 ms, or more than one MSS unacknowledged; xgate's lanes keep it) and
//! the 1 µs clock, each of 10 connections gets 1,000 one-byte segments per 10 ms, so the server
//! sends about one ACK per 1,000 packets; each of 10,000 connections gets one segment per 10 ms,
//! its delayed-ACK timer is due when its next segment comes, and the server ACKs every second
//! packet. [`Acks::EverySegment`] makes it one ACK per packet at every N. [`Harness::frames_sent`]
//! and [`Harness::served`] (woken connections the application was handed) let a report tell
//! those costs from the lookup's.

use smoltcp::{
    iface::{Config, Interface},
    phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken},
    socket::tcp,
    time::Instant,
    wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
        HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Packet, TcpControl, TcpPacket,
        TcpRepr, TcpSeqNumber,
    },
};
use xgate_userstack::{
    tcp_server::{ConnId, CookieKey, ServerConfig, Settled, SocketMemory, SynCookieMode, TcpServer},
    wire::{self, classify, FrameEnds, FrameKind},
};

/// Largest Ethernet frame (without FCS) the device carries.
pub const MTU: usize = 1514;
/// The server's address, prefix and MAC.
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const SERVER_PREFIX: u8 = 24;
pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
/// The TCP port the server listens on.
pub const LISTEN_PORT: u16 = 80;
/// The first client address (further ones follow when one runs out of ports) and the MAC all
/// client addresses share.
pub const FIRST_CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
/// The first client port; connection i of an address uses `FIRST_CLIENT_PORT + i`.
pub const FIRST_CLIENT_PORT: u16 = 10_000;
/// Connections per client address.
pub const PORTS_PER_CLIENT_IP: usize = 55_000;
/// Client addresses at most (smoltcp's neighbour cache holds 8 entries).
pub const MAX_CLIENT_IPS: usize = 4;
/// Spare sockets beyond the connections, as a lane keeps free for new connects.
pub const SPARE_SOCKETS: usize = 64;
/// Bytes of each socket's receive and transmit buffer.
pub const SOCKET_BUFFER: usize = 16 * 1024;
/// The MSS the client announces.
pub const CLIENT_MSS: u16 = 1460;
/// smoltcp's interface random seed (it picks the server's initial sequence numbers).
pub const RANDOM_SEED: u64 = 0x78_67_61_74_65_64_65_6d;
/// [`Harness::one_packet`] checks delivery every this many packets.
pub const CHECK_EVERY: u64 = 1024;

const ETHERNET_HEADER: usize = 14;

// ---------------------------------------------------------------------------------------------
// Device
// ---------------------------------------------------------------------------------------------

/// Where transmit tokens write: the last frame sent and how many frames were sent.
pub struct TxSink {
    frame: Box<[u8]>,
    len: usize,
    frames: u64,
}

/// An in-memory Ethernet device: one frame in, the last frame out.
pub struct MemoryDevice {
    rx: Box<[u8]>,
    rx_len: usize,
    has_frame: bool,
    tx: TxSink,
}

pub struct MemoryRxToken<'a> {
    frame: &'a [u8],
}

pub struct MemoryTxToken<'a> {
    sink: &'a mut TxSink,
}

impl RxToken for MemoryRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

impl TxToken for MemoryTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        assert!(
            len <= MTU,
            "the stack sent a {len}-byte frame, more than the {MTU}-byte MTU"
        );
        let result = f(&mut self.sink.frame[..len]);
        self.sink.len = len;
        self.sink.frames += 1;
        result
    }
}

impl Default for MemoryDevice {
    fn default() -> Self {
        MemoryDevice::new()
    }
}

impl MemoryDevice {
    pub fn new() -> MemoryDevice {
        MemoryDevice {
            rx: vec![0; MTU].into_boxed_slice(),
            rx_len: 0,
            has_frame: false,
            tx: TxSink {
                frame: vec![0; MTU].into_boxed_slice(),
                len: 0,
                frames: 0,
            },
        }
    }

    /// Puts a frame in the receive buffer: `write` fills it and returns its length.
    pub fn put_rx(&mut self, write: impl FnOnce(&mut [u8]) -> usize) {
        assert!(!self.has_frame, "the stack did not take the previous frame");
        self.rx_len = write(&mut self.rx);
        self.has_frame = true;
    }

    /// The frame waiting in the receive buffer (or the last one, once taken).
    pub fn rx_frame(&self) -> &[u8] {
        &self.rx[..self.rx_len]
    }

    /// Whether a frame waits for the stack.
    pub fn has_frame(&self) -> bool {
        self.has_frame
    }

    /// The last frame the stack sent.
    pub fn last_sent(&self) -> &[u8] {
        &self.tx.frame[..self.tx.len]
    }

    /// Frames the stack sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.tx.frames
    }
}

impl Device for MemoryDevice {
    type RxToken<'a> = MemoryRxToken<'a>;
    type TxToken<'a> = MemoryTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(MemoryRxToken<'_>, MemoryTxToken<'_>)> {
        if !self.has_frame {
            return None;
        }
        self.has_frame = false;
        Some((
            MemoryRxToken {
                frame: &self.rx[..self.rx_len],
            },
            MemoryTxToken { sink: &mut self.tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<MemoryTxToken<'_>> {
        Some(MemoryTxToken { sink: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// Writes an Ethernet + IPv4 + TCP frame from `client_ip` to the server into `buffer`, checksums
/// filled; returns its length.
fn write_tcp_frame(buffer: &mut [u8], client_ip: Ipv4Address, tcp: &TcpRepr<'_>) -> usize {
    let ends = FrameEnds {
        src_mac: CLIENT_MAC,
        dst_mac: SERVER_MAC,
        src_ip: client_ip,
        dst_ip: SERVER_IP,
    };
    wire::write_tcp_frame(buffer, &ends, tcp)
}

/// Writes a broadcast ARP request from `client_ip` for the server's address; returns its length.
fn write_arp_request(buffer: &mut [u8], client_ip: Ipv4Address) -> usize {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: CLIENT_MAC,
        source_protocol_addr: client_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: SERVER_IP,
    };
    let len = ETHERNET_HEADER + arp.buffer_len();
    let mut frame = EthernetFrame::new_unchecked(&mut buffer[..len]);
    EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    len
}

/// A TCP segment from a client to the server's port.
fn segment<'a>(
    port: u16,
    control: TcpControl,
    seq: TcpSeqNumber,
    ack: Option<TcpSeqNumber>,
    payload: &'a [u8],
) -> TcpRepr<'a> {
    TcpRepr {
        src_port: port,
        dst_port: LISTEN_PORT,
        control,
        seq_number: seq,
        ack_number: ack,
        window_len: u16::MAX,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(CLIENT_MSS),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    }
}

/// What the server sent: (sequence number, acknowledgement number, SYN, payload bytes) of a TCP
/// segment to `client_ip:port`. Panics with `context` if the frame is anything else.
fn parse_server_segment(frame: &[u8], client_ip: Ipv4Address, port: u16, context: &str) -> TcpReply {
    let ethernet = EthernetFrame::new_checked(frame)
        .unwrap_or_else(|e| panic!("{context}: the server sent a frame that is not Ethernet: {e}"));
    assert_eq!(
        ethernet.ethertype(),
        EthernetProtocol::Ipv4,
        "{context}: the server sent {:?}, not IPv4 (does it know the client's MAC?)",
        ethernet.ethertype()
    );
    assert_eq!(
        ethernet.dst_addr(),
        CLIENT_MAC,
        "{context}: sent to the wrong MAC"
    );
    let ip = Ipv4Packet::new_checked(ethernet.payload())
        .unwrap_or_else(|e| panic!("{context}: the server sent a malformed IPv4 packet: {e}"));
    assert!(
        ip.verify_checksum(),
        "{context}: bad IPv4 checksum from the server"
    );
    assert_eq!(
        ip.next_header(),
        IpProtocol::Tcp,
        "{context}: the server sent no TCP"
    );
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (SERVER_IP, client_ip),
        "{context}: addressed wrongly"
    );
    let tcp = TcpPacket::new_checked(ip.payload())
        .unwrap_or_else(|e| panic!("{context}: the server sent a malformed TCP segment: {e}"));
    assert!(
        tcp.verify_checksum(&IpAddress::Ipv4(SERVER_IP), &IpAddress::Ipv4(client_ip)),
        "{context}: bad TCP checksum from the server"
    );
    assert_eq!(
        (tcp.src_port(), tcp.dst_port()),
        (LISTEN_PORT, port),
        "{context}: the server's segment is for another connection"
    );
    assert!(!tcp.rst(), "{context}: the server reset the connection");
    TcpReply {
        seq: tcp.seq_number(),
        ack: tcp.ack().then(|| tcp.ack_number()),
        syn: tcp.syn(),
        payload: tcp.payload().len(),
    }
}

struct TcpReply {
    seq: TcpSeqNumber,
    ack: Option<TcpSeqNumber>,
    syn: bool,
    payload: usize,
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// When the server acknowledges data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// smoltcp's default, which xgate's lanes keep: an ACK waits up to 10 ms, or until more
    /// than one MSS is unacknowledged.
    Delayed,
    /// Every data segment is acknowledged at once (`set_ack_delay(None)` once the connection is
    /// established): the protocol's work per packet is then the same at every connection count.
    EverySegment,
}

/// The client side of one connection.
#[derive(Clone, Copy)]
struct Client {
    ip: Ipv4Address,
    port: u16,
    /// The next sequence number the client sends.
    seq: TcpSeqNumber,
    /// The server's next sequence number (what the client acknowledges).
    ack: TcpSeqNumber,
    /// The server's connection.
    id: ConnId,
}

/// A [`TcpServer`] with N established connections and a client that feeds them.
pub struct Harness<'m> {
    server: TcpServer<'m>,
    device: MemoryDevice,
    clients: Vec<Client>,
    /// The next client in round-robin order.
    next: usize,
    /// The fake clock, in µs.
    clock: i64,
    packets: u64,
    /// Bytes the application read in the measured loop, and the last one.
    received: u64,
    last_byte: u8,
    scratch: [u8; 64],
    /// Woken connections the application served (set-up included).
    served: u64,
    acks: Acks,
    /// Frames the server had sent when the set-up was done.
    frames_after_setup: u64,
}

/// The server's configuration for `connections` connections.
fn server_config(connections: usize) -> ServerConfig {
    ServerConfig {
        listen_port: LISTEN_PORT,
        extra_listen_port: None,
        sockets: connections + SPARE_SOCKETS,
        rx_buffer: SOCKET_BUFFER,
        tx_buffer: SOCKET_BUFFER,
        keep_alive: None,
        timeout: None,
        outbound_sockets: 0,
        max_half_open: 0,
        reset_when_full: false,
        isn_key: xgate_userstack::isn::IsnKey([1, 2]),
        syn_cookies: SynCookieMode::Never,
        cookie_key: CookieKey([3, 4]),
        monotonic_ns: || 0,
    }
}

impl<'m> Harness<'m> {
    /// The socket buffers of a harness with `connections` connections.
    pub fn memory(connections: usize) -> SocketMemory {
        SocketMemory::new(&server_config(connections))
    }

    /// A server with `connections` established connections, its socket buffers in `memory`
    /// (from [`Harness::memory`] with the same count); panics if any step of the set-up does not
    /// go as TCP says it should.
    pub fn new(connections: usize, acks: Acks, memory: &'m mut SocketMemory) -> Harness<'m> {
        assert!(connections > 0, "at least one connection");
        assert!(
            connections <= PORTS_PER_CLIENT_IP * MAX_CLIENT_IPS,
            "at most {} connections ({MAX_CLIENT_IPS} client addresses of {PORTS_PER_CLIENT_IP} \
             ports)",
            PORTS_PER_CLIENT_IP * MAX_CLIENT_IPS
        );
        let mut device = MemoryDevice::new();
        let mut config = Config::new(HardwareAddress::Ethernet(SERVER_MAC));
        config.random_seed = RANDOM_SEED;
        let mut iface = Interface::new(config, &mut device, Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(SERVER_IP), SERVER_PREFIX))
                .expect("one address fits");
        });
        let server = TcpServer::new(iface, &server_config(connections), memory);
        let mut harness = Harness {
            server,
            device,
            clients: Vec::with_capacity(connections),
            next: 0,
            clock: 0,
            packets: 0,
            received: 0,
            last_byte: 0,
            scratch: [0; 64],
            frames_after_setup: 0,
            served: 0,
            acks,
        };
        for index in 0..connections {
            let ip_index = index / PORTS_PER_CLIENT_IP;
            let ip = Ipv4Address::from_bits(FIRST_CLIENT_IP.to_bits() + ip_index as u32);
            if index % PORTS_PER_CLIENT_IP == 0 {
                harness.introduce(ip);
            }
            let port = FIRST_CLIENT_PORT + (index % PORTS_PER_CLIENT_IP) as u16;
            harness.connect(ip, port, index);
        }
        assert_eq!(
            harness.server.connected(),
            connections,
            "the server should hold every connection the client opened"
        );
        harness.frames_after_setup = harness.device.frames_sent();
        harness
    }

    /// Connections the harness opened.
    pub fn connections(&self) -> usize {
        self.clients.len()
    }

    /// Packets [`Harness::one_packet`] sent.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Frames the server sent, set-up included.
    pub fn frames_sent(&self) -> u64 {
        self.device.frames_sent()
    }

    /// Times the application was handed a woken connection (`TcpServer::next_woken`), set-up
    /// included. Ideally one per packet: only the connection the packet was for.
    pub fn served(&self) -> u64 {
        self.served
    }

    fn tick(&mut self) -> Instant {
        self.clock += 1;
        Instant::from_micros(self.clock)
    }

    /// Hands the frame in the device to the server, as a lane does: classify, then ingress.
    fn deliver(&mut self, now: Instant) {
        let kind = classify(self.device.rx_frame());
        let took = self.server.ingress(now, &mut self.device, &kind);
        assert!(
            took && !self.device.has_frame(),
            "the stack did not take a {kind:?} frame"
        );
    }

    /// The application's turn: every woken connection is read and settled; the ids of the woken
    /// connections go to `seen`.
    fn serve(&mut self, mut seen: impl FnMut(ConnId, &mut tcp::Socket<'m>)) {
        while let Some(id) = self.server.next_woken() {
            self.served += 1;
            let socket = self.server.socket(id);
            seen(id, socket);
            if let Ok(n) = socket.recv_slice(&mut self.scratch) {
                if n > 0 {
                    self.received += n as u64;
                    self.last_byte = self.scratch[n - 1];
                    self.server.touch(id);
                }
            }
            assert_eq!(
                self.server.settle(id),
                Settled::Open,
                "connection {id} closed (state {})",
                self.server.socket(id).state()
            );
        }
    }

    /// Sends an ARP request from `ip` so the server learns the client's MAC; checks the reply.
    fn introduce(&mut self, ip: Ipv4Address) {
        let now = self.tick();
        let before = self.device.frames_sent();
        self.device.put_rx(|buffer| write_arp_request(buffer, ip));
        self.deliver(now);
        self.server.egress(now, &mut self.device);
        assert_eq!(
            self.device.frames_sent(),
            before + 1,
            "the server should answer the ARP request for {SERVER_IP} with one frame"
        );
        let frame = EthernetFrame::new_checked(self.device.last_sent()).expect("an Ethernet frame");
        let reply = ArpPacket::new_checked(frame.payload())
            .and_then(|packet| ArpRepr::parse(&packet))
            .expect("the server's answer to an ARP request is ARP");
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            target_protocol_addr,
            ..
        } = reply
        else {
            panic!("the server's answer to an ARP request is not IPv4 over Ethernet: {reply:?}");
        };
        assert!(
            operation == ArpOperation::Reply
                && source_hardware_addr == SERVER_MAC
                && target_protocol_addr == ip,
            "the server's ARP reply is wrong: {reply:?}"
        );
    }

    /// Opens connection `index` from `ip:port` with a three-way handshake.
    fn connect(&mut self, ip: Ipv4Address, port: u16, index: usize) {
        let context = format!("connection {index} from {ip}:{port}");
        // Any initial sequence number will do; spread them so wrap-around is exercised somewhere.
        let iss = TcpSeqNumber((index as u32).wrapping_mul(0x9e37_79b9) as i32);
        let now = self.tick();
        let before = self.device.frames_sent();
        let syn = segment(port, TcpControl::Syn, iss, None, &[]);
        self.device.put_rx(|buffer| write_tcp_frame(buffer, ip, &syn));
        self.deliver(now);
        let mut id = None;
        self.serve(|woken, socket| {
            let remote = socket.remote_endpoint();
            if remote.is_some_and(|peer| peer.addr == IpAddress::Ipv4(ip) && peer.port == port) {
                id = Some(woken);
            }
        });
        let id = id.unwrap_or_else(|| panic!("{context}: no socket took the SYN"));
        self.server.egress(now, &mut self.device);
        assert_eq!(
            self.device.frames_sent(),
            before + 1,
            "{context}: the server should answer the SYN with one frame"
        );
        let syn_ack = parse_server_segment(self.device.last_sent(), ip, port, &context);
        assert!(
            syn_ack.syn && syn_ack.ack == Some(iss + 1) && syn_ack.payload == 0,
            "{context}: expected a SYN-ACK acknowledging {}",
            iss + 1
        );
        let client = Client {
            ip,
            port,
            seq: iss + 1,
            ack: syn_ack.seq + 1,
            id,
        };
        let now = self.tick();
        let ack = segment(port, TcpControl::None, client.seq, Some(client.ack), &[]);
        self.device.put_rx(|buffer| write_tcp_frame(buffer, ip, &ack));
        self.deliver(now);
        self.serve(|_, _| {});
        self.server.egress(now, &mut self.device);
        assert_eq!(
            self.device.frames_sent(),
            before + 1,
            "{context}: the server should send nothing after the handshake"
        );
        let socket = self.server.socket(id);
        assert_eq!(
            socket.state(),
            tcp::State::Established,
            "{context}: not established"
        );
        if self.acks == Acks::EverySegment {
            socket.set_ack_delay(None);
        }
        self.clients.push(client);
    }

    /// The measured unit: one 1-byte data segment on the next connection (round robin) through
    /// the device, the server's ingress, the application reading it, and the server's egress.
    pub fn one_packet(&mut self) {
        let now = self.tick();
        let index = self.next;
        self.next = if index + 1 == self.clients.len() {
            0
        } else {
            index + 1
        };
        let client = &mut self.clients[index];
        let byte = [self.packets as u8];
        let data = segment(client.port, TcpControl::Psh, client.seq, Some(client.ack), &byte);
        let ip = client.ip;
        client.seq += 1;
        self.device.put_rx(|buffer| write_tcp_frame(buffer, ip, &data));
        let kind = classify(self.device.rx_frame());
        let took = self.server.ingress(now, &mut self.device, &kind);
        self.serve(|_, _| {});
        self.server.egress(now, &mut self.device);
        self.packets += 1;
        if !took || self.packets.is_multiple_of(CHECK_EVERY) {
            self.check_delivery(index, byte[0], took);
        }
    }

    /// Every byte sent so far was read by the application, the last one on the right connection.
    fn check_delivery(&mut self, index: usize, byte: u8, took: bool) {
        let client = self.clients[index];
        assert!(took, "the stack did not take the segment for client {index}");
        assert_eq!(
            self.received, self.packets,
            "the application should have read one byte per packet"
        );
        assert_eq!(
            self.last_byte, byte,
            "the last byte read is not the last byte sent"
        );
        let socket = self.server.socket(client.id);
        assert_eq!(socket.state(), tcp::State::Established, "client {index}");
        assert_eq!(socket.recv_queue(), 0, "client {index}: unread bytes");
        let remote = socket.remote_endpoint().expect("a connected socket has a peer");
        assert_eq!(
            (remote.addr, remote.port),
            (IpAddress::Ipv4(client.ip), client.port),
            "client {index}'s bytes went to another socket"
        );
        // The server's last frame since the set-up, if it went to one of the clients (an ACK),
        // must fit that connection: it acknowledges nothing the client has not sent and carries
        // no data.
        if self.device.frames_sent() == self.frames_after_setup {
            return;
        }
        if let FrameKind::Tcp(info) = classify(self.device.last_sent()) {
            let peer_ip = Ipv4Address::from(info.flow.dst_ip);
            let ip_index = (peer_ip.to_bits().wrapping_sub(FIRST_CLIENT_IP.to_bits())) as usize;
            let port_index = usize::from(info.flow.dst_port.wrapping_sub(FIRST_CLIENT_PORT));
            let peer_index = ip_index * PORTS_PER_CLIENT_IP + port_index;
            if let Some(&peer) = self
                .clients
                .get(peer_index)
                .filter(|_| port_index < PORTS_PER_CLIENT_IP)
            {
                let reply = parse_server_segment(self.device.last_sent(), peer.ip, peer.port, "an ACK");
                let acked = reply.ack.expect("the server's segments acknowledge");
                assert!(
                    acked <= peer.seq && reply.seq == peer.ack && reply.payload == 0 && !reply.syn,
                    "the server's last ACK does not fit client {peer_index}'s connection"
                );
            }
        }
    }
}
