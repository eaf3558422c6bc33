//! Runs the `frame` fuzz corpus (`proxy/fuzz/corpus/frame/`) through the same checks the fuzz
//! target runs (`xgate_userstack::fuzz_support::check_frames`), each file as it is and a few
//! dozen deterministic mutations of it, so the frame → TCP path is exercised on stable Rust in
//! every test run.
//!
//! This file also owns the corpus's hand-written seeds (`seed-*`): [`seeds`] builds them, and a
//! test checks the files on disk match (`XGATE_BLESS_FRAME_SEEDS=1` rewrites them).

use std::{fs, path::PathBuf};

use xgate_userstack::fuzz_support::{
    check_frames, APP_ABORTS, APP_CLOSES, APP_WRITES, CONFIG_OUTBOUND, CONFIG_SMALL_BUFFERS, CONFIG_TIMERS,
    NO_TCP_CHECKSUM_CHECK, RAW_CHECKSUMS, RELATIVE_SEQ, TO_INBOUND, TO_NEW_FLOW, TO_OUTBOUND,
};

/// Mutations run per corpus file.
const MUTATIONS: usize = 40;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy/fuzz/corpus/frame")
}

#[test]
fn frame_corpus() {
    let dir = corpus_dir();
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    for path in &paths {
        let data = fs::read(path).unwrap();
        check_frames(&data);
        mutate(&data);
    }
    assert!(paths.len() >= 10, "only {} frame corpus files", paths.len());
}

// Inputs the frame fuzzer found that broke `TcpServer`'s invariant that a socket is a listener
// or free unless the flow table names it: a shard's designated listener took a SYN without ACK of
// a flow the table already names whenever that flow's own socket did not take it first (smoltcp
// gives a segment to the first socket of the set that accepts it, and a listener accepts any such
// SYN). The listener then held a connection nobody knew of, and while it did its shard accepted
// no new connection. `TcpServer::ingress` now puts such a listener back to listening.

/// A client's repeated SYN (its first SYN again, as after a lost SYN-ACK) on an established
/// connection, in a shard whose listener comes before the connection's socket.
#[test]
fn repeated_syn_of_a_known_flow_stays_with_its_socket() {
    check_frames(&input(
        3,
        &[record(
            TO_INBOUND | RELATIVE_SEQ,
            1,
            &tcp(SYN, u32::MAX, 0, &[], &[]),
        )],
    ));
}

/// A SYN of a flow whose connection timed out (its socket is closed) before the application
/// settled it.
#[test]
fn syn_of_a_timed_out_unsettled_flow_is_not_taken_by_the_listener() {
    check_frames(&input(
        CONFIG_TIMERS | 1,
        &[
            record(
                TO_INBOUND | RELATIVE_SEQ | APP_WRITES,
                1,
                &tcp(PSH | ACK, 0, 0, &[], REQUEST),
            ),
            record(0, 30, &[]),
            record(0, 60, &[]),
            record(TO_INBOUND, 1, &tcp(SYN, 5, 0, &[], &[])),
            record(TO_NEW_FLOW, 1, &tcp(SYN, 6, 0, &[], &[])),
        ],
    ));
}

#[test]
fn seeds_on_disk_match_their_builders() {
    let dir = corpus_dir();
    let bless = std::env::var_os("XGATE_BLESS_FRAME_SEEDS").is_some();
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        if bless {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&path, &bytes).unwrap();
        } else {
            let on_disk = fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} differs from its builder: run with XGATE_BLESS_FRAME_SEEDS=1 to rewrite",
                path.display()
            );
        }
    }
}

/// Deterministic pseudo-random mutations of `seed`: bytes overwritten (mostly values that matter
/// to the headers), and sometimes a cut.
fn mutate(seed: &[u8]) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting = [
        0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x10, 0x11, 0x12, 0x14, 0x18, 0x45, 0x7f, 0x80, 0xff,
    ];
    for _ in 0..MUTATIONS {
        let mut data = seed.to_vec();
        if data.is_empty() {
            data.push(0);
        }
        for _ in 0..1 + next() % 3 {
            let i = (next() as usize) % data.len();
            data[i] = if next() % 2 == 0 {
                interesting[(next() as usize) % interesting.len()]
            } else {
                next() as u8
            };
        }
        if next() % 8 == 0 {
            let keep = (next() as usize) % (data.len() + 1);
            data.truncate(keep);
        }
        check_frames(&data);
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// One record of `check_frames`'s input.
fn record(flags: u8, time: u8, frame: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, time];
    out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    out.extend_from_slice(frame);
    out
}

/// A config byte and records, as one input.
fn input(config: u8, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![config];
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

/// An Ethernet/IPv4 frame to the server carrying `protocol` and `payload`; addresses and
/// checksums are left for the harness to fill in unless written here.
fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    frame[22] = 64;
    frame[23] = protocol;
    frame.extend_from_slice(payload);
    frame
}

/// A TCP segment (ports, when not rewritten, 10000 → 80) with `options` (a multiple of 4
/// bytes); `seq` and `ack` are offsets under `RELATIVE_SEQ`.
fn tcp(flags: u8, seq: u32, ack: u32, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut segment = vec![0u8; 20];
    segment[0..2].copy_from_slice(&10000u16.to_be_bytes());
    segment[2..4].copy_from_slice(&80u16.to_be_bytes());
    segment[4..8].copy_from_slice(&seq.to_be_bytes());
    segment[8..12].copy_from_slice(&ack.to_be_bytes());
    segment[12] = (((20 + options.len()) / 4) as u8) << 4;
    segment[13] = flags;
    segment[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    segment.extend_from_slice(options);
    segment.extend_from_slice(payload);
    ipv4(6, &segment)
}

/// A whole frame from 10.0.0.2 (02:..:02) to the server, left as written (checksums aside).
fn addressed(mut frame: Vec<u8>) -> Vec<u8> {
    frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    frame[26..30].copy_from_slice(&[10, 0, 0, 2]);
    frame[30..34].copy_from_slice(&[10, 0, 0, 1]);
    frame
}

/// An ARP frame `opcode` from `sender` asking for (or answering to) `target`.
fn arp(opcode: u8, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0u8; 42];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x03]);
    frame[12..14].copy_from_slice(&[0x08, 0x06]);
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, opcode]);
    frame[22..28].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x03]);
    frame[28..32].copy_from_slice(&sender);
    frame[38..42].copy_from_slice(&target);
    frame
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

/// The hand-written seeds: name and bytes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let on_inbound = TO_INBOUND | RELATIVE_SEQ;
    let on_outbound = TO_OUTBOUND | RELATIVE_SEQ;
    let request = REQUEST.len() as u32;
    vec![
        ("seed-setup-only", vec![0]),
        (
            "seed-request-response",
            input(
                CONFIG_OUTBOUND | 3,
                &[
                    record(on_inbound | APP_WRITES, 1, &tcp(PSH | ACK, 0, 0, &[], REQUEST)),
                    record(on_inbound, 5, &tcp(ACK, 0, 0, &[], &[])),
                ],
            ),
        ),
        (
            "seed-client-close",
            input(
                2,
                &[
                    record(on_inbound | APP_WRITES, 1, &tcp(PSH | ACK, 0, 0, &[], REQUEST)),
                    record(on_inbound | APP_CLOSES, 1, &tcp(FIN | ACK, 0, 0, &[], &[])),
                    record(on_inbound, 1, &tcp(ACK, 0, 0, &[], &[])),
                    record(TO_NEW_FLOW, 1, &tcp(SYN, 7, 0, &[], &[])),
                ],
            ),
        ),
        (
            "seed-server-close",
            input(
                0,
                &[
                    record(
                        on_inbound | APP_WRITES | APP_CLOSES,
                        1,
                        &tcp(PSH | ACK, 0, 0, &[], REQUEST),
                    ),
                    record(on_inbound, 1, &tcp(ACK, 0, 0, &[], &[])),
                    record(on_inbound, 1, &tcp(FIN | ACK, 0, 0, &[], &[])),
                ],
            ),
        ),
        (
            "seed-rst",
            input(1, &[record(on_inbound, 1, &tcp(RST | ACK, 0, 0, &[], &[]))]),
        ),
        (
            "seed-syn-burst",
            input(
                1,
                &[
                    record(TO_NEW_FLOW, 0, &tcp(SYN, 100, 0, &[], &[])),
                    record(TO_NEW_FLOW, 0, &tcp(SYN, 200, 0, &[], &[])),
                    record(TO_NEW_FLOW, 0, &tcp(SYN, 300, 0, &[], &[])),
                    record(TO_NEW_FLOW, 0, &tcp(SYN | ACK, 400, 1, &[], &[])),
                ],
            ),
        ),
        (
            "seed-outbound-exchange",
            input(
                CONFIG_OUTBOUND,
                &[
                    record(on_outbound | APP_WRITES, 1, &tcp(ACK, 0, 0, &[], &[])),
                    record(on_outbound, 1, &tcp(PSH | ACK, 0, 0, &[], RESPONSE)),
                    record(on_outbound | APP_CLOSES, 1, &tcp(FIN | ACK, 0, 0, &[], &[])),
                    record(on_outbound, 1, &tcp(ACK, 0, 0, &[], &[])),
                ],
            ),
        ),
        (
            "seed-arp",
            input(
                0,
                &[
                    record(0, 0, &arp(1, [10, 0, 0, 3], [10, 0, 0, 1])),
                    record(0, 0, &arp(2, [10, 0, 0, 3], [10, 0, 0, 1])),
                    record(0, 0, &arp(1, [10, 0, 0, 3], [10, 0, 0, 9])),
                    record(0, 0, &arp(1, [10, 0, 0, 2], [10, 0, 0, 1])[..30]),
                ],
            ),
        ),
        (
            "seed-icmp-udp",
            input(
                0,
                &[
                    record(
                        0,
                        0,
                        &addressed(ipv4(1, &[8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'])),
                    ),
                    record(
                        TO_INBOUND,
                        0,
                        &ipv4(17, &[0x27, 0x10, 0, 53, 0, 12, 0, 0, b'd', b'n', b's', 0]),
                    ),
                ],
            ),
        ),
        (
            "seed-timers",
            input(
                CONFIG_TIMERS | CONFIG_OUTBOUND,
                &[
                    record(on_inbound | APP_WRITES, 1, &tcp(PSH | ACK, 0, 0, &[], REQUEST)),
                    record(0, 20, &[]),
                    record(0, 35, &[]),
                    record(0, 60, &[]),
                    record(TO_INBOUND, 1, &tcp(ACK, 0, 0, &[], &[])),
                ],
            ),
        ),
        (
            "seed-out-of-order",
            input(
                0,
                &[
                    record(on_inbound, 1, &tcp(PSH | ACK, 10, 0, &[], b"later")),
                    record(on_inbound, 1, &tcp(PSH | ACK, 0, 0, &[], b"0123456789")),
                    record(on_inbound, 1, &tcp(PSH | ACK, 0x4000_0000, 0x1000, &[], b"far")),
                    record(on_inbound, 1, &tcp(SYN, 0, 0, &[], &[])),
                ],
            ),
        ),
        (
            "seed-window-fill",
            input(
                CONFIG_SMALL_BUFFERS,
                &[
                    record(
                        on_inbound | APP_WRITES,
                        1,
                        &tcp(PSH | ACK, 0, 0, &[], &[b'x'; 1400]),
                    ),
                    record(
                        on_inbound | APP_WRITES,
                        1,
                        &tcp(PSH | ACK, 0, 0, &[], &[b'y'; 1400]),
                    ),
                ],
            ),
        ),
        (
            "seed-tcp-options",
            input(
                1,
                &[record(
                    TO_NEW_FLOW,
                    0,
                    &tcp(
                        SYN,
                        9,
                        0,
                        // MSS 1400, SACK permitted, timestamps, NOP, window scale 7.
                        &[2, 4, 5, 120, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7],
                        &[],
                    ),
                )],
            ),
        ),
        (
            "seed-malformed",
            input(
                0,
                &[
                    record(0, 0, &[0xff; 10]),
                    record(TO_INBOUND, 0, &tcp(ACK, 0, 0, &[], &[])[..40]),
                    record(0, 0, &{
                        let mut vlan = addressed(tcp(ACK, 0, 0, &[], &[]));
                        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
                        vlan
                    }),
                    record(TO_INBOUND, 0, &{
                        let mut fragment = tcp(PSH | ACK, 0, 0, &[], b"frag");
                        fragment[20] = 0x20;
                        fragment
                    }),
                    record(TO_INBOUND, 0, &{
                        let mut long_ihl = tcp(ACK, 0, 0, &[], &[]);
                        long_ihl[14] = 0x4f;
                        long_ihl
                    }),
                ],
            ),
        ),
        (
            "seed-checksums",
            input(
                0,
                &[
                    record(on_inbound | RAW_CHECKSUMS, 1, &tcp(PSH | ACK, 0, 0, &[], b"bad")),
                    record(
                        on_inbound | RAW_CHECKSUMS | NO_TCP_CHECKSUM_CHECK,
                        1,
                        &tcp(PSH | ACK, 0, 0, &[], b"unchecked"),
                    ),
                ],
            ),
        ),
        (
            "seed-abort",
            input(
                CONFIG_OUTBOUND | 1,
                &[
                    record(on_inbound | APP_ABORTS, 1, &tcp(PSH | ACK, 0, 0, &[], REQUEST)),
                    record(on_outbound | APP_ABORTS, 1, &tcp(PSH | ACK, 0, 0, &[], RESPONSE)),
                    record(on_inbound, 1, &tcp(PSH | ACK, request, 0, &[], REQUEST)),
                ],
            ),
        ),
    ]
}
