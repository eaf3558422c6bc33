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

mod response;
mod schedule;

use std::{
    collections::VecDeque,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use smoltcp::{
    iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet},
    socket::tcp,
    time::Instant as StackInstant,
    wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr},
};
use xgate_userstack::xsk::{PortConfig, XskPort};
use xgate_xdp::Steering;

use crate::cpu::{own_cpu_time, MachineCpu};
use response::{Progress, ResponseReader};
use schedule::OpenLoop;

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
    /// UMEM frames of the AF_XDP socket.
    #[arg(long, default_value_t = 8192)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Connecting,
    Idle,
    Waiting,
    Failed,
}

/// One client connection.
struct Conn {
    handle: SocketHandle,
    shard: u32,
    local_port: u16,
    state: ConnState,
    /// When the outstanding request was sent (closed loop) or due (open loop), ns since start.
    started_ns: u64,
    /// The next request this connection owns (open loop).
    next_request: u64,
    /// Index into the request mix.
    mix: usize,
    reader: ResponseReader,
}

/// Per-shard bookkeeping: the sockets and when the stack next needs to look at them.
struct Shard {
    sockets: SocketSet<'static>,
    /// Work is pending now (frames came in, requests were written).
    dirty: bool,
    /// The stack's own deadline for this shard (retransmit, delayed ACK), if any.
    poll_at: Option<StackInstant>,
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

/// The TCP destination port of an Ethernet/IPv4 frame, if it is one.
fn tcp_destination_port(frame: &[u8]) -> Option<u16> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 6 {
        return None;
    }
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let ports = frame.get(14 + header_len..14 + header_len + 4)?;
    Some(u16::from_be_bytes([ports[2], ports[3]]))
}

fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[12..14] == [0x08, 0x06]
}

fn latency_summary(histogram: &Histogram<u64>) -> Latency {
    let us = |ns: u64| ns as f64 / 1000.0;
    if histogram.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: us(histogram.value_at_quantile(0.50)),
        p90: us(histogram.value_at_quantile(0.90)),
        p99: us(histogram.value_at_quantile(0.99)),
        p999: us(histogram.value_at_quantile(0.999)),
        max: us(histogram.max()),
        mean: histogram.mean() / 1000.0,
    }
}

fn latency_cdf(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // Log-spaced toward the tail: 0..90% in steps of 1%, then 9 of each further "nine".
    let mut quantiles: Vec<f64> = (0..90).map(|i| i as f64 / 100.0).collect();
    let mut step = 0.01;
    let mut base = 0.90;
    for _ in 0..4 {
        for i in 0..9 {
            quantiles.push(base + step * i as f64);
        }
        base += step * 9.0;
        step /= 10.0;
    }
    quantiles.push(1.0);
    quantiles
        .into_iter()
        .map(|q| (q * 100.0, histogram.value_at_quantile(q) as f64 / 1000.0))
        .collect()
}

/// The generator's stack: interface, sockets in shards, and the connections over them.
struct Generator {
    port: XskPort,
    iface: Interface,
    shards: Vec<Shard>,
    conns: Vec<Conn>,
    /// Local port → connection index (`u32::MAX`: none).
    port_owner: Vec<u32>,
    base_port: u16,
    /// Ports no connection holds, oldest released first (reconnects take from the front).
    free_ports: VecDeque<u16>,
    /// Connections a received frame was for, this turn (indices; may repeat).
    woken: Vec<u32>,
    /// An ARP frame arrived: every connection may have work.
    wake_all: bool,
    /// Connections to reopen after this turn's transmit (their reset goes out first).
    reconnects: Vec<u32>,
    requests: Vec<Vec<u8>>,
    target: SocketAddrV4,
    epoch: Instant,
    scratch: Box<[u8]>,
    errors: Errors,
    /// Connection attempts the server refused (RST to our SYN); retried while time allows.
    refused: u64,
    response_bytes: usize,
}

impl Generator {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn stack_now(&self) -> StackInstant {
        StackInstant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn new_socket() -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket
    }

    /// Starts connection `index` from `local_port` (which no connection holds).
    fn connect(&mut self, index: usize, local_port: u16) {
        let conn = &mut self.conns[index];
        self.port_owner[usize::from(local_port)] = index as u32;
        conn.local_port = local_port;
        let shard = &mut self.shards[conn.shard as usize];
        let socket = shard.sockets.get_mut::<tcp::Socket>(conn.handle);
        socket.abort();
        let remote = (IpAddress::Ipv4(*self.target.ip()), self.target.port());
        match socket.connect(self.iface.context(), remote, local_port) {
            Ok(()) => {
                conn.state = ConnState::Connecting;
                conn.reader.reset();
                shard.dirty = true;
            }
            Err(_) => {
                conn.state = ConnState::Failed;
                self.errors.connect += 1;
            }
        }
    }

    /// Resets connection `index` (an RST goes out with the next transmit); its port stays held
    /// until [`Generator::reconnect`] so that stray segments still reach its shard.
    fn abort(&mut self, index: usize) {
        let conn = &self.conns[index];
        let shard = &mut self.shards[conn.shard as usize];
        shard.sockets.get_mut::<tcp::Socket>(conn.handle).abort();
        shard.dirty = true;
    }

    /// Reopens connection `index` from the longest-free port, releasing its old one.
    fn reconnect(&mut self, index: usize) {
        let old = self.conns[index].local_port;
        if self.port_owner[usize::from(old)] == index as u32 {
            self.port_owner[usize::from(old)] = u32::MAX;
            self.free_ports.push_back(old);
        }
        match self.free_ports.pop_front() {
            Some(port) => self.connect(index, port),
            None => {
                self.conns[index].state = ConnState::Failed;
                self.errors.connect += 1;
            }
        }
    }

    /// Hands received frames to their shards, one frame at a time.
    fn receive(&mut self) -> usize {
        let mut handled = 0;
        while handled < RX_BURST {
            let Some(frame) = self.port.peek_rx() else { break };
            let arp = is_arp(frame);
            let owner = tcp_destination_port(frame)
                .map(|port| self.port_owner[usize::from(port)])
                .filter(|&owner| owner != u32::MAX);
            let shard = owner.map_or(0, |owner| self.conns[owner as usize].shard as usize);
            if let Some(owner) = owner {
                // Capacity is RX_BURST, and at most RX_BURST frames are handled per call.
                if self.woken.len() < self.woken.capacity() {
                    self.woken.push(owner);
                } else {
                    self.wake_all = true;
                }
            }
            let now = self.stack_now();
            self.iface
                .poll_ingress_single(now, &mut self.port, &mut self.shards[shard].sockets);
            self.shards[shard].dirty = true;
            if arp {
                // A new neighbour lets every shard's waiting sockets send.
                for shard in &mut self.shards {
                    shard.dirty = true;
                }
                self.wake_all = true;
            }
            handled += 1;
        }
        handled
    }

    /// Polls egress for every shard with work or a due timer, and records its next deadline.
    fn transmit(&mut self) {
        let now = self.stack_now();
        for index in 0..self.shards.len() {
            let shard = &mut self.shards[index];
            let due = shard.poll_at.is_some_and(|at| at <= now);
            if !shard.dirty && !due {
                continue;
            }
            for _ in 0..4 {
                if let smoltcp::iface::PollResult::None =
                    self.iface.poll_egress(now, &mut self.port, &mut shard.sockets)
                {
                    break;
                }
            }
            shard.dirty = false;
            shard.poll_at = self.iface.poll_at(now, &shard.sockets);
        }
        self.port.flush();
    }

    /// Sends connection `index`'s next request if it is idle. `due_ns` is the latency origin.
    fn send_request(&mut self, index: usize, due_ns: u64) -> bool {
        let conn = &mut self.conns[index];
        if conn.state != ConnState::Idle {
            return false;
        }
        let shard = &mut self.shards[conn.shard as usize];
        let socket = shard.sockets.get_mut::<tcp::Socket>(conn.handle);
        let request = &self.requests[conn.mix];
        if socket.send_capacity() - socket.send_queue() < request.len() {
            return false;
        }
        if socket.send_slice(request) != Ok(request.len()) {
            return false;
        }
        conn.mix = (conn.mix + 1) % self.requests.len();
        conn.state = ConnState::Waiting;
        conn.started_ns = due_ns;
        shard.dirty = true;
        true
    }

    /// Reads what connection `index` has received. Returns `Some((latency origin, status))` when a
    /// response completed.
    fn read_response(&mut self, index: usize) -> Option<(u64, u16)> {
        let conn = &mut self.conns[index];
        let socket = self.shards[conn.shard as usize]
            .sockets
            .get_mut::<tcp::Socket>(conn.handle);
        match conn.state {
            ConnState::Connecting => {
                match socket.state() {
                    tcp::State::Established => conn.state = ConnState::Idle,
                    tcp::State::Closed | tcp::State::TimeWait | tcp::State::CloseWait => {
                        conn.state = ConnState::Failed;
                        self.refused += 1;
                    }
                    _ => {}
                }
                return None;
            }
            ConnState::Failed => return None,
            ConnState::Idle | ConnState::Waiting => {}
        }
        let mut done = None;
        loop {
            let window = if conn.reader.in_body() {
                // Body bytes need not be looked at: take them where they lie.
                let mut result = Ok(Progress::NeedMore { consumed: 0 });
                let _ = socket.recv(|bytes| {
                    result = conn.reader.feed(bytes, HEAD_WINDOW);
                    let consumed = consumed_by(&result);
                    (consumed, ())
                });
                result
            } else {
                let copied = socket.peek_slice(&mut self.scratch).unwrap_or(0);
                if copied == 0 {
                    break;
                }
                let result = conn
                    .reader
                    .feed(&self.scratch[..copied], HEAD_WINDOW.min(RX_BUFFER));
                let consumed = consumed_by(&result);
                discard(socket, consumed);
                result
            };
            match window {
                Ok(Progress::NeedMore { consumed: 0 }) => break,
                Ok(Progress::NeedMore { .. }) => continue,
                Ok(Progress::Done {
                    consumed: _,
                    status,
                    close,
                }) => {
                    if conn.state != ConnState::Waiting {
                        // A response nobody asked for.
                        self.errors.bad_response += 1;
                        conn.state = ConnState::Failed;
                        socket.abort();
                        return None;
                    }
                    conn.state = ConnState::Idle;
                    done = Some((conn.started_ns, status));
                    if self.response_bytes == 0 {
                        self.response_bytes = conn.reader.last_response_bytes();
                    }
                    if close {
                        conn.state = ConnState::Failed;
                        socket.close();
                    }
                    break;
                }
                Err(_) => {
                    self.errors.bad_response += 1;
                    conn.state = ConnState::Failed;
                    socket.abort();
                    return None;
                }
            }
        }
        // The server is done sending (FIN or RST) and no response completed: whatever is left
        // can never become one.
        let peer_done = !matches!(
            socket.state(),
            tcp::State::Established | tcp::State::FinWait1 | tcp::State::FinWait2
        );
        if done.is_none() && peer_done && conn.state != ConnState::Failed {
            self.errors.closed_by_server += 1;
            conn.state = ConnState::Failed;
        }
        done
    }
}

/// Bytes a framing step took from what it was offered (none on an error).
fn consumed_by(result: &Result<Progress, response::FramingError>) -> usize {
    match result {
        Ok(Progress::NeedMore { consumed } | Progress::Done { consumed, .. }) => *consumed,
        Err(_) => 0,
    }
}

/// Drops `count` received bytes from the socket (they were already looked at).
fn discard(socket: &mut tcp::Socket, mut count: usize) {
    while count > 0 {
        let taken = socket
            .recv(|bytes| {
                let take = bytes.len().min(count);
                (take, take)
            })
            .unwrap_or(0);
        if taken == 0 {
            break;
        }
        count -= taken;
    }
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

fn measure(args: &HttpArgs) -> anyhow::Result<HttpReport> {
    let most_connections = usize::from(TOP_PORT - BASE_PORT) / 2;
    if args.connections == 0 || args.connections > most_connections {
        bail!("--connections must be between 1 and {most_connections}");
    }
    let finite = [args.duration, args.warmup, args.connect_timeout]
        .iter()
        .all(|v| v.is_finite());
    if !(finite && args.duration > 0.0 && args.warmup >= 0.0 && args.connect_timeout > 0.0) {
        bail!("--duration and --connect-timeout must be positive seconds, --warmup not negative");
    }
    if args.duration + args.warmup > 3600.0 || args.connect_timeout > 3600.0 {
        bail!("runs are limited to an hour: shorten --duration, --warmup or --connect-timeout");
    }
    if args.prefix_len == 0 || args.prefix_len > 32 {
        bail!("--prefix-len must be between 1 and 32");
    }
    let open_rate = match (args.mode, args.rate) {
        (LoopMode::Open, Some(rate)) if rate > 0.0 && rate.is_finite() => Some(rate),
        (LoopMode::Open, _) => bail!("open loop needs --rate (requests per second, > 0)"),
        (LoopMode::Closed, Some(_)) => bail!("--rate is for --mode open only"),
        (LoopMode::Closed, None) => None,
    };
    if args.paths.is_empty()
        || args
            .paths
            .iter()
            .any(|p| !p.starts_with('/') || p.contains(char::is_whitespace))
    {
        bail!("--path must be an origin-form path such as /healthz");
    }
    let mac = parse_mac(&args.mac)?;
    let host = args.host.clone().unwrap_or_else(|| args.target.to_string());
    let requests: Vec<Vec<u8>> = args
        .paths
        .iter()
        .map(|path| {
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xgate-bench\r\n\r\n").into_bytes()
        })
        .collect();
    if let Some(long) = requests.iter().find(|r| r.len() > TX_BUFFER) {
        bail!(
            "a request of {} bytes does not fit the {TX_BUFFER}-byte send buffer: shorten --path or --host",
            long.len()
        );
    }

    let mut steering = Steering::attach(&args.interface, args.local_ip)
        .with_context(|| format!("steering {} on {}", args.local_ip, args.interface))?;
    let mut port = XskPort::open(&PortConfig {
        interface: args.interface.clone(),
        queue: 0,
        frame_size: 2048,
        frames: args.frames,
        allow_normal_pages: true,
    })
    .context("opening the AF_XDP socket")?;
    port.trust_rx_checksums();
    steering
        .register_socket(0, port.fd())
        .context("registering the AF_XDP socket")?;

    let epoch = Instant::now();
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let iface_seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    iface_config.random_seed = iface_seed;
    let mut iface = Interface::new(iface_config, &mut port, StackInstant::from_micros(0));
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(args.local_ip.into(), args.prefix_len))
            .expect("one address fits");
    });

    // The initial ports start at a random place in the lower half of the range, so consecutive
    // runs seldom reuse a 4-tuple; the rest of the range is for reconnects.
    let base_port = {
        let span = u64::from(TOP_PORT - BASE_PORT) - 2 * args.connections as u64 + 1;
        BASE_PORT + (iface_seed % span) as u16
    };
    let shard_count = args.connections.div_ceil(SHARD_SIZE);
    let mut shards: Vec<Shard> = (0..shard_count)
        .map(|_| Shard {
            sockets: SocketSet::new(Vec::with_capacity(SHARD_SIZE)),
            dirty: false,
            poll_at: None,
        })
        .collect();
    let mut conns = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let shard = index / SHARD_SIZE;
        let handle = shards[shard].sockets.add(Generator::new_socket());
        conns.push(Conn {
            handle,
            shard: shard as u32,
            local_port: 0,
            state: ConnState::Failed,
            started_ns: 0,
            next_request: 0,
            mix: index % requests.len(),
            reader: ResponseReader::default(),
        });
    }
    let mut generator = Generator {
        port,
        iface,
        shards,
        conns,
        port_owner: vec![u32::MAX; 65_536],
        base_port,
        free_ports: (base_port + args.connections as u16..TOP_PORT)
            .chain(BASE_PORT..base_port)
            .collect::<VecDeque<u16>>(),
        woken: Vec::with_capacity(RX_BURST),
        wake_all: false,
        reconnects: Vec::with_capacity(args.connections),
        requests,
        target: args.target,
        epoch,
        scratch: vec![0; HEAD_WINDOW].into_boxed_slice(),
        errors: Errors::default(),
        refused: 0,
        response_bytes: 0,
    };

    // Connect everything, then wait (bounded) for ESTABLISHED. A refused attempt (the server
    // had no free listener yet) is retried from a fresh port every 50 ms until the deadline, as
    // a client ramping up would; the retries are reported.
    for index in 0..args.connections {
        let port = generator.base_port + index as u16;
        generator.connect(index, port);
    }
    let connect_deadline = Duration::from_secs_f64(args.connect_timeout);
    let connect_start = Instant::now();
    let mut last_retry = Instant::now();
    loop {
        generator.receive();
        let retry = last_retry.elapsed() >= Duration::from_millis(50);
        let mut pending = 0;
        for index in 0..args.connections {
            generator.read_response(index);
            match generator.conns[index].state {
                ConnState::Failed if retry => generator.reconnect(index),
                ConnState::Idle => continue,
                _ => {}
            }
            pending += 1;
        }
        if retry {
            last_retry = Instant::now();
        }
        generator.transmit();
        if pending == 0 || connect_start.elapsed() >= connect_deadline {
            break;
        }
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    let connect_retries = generator.refused;
    for index in 0..args.connections {
        if generator.conns[index].state != ConnState::Idle {
            // Not established in time: reset it so it cannot connect later and hold a server slot.
            generator.abort(index);
            generator.conns[index].state = ConnState::Failed;
            generator.errors.connect += 1;
        }
    }
    generator.transmit();
    let live: Vec<usize> = (0..args.connections)
        .filter(|&i| generator.conns[i].state == ConnState::Idle)
        .collect();
    if live.is_empty() {
        bail!(
            "no connection to {} was established within {:.1} s",
            args.target,
            args.connect_timeout
        );
    }
    let mut position_of = vec![u32::MAX; args.connections];
    for (position, &index) in live.iter().enumerate() {
        position_of[index] = position as u32;
    }

    // Load: warm-up, then the measurement window [window_start, window_end).
    // - Throughput: responses completed inside the window.
    // - Latency, closed loop: the responses completed inside the window, from their send.
    // - Latency, open loop: the requests *due* inside the window, from their due time, wherever
    //   they complete: the loop runs on for a grace period after the window (sending nothing due
    //   after it) so that the slowest of them are not left out; one still open when the grace
    //   period ends is recorded with its latency so far (a lower bound) and counted.
    let load_start = generator.now_ns();
    let window_start = load_start + (args.warmup * 1e9) as u64;
    let window_end = window_start + (args.duration * 1e9) as u64;
    let grace_end = window_end + OPEN_LOOP_GRACE.as_nanos() as u64;
    let plan = open_rate.map(|rate| OpenLoop::new(load_start, rate, live.len()));
    // Requests 0..due_in_window fall due before the window ends.
    let due_in_window = plan.map_or(0, |p| p.due_count(window_end - 1));
    for (position, &index) in live.iter().enumerate() {
        generator.conns[index].next_request = plan.map_or(0, |p| p.first_request(position));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).expect("valid bounds");
    let mut requests_done = 0u64;
    let mut unfinished = 0u64;
    let mut due_seen = 0u64;
    // Connections with something to do this turn (a frame for them arrived, or a request fell
    // due), as positions in `live`.
    let mut work: Vec<usize> = Vec::with_capacity(live.len());
    let mut in_work = vec![false; live.len()];
    if plan.is_none() {
        // Closed loop: every connection starts with a request.
        for &index in &live {
            let now = generator.now_ns();
            generator.send_request(index, now);
        }
    }
    // Turns of the loop inside the window, and those that found nothing to do: a generator
    // that is often idle is not what limits the rate.
    let mut window_turns = 0u64;
    let mut idle_turns = 0u64;
    let mut window_cpu: Option<(MachineCpu, Duration)> = None;
    let mut window_cpu_spent: Option<(f64, f64)> = None;
    loop {
        let now_ns = generator.now_ns();
        if window_cpu.is_none() && now_ns >= window_start {
            window_cpu = Some((MachineCpu::sample(), own_cpu_time()));
        }
        if now_ns >= window_end && window_cpu_spent.is_none() {
            if let Some((machine, own)) = window_cpu {
                window_cpu_spent = Some((
                    MachineCpu::sample().busy_since(&machine).as_secs_f64(),
                    own_cpu_time().saturating_sub(own).as_secs_f64(),
                ));
            }
        }
        let in_grace = now_ns >= window_end;
        if in_grace {
            let owed = plan.is_some()
                && live.iter().any(|&index| {
                    let conn = &generator.conns[index];
                    conn.state == ConnState::Waiting && conn.started_ns < window_end
                        || conn.state == ConnState::Idle && conn.next_request < due_in_window
                });
            if !owed || now_ns >= grace_end {
                break;
            }
        }
        let received = generator.receive();
        if std::mem::take(&mut generator.wake_all) {
            generator.woken.clear();
            for (position, flag) in in_work.iter_mut().enumerate() {
                if !*flag {
                    *flag = true;
                    work.push(position);
                }
            }
        }
        for index in generator.woken.drain(..) {
            let position = position_of[index as usize];
            if position != u32::MAX && !in_work[position as usize] {
                in_work[position as usize] = true;
                work.push(position as usize);
            }
        }
        if let Some(plan) = plan {
            // In the grace period nothing due after the window is sent.
            let due = if in_grace {
                plan.due_count(now_ns).min(due_in_window)
            } else {
                plan.due_count(now_ns)
            };
            let newly = due.saturating_sub(due_seen).min(live.len() as u64);
            for k in due - newly..due {
                let position = plan.owner(k);
                if !in_work[position] {
                    in_work[position] = true;
                    work.push(position);
                }
            }
            due_seen = due_seen.max(due);
        }
        for &position in &work {
            in_work[position] = false;
            let index = live[position];
            if let Some((origin, status)) = generator.read_response(index) {
                let now = generator.now_ns();
                let counted = now >= window_start && now < window_end;
                let timed = match plan {
                    None => counted,
                    Some(_) => origin >= window_start && origin < window_end,
                };
                if counted {
                    requests_done += 1;
                }
                if timed {
                    histogram.saturating_record(now.saturating_sub(origin).max(1));
                }
                if (counted || timed) && !(200..300).contains(&status) {
                    generator.errors.non_2xx += 1;
                }
            }
            match plan {
                None if !in_grace => {
                    let now = generator.now_ns();
                    generator.send_request(index, now);
                }
                None => {}
                Some(plan) => {
                    let k = generator.conns[index].next_request;
                    let sendable = k < plan.due_count(generator.now_ns()) && (!in_grace || k < due_in_window);
                    if sendable && generator.send_request(index, plan.due_at(k)) {
                        generator.conns[index].next_request = plan.next_request(k);
                    }
                }
            }
            if generator.conns[index].state == ConnState::Failed {
                // Keep the offered load: reset it and reopen from a fresh port once the reset
                // has gone out (after this turn's transmit).
                generator.abort(index);
                generator.reconnects.push(index as u32);
            }
        }
        if now_ns >= window_start && now_ns < window_end {
            window_turns += 1;
            if received == 0 && work.is_empty() {
                idle_turns += 1;
            }
        }
        work.clear();
        generator.transmit();
        while let Some(index) = generator.reconnects.pop() {
            generator.reconnect(index as usize);
        }
    }
    if plan.is_some() {
        let now = generator.now_ns();
        for &index in &live {
            let conn = &generator.conns[index];
            if conn.state == ConnState::Waiting
                && conn.started_ns >= window_start
                && conn.started_ns < window_end
            {
                histogram.saturating_record(now.saturating_sub(conn.started_ns).max(1));
                unfinished += 1;
            }
        }
    }
    let (machine_busy_seconds, generator_cpu_seconds) = window_cpu_spent.unwrap_or((0.0, 0.0));

    // Reset every connection (RST) so the server frees its sockets now, not at its timeouts.
    // Paced, RST_PACE per 100 us, so that a slow server's receive ring does not overflow and
    // drop them.
    const RST_PACE: usize = 16;
    let drain_start = Instant::now();
    let mut next_reset = 0;
    while drain_start.elapsed() < Duration::from_millis(2000) {
        let due = (drain_start.elapsed().as_micros() as usize / 100 + 1) * RST_PACE;
        while next_reset < generator.conns.len().min(due) {
            generator.abort(next_reset);
            next_reset += 1;
        }
        generator.receive();
        generator.transmit();
        if next_reset < generator.conns.len() {
            continue;
        }
        // Done when no shard has work and the kernel has sent every frame handed to it (in copy
        // mode it sends a bounded batch per kick, so frames can still sit in the tx ring).
        let stats = generator.port.stats();
        if generator.shards.iter().all(|s| !s.dirty && s.poll_at.is_none())
            && stats.tx_completed == stats.tx_frames
        {
            break;
        }
    }
    generator.errors.connect += generator.refused - connect_retries;
    let stats = generator.port.stats();
    let kernel = generator.port.kernel_stats().unwrap_or_default();
    Ok(HttpReport {
        client: "xgate-bench",
        target: args.target.to_string(),
        mode: args.mode,
        rate_target: open_rate,
        connections: args.connections,
        established: live.len(),
        connect_seconds,
        connect_retries,
        open_loop_unfinished: unfinished,
        duration_seconds: args.duration,
        requests: requests_done,
        requests_per_second: requests_done as f64 / args.duration,
        latency_us: latency_summary(&histogram),
        cdf: latency_cdf(&histogram),
        errors: generator.errors.clone(),
        response_bytes: generator.response_bytes,
        af_xdp_mode: generator.port.mode().name(),
        rx_frames: stats.rx_frames,
        tx_frames: stats.tx_frames,
        tx_starved: stats.tx_starved,
        kernel_rx_dropped: kernel.rx_dropped,
        machine_busy_seconds,
        generator_cpu_seconds,
        generator_idle_fraction: if window_turns > 0 {
            idle_turns as f64 / window_turns as f64
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ports_are_found_in_ipv4_frames_only() {
        let mut frame = vec![0u8; 60];
        frame[12] = 0x08;
        frame[14] = 0x45;
        frame[23] = 6;
        frame[34..38].copy_from_slice(&[0x00, 0x50, 0x4e, 0x20]);
        assert_eq!(tcp_destination_port(&frame), Some(20_000));
        frame[14] = 0x46; // options: the TCP header moves by four bytes
        frame[38..42].copy_from_slice(&[0x00, 0x50, 0x4e, 0x21]);
        assert_eq!(tcp_destination_port(&frame), Some(20_001));
        frame[23] = 17;
        assert_eq!(tcp_destination_port(&frame), None);
        assert_eq!(tcp_destination_port(&frame[..20]), None);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(is_arp(&arp));
        assert_eq!(tcp_destination_port(&arp), None);
    }

    #[test]
    fn macs_parse_or_say_why_not() {
        assert_eq!(parse_mac("02:77:00:00:00:05").unwrap(), [2, 0x77, 0, 0, 0, 5]);
        assert!(parse_mac("02:77:00:00:00").is_err());
        assert!(parse_mac("02:77:00:00:00:zz").is_err());
    }

    #[test]
    fn cdf_is_monotonic_and_ends_at_the_maximum() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for value in 1..=10_000u64 {
            histogram.record(value * 1000).unwrap();
        }
        let cdf = latency_cdf(&histogram);
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(cdf.last().unwrap().0, 100.0);
        assert!((cdf.last().unwrap().1 - 10_000.0).abs() / 10_000.0 < 0.01);
    }
}
