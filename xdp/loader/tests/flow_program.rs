//! The flow layer of the XDP program, run by the kernel on crafted TCP segments
//! (BPF_PROG_TEST_RUN): flow entries, handshake latency, retransmissions, FIN/RST, the drop map,
//! the SYN shield and the flow table's bound. Needs root (loading BPF).
//!
//! The root check and the monotonic clock are calls into the kernel, this test's only `unsafe`.
#![allow(unsafe_code)]

use std::net::Ipv4Addr;

use xgate_xdp::{
    FlowKey, RateLimit, ReapReason, ShieldLimits, Steering, SynCookieConfig, SynCookieMode, XdpOptions,
    XdpVerdict, FLOW_ESTABLISHED, FLOW_FIN, FLOW_RST, FLOW_SYN,
};
use xgate_xdp_common::syncookie::{self, CookieTuple};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PORT: u16 = 80;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

/// An Ethernet/IPv4/TCP frame from `src:sport` to the gateway's port with `payload` bytes.
fn segment(src: [u8; 4], sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0x77, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    let total = (20 + 20 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&GATEWAY.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(std::iter::repeat_n(b'x', payload));
    f
}

fn load(options: XdpOptions) -> Steering {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "loading the XDP program needs root");
    Steering::load_with(&options).expect("the program loads and verifies")
}

fn options() -> XdpOptions {
    XdpOptions {
        listen_port: PORT,
        ..XdpOptions::new(GATEWAY)
    }
}

const CLIENT: [u8; 4] = [10, 77, 0, 1];

#[test]
fn a_connection_is_recorded_from_syn_to_fin() {
    let mut steering = load(options());
    let maps = steering.flow_maps().unwrap();
    let key = FlowKey::tcp(CLIENT, 40000, GATEWAY.octets(), PORT);
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, SYN, 1000, 0, 0))
        .unwrap();
    let flow = maps.flow(&key).unwrap().expect("the SYN made an entry");
    assert_eq!(flow.flags, FLOW_SYN);
    assert_eq!(flow.handshake_ns, 0);
    // A repeated SYN of the same handshake counts as a retransmission.
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, SYN, 1000, 0, 0))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, ACK, 1001, 5001, 0))
        .unwrap();
    let flow = maps.flow(&key).unwrap().unwrap();
    assert_eq!(flow.flags, FLOW_SYN | FLOW_ESTABLISHED);
    assert!(
        flow.handshake_ns >= 2_000_000,
        "handshake {} ns",
        flow.handshake_ns
    );
    assert_eq!(flow.retransmits, 1);
    // Data, then the same data again (a retransmission), then new data.
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, ACK | PSH, 1001, 5001, 100))
        .unwrap();
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, ACK | PSH, 1001, 5001, 100))
        .unwrap();
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, ACK | PSH, 1101, 5301, 50))
        .unwrap();
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, ACK | FIN, 1151, 5301, 0))
        .unwrap();
    let flow = maps.flow(&key).unwrap().unwrap();
    assert_eq!(flow.retransmits, 2);
    assert_eq!(flow.retransmit_streak, 0, "new data ends a streak");
    assert_eq!(flow.next_seq, 1151);
    assert_eq!(flow.last_ack, 5301);
    assert_eq!(flow.packets, 7);
    assert_eq!(flow.flags & FLOW_FIN, FLOW_FIN);
    assert!(flow.last_seen_ns > flow.first_seen_ns);
    steering
        .run_on_frame(&segment(CLIENT, 40000, PORT, RST, 1152, 0, 0))
        .unwrap();
    assert_eq!(maps.flow(&key).unwrap().unwrap().flags & FLOW_RST, FLOW_RST);
    let histogram = maps.handshake_histogram().unwrap();
    // The one handshake, in the log2 bucket of its microseconds ([2^i, 2^(i+1)) µs).
    let handshake_us = flow.handshake_ns / 1000;
    let bucket = (63 - handshake_us.leading_zeros()) as usize;
    assert!(bucket >= 10, "2 ms or more: {handshake_us} µs");
    assert_eq!(histogram.iter().sum::<u64>(), 1);
    assert_eq!(histogram[bucket], 1, "{handshake_us} µs: {histogram:?}");
    assert_eq!(
        maps.handshake_sum_ns().unwrap(),
        flow.handshake_ns,
        "the sum is exact"
    );
    // Another port is not watched; the flow table has only the one flow.
    steering
        .run_on_frame(&segment(CLIENT, 40001, 8080, SYN, 1, 0, 0))
        .unwrap();
    assert_eq!(maps.flows().unwrap().len(), 1);
}

#[test]
fn a_dropped_flow_dies_in_xdp_until_its_entry_expires_and_a_new_syn_clears_it() {
    let mut steering = load(options());
    let maps = steering.flow_maps().unwrap();
    let key = FlowKey::tcp(CLIENT, 40100, GATEWAY.octets(), PORT);
    let now = monotonic_ns();
    maps.drop_flow(&key, ReapReason::Stalled, now + 60_000_000_000)
        .unwrap();
    assert_eq!(
        steering
            .run_on_frame(&segment(CLIENT, 40100, PORT, ACK, 1, 1, 10))
            .unwrap(),
        1,
        "XDP_DROP"
    );
    assert_eq!(maps.dropped(&key).unwrap().unwrap().hits, 1);
    assert_eq!(
        steering.verdict_stats().unwrap()[XdpVerdict::DropReapedFlow as usize].packets,
        1
    );
    // An expired entry drops nothing and is removed.
    let old = FlowKey::tcp(CLIENT, 40101, GATEWAY.octets(), PORT);
    maps.drop_flow(&old, ReapReason::Idle, now.saturating_sub(1))
        .unwrap();
    steering
        .run_on_frame(&segment(CLIENT, 40101, PORT, ACK, 1, 1, 0))
        .unwrap();
    assert!(maps.dropped(&old).unwrap().is_none());
    // A new SYN on a dropped 5-tuple is a new connection.
    steering
        .run_on_frame(&segment(CLIENT, 40100, PORT, SYN, 7, 0, 0))
        .unwrap();
    assert!(maps.dropped(&key).unwrap().is_none());
    assert!(maps.flow(&key).unwrap().is_some());
    assert_eq!(maps.sweep_drops(monotonic_ns()).unwrap(), (0, 0));
}

#[test]
fn the_syn_shield_limits_strangers_by_budget_and_sources_by_rate() {
    let mut steering = load(XdpOptions {
        shield: ShieldLimits {
            untrusted_source: RateLimit::per_second(1, 2),
            trusted_source: RateLimit::per_second(1, 5),
            budget: RateLimit::per_second(1, 4),
        },
        ..options()
    });
    let maps = steering.flow_maps().unwrap();
    // One stranger: two SYNs pass (its burst), the third is over its own rate.
    for port in 0..3u16 {
        steering
            .run_on_frame(&segment([10, 77, 0, 50], 1000 + port, PORT, SYN, 1, 0, 0))
            .unwrap();
    }
    let stats = steering.verdict_stats().unwrap();
    assert_eq!(stats[XdpVerdict::DropSynSourceRate as usize].packets, 1);
    // Many strangers, one SYN each: the budget (4, two spent) lets two more through.
    for host in 60..70u8 {
        steering
            .run_on_frame(&segment([10, 77, 0, host], 2000, PORT, SYN, 1, 0, 0))
            .unwrap();
    }
    let stats = steering.verdict_stats().unwrap();
    assert_eq!(stats[XdpVerdict::DropSynBudget as usize].packets, 8);
    // An ACK after its SYN earns a source nothing here: the program cannot check the ACK number
    // against a SYN-ACK it never saw, and a blind spoofer sends ACKs too. The source's next SYN
    // is within its own rate (its burst of 2) but meets the spent budget.
    steering
        .run_on_frame(&segment([10, 77, 0, 60], 2000, PORT, ACK, 2, 1, 0))
        .unwrap();
    steering
        .run_on_frame(&segment([10, 77, 0, 60], 3000, PORT, SYN, 1, 0, 0))
        .unwrap();
    let stats = steering.verdict_stats().unwrap();
    assert_eq!(stats[XdpVerdict::DropSynBudget as usize].packets, 9);
    assert_eq!(maps.sources().unwrap(), (3, 0), "no source is trusted");
    // Once the TCP stack accepted its handshake, userspace trusts the source: its SYNs skip the
    // budget and get the trusted rate (1/s) with a full burst of 5 (what it spent as a stranger
    // is forgiven): five pass, the sixth is over the source's rate.
    maps.trust_source([10, 77, 0, 60]).unwrap();
    for port in 1..7u16 {
        steering
            .run_on_frame(&segment([10, 77, 0, 60], 3000 + port, PORT, SYN, 1, 0, 0))
            .unwrap();
    }
    let stats = steering.verdict_stats().unwrap();
    assert_eq!(stats[XdpVerdict::DropSynBudget as usize].packets, 9);
    assert_eq!(stats[XdpVerdict::DropSynSourceRate as usize].packets, 2);
    assert_eq!(maps.sources().unwrap(), (3, 1));
    // Only admitted SYNs made flows: 2 + 2 + 5.
    assert_eq!(maps.flows().unwrap().len(), 9);
}

#[test]
fn the_flow_table_stays_within_its_bound() {
    let mut steering = load(XdpOptions {
        flows: 1024,
        ..options()
    });
    let maps = steering.flow_maps().unwrap();
    for i in 0..5000u32 {
        let src = [10, 78, (i >> 8) as u8, i as u8];
        steering
            .run_on_frame(&segment(src, 1024 + (i % 50000) as u16, PORT, SYN, i, 0, 0))
            .unwrap();
    }
    let flows = maps.flows().unwrap();
    assert!(flows.len() <= 1024, "{} flows in a table of 1024", flows.len());
    assert!(flows.len() >= 512, "the LRU keeps recent flows: {}", flows.len());
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

const GATEWAY_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const COOKIE_KEY: [u64; 2] = [0x6b65_7931, 0x6b65_7932];
const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;

fn cookie_options(mode: SynCookieMode, shield: ShieldLimits) -> XdpOptions {
    XdpOptions {
        shield,
        syn_cookies: SynCookieConfig {
            key: COOKIE_KEY,
            mode: mode as u32,
            mss: 1400,
            window: 16_384,
            mac: GATEWAY_MAC,
            pad: [0; 2],
        },
        ..options()
    }
}

/// A SYN from `src:sport` whose first TCP option is an MSS of `mss`.
fn syn_with_mss(src: [u8; 4], sport: u16, seq: u32, mss: u16) -> Vec<u8> {
    let mut f = segment(src, sport, PORT, SYN, seq, 0, 0);
    f[16..18].copy_from_slice(&44u16.to_be_bytes());
    f[14 + 20 + 12] = 0x60;
    f.extend_from_slice(&[2, 4]);
    f.extend_from_slice(&mss.to_be_bytes());
    f
}

/// The Internet checksum of `words` (big-endian 16-bit words) is right when it sums to 0xffff.
fn checksum_holds(bytes: &[u8]) -> bool {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn with_cookies_always_a_syn_is_answered_in_xdp_with_a_valid_cookie() {
    let mut steering = load(cookie_options(SynCookieMode::Always, ShieldLimits::default()));
    let maps = steering.flow_maps().unwrap();
    let mut out = [0u8; 256];
    let before = monotonic_ns();
    let (action, len) = steering
        .run_on_frame_out(&syn_with_mss(CLIENT, 40_000, 0x1111_0000, 1460), &mut out)
        .unwrap();
    assert_eq!((action, len), (XDP_TX, 58));
    let reply = &out[..len];
    assert_eq!(&reply[0..6], &CLIENT_MAC, "back to the client's MAC");
    assert_eq!(&reply[6..12], &GATEWAY_MAC, "from the gateway's");
    let ip = &reply[14..34];
    assert_eq!(ip[0], 0x45);
    assert!(checksum_holds(ip), "IPv4 checksum");
    assert_eq!((&ip[12..16], &ip[16..20]), (&GATEWAY.octets()[..], &CLIENT[..]));
    let tcp = &reply[34..58];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, 6, 0, 24]);
    pseudo.extend_from_slice(tcp);
    assert!(checksum_holds(&pseudo), "TCP checksum");
    assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), PORT);
    assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 40_000);
    let cookie = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    assert_eq!(
        u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        0x1111_0001
    );
    assert_eq!((tcp[12], tcp[13]), (0x60, 0x12), "24-byte header, SYN+ACK");
    assert_eq!(u16::from_be_bytes([tcp[14], tcp[15]]), 16_384, "the window");
    assert_eq!(&tcp[20..24], &[2, 4, 0x05, 0x78], "MSS 1400, the only option");
    let tuple = CookieTuple {
        client_ip: u32::from_be_bytes(CLIENT),
        client_port: 40_000,
        server_ip: u32::from(GATEWAY),
        server_port: PORT,
    };
    let mss = syncookie::check(COOKIE_KEY, &tuple, 0x1111_0000, cookie, monotonic_ns());
    assert_eq!(
        mss,
        Some(1460),
        "the lane takes the cookie (made at {before} ns or later)"
    );
    assert_eq!(
        steering.verdict_stats().unwrap()[XdpVerdict::TxSynCookie as usize].packets,
        1
    );
    // Stateless: neither a flow nor a source entry.
    assert!(maps.flows().unwrap().is_empty());
    assert_eq!(maps.sources().unwrap(), (0, 0));

    // The cookie's ACK gets its flow entry (established); a wrong one gets none.
    let key = FlowKey::tcp(CLIENT, 40_000, GATEWAY.octets(), PORT);
    steering
        .run_on_frame(&segment(
            CLIENT,
            40_000,
            PORT,
            ACK,
            0x1111_0001,
            cookie.wrapping_add(1),
            0,
        ))
        .unwrap();
    let flow = maps.flow(&key).unwrap().expect("the cookie's ACK made an entry");
    assert_eq!(flow.flags, FLOW_SYN | FLOW_ESTABLISHED);
    let wrong = FlowKey::tcp(CLIENT, 40_001, GATEWAY.octets(), PORT);
    steering
        .run_on_frame(&segment(
            CLIENT,
            40_001,
            PORT,
            ACK,
            0x1111_0001,
            cookie.wrapping_add(1),
            0,
        ))
        .unwrap();
    assert!(maps.flow(&wrong).unwrap().is_none());

    // A SYN to another MAC, or with IPv4 options, is not answered.
    let mut elsewhere = syn_with_mss(CLIENT, 40_002, 7, 1460);
    elsewhere[5] = 0x99;
    assert_eq!(
        steering.run_on_frame_out(&elsewhere, &mut out).unwrap().0,
        XDP_DROP
    );
}

#[test]
fn with_cookies_auto_a_stranger_over_the_budget_gets_a_cookie_instead_of_a_drop() {
    let shield = ShieldLimits {
        untrusted_source: RateLimit::per_second(1, 100),
        trusted_source: RateLimit::per_second(1, 100),
        budget: RateLimit::per_second(1, 2),
    };
    for (mode, verdict) in [
        (SynCookieMode::Auto, XdpVerdict::TxSynCookie),
        (SynCookieMode::Never, XdpVerdict::DropSynBudget),
    ] {
        let mut steering = load(cookie_options(mode, shield));
        let mut out = [0u8; 256];
        let actions: Vec<u32> = (0..5u8)
            .map(|host| {
                steering
                    .run_on_frame_out(&syn_with_mss([10, 77, 1, host], 2000, 1, 1460), &mut out)
                    .unwrap()
                    .0
            })
            .collect();
        let stats = steering.verdict_stats().unwrap();
        assert_eq!(stats[verdict as usize].packets, 3, "{mode:?}: {actions:?}");
        let expected = if mode == SynCookieMode::Auto {
            XDP_TX
        } else {
            XDP_DROP
        };
        assert_eq!(&actions[2..], &[expected; 3], "{mode:?}");
    }
}
