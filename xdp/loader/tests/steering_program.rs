//! The XDP program itself, run by the kernel on crafted frames (BPF_PROG_TEST_RUN): what it
//! steers, what it leaves to the host, how it treats frames too short to parse, and that each
//! frame is counted once under its verdict. Needs root (loading BPF).
//!
//! The root check is a call into the kernel, this test's only `unsafe`.
#![allow(unsafe_code)]

use std::net::Ipv4Addr;

use xgate_xdp::{Steering, XdpVerdict};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn eth(ether_type: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0x77, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

fn ipv4_to(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = eth(0x0800);
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 77, 0, 1]);
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[0u8; 20]);
    f
}

fn arp_for(target: Ipv4Addr) -> Vec<u8> {
    let mut f = eth(0x0806);
    f.extend_from_slice(&[
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 77, 0, 1, 0, 0, 0, 0, 0, 0,
    ]);
    f.extend_from_slice(&target.octets());
    f
}

fn load() -> Steering {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "loading the XDP program needs root");
    Steering::load(GATEWAY).expect("the program loads and verifies")
}

#[test]
fn frames_for_the_gateway_are_steered_and_the_rest_passes() {
    let mut steering = load();
    // Steered frames with no AF_XDP socket bound end as XDP_DROP, counted as drop_no_socket.
    assert_eq!(steering.run_on_frame(&ipv4_to(GATEWAY)).unwrap(), XDP_DROP);
    assert_eq!(steering.run_on_frame(&arp_for(GATEWAY)).unwrap(), XDP_DROP);
    // Another address, another ARP target, another protocol: the host keeps them.
    assert_eq!(
        steering
            .run_on_frame(&ipv4_to(Ipv4Addr::new(10, 77, 0, 3)))
            .unwrap(),
        XDP_PASS
    );
    assert_eq!(
        steering
            .run_on_frame(&arp_for(Ipv4Addr::new(10, 77, 0, 3)))
            .unwrap(),
        XDP_PASS
    );
    let mut ipv6 = eth(0x86dd);
    ipv6.extend_from_slice(&[0x60; 40]);
    assert_eq!(steering.run_on_frame(&ipv6).unwrap(), XDP_PASS);

    let stats = steering.verdict_stats().unwrap();
    assert_eq!(stats[XdpVerdict::DropNoSocket as usize].packets, 2);
    assert_eq!(stats[XdpVerdict::PassNotOurs as usize].packets, 3);
    assert_eq!(stats[XdpVerdict::RedirectIpv4 as usize].packets, 0);
    assert_eq!(stats[XdpVerdict::PassMalformed as usize].packets, 0);
}

#[test]
fn truncated_frames_pass_to_the_kernel_as_malformed() {
    let mut steering = load();
    let full_ipv4 = ipv4_to(GATEWAY);
    let full_arp = arp_for(GATEWAY);
    let mut runs = 0;
    // Every cut of an IPv4 frame shorter than Ethernet + a 20-byte IPv4 header, and of an ARP
    // frame before its target address ends. (The kernel's test runner needs 14 bytes at least.)
    for cut in 14..34 {
        assert_eq!(
            steering.run_on_frame(&full_ipv4[..cut]).unwrap(),
            XDP_PASS,
            "ipv4 cut at {cut}"
        );
        runs += 1;
    }
    for cut in 14..42 {
        assert_eq!(
            steering.run_on_frame(&full_arp[..cut]).unwrap(),
            XDP_PASS,
            "arp cut at {cut}"
        );
        runs += 1;
    }
    let stats = steering.verdict_stats().unwrap();
    assert_eq!(stats[XdpVerdict::PassMalformed as usize].packets, runs);
    assert_eq!(
        stats.iter().map(|s| s.packets).sum::<u64>(),
        runs,
        "a frame was counted twice"
    );
    assert!(stats[XdpVerdict::PassMalformed as usize].bytes > 0);
}
