//! The HTTP/1.1 load generator, on xgate's own userspace stack: smoltcp over an AF_XDP socket in
//! the client namespace, so that the client costs far less per request than the servers it
//! measures (a kernel-stack client such as wrk saturates near the server's rate here).
//!
//! Design:
//! - The generator owns its own address (default 10.77.0.5 with MAC 02:77:00:00:00:05, next to the
//!   lab's kernel client 10.77.0.1). xgate's steering program on the client interface sends it
//!   ARP and IPv4 for that address; everything else still reaches the client namespace's kernel.
//! - Connection `i` is opened from local port `base + i` (`base` drawn per run from
//!   `BASE_PORT..`, so a run never reuses the 4-tuples of the run before) and lives in shard
//!   `i / SHARD_SIZE`. One smoltcp `Interface`, many small `SocketSet`s: each received frame is
//!   demultiplexed by its TCP destination port (O(1) table) and handed to its shard with
//!   `poll_ingress_single`, and egress is polled only for shards that have work or a due timer.
//!   The stack's per-packet cost is therefore that of one shard, not of every connection.
//! - Closed loop: each connection sends its next request as soon as the previous response has
//!   been read; latency runs from send to last response byte. Open loop: see `schedule`; latency
//!   runs from the time the request was due (coordinated-omission corrected).
//! - Latencies go into an HdrHistogram (nanoseconds, 3 significant digits). Throughput counts the
//!   responses completed inside the measurement window; which latencies are recorded is said
//!   where the window is set up (closed loop: completions in the window; open loop: requests due
//!   in it).
//!
//! Invariants:
//! - Every wait is bounded by a deadline: connect, warm-up, measurement, and drain.
//! - The frames the kernel delivers carry checksums that veth may leave partial (kernel senders
//!   with offload on): the generator trusts rx checksums on its veth (`trust_rx_checksums`).
//!   It always computes its own.
//!
//! Output (`--json`): one JSON object on stdout; see [`HttpReport`].
//!
//! This module holds the options, the report and the constants; the stack and its connections
//! are in `generator`, one run from connect to drain in `measure`.

mod generator;
mod measure;
mod response;
mod schedule;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Serialize;

use self::measure::measure;

/// Connections per socket shard: the most sockets smoltcp scans for one frame.
const SHARD_SIZE: usize = 64;
/// Lowest local port; connection 0 of a run uses a port drawn above it, reconnects use ports
/// above the run's initial range.
const BASE_PORT: u16 = 20_000;
/// Highest local port used.
const TOP_PORT: u16 = 65_000;
/// Bytes of a response head the generator looks at in one go.
const HEAD_WINDOW: usize = 4096;
/// Socket buffer sizes: requests are small; responses are read as they arrive.
const RX_BUFFER: usize = 8192;
const TX_BUFFER: usize = 2048;
/// Received frames handled before the loop turns to timers and egress.
const RX_BURST: usize = 64;
/// How long an open-loop run goes on after its window for the requests due inside it.
const OPEN_LOOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopMode {
    /// Each connection sends its next request when the previous response is in.
    Closed,
    /// Requests fall due at `--rate` per second overall, whatever the server does.
    Open,
}

#[derive(Args, Clone, Debug)]
pub struct HttpArgs {
    /// The server, ip:port.
    #[arg(long)]
    pub target: SocketAddrV4,
    /// Interface in this namespace to run on (gets the steering program and an AF_XDP socket).
    #[arg(long, default_value = "xg-cli")]
    pub interface: String,
    /// The generator's own IPv4 address (must not be held by this namespace's kernel).
    #[arg(long, default_value = "10.77.0.5")]
    pub local_ip: Ipv4Addr,
    #[arg(long, default_value_t = 24)]
    pub prefix_len: u8,
    /// The generator's MAC address.
    #[arg(long, default_value = "02:77:00:00:00:05")]
    pub mac: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds allowed for all connections to be established.
    #[arg(long, default_value_t = 20.0)]
    pub connect_timeout: f64,
    #[arg(long, value_enum, default_value_t = LoopMode::Closed)]
    pub mode: LoopMode,
    /// Requests per second overall (open loop only).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Request paths, sent in this fixed order on every connection (repeatable).
    #[arg(long = "path", default_value = "/healthz")]
    pub paths: Vec<String>,
    /// Host header (default: the target address).
    #[arg(long)]
    pub host: Option<String>,
    /// UMEM frames of the AF_XDP socket (2 KiB each). Half transmit: with 10,000 connections
    /// each sending at once, 4,096 transmit frames starved the generator (1.7 million times in 5
    /// s) and it became the run's bottleneck; 16,384 do not.
    #[arg(long, default_value_t = 32768)]
    pub frames: u32,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Latency summary in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Errors by kind, counted over the whole run (connect phase included).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Errors {
    /// Connections that did not reach ESTABLISHED before the connect deadline, or were refused.
    pub connect: u64,
    /// Connections the server reset or closed while a request was outstanding or idle.
    pub closed_by_server: u64,
    /// Responses the generator could not frame.
    pub bad_response: u64,
    /// Responses with a status other than 2xx.
    pub non_2xx: u64,
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct HttpReport {
    pub client: &'static str,
    pub target: String,
    pub mode: LoopMode,
    pub rate_target: Option<f64>,
    pub connections: usize,
    pub established: usize,
    pub connect_seconds: f64,
    /// Connection attempts refused during the connect phase and retried.
    pub connect_retries: u64,
    /// Open loop: requests due in the window still unanswered when the grace period ended
    /// (recorded with their latency so far, a lower bound).
    pub open_loop_unfinished: u64,
    pub duration_seconds: f64,
    /// Responses completed inside the measurement window.
    pub requests: u64,
    pub requests_per_second: f64,
    pub latency_us: Latency,
    /// (percentile, microseconds) points for a latency CDF.
    pub cdf: Vec<(f64, f64)>,
    pub errors: Errors,
    /// Bytes of the first complete response (head and body), for comparing servers.
    pub response_bytes: usize,
    pub af_xdp_mode: &'static str,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub tx_starved: u64,
    pub kernel_rx_dropped: u64,
    /// Busy CPU time of the whole machine during the measurement window (`/proc/stat`).
    pub machine_busy_seconds: f64,
    /// This generator's own CPU time during the window (it busy-polls its core).
    pub generator_cpu_seconds: f64,
    /// Share of the generator's loop turns in the window that found no frame and no work: how
    /// much room the client had left (near 0 would mean the client may be the limit).
    pub generator_idle_fraction: f64,
}

fn parse_mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("MAC `{text}` is not six hex octets separated by `:`");
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(parts) {
        *slot = u8::from_str_radix(part, 16).with_context(|| format!("MAC `{text}`: bad octet `{part}`"))?;
    }
    Ok(mac)
}

/// Runs the generator with `args` and prints its report.
pub fn run(args: &HttpArgs) -> anyhow::Result<()> {
    let report = measure(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    eprintln!(
        "xgate-bench http {}: {} connections ({} up), {:.0} req/s, p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, errors {:?}",
        report.target,
        report.connections,
        report.established,
        report.requests_per_second,
        report.latency_us.p50,
        report.latency_us.p99,
        report.latency_us.p999,
        report.errors
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_or_say_why_not() {
        assert_eq!(parse_mac("02:77:00:00:00:05").unwrap(), [2, 0x77, 0, 0, 0, 5]);
        assert!(parse_mac("02:77:00:00:00").is_err());
        assert!(parse_mac("02:77:00:00:00:zz").is_err());
    }
}
