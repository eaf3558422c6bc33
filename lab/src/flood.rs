//! `xgate lab flood`: a SYN flood from spoofed sources, sent from the lab's client namespace at
//! the highest rate one core can send, to test the SYN shield with real frames on the wire.
//!
//! Frames are built once (Ethernet/IPv4/TCP SYN to the gateway's listening port, or `--to`
//! another address on the gateway's link, complete
//! checksums, one per spoofed source) and then sent round-robin through an AF_PACKET socket on
//! the client's interface, the qdisc bypassed, up to 64 per `sendmmsg`. Sources are addresses
//! counted up from `--from` (up to 60,000 of them), then the same addresses again with the next
//! source port, so `--sources` distinct (address, port) pairs. Their source MAC is a spoofed one
//! of its own, as a forged flood's would be; the gateway never completes their handshakes.
//!
//! With `--blind-ack`, each SYN is followed by an ACK from the same source that a blind spoofer
//! would send: its acknowledgment number is a guess, since the spoofer never sees the SYN-ACK.
//! Such a flood tries to pass for completed handshakes (and earn trust in the SYN shield).
//!
//! Output: one JSON line on stdout, `{"sent","seconds","rate","sources","generator"}`; `sent`
//! counts every frame (SYNs and, with `--blind-ack`, their ACKs).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use smoltcp::wire::{EthernetAddress, TcpControl, TcpRepr, TcpSeqNumber};
use xgate_userstack::wire::{self, FrameEnds};
use xgate_xdp::bench::PacketSocket;

use crate::{
    netns::{self as lab, Host, Lab},
    LabError,
};

/// The source MAC of every flood frame: no host of the lab has it.
const FLOOD_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 0x77];
/// Addresses counted up from `--from` before the source port moves on.
const ADDRESSES: u32 = 60_000;
/// Frames per `sendmmsg`.
const BATCH: usize = 64;
/// Most distinct sources (frames kept in memory: about 60 bytes each).
pub const MAX_SOURCES: u32 = 4_000_000;

/// What `xgate lab flood` was asked to do.
#[derive(Clone, Debug)]
pub struct FloodPlan {
    pub lab: String,
    pub from: Ipv4Addr,
    pub sources: u32,
    pub seconds: f64,
    pub count: u64,
    /// The address the SYNs go to (the gateway's, or another on the gateway's link: the
    /// benchmark floods nginx on the gateway namespace's kernel address the same way).
    pub to: Ipv4Addr,
    pub port: u16,
    /// Each SYN is followed by a blind ACK from its source (see the module doc).
    pub blind_ack: bool,
}

/// What it did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloodOutcome {
    pub sent: u64,
    pub seconds: f64,
}

/// One segment from `source:source_port` to `to:port` (on the gateway's link), checksums
/// complete: a SYN with `seq` (`ack` None), or a bare ACK.
fn flood_frame(
    source: Ipv4Addr,
    source_port: u16,
    to: Ipv4Addr,
    port: u16,
    seq: u32,
    ack: Option<u32>,
) -> Vec<u8> {
    let syn = ack.is_none();
    let tcp = TcpRepr {
        src_port: source_port,
        dst_port: port,
        control: if syn { TcpControl::Syn } else { TcpControl::None },
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|ack| TcpSeqNumber(ack as i32)),
        window_len: 64_240,
        window_scale: None,
        max_seg_size: syn.then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ends = FrameEnds {
        src_mac: EthernetAddress(FLOOD_MAC),
        dst_mac: EthernetAddress(lab::GATEWAY_MAC),
        src_ip: source,
        dst_ip: to,
    };
    wire::tcp_frame(&ends, &tcp)
}

/// The flood's frames, a SYN per source (each followed by its blind ACK with `blind_ack`):
/// address `from + i % 60,000`, port `1024 + i / 60,000`.
fn flood_frames(plan: &FloodPlan) -> Vec<Vec<u8>> {
    let base = u32::from(plan.from);
    // Sequence numbers (and guessed acknowledgments) from a fixed xorshift: varied, as a real
    // flood's are, and repeatable.
    let mut state = 0x2545_f491u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let per_source = if plan.blind_ack { 2 } else { 1 };
    let mut frames = Vec::with_capacity(plan.sources as usize * per_source);
    for i in 0..plan.sources {
        let source = Ipv4Addr::from(base.wrapping_add(i % ADDRESSES));
        let source_port = 1024 + (i / ADDRESSES) as u16;
        let seq = next();
        frames.push(flood_frame(source, source_port, plan.to, plan.port, seq, None));
        if plan.blind_ack {
            let guess = next();
            frames.push(flood_frame(
                source,
                source_port,
                plan.to,
                plan.port,
                seq.wrapping_add(1),
                Some(guess),
            ));
        }
    }
    frames
}

/// Enters the lab's client namespace (this whole process: call before any thread starts).
fn enter_client_namespace(lab: &Lab) -> Result<(), LabError> {
    let path = std::path::Path::new("/run/netns").join(lab.netns(Host::Client));
    let file = std::fs::File::open(&path).map_err(LabError::io(format!(
        "{} (is lab `{}` up? xgate lab up --name {})",
        path.display(),
        lab.name,
        lab.name
    )))?;
    crate::sys::enter_network_namespace(&file).map_err(LabError::io(format!("setns {}", path.display())))
}

fn interface_index(name: &str) -> Result<u32, LabError> {
    crate::sys::interface_index(name)
        .ok_or_else(|| LabError::Refused(format!("no interface {name} in the lab's client namespace")))
}

/// Runs the flood of `plan` until `plan.seconds` pass or `plan.count` SYNs are sent. Ctrl-C
/// simply ends the process: the flood holds nothing that needs cleaning up.
pub fn run(plan: &FloodPlan) -> Result<FloodOutcome, LabError> {
    if plan.sources == 0 || plan.sources > MAX_SOURCES {
        return Err(LabError::Refused(format!(
            "--sources must be 1..={MAX_SOURCES}, got {}",
            plan.sources
        )));
    }
    if !(plan.seconds > 0.0 && plan.seconds <= 3600.0) {
        return Err(LabError::Refused(format!(
            "--seconds must be in (0, 3600], got {}",
            plan.seconds
        )));
    }
    let lab = Lab::new(&plan.lab)?;
    enter_client_namespace(&lab)?;
    let socket = PacketSocket::bind(interface_index(lab::CLIENT_IFACE)?)
        .map_err(|e| LabError::Refused(format!("packet socket on {}: {e}", lab::CLIENT_IFACE)))?;
    let frames = flood_frames(plan);
    let mut batch: Vec<&[u8]> = Vec::with_capacity(BATCH);
    let deadline = Duration::from_secs_f64(plan.seconds);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    while sent < plan.count && start.elapsed() < deadline {
        let want = (plan.count - sent).min(BATCH as u64) as usize;
        batch.clear();
        for _ in 0..want {
            batch.push(&frames[next]);
            next = (next + 1) % frames.len();
        }
        match socket.send_batch(&batch) {
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(LabError::io(format!(
                    "sending the flood on {}",
                    lab::CLIENT_IFACE
                ))(e))
            }
        }
    }
    Ok(FloodOutcome {
        sent,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use smoltcp::{
        phy::ChecksumCapabilities,
        wire::{EthernetFrame, IpAddress, Ipv4Packet, TcpPacket},
    };

    use super::*;

    fn plan(sources: u32) -> FloodPlan {
        FloodPlan {
            lab: "t".into(),
            from: Ipv4Addr::new(10, 77, 1, 0),
            sources,
            seconds: 1.0,
            count: u64::MAX,
            to: lab::GATEWAY_IP,
            port: 80,
            blind_ack: false,
        }
    }

    #[test]
    fn every_frame_is_a_valid_syn_to_the_gateway_from_its_own_source() {
        let frames = flood_frames(&plan(60_002));
        let mut seen = std::collections::HashSet::new();
        for frame in &frames {
            let ethernet = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(ethernet.dst_addr(), EthernetAddress(lab::GATEWAY_MAC));
            let ip = Ipv4Packet::new_checked(ethernet.payload()).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.dst_addr(), lab::GATEWAY_IP);
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            let src = IpAddress::Ipv4(ip.src_addr());
            let dst = IpAddress::Ipv4(ip.dst_addr());
            assert!(tcp.verify_checksum(&src, &dst));
            let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
            assert_eq!(
                (repr.control, repr.dst_port, repr.ack_number),
                (TcpControl::Syn, 80, None)
            );
            assert!(
                seen.insert((ip.src_addr(), repr.src_port)),
                "sources are distinct"
            );
        }
        assert_eq!(seen.len(), 60_002);
        // Past 60,000 addresses the port moves on and the addresses start over.
        assert!(seen.contains(&(Ipv4Addr::new(10, 77, 1, 0), 1025)));
        assert!(seen.contains(&(Ipv4Addr::new(10, 77, 1, 1), 1025)));
    }

    #[test]
    fn a_blind_ack_follows_each_syn_from_the_same_source() {
        let frames = flood_frames(&FloodPlan {
            blind_ack: true,
            ..plan(1000)
        });
        assert_eq!(frames.len(), 2000);
        let parse = |frame: &[u8]| {
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
            (
                ip.src_addr(),
                repr.src_port,
                repr.control,
                repr.seq_number,
                repr.ack_number,
            )
        };
        for pair in frames.chunks(2) {
            let (syn_src, syn_port, syn_control, syn_seq, syn_ack) = parse(&pair[0]);
            let (src, port, control, seq, ack) = parse(&pair[1]);
            assert_eq!((syn_control, syn_ack), (TcpControl::Syn, None));
            assert_eq!((src, port, control), (syn_src, syn_port, TcpControl::None));
            assert_eq!(seq, syn_seq + 1);
            assert!(ack.is_some());
        }
    }

    #[test]
    fn bad_plans_are_refused_before_anything_is_sent() {
        assert!(run(&plan(0)).unwrap_err().to_string().contains("--sources"));
        let mut long = plan(10);
        long.seconds = 0.0;
        assert!(run(&long).unwrap_err().to_string().contains("--seconds"));
        // A lab that is not up is named, with the command that makes it.
        let missing = FloodPlan {
            lab: "nolab9".into(),
            ..plan(10)
        };
        let err = run(&missing).unwrap_err().to_string();
        assert!(err.contains("xgate lab up --name nolab9"), "{err}");
    }
}
