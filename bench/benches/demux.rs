//! Criterion benchmark of xgate's per-packet TCP cost as a function of the number of established
//! connections (`cargo bench -p xgate-bench --bench demux`), one element per packet:
//! - `tcp_per_packet/connections/{10,10000}`: the server as xgate's lanes run it (smoltcp's
//!   delayed ACK).
//! - `tcp_per_packet_ack_every_segment/connections/{10,10000}`: every segment acknowledged at
//!   once, so the protocol's work per packet is the same at both counts and only the server's
//!   bookkeeping can differ.
//!
//! After each benchmark one line on stderr gives the frames the server sent and the woken
//! connections the application was handed, per packet (ideally 1: only the packet's own).
//!
//! This file owns only the criterion wiring; the server, the in-memory device, the handshakes and
//! the measured unit ([`harness::Harness::one_packet`]: one 1-byte data segment in, the
//! application's read, the server's egress) are in `demux_harness.rs`, shared with
//! `examples/per_packet_cost.rs`, which counts instructions instead of time.
//!
//! Set-up (every handshake) happens once per benchmark, outside the measurement. The connections
//! are visited round robin, so at 10,000 connections each packet touches a socket, a flow-table
//! slot and a shard that are cold in the cache: the comparison shows what holding many
//! connections costs per packet, not the best case.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "demux_harness.rs"]
mod harness;

use harness::{Acks, Harness};

/// The connection counts compared.
const CONNECTIONS: [usize; 2] = [10, 10_000];

fn per_packet(c: &mut Criterion, group_name: &str, acks: Acks) {
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    for connections in CONNECTIONS {
        let mut memory = Harness::memory(connections);
        let mut harness = Harness::new(connections, acks, &mut memory);
        assert_eq!(harness.connections(), connections);
        let (frames, served) = (harness.frames_sent(), harness.served());
        group.bench_function(BenchmarkId::new("connections", connections), |b| {
            b.iter(|| harness.one_packet());
        });
        let packets = harness.packets().max(1) as f64;
        eprintln!(
            "{group_name}/connections/{connections}: {} packets; per packet: {:.4} frames sent, \
             {:.2} woken connections served",
            harness.packets(),
            (harness.frames_sent() - frames) as f64 / packets,
            (harness.served() - served) as f64 / packets,
        );
    }
    group.finish();
}

fn tcp_per_packet(c: &mut Criterion) {
    per_packet(c, "tcp_per_packet", Acks::Delayed);
}

fn tcp_per_packet_ack_every_segment(c: &mut Criterion) {
    per_packet(c, "tcp_per_packet_ack_every_segment", Acks::EverySegment);
}

criterion_group! {
    name = demux;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = tcp_per_packet, tcp_per_packet_ack_every_segment
}
criterion_main!(demux);
