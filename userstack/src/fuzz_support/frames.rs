//! The frames the harness builds, rewrites and checks: checksums, the stack's own parse to
//! compare `classify` with, and the checks on every frame the server sends.

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    Icmpv4Packet, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

use super::{CLIENT_IP, CLIENT_MAC, ETHERNET_HEADER, SERVER_IP, SERVER_MAC};
use crate::wire::{FrameEnds, FrameKind};

/// The TCP header of an Ethernet/IPv4 frame (at the IPv4 header's length), if the frame holds
/// at least `at_least` bytes of it.
pub(super) fn tcp_header_mut(frame: &mut [u8], at_least: usize) -> Option<&mut [u8]> {
    let ihl = usize::from(frame.get(ETHERNET_HEADER)? & 0x0f) * 4;
    let start = ETHERNET_HEADER + ihl.max(20);
    frame.get_mut(start..).filter(|tcp| tcp.len() >= at_least)
}

/// Payload bytes of a TCP segment in an Ethernet/IPv4 frame, as far as its headers say.
pub(super) fn tcp_segment_len(frame: &[u8]) -> Option<u32> {
    let ip = frame.get(ETHERNET_HEADER..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let data_offset = usize::from(ip.get(ihl + 12)? >> 4) * 4;
    Some(total.saturating_sub(ihl + data_offset) as u32)
}

/// Fills in the IPv4 header checksum and the TCP or ICMP checksum, as far as the frame's
/// headers make them computable.
pub(super) fn fill_checksums(frame: &mut [u8]) {
    if frame.get(12..14) != Some(&[0x08, 0x00]) {
        return;
    }
    let ip = &mut frame[ETHERNET_HEADER..];
    if ip.len() < 20 {
        return;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl {
        return;
    }
    Ipv4Packet::new_unchecked(&mut *ip).fill_checksum();
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < ihl || total > ip.len() {
        return;
    }
    let src = IpAddress::Ipv4(Ipv4Address::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddress::Ipv4(Ipv4Address::new(ip[16], ip[17], ip[18], ip[19]));
    let protocol = ip[9];
    let payload = &mut ip[ihl..total];
    match protocol {
        6 if payload.len() >= 20 => TcpPacket::new_unchecked(payload).fill_checksum(&src, &dst),
        1 if payload.len() >= 4 => Icmpv4Packet::new_unchecked(payload).fill_checksum(),
        _ => {}
    }
}

/// Ports of the TCP segment the stack can parse from `frame`, if it can: Ethernet, IPv4 the
/// stack's checks pass (lengths, version 4, no fragment) and a TCP header that fits.
fn stack_tcp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.version() != 4 || ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((tcp.src_port(), tcp.dst_port()))
}

/// `classify` calls TCP exactly the frames the stack can parse as TCP, with the same addresses.
pub(super) fn check_classify(frame: &[u8], kind: &FrameKind) {
    let stack = stack_tcp_ports(frame);
    match kind {
        FrameKind::Tcp(segment) => {
            let ip = EthernetFrame::new_checked(frame)
                .ok()
                .filter(|ethernet| ethernet.ethertype() == EthernetProtocol::Ipv4)
                .and_then(|ethernet| {
                    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
                    Some((ip.version(), ip.next_header(), ip.src_addr(), ip.dst_addr()))
                });
            let (version, protocol, src, dst) =
                ip.unwrap_or_else(|| panic!("classify took for TCP a frame the stack cannot parse as IPv4"));
            assert_eq!((version, protocol), (4, IpProtocol::Tcp));
            assert_eq!(
                (segment.flow.src_ip, segment.flow.dst_ip),
                (src.octets(), dst.octets())
            );
            if let Some(ports) = stack {
                assert_eq!(ports, (segment.flow.src_port, segment.flow.dst_port));
            }
        }
        _ => assert!(
            stack.is_none(),
            "classify calls {kind:?} a frame the stack takes as TCP"
        ),
    }
}

/// What the harness reads from a TCP segment the server sent.
#[derive(Debug)]
pub(super) struct SentSegment {
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
    pub(super) seq: u32,
    pub(super) ack: Option<u32>,
    pub(super) syn: bool,
    /// Sequence space the segment takes: payload, SYN and FIN.
    pub(super) len: u32,
}

/// Checks a frame the server sent (see the module's invariants); its TCP segment, if it is one.
pub(super) fn check_sent_frame(frame: &[u8]) -> Option<SentSegment> {
    let ethernet = EthernetFrame::new_checked(frame)
        .unwrap_or_else(|e| panic!("the server sent a frame that is not Ethernet: {e}"));
    assert_eq!(
        ethernet.src_addr(),
        SERVER_MAC,
        "the server sent from another MAC"
    );
    match ethernet.ethertype() {
        EthernetProtocol::Arp => {
            ArpPacket::new_checked(ethernet.payload())
                .and_then(|packet| ArpRepr::parse(&packet))
                .unwrap_or_else(|e| panic!("the server sent malformed ARP: {e}"));
            None
        }
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(ethernet.payload())
                .unwrap_or_else(|e| panic!("the server sent malformed IPv4: {e}"));
            assert!(ip.verify_checksum(), "the server sent a bad IPv4 checksum");
            assert_eq!(ip.src_addr(), SERVER_IP, "the server sent from another address");
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let tcp = TcpPacket::new_checked(ip.payload())
                .unwrap_or_else(|e| panic!("the server sent a malformed TCP segment: {e}"));
            let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
            assert!(
                tcp.verify_checksum(&src, &dst),
                "the server sent a bad TCP checksum"
            );
            assert!(!(tcp.syn() && tcp.rst()), "the server sent SYN and RST at once");
            Some(SentSegment {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                seq: tcp.seq_number().0 as u32,
                ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
                syn: tcp.syn(),
                len: tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin()),
            })
        }
        other => panic!("the server sent ethertype {other}"),
    }
}

/// The one TCP segment among `sent` to the client's port `port`.
pub(super) fn single_segment(sent: &[Vec<u8>], port: u16) -> Option<SentSegment> {
    let mut segments = sent
        .iter()
        .filter_map(|frame| check_sent_frame(frame))
        .filter(|segment| segment.dst_port == port);
    let segment = segments.next()?;
    assert!(segments.next().is_none(), "one segment to port {port}");
    Some(segment)
}

/// A broadcast ARP request from `client_ip` for the server's address.
pub(super) fn arp_request(client_ip: Ipv4Address) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: CLIENT_MAC,
        source_protocol_addr: client_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: SERVER_IP,
    };
    let mut buffer = vec![0; ETHERNET_HEADER + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buffer[..]);
    EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buffer
}

/// An Ethernet/IPv4/TCP frame from the client's address to the server's, checksums filled.
pub(super) fn tcp_frame(
    src_port: u16,
    dst_port: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port,
        dst_port,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|ack| TcpSeqNumber(ack as i32)),
        window_len: u16::MAX,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ends = FrameEnds {
        src_mac: CLIENT_MAC,
        dst_mac: SERVER_MAC,
        src_ip: CLIENT_IP,
        dst_ip: SERVER_IP,
    };
    crate::wire::tcp_frame(&ends, &tcp)
}
