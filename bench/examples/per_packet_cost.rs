//! xgate's per-packet TCP cost at a given number of connections, for instruction counting:
//! `per_packet_cost --connections N --packets M [--ack-every-segment]` opens N connections to an
//! in-memory `TcpServer`, sends M one-byte segments round robin (the unit `benches/demux.rs`
//! times), and prints one JSON line:
//! `{"connections":N,"packets":M,"ns_per_packet":..,"frames_sent_per_packet":..,
//! "served_per_packet":..,"acks":"delayed"|"every_segment","setup_ms":..}`
//! (the per-packet fields are `null` when M is 0).
//!
//! This file owns only the argument parsing, the loop and the output; everything else is
//! `benches/demux_harness.rs`. `scripts/per_packet_cost.sh` runs it under an instruction counter
//! with M = 0 and M > 0 and takes the difference, so the set-up cancels out and what remains is
//! per packet.

use std::time::Instant;

#[path = "../benches/demux_harness.rs"]
mod harness;

use harness::{Acks, Harness};

const USAGE: &str = "usage: per_packet_cost --connections N --packets M [--ack-every-segment]";

struct Args {
    connections: usize,
    packets: u64,
    acks: Acks,
}

fn parse_args() -> Result<Args, String> {
    let mut connections = None;
    let mut packets = None;
    let mut acks = Acks::Delayed;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--ack-every-segment" {
            acks = Acks::EverySegment;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{arg} {value:?}: {e}"));
        match arg.as_str() {
            "--connections" => connections = Some(number()?),
            "--packets" => packets = Some(number()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let connections = connections.ok_or("--connections is required")?;
    if connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok(Args {
        connections: usize::try_from(connections).map_err(|e| format!("--connections: {e}"))?,
        packets: packets.ok_or("--packets is required")?,
        acks,
    })
}

/// `part / packets` with `decimals`, or `null` when there were no packets.
fn per_packet(part: f64, packets: u64, decimals: usize) -> String {
    if packets == 0 {
        "null".to_string()
    } else {
        format!("{:.decimals$}", part / packets as f64)
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|message| {
        eprintln!("per_packet_cost: {message}\n{USAGE}");
        std::process::exit(2);
    });
    let setup_start = Instant::now();
    let mut memory = Harness::memory(args.connections);
    let mut harness = Harness::new(args.connections, args.acks, &mut memory);
    let setup = setup_start.elapsed();
    let (frames, served) = (harness.frames_sent(), harness.served());
    let start = Instant::now();
    for _ in 0..args.packets {
        harness.one_packet();
    }
    let elapsed = start.elapsed();
    assert_eq!(harness.packets(), args.packets);
    assert_eq!(harness.connections(), args.connections);
    println!(
        "{{\"connections\":{},\"packets\":{},\"ns_per_packet\":{},\"frames_sent_per_packet\":{},\
         \"served_per_packet\":{},\"acks\":\"{}\",\"setup_ms\":{:.1}}}",
        args.connections,
        args.packets,
        per_packet(elapsed.as_nanos() as f64, args.packets, 1),
        per_packet((harness.frames_sent() - frames) as f64, args.packets, 4),
        per_packet((harness.served() - served) as f64, args.packets, 2),
        match args.acks {
            Acks::Delayed => "delayed",
            Acks::EverySegment => "every_segment",
        },
        setup.as_secs_f64() * 1e3
    );
}
