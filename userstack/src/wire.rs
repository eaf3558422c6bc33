//! Just enough Ethernet, IPv4, TCP and ARP parsing to steer a frame before the TCP/IP stack sees
//! it: which connection it belongs to, and whether it opens one.
//!
//! Invariants:
//! - [`classify`] reads only inside the slice it is given and never panics, whatever the bytes.
//! - Only what the stack would also accept is called TCP: Ethernet II (no VLAN tag), IPv4 with a
//!   sane header length, not a later fragment; anything else is [`FrameKind::OtherIpv4`] or
//!   [`FrameKind::Other`], which carry no ports, so they can never be mistaken for a flow.

/// Bytes of an Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Bytes of an ARP frame for IPv4 over Ethernet (header included, no padding).
pub const ARP_FRAME_LEN: usize = 42;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const PROTOCOL_TCP: u8 = 6;

/// A TCP 4-tuple as it appears in a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlowKey {
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
}

impl TcpFlowKey {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> TcpFlowKey {
        TcpFlowKey {
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// The receiver's key for the connection: remote address, remote port, local port (a lane
    /// has one local address, so it is left out).
    pub fn connection_key(&self) -> u64 {
        (u64::from(u32::from_be_bytes(self.src_ip)) << 32)
            | (u64::from(self.src_port) << 16)
            | u64::from(self.dst_port)
    }
}

/// What the steering needs from a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegmentInfo {
    pub flow: TcpFlowKey,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub fin: bool,
}

/// What a frame is, as far as steering cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Tcp(TcpSegmentInfo),
    Arp,
    /// IPv4 that is not a complete-enough TCP segment (ICMP, UDP, fragments, truncated TCP).
    OtherIpv4,
    Other,
}

/// Classifies an Ethernet frame.
pub fn classify(frame: &[u8]) -> FrameKind {
    if frame.len() < ETHERNET_HEADER_LEN {
        return FrameKind::Other;
    }
    let ethertype = [frame[12], frame[13]];
    if ethertype == ETHERTYPE_ARP {
        return FrameKind::Arp;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return FrameKind::Other;
    }
    let ip = &frame[ETHERNET_HEADER_LEN..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return FrameKind::Other;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if header_len < 20 || total_len < header_len || total_len > ip.len() {
        return FrameKind::OtherIpv4;
    }
    let fragment = u16::from_be_bytes([ip[6], ip[7]]);
    let more_fragments = fragment & 0x2000 != 0;
    let offset = fragment & 0x1fff;
    if ip[9] != PROTOCOL_TCP || more_fragments || offset != 0 {
        return FrameKind::OtherIpv4;
    }
    let Some(tcp) = ip.get(header_len..total_len).filter(|tcp| tcp.len() >= 14) else {
        return FrameKind::OtherIpv4;
    };
    let flags = tcp[13];
    FrameKind::Tcp(TcpSegmentInfo {
        flow: TcpFlowKey {
            src_ip: [ip[12], ip[13], ip[14], ip[15]],
            dst_ip: [ip[16], ip[17], ip[18], ip[19]],
            src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        },
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        ack: flags & 0x10 != 0,
    })
}

/// A copy of an ARP request or reply (IPv4 over Ethernet) turned into a reply. One lane receives
/// an ARP frame; the other lanes are given this copy, so their stacks learn the sender's address
/// without each answering the request again. It is 42 bytes on the control path, and the one
/// copy the lanes make of a frame.
pub fn arp_request_as_reply(frame: &[u8]) -> Option<[u8; ARP_FRAME_LEN]> {
    let bytes = frame.get(..ARP_FRAME_LEN)?;
    if bytes[12..14] != ETHERTYPE_ARP {
        return None;
    }
    let arp = &bytes[ETHERNET_HEADER_LEN..];
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, operation request (1) or reply (2).
    if arp[0..6] != [0, 1, 8, 0, 6, 4] || arp[6] != 0 || !matches!(arp[7], 1 | 2) {
        return None;
    }
    let mut copy = [0u8; ARP_FRAME_LEN];
    copy.copy_from_slice(bytes);
    copy[ETHERNET_HEADER_LEN + 7] = 2;
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(ihl_words: u8, flags: u8, fragment: u16) -> Vec<u8> {
        let ip_header = usize::from(ihl_words) * 4;
        let total = ip_header + 20;
        let mut frame = vec![0u8; ETHERNET_HEADER_LEN + total];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        let ip = &mut frame[ETHERNET_HEADER_LEN..];
        ip[0] = 0x40 | ihl_words;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&fragment.to_be_bytes());
        ip[9] = PROTOCOL_TCP;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let tcp = &mut ip[ip_header..];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        frame
    }

    fn arp(operation: u8) -> Vec<u8> {
        let mut frame = vec![0u8; ARP_FRAME_LEN];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
        frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, operation]);
        frame
    }

    #[test]
    fn tcp_segments_give_their_flow_and_flags() {
        let FrameKind::Tcp(syn) = classify(&ipv4_tcp(5, 0x02, 0)) else {
            panic!("not TCP")
        };
        assert!(syn.syn && !syn.ack && !syn.rst && !syn.fin);
        assert_eq!(
            syn.flow,
            TcpFlowKey {
                src_ip: [10, 0, 0, 1],
                dst_ip: [10, 0, 0, 2],
                src_port: 40000,
                dst_port: 80
            }
        );
        assert_eq!(syn.flow.connection_key(), 0x0a00_0001_9c40_0050);
        assert_eq!(syn.flow.reversed().reversed(), syn.flow);
        let FrameKind::Tcp(rst) = classify(&ipv4_tcp(5, 0x14, 0)) else {
            panic!("not TCP")
        };
        assert!(rst.rst && rst.ack && !rst.syn);
        let FrameKind::Tcp(fin) = classify(&ipv4_tcp(5, 0x11, 0)) else {
            panic!("not TCP")
        };
        assert!(fin.fin && fin.ack);
    }

    #[test]
    fn ip_options_move_the_tcp_header() {
        let FrameKind::Tcp(segment) = classify(&ipv4_tcp(6, 0x10, 0)) else {
            panic!("not TCP")
        };
        assert_eq!(segment.flow.src_port, 40000);
        assert!(segment.ack);
    }

    #[test]
    fn fragments_and_non_tcp_carry_no_ports() {
        // Don't-fragment is fine; more-fragments or an offset is not a whole segment.
        assert!(matches!(classify(&ipv4_tcp(5, 0x02, 0x4000)), FrameKind::Tcp(_)));
        assert_eq!(classify(&ipv4_tcp(5, 0x02, 0x2000)), FrameKind::OtherIpv4);
        assert_eq!(classify(&ipv4_tcp(5, 0x02, 0x0010)), FrameKind::OtherIpv4);
        let mut udp = ipv4_tcp(5, 0, 0);
        udp[ETHERNET_HEADER_LEN + 9] = 17;
        assert_eq!(classify(&udp), FrameKind::OtherIpv4);
        let mut vlan = ipv4_tcp(5, 0x02, 0);
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(classify(&vlan), FrameKind::Other);
        let mut short_ihl = ipv4_tcp(5, 0x02, 0);
        short_ihl[ETHERNET_HEADER_LEN] = 0x44;
        assert_eq!(classify(&short_ihl), FrameKind::OtherIpv4);
    }

    #[test]
    fn every_truncation_and_random_bytes_are_handled() {
        for frame in [ipv4_tcp(5, 0x02, 0), ipv4_tcp(6, 0x10, 0), arp(1)] {
            for len in 0..frame.len() {
                let kind = classify(&frame[..len]);
                if let FrameKind::Tcp(_) = kind {
                    panic!("a truncated frame ({len} bytes) was taken for TCP");
                }
                let _ = arp_request_as_reply(&frame[..len]);
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = [0u8; 128];
        for round in 0..20_000 {
            for byte in bytes.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            if round % 2 == 0 {
                bytes[12..14].copy_from_slice(&ETHERTYPE_IPV4);
                bytes[14] = 0x45;
            }
            let len = (state >> 8) as usize % bytes.len();
            let _ = classify(&bytes[..len]);
            let _ = arp_request_as_reply(&bytes[..len]);
        }
    }

    #[test]
    fn arp_copies_become_replies() {
        assert_eq!(classify(&arp(1)), FrameKind::Arp);
        let reply = arp_request_as_reply(&arp(1)).unwrap();
        assert_eq!(reply[21], 2);
        assert_eq!(reply[..21], arp(1)[..21]);
        assert_eq!(arp_request_as_reply(&arp(2)).unwrap()[21], 2);
        assert_eq!(arp_request_as_reply(&arp(3)), None);
        let mut ipv6_arp = arp(1);
        ipv6_arp[16] = 0x86;
        assert_eq!(arp_request_as_reply(&ipv6_arp), None);
    }
}
