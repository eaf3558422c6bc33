//! Just enough Ethernet, IPv4, TCP and ARP parsing to steer a frame before the TCP/IP stack sees
//! it: which connection a frame belongs to, whether it opens or ends one, and whether it is ARP
//! that every lane's stack should learn from.
//!
//! This module owns no state: [`classify`] and [`arp_request_as_reply`] are pure functions of the
//! bytes they are given. [`write_tcp_frame`] goes the other way, for the frames xgate makes up
//! itself (the lab's SYN flood, the benchmarks' and fuzzers' clients). The stack parses and checks the frame again, fully; the steering only
//! needs to pick the right lane and socket shard for it.
//!
//! Invariants:
//! - Nothing here reads outside the slice it is given, panics, or allocates, whatever the bytes.
//! - Only a frame the stack could also take as TCP is called TCP: Ethernet II (no VLAN tag),
//!   IPv4 version 4 with a header length of at least 20 bytes that fits within the total length,
//!   a total length that fits within the frame, not a fragment, and at least the first 14 bytes
//!   of the TCP header (ports and flags) within the total length. Anything else is
//!   [`FrameKind::OtherIpv4`] or [`FrameKind::Other`], which carry no ports, so a broken frame can
//!   never be taken for a flow.

use smoltcp::{
    phy::ChecksumCapabilities,
    wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Address,
        Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr,
    },
};

/// The link and network ends of a TCP frame to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameEnds {
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub src_ip: Ipv4Address,
    pub dst_ip: Ipv4Address,
}

/// Writes an Ethernet II + IPv4 + `tcp` frame between `ends`, every checksum filled, at the start
/// of `buffer`; returns its length. Panics if `buffer` is shorter than the frame.
pub fn write_tcp_frame(buffer: &mut [u8], ends: &FrameEnds, tcp: &TcpRepr<'_>) -> usize {
    let checksums = ChecksumCapabilities::default();
    let ip = Ipv4Repr {
        src_addr: ends.src_ip,
        dst_addr: ends.dst_ip,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let len = ETHERNET_HEADER_LEN + ip.buffer_len() + ip.payload_len;
    let mut frame = EthernetFrame::new_unchecked(&mut buffer[..len]);
    EthernetRepr {
        src_addr: ends.src_mac,
        dst_addr: ends.dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &checksums);
    tcp.emit(
        &mut TcpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv4(ends.src_ip),
        &IpAddress::Ipv4(ends.dst_ip),
        &checksums,
    );
    len
}

/// [`write_tcp_frame`] into a vector of the frame's length.
pub fn tcp_frame(ends: &FrameEnds, tcp: &TcpRepr<'_>) -> Vec<u8> {
    // smoltcp emits the IPv4 header without options.
    let mut frame = vec![0; ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + tcp.buffer_len()];
    let len = write_tcp_frame(&mut frame, ends, tcp);
    frame.truncate(len);
    frame
}

/// Bytes of an Ethernet II header: destination and source addresses, then the ethertype.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Bytes of an ARP frame for IPv4 over Ethernet: the Ethernet header and the 28-byte ARP packet,
/// without the padding a frame on the wire may carry.
pub const ARP_FRAME_LEN: usize = 42;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;
const PROTOCOL_TCP: u8 = 6;
/// Bytes of a TCP header up to and including the flags byte.
const TCP_PORTS_AND_FLAGS_LEN: usize = 14;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// ARP for IPv4 over Ethernet: hardware type 1, protocol type 0x0800, address lengths 6 and 4.
const ARP_IPV4_OVER_ETHERNET: [u8; 6] = [0x00, 0x01, 0x08, 0x00, 6, 4];
const ARP_OPCODE_AT: usize = ETHERNET_HEADER_LEN + 6;
const ARP_REQUEST: [u8; 2] = [0, 1];
const ARP_REPLY: [u8; 2] = [0, 2];

/// A TCP 4-tuple as it appears in a received frame: source is the sender of that frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlowKey {
    /// IPv4 source address of the frame.
    pub src_ip: [u8; 4],
    /// IPv4 destination address of the frame.
    pub dst_ip: [u8; 4],
    /// TCP source port of the frame.
    pub src_port: u16,
    /// TCP destination port of the frame.
    pub dst_port: u16,
}

impl TcpFlowKey {
    /// The same flow seen from the other end: source and destination swapped.
    pub fn reversed(&self) -> TcpFlowKey {
        TcpFlowKey {
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// The receiver's key for the connection: remote address (bits 63..32), remote port
    /// (bits 31..16) and local port (bits 15..0). A lane has one local address, so it is left
    /// out; the key is unique among that lane's connections.
    pub fn connection_key(&self) -> u64 {
        (u64::from(u32::from_be_bytes(self.src_ip)) << 32)
            | (u64::from(self.src_port) << 16)
            | u64::from(self.dst_port)
    }
}

/// What the steering needs from a TCP segment: its flow and the flags that open or end one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegmentInfo {
    /// The segment's 4-tuple as received.
    pub flow: TcpFlowKey,
    /// The frame's source and destination MAC addresses.
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// SYN: the segment opens a connection (with ACK: it answers one being opened).
    pub syn: bool,
    /// ACK: the acknowledgment number is valid.
    pub ack: bool,
    /// RST: the sender aborts the connection.
    pub rst: bool,
    /// FIN: the sender has no more data.
    pub fin: bool,
    /// The sequence number.
    pub seq: u32,
    /// The acknowledgment number (meaningful with `ack`).
    pub ack_number: u32,
    /// The XDP program flagged the frame as possibly a SYN cookie's ACK (cookies were answered
    /// lately; see `xgate_xdp_common::FRAME_FLAG_COOKIES_ACTIVE`). [`classify`] leaves it
    /// `false`; the receiver sets it from the frame's arrival stamp.
    pub cookies_active: bool,
}

/// What a frame is, as far as steering cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A whole-enough TCP segment over IPv4 (see the module's invariants).
    Tcp(TcpSegmentInfo),
    /// Ethertype ARP; its contents are not checked (see [`arp_request_as_reply`]).
    Arp,
    /// Ethertype IPv4 but not a TCP segment steering can use: another protocol (ICMP, UDP), a
    /// fragment, a malformed or truncated header.
    OtherIpv4,
    /// Anything else: shorter than an Ethernet header, VLAN-tagged, IPv6, other ethertypes.
    Other,
}

/// Classifies an Ethernet frame, as received (padding after the IPv4 total length is ignored).
pub fn classify(frame: &[u8]) -> FrameKind {
    let Some((header, payload)) = frame.split_at_checked(ETHERNET_HEADER_LEN) else {
        return FrameKind::Other;
    };
    match [header[12], header[13]] {
        ETHERTYPE_IPV4 => classify_ipv4(payload).map_or(FrameKind::OtherIpv4, |mut segment| {
            segment.dst_mac.copy_from_slice(&header[0..6]);
            segment.src_mac.copy_from_slice(&header[6..12]);
            FrameKind::Tcp(segment)
        }),
        ETHERTYPE_ARP => FrameKind::Arp,
        _ => FrameKind::Other,
    }
}

/// The TCP segment an IPv4 packet carries, if it is one steering can use.
fn classify_ipv4(packet: &[u8]) -> Option<TcpSegmentInfo> {
    let header = packet.get(..IPV4_MIN_HEADER_LEN)?;
    let version = header[0] >> 4;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let fragment = u16::from_be_bytes([header[6], header[7]]);
    let is_fragment = fragment & IPV4_MORE_FRAGMENTS != 0 || fragment & IPV4_FRAGMENT_OFFSET != 0;
    if version != 4 || header_len < IPV4_MIN_HEADER_LEN || is_fragment || header[9] != PROTOCOL_TCP {
        return None;
    }
    // `get` refuses a total length beyond the frame and a header longer than the total length.
    let tcp = packet.get(header_len..total_len)?;
    let tcp = tcp.get(..TCP_PORTS_AND_FLAGS_LEN)?;
    let flags = tcp[13];
    Some(TcpSegmentInfo {
        src_mac: [0; 6],
        dst_mac: [0; 6],
        flow: TcpFlowKey {
            src_ip: [header[12], header[13], header[14], header[15]],
            dst_ip: [header[16], header[17], header[18], header[19]],
            src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        },
        syn: flags & TCP_SYN != 0,
        ack: flags & TCP_ACK != 0,
        rst: flags & TCP_RST != 0,
        fin: flags & TCP_FIN != 0,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack_number: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        cookies_active: false,
    })
}

/// The target protocol (IPv4) address of an ARP frame for IPv4 over Ethernet, if the frame is
/// long enough to hold one: the address the sender asks about or answers to.
pub fn arp_target_ip(frame: &[u8]) -> Option<[u8; 4]> {
    if frame.get(12..14)? != ETHERTYPE_ARP {
        return None;
    }
    frame.get(ARP_FRAME_LEN - 4..ARP_FRAME_LEN)?.try_into().ok()
}

/// A copy of an ARP request or reply for IPv4 over Ethernet, turned into a reply; `None` for any
/// other frame (not ARP, another hardware or protocol type, another operation, shorter than
/// [`ARP_FRAME_LEN`]).
///
/// Why: one lane receives an ARP frame, and its stack answers it if it is a request. The other
/// lanes are given this copy, so their stacks learn the sender's address from it too, without
/// each answering the request again. The copy is [`ARP_FRAME_LEN`] bytes on the stack of the
/// caller, on the control path; any padding after them is left out.
pub fn arp_request_as_reply(frame: &[u8]) -> Option<[u8; ARP_FRAME_LEN]> {
    let arp_frame: &[u8; ARP_FRAME_LEN] = frame.get(..ARP_FRAME_LEN)?.try_into().ok()?;
    let ethertype = [arp_frame[12], arp_frame[13]];
    let types = &arp_frame[ETHERNET_HEADER_LEN..ARP_OPCODE_AT];
    let opcode = [arp_frame[ARP_OPCODE_AT], arp_frame[ARP_OPCODE_AT + 1]];
    if ethertype != ETHERTYPE_ARP || types != ARP_IPV4_OVER_ETHERNET {
        return None;
    }
    if opcode != ARP_REQUEST && opcode != ARP_REPLY {
        return None;
    }
    let mut reply = *arp_frame;
    reply[ARP_OPCODE_AT..ARP_OPCODE_AT + 2].copy_from_slice(&ARP_REPLY);
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 4] = [10, 0, 0, 1];
    const SERVER: [u8; 4] = [10, 0, 0, 2];

    /// An Ethernet/IPv4/TCP frame from CLIENT:40000 to SERVER:80 with `flags`, an IPv4 header of
    /// `ihl_words` 32-bit words (options filled with NOPs), the fragment field `fragment` and
    /// `payload` bytes of data.
    fn ipv4_tcp(ihl_words: u8, flags: u8, fragment: u16, payload: usize) -> Vec<u8> {
        let ip_header_len = usize::from(ihl_words) * 4;
        let total_len = ip_header_len + 20 + payload;
        let mut frame = vec![0u8; ETHERNET_HEADER_LEN + total_len];
        frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        let ip = &mut frame[ETHERNET_HEADER_LEN..];
        ip[0] = 0x40 | ihl_words;
        ip[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&fragment.to_be_bytes());
        ip[8] = 64;
        ip[9] = PROTOCOL_TCP;
        ip[12..16].copy_from_slice(&CLIENT);
        ip[16..20].copy_from_slice(&SERVER);
        ip[20..ip_header_len].fill(1);
        let tcp = &mut ip[ip_header_len..];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        tcp[8..12].copy_from_slice(&0xa0b0_c0d0u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        frame
    }

    fn segment(frame: &[u8]) -> TcpSegmentInfo {
        match classify(frame) {
            FrameKind::Tcp(segment) => segment,
            other => panic!("not TCP: {other:?}"),
        }
    }

    /// An ARP frame for IPv4 over Ethernet with `opcode`, CLIENT asking for SERVER.
    fn arp(opcode: u8) -> Vec<u8> {
        let mut frame = vec![0u8; ARP_FRAME_LEN];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
        frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, opcode]);
        frame[22..28].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame[28..32].copy_from_slice(&CLIENT);
        frame[38..42].copy_from_slice(&SERVER);
        frame
    }

    #[test]
    fn a_syn_gives_its_flow_and_flags() {
        let syn = segment(&ipv4_tcp(5, TCP_SYN, 0, 0));
        assert_eq!(
            syn,
            TcpSegmentInfo {
                flow: TcpFlowKey {
                    src_ip: CLIENT,
                    dst_ip: SERVER,
                    src_port: 40000,
                    dst_port: 80,
                },
                src_mac: [0x02, 0, 0, 0, 0, 1],
                dst_mac: [0x02, 0, 0, 0, 0, 2],
                syn: true,
                ack: false,
                rst: false,
                fin: false,
                seq: 0x0102_0304,
                ack_number: 0xa0b0_c0d0,
                cookies_active: false,
            }
        );
    }

    #[test]
    fn ack_rst_and_fin_flags_are_read() {
        let ack = segment(&ipv4_tcp(5, TCP_ACK, 0, 100));
        assert!(ack.ack && !ack.syn && !ack.rst && !ack.fin);
        let syn_ack = segment(&ipv4_tcp(5, TCP_SYN | TCP_ACK, 0, 0));
        assert!(syn_ack.syn && syn_ack.ack);
        let rst = segment(&ipv4_tcp(5, TCP_RST, 0, 0));
        assert!(rst.rst && !rst.ack && !rst.syn && !rst.fin);
        let fin = segment(&ipv4_tcp(5, TCP_FIN | TCP_ACK, 0, 0));
        assert!(fin.fin && fin.ack && !fin.rst);
        // PSH (0x08) and URG (0x20) are none of the four.
        let push = segment(&ipv4_tcp(5, 0x28, 0, 10));
        assert!(!push.syn && !push.ack && !push.rst && !push.fin);
    }

    #[test]
    fn connection_key_is_remote_address_remote_port_local_port() {
        let flow = segment(&ipv4_tcp(5, TCP_SYN, 0, 0)).flow;
        assert_eq!(flow.connection_key(), 0x0a00_0001_9c40_0050);
        let reply = flow.reversed();
        assert_eq!((reply.src_ip, reply.src_port), (SERVER, 80));
        assert_eq!((reply.dst_ip, reply.dst_port), (CLIENT, 40000));
        assert_eq!(reply.reversed(), flow);
        assert_eq!(reply.connection_key(), 0x0a00_0002_0050_9c40);
    }

    #[test]
    fn ip_options_move_the_tcp_header() {
        let with_options = segment(&ipv4_tcp(6, TCP_ACK, 0, 0));
        assert_eq!(with_options.flow, segment(&ipv4_tcp(5, TCP_ACK, 0, 0)).flow);
        assert!(with_options.ack);
        let longest_header = segment(&ipv4_tcp(15, TCP_SYN, 0, 0));
        assert_eq!(longest_header.flow.dst_port, 80);
        assert!(longest_header.syn);
    }

    #[test]
    fn ethernet_padding_after_the_packet_is_ignored() {
        let mut padded = ipv4_tcp(5, TCP_SYN, 0, 0);
        padded.extend_from_slice(&[0xee; 6]);
        assert_eq!(classify(&padded), classify(&ipv4_tcp(5, TCP_SYN, 0, 0)));
    }

    #[test]
    fn fragments_carry_no_ports() {
        // Don't-fragment is fine; more-fragments or an offset is not a whole segment.
        assert!(matches!(
            classify(&ipv4_tcp(5, TCP_SYN, 0x4000, 0)),
            FrameKind::Tcp(_)
        ));
        assert_eq!(classify(&ipv4_tcp(5, TCP_SYN, 0x2000, 0)), FrameKind::OtherIpv4);
        assert_eq!(classify(&ipv4_tcp(5, TCP_SYN, 0x0010, 0)), FrameKind::OtherIpv4);
        assert_eq!(classify(&ipv4_tcp(5, TCP_SYN, 0x0001, 0)), FrameKind::OtherIpv4);
        assert_eq!(classify(&ipv4_tcp(5, TCP_SYN, 0x6000, 0)), FrameKind::OtherIpv4);
    }

    #[test]
    fn broken_or_non_tcp_ipv4_is_other_ipv4() {
        let mut udp = ipv4_tcp(5, 0, 0, 0);
        udp[ETHERNET_HEADER_LEN + 9] = 17;
        assert_eq!(classify(&udp), FrameKind::OtherIpv4);
        let mut short_ihl = ipv4_tcp(5, TCP_SYN, 0, 0);
        short_ihl[ETHERNET_HEADER_LEN] = 0x44;
        assert_eq!(classify(&short_ihl), FrameKind::OtherIpv4);
        let mut version_6 = ipv4_tcp(5, TCP_SYN, 0, 0);
        version_6[ETHERNET_HEADER_LEN] = 0x65;
        assert_eq!(classify(&version_6), FrameKind::OtherIpv4);
        // Total length: beyond the frame, below the header, or leaving under 14 TCP bytes.
        let total_len_at = ETHERNET_HEADER_LEN + 2;
        for total_len in [61u16, 19, 20, 33] {
            let mut frame = ipv4_tcp(5, TCP_SYN, 0, 0);
            frame[total_len_at..total_len_at + 2].copy_from_slice(&total_len.to_be_bytes());
            assert_eq!(classify(&frame), FrameKind::OtherIpv4, "total length {total_len}");
        }
        let mut exactly_ports_and_flags = ipv4_tcp(5, TCP_SYN, 0, 0);
        exactly_ports_and_flags[total_len_at..total_len_at + 2].copy_from_slice(&34u16.to_be_bytes());
        assert!(segment(&exactly_ports_and_flags).syn);
        // A header longer than the total length.
        let mut long_ihl = ipv4_tcp(5, TCP_SYN, 0, 0);
        long_ihl[ETHERNET_HEADER_LEN] = 0x4f;
        assert_eq!(classify(&long_ihl), FrameKind::OtherIpv4);
    }

    #[test]
    fn vlan_tags_and_other_ethertypes_are_other() {
        let mut vlan = ipv4_tcp(5, TCP_SYN, 0, 0);
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(classify(&vlan), FrameKind::Other);
        let mut vlan_arp = arp(1);
        vlan_arp[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(classify(&vlan_arp), FrameKind::Other);
        assert_eq!(arp_request_as_reply(&vlan_arp), None);
        let mut ipv6 = ipv4_tcp(5, TCP_SYN, 0, 0);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(classify(&ipv6), FrameKind::Other);
        assert_eq!(classify(&[]), FrameKind::Other);
    }

    #[test]
    fn arp_requests_and_replies_become_replies() {
        assert_eq!(classify(&arp(1)), FrameKind::Arp);
        assert_eq!(classify(&arp(2)), FrameKind::Arp);
        let from_request = arp_request_as_reply(&arp(1)).unwrap();
        assert_eq!(from_request[..], arp(2)[..]);
        let from_reply = arp_request_as_reply(&arp(2)).unwrap();
        assert_eq!(from_reply[..], arp(2)[..]);
        let mut padded = arp(1);
        padded.extend_from_slice(&[0xee; 18]);
        assert_eq!(arp_request_as_reply(&padded), Some(from_request));
    }

    #[test]
    fn arp_target_addresses_are_read_from_whole_frames_only() {
        let mut request = arp(1);
        request[ARP_FRAME_LEN - 4..].copy_from_slice(&[10, 77, 0, 2]);
        assert_eq!(arp_target_ip(&request), Some([10, 77, 0, 2]));
        assert_eq!(arp_target_ip(&request[..ARP_FRAME_LEN - 1]), None);
        assert_eq!(arp_target_ip(&ipv4_tcp(5, TCP_SYN, 0, 0)), None);
    }

    #[test]
    fn other_arp_is_not_copied() {
        assert_eq!(arp_request_as_reply(&arp(0)), None);
        assert_eq!(arp_request_as_reply(&arp(3)), None);
        let mut opcode_257 = arp(1);
        opcode_257[ARP_OPCODE_AT] = 1;
        assert_eq!(arp_request_as_reply(&opcode_257), None);
        for at in ETHERNET_HEADER_LEN..ARP_OPCODE_AT {
            let mut other_types = arp(1);
            other_types[at] ^= 0x40;
            assert_eq!(arp_request_as_reply(&other_types), None, "byte {at}");
            // Still ARP by its ethertype.
            assert_eq!(classify(&other_types), FrameKind::Arp);
        }
        assert_eq!(arp_request_as_reply(&ipv4_tcp(5, TCP_SYN, 0, 0)), None);
    }

    #[test]
    fn every_truncation_of_a_valid_frame_is_handled() {
        let tcp_frames = [
            ipv4_tcp(5, TCP_SYN, 0, 0),
            ipv4_tcp(6, TCP_ACK, 0, 3),
            ipv4_tcp(15, TCP_RST, 0, 0),
        ];
        for frame in &tcp_frames {
            for len in 0..frame.len() {
                let truncated = &frame[..len];
                let expected = if len < ETHERNET_HEADER_LEN {
                    FrameKind::Other
                } else {
                    // The total length now runs past the frame.
                    FrameKind::OtherIpv4
                };
                assert_eq!(classify(truncated), expected, "{len} bytes");
                assert_eq!(arp_request_as_reply(truncated), None);
            }
        }
        let request = arp(1);
        for len in 0..request.len() {
            let expected = if len < ETHERNET_HEADER_LEN {
                FrameKind::Other
            } else {
                FrameKind::Arp
            };
            assert_eq!(classify(&request[..len]), expected, "{len} bytes");
            assert_eq!(arp_request_as_reply(&request[..len]), None, "{len} bytes");
        }
    }

    #[test]
    fn random_bytes_never_panic_or_pass_as_broken_tcp() {
        let mut rng = crate::test_rng::Xorshift(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next();
        let mut bytes = [0u8; 128];
        let (mut taken_for_tcp, mut arp_copies) = (0, 0);
        for round in 0..50_000 {
            for byte in bytes.iter_mut() {
                *byte = next() as u8;
            }
            // Make most rounds get past the first checks, so the deeper ones are exercised.
            match round % 4 {
                0 => {
                    bytes[12..14].copy_from_slice(&ETHERTYPE_IPV4);
                    bytes[14] = 0x45;
                    bytes[16..18].copy_from_slice(&(next() as u16 % 128).to_be_bytes());
                    bytes[20..22].fill(0);
                    bytes[23] = PROTOCOL_TCP;
                }
                1 => bytes[12..14].copy_from_slice(&ETHERTYPE_IPV4),
                2 => bytes[12..22].copy_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]),
                _ => {}
            }
            let len = next() as usize % (bytes.len() + 1);
            let frame = &bytes[..len];
            if let FrameKind::Tcp(segment) = classify(frame) {
                // Whatever was taken for TCP satisfies the module's invariants.
                let ip = &frame[ETHERNET_HEADER_LEN..];
                let header_len = usize::from(ip[0] & 0x0f) * 4;
                let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                assert_eq!(ip[0] >> 4, 4);
                assert!(header_len >= 20 && header_len + 14 <= total_len && total_len <= ip.len());
                assert_eq!(segment.flow.src_ip, ip[12..16]);
                taken_for_tcp += 1;
            }
            if let Some(reply) = arp_request_as_reply(frame) {
                assert_eq!(reply[..20], frame[..20]);
                assert_eq!(reply[20..22], ARP_REPLY);
                arp_copies += 1;
            }
        }
        // The rounds reached the end of both parsers, not only their first checks.
        assert!(
            taken_for_tcp > 100 && arp_copies > 100,
            "{taken_for_tcp} TCP, {arp_copies} ARP"
        );
    }
}
