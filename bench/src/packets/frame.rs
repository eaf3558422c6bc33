//! The frame the generator sends: UDP/IPv4 from the generator's address to the receiver's, of a
//! given length, with a valid IPv4 header checksum.

use super::{
    ETHERNET_HEADER, IPV4_HEADER, MAX_FRAME, MIN_FRAME, RX_IP, RX_MAC, RX_UDP_PORT, TX_IP, TX_MAC,
    TX_UDP_PORT, UDP_HEADER,
};

/// A UDP/IPv4 frame of `len` bytes (no FCS) from the generator's address to the receiver's.
pub(super) fn udp_frame(len: usize) -> Vec<u8> {
    assert!((MIN_FRAME..=MAX_FRAME).contains(&len), "frame length {len}");
    let mut frame = vec![0u8; len];
    frame[0..6].copy_from_slice(&RX_MAC);
    frame[6..12].copy_from_slice(&TX_MAC);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - ETHERNET_HEADER) as u16;
    let ip = &mut frame[ETHERNET_HEADER..ETHERNET_HEADER + IPV4_HEADER];
    ip[0] = 0x45; // version 4, 5 words of header
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&TX_IP.octets());
    ip[16..20].copy_from_slice(&RX_IP.octets());
    let checksum = ipv4_header_checksum(ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let udp_start = ETHERNET_HEADER + IPV4_HEADER;
    let udp = &mut frame[udp_start..udp_start + UDP_HEADER];
    udp[0..2].copy_from_slice(&TX_UDP_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&RX_UDP_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&((len - udp_start) as u16).to_be_bytes());
    // Checksum 0: none (allowed for UDP over IPv4).
    for (i, byte) in frame[udp_start + UDP_HEADER..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    frame
}

/// The ones'-complement checksum of an IPv4 header whose checksum field is zero.
fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_requested_length_and_valid_headers() {
        for len in [MIN_FRAME, 128, MAX_FRAME] {
            let frame = udp_frame(len);
            assert_eq!(frame.len(), len);
            assert_eq!(&frame[0..6], &RX_MAC);
            assert_eq!(&frame[30..34], &RX_IP.octets());
            let ip = &frame[ETHERNET_HEADER..ETHERNET_HEADER + IPV4_HEADER];
            assert_eq!(
                usize::from(u16::from_be_bytes([ip[2], ip[3]])),
                len - ETHERNET_HEADER
            );
            // A header with its checksum in place sums to 0xffff, i.e. checksums to zero.
            assert_eq!(ipv4_header_checksum(ip), 0);
            let udp_len = u16::from_be_bytes([frame[38], frame[39]]);
            assert_eq!(usize::from(udp_len), len - ETHERNET_HEADER - IPV4_HEADER);
        }
    }
}
