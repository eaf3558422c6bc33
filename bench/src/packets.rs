//! `xgate-bench packets`: the packet path. How many frames per second xgate's XDP program
//! redirects into an AF_XDP socket *and userspace receives*, against how many the same veth can
//! hand to an XDP program that only drops them (XDP_DROP, the most the kernel can give anyone on
//! this link), for minimum-size and MTU-size frames.
//!
//! Topology (its own, created fresh at start and removed at the end, also on error or Ctrl-C):
//!
//! ```text
//! netns xgpkt-tx                               netns xgpkt-rx
//!   xgp-tx  02:78:00:00:00:01  10.78.0.1/24  ── veth ──  xgp-rx  02:78:00:00:00:02  (10.78.0.2)
//!   generator: BPF_PROG_RUN live frames          receiver: xgate_bench_drop, or xgate_steer +
//!   (xgate_bench_tx returns XDP_TX)                        an AF_XDP socket on queue 0
//! ```
//!
//! - MTU 1500 on both ends, IPv6 disabled in both namespaces (no router solicitations or MLD
//!   reports among the counted frames). 10.78.0.2 is the receiver's address as the gateway's
//!   would be: the steering program redirects it, and the rx namespace's kernel does not hold it.
//! - Frames: UDP/IPv4 10.78.0.1:40000 → 10.78.0.2:9, addressed to xgp-rx's MAC, valid IPv4
//!   header checksum, UDP checksum 0 (none).
//! - Frame sizes count the Ethernet frame from destination MAC to the end of the payload; veth
//!   carries no FCS. `--sizes` takes such sizes (60..=1514), plus `64` as the conventional name of
//!   the minimum Ethernet frame, which is 64 bytes on a wire with its 4-byte FCS and so is sent as
//!   60 bytes here ("64 B"). `1514` is a full 1500-byte-MTU frame ("1500 B (MTU)", 1518 on a wire).
//! - The generator is xgate's own (Debian's xdp-trafficgen 1.3.1 has no frame-size option, and on
//!   this kernel it does not load: libbpf finds no BTF for its `xdp_redirect_map_err` tracepoint
//!   program), with the same technique: `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` runs an XDP_TX
//!   program on the frame in a loop, and the kernel transmits every copy out of xgp-tx. A thread
//!   in the tx namespace pinned to `--generator-cpu` (default 1) makes one call long enough to
//!   outlast the run, and is stopped by a signal (each call costs a fixed ~25 ms on this kernel,
//!   a pause no measurement window may contain). The program counts what it sends, which gives
//!   the generated rate.
//! - veth delivers by putting each frame on the peer's ring and running the peer's NAPI poll (and
//!   so its XDP program, and the AF_XDP copy into the UMEM) in softirq on the *sender's* CPU. The
//!   peer must have an XDP program attached (or GRO on), or veth drops the frames silently (the
//!   live-frames call still succeeds and no xmit error is counted); the receiver side always has
//!   one here, the sending side needs none (both checked on this kernel). So both
//!   cases spend the generator's CPU on generating and delivering; the AF_XDP case adds a
//!   userspace receiver busy-polling on `--receiver-cpu` (default 0).
//! - veth has AF_XDP copy mode only (a zero-copy bind returns EOPNOTSUPP): the table says so.
//! - Reading the numbers: nothing on the XDP_DROP path touches the payload (live frames are set
//!   up once per page and veth passes frame pointers), so its rate hardly depends on frame size;
//!   the AF_XDP copy mode copies every frame into the UMEM, so its rate does.
//!
//! Cases: every frame size × receiver, `--repeats` times, interleaved (drop, af_xdp, drop, ...)
//! so that slow drift of the machine affects both alike:
//! - `xdp_drop`: `xgate_bench_drop` attached natively to xgp-rx; rate = frames it counted.
//! - `af_xdp`: the gateway's own `xgate_steer` on xgp-rx for 10.78.0.2 plus an `XskPort` on
//!   queue 0 registered in its XSKMAP; a busy loop takes each rx batch and recycles it straight to
//!   the fill ring (`discard_rx`); rate = frames userspace received.
//!
//! Each run: attach the receiver, start the generator, wait for the first frame (at most
//! [`FIRST_FRAME_TIMEOUT`]), warm up (a quarter of `--seconds`, 0.1 to 0.5 s), then count the
//! frames received between two timestamps `--seconds` apart. Every loop has a deadline.
//!
//! Output: a table on stderr; with `--json`, one JSON object on stdout ([`PacketReport`]). Its
//! field names are stable (other tools parse them):
//!
//! ```text
//! { "packet_path": [ {                       one entry per frame size × receiver
//!     "frame_bytes": 64,                     the size as requested (64, 1514, ...)
//!     "sent_bytes": 60,                      bytes per frame handed to the veth (no FCS)
//!     "label": "64 B",
//!     "receiver": "xdp_drop" | "af_xdp",
//!     "mode": "native XDP" | "copy" | "zero-copy",   how frames reach the receiver
//!     "runs_pps": [..], "median_pps": .., "min_pps": .., "max_pps": ..,   received frames/s
//!     "generated_pps_median": ..,            frames/s the generator handed to the kernel
//!     "received_frames": ..,                 frames counted in all measurement windows
//!     "kernel_rx_dropped": ..,               AF_XDP socket's rx_dropped in the windows (0 for xdp_drop)
//!     "rx_ring_full": .., "fill_ring_empty": ..,      same, socket counters (0 for xdp_drop)
//!     "steering_redirected": ..              frames xgate_steer redirected in the windows (0 for xdp_drop)
//!   } ],
//!   "ratios": [ { "frame_bytes": 64, "af_xdp_over_drop": 0.xx } ],   median over median
//!   "setup": { "seconds", "warmup_seconds", "repeats", "generator_cpu", "receiver_cpu", "link",
//!              "zero_copy_available", "umem_backing", "generator", "live_frames_batch" } }
//! ```
//!
//! Invariants:
//! - Only names starting with `xgpkt-` (namespaces) and `xgp-` (interfaces inside them) are
//!   created, and the [`Topology`] guard deletes them on every exit path that unwinds; SIGINT and
//!   SIGTERM stop the runs and unwind too. One `packets` run at a time holds [`LOCK_PATH`].
//! - The coordinating thread never changes namespace: the receiver and generator threads enter
//!   theirs with `setns` and end with the run.

use std::{
    fmt::Write as _,
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    os::unix::thread::JoinHandleExt as _,
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use xgate_userstack::xsk::{BindMode, PortConfig, XskPort};
use xgate_xdp::{
    bench::{DropCounter, FrameGenerator, GeneratorMode, SendEnd, MAX_LIVE_BATCH},
    Steering, Verdict,
};

use crate::process::{
    check_interrupted, install_interrupt_handlers, interrupted, require_root, set_signal_handler,
};

/// Namespace of the generator's end of the veth.
const TX_NAMESPACE: &str = "xgpkt-tx";
/// Namespace of the receiver's end of the veth.
const RX_NAMESPACE: &str = "xgpkt-rx";
const TX_INTERFACE: &str = "xgp-tx";
const RX_INTERFACE: &str = "xgp-rx";
const TX_MAC: [u8; 6] = [0x02, 0x78, 0, 0, 0, 0x01];
const RX_MAC: [u8; 6] = [0x02, 0x78, 0, 0, 0, 0x02];
const TX_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
/// The receiver's address, steered to the AF_XDP socket; no kernel holds it.
const RX_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const TX_UDP_PORT: u16 = 40_000;
/// The discard port.
const RX_UDP_PORT: u16 = 9;
const MTU: u32 = 1500;
const ETHERNET_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
/// Smallest frame sent: the 64-byte minimum Ethernet frame without its FCS.
const MIN_FRAME: usize = 60;
/// Largest frame sent: a full MTU packet plus the Ethernet header.
const MAX_FRAME: usize = MTU as usize + ETHERNET_HEADER;
/// Conventional name of the minimum Ethernet frame (with FCS), sent as [`MIN_FRAME`] bytes.
const MIN_FRAME_WITH_FCS: u16 = 64;

/// Held (flock) while a `packets` run owns the `xgpkt-` namespaces.
const LOCK_PATH: &str = "/run/xgpkt.lock";
/// Longest wait for another `packets` run to finish.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the receiver to see the generator's first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the generator thread to end once told to stop.
const GENERATOR_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The signal that ends the generator's (long) BPF_PROG_TEST_RUN call early.
const GENERATOR_STOP_SIGNAL: libc::c_int = libc::SIGUSR1;
/// UMEM of the AF_XDP receiver: 2 KiB frames (an MTU frame fits), half of them for rx.
const UMEM_FRAME_SIZE: u32 = 2048;
const UMEM_FRAMES: u32 = 4096;

/// Options of `xgate-bench packets`.
#[derive(Args, Clone, Debug)]
pub struct PacketArgs {
    /// Seconds each run measures (after its warm-up).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Frame sizes in bytes without FCS (60..=1514); 64 names the minimum Ethernet frame (sent as
    /// its 60 bytes without FCS), 1514 is a full 1500-byte-MTU frame.
    #[arg(long, value_delimiter = ',', default_value = "64,1514")]
    pub sizes: Vec<u16>,
    /// Runs of every case.
    #[arg(long, default_value_t = 3)]
    pub repeats: u32,
    /// Print one JSON object with every result on stdout.
    #[arg(long)]
    pub json: bool,
    /// CPU the generator thread (and so the veth's delivery softirq) is pinned to.
    #[arg(long, default_value_t = 1)]
    pub generator_cpu: usize,
    /// CPU the AF_XDP receiver's busy loop is pinned to.
    #[arg(long, default_value_t = 0)]
    pub receiver_cpu: usize,
    /// Frames per live-frames batch in the kernel (1..=256).
    #[arg(long, default_value_t = 64)]
    pub batch: u32,
}

/// Who takes the frames off xgp-rx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReceiverKind {
    XdpDrop,
    AfXdp,
}

impl ReceiverKind {
    const ALL: [ReceiverKind; 2] = [ReceiverKind::XdpDrop, ReceiverKind::AfXdp];

    fn name(self) -> &'static str {
        match self {
            ReceiverKind::XdpDrop => "xdp_drop",
            ReceiverKind::AfXdp => "af_xdp",
        }
    }
}

/// One frame size as requested and as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameSize {
    requested: u16,
    sent: usize,
}

impl FrameSize {
    fn parse(requested: u16) -> anyhow::Result<FrameSize> {
        let sent = if requested == MIN_FRAME_WITH_FCS {
            MIN_FRAME
        } else {
            usize::from(requested)
        };
        if !(MIN_FRAME..=MAX_FRAME).contains(&sent) {
            bail!(
                "frame size {requested} is out of range: use {MIN_FRAME}..={MAX_FRAME} bytes without FCS \
                 (or 64 for the minimum Ethernet frame); the veth's MTU is {MTU}"
            );
        }
        Ok(FrameSize { requested, sent })
    }

    fn label(self) -> String {
        if self.requested == MIN_FRAME_WITH_FCS {
            "64 B".to_string()
        } else if self.sent == MAX_FRAME {
            format!("{MTU} B (MTU)")
        } else {
            format!("{} B", self.sent)
        }
    }
}

/// The whole report, printed as JSON with `--json` (field names documented in the module doc).
#[derive(Debug, Serialize)]
pub struct PacketReport {
    pub packet_path: Vec<CaseReport>,
    pub ratios: Vec<RatioReport>,
    pub setup: SetupReport,
}

/// Every run of one frame size × receiver.
#[derive(Debug, Serialize)]
pub struct CaseReport {
    pub frame_bytes: u16,
    pub sent_bytes: usize,
    pub label: String,
    pub receiver: &'static str,
    pub mode: String,
    pub runs_pps: Vec<f64>,
    pub median_pps: f64,
    pub min_pps: f64,
    pub max_pps: f64,
    pub generated_pps_median: f64,
    pub received_frames: u64,
    pub kernel_rx_dropped: u64,
    pub rx_ring_full: u64,
    pub fill_ring_empty: u64,
    pub steering_redirected: u64,
}

/// AF_XDP's median rate over XDP_DROP's, for one frame size.
#[derive(Debug, Serialize)]
pub struct RatioReport {
    pub frame_bytes: u16,
    pub af_xdp_over_drop: f64,
}

/// How the numbers were taken.
#[derive(Debug, Serialize)]
pub struct SetupReport {
    pub seconds: f64,
    pub warmup_seconds: f64,
    pub repeats: u32,
    pub generator_cpu: usize,
    pub receiver_cpu: usize,
    pub link: &'static str,
    pub zero_copy_available: bool,
    pub umem_backing: String,
    pub generator: &'static str,
    pub live_frames_batch: u32,
}

/// What one run measured, over its measurement window.
#[derive(Clone, Debug, Default)]
struct RunOutcome {
    received_pps: f64,
    generated_pps: f64,
    received_frames: u64,
    /// "native XDP", or the AF_XDP bind mode.
    mode: String,
    kernel_rx_dropped: u64,
    rx_ring_full: u64,
    fill_ring_empty: u64,
    steering_redirected: u64,
    /// The AF_XDP UMEM's backing, for af_xdp runs.
    umem_backing: Option<String>,
    /// How the generator sent ([`GeneratorMode::name`]).
    generator: &'static str,
}

/// The handler of [`GENERATOR_STOP_SIGNAL`]: its only job is to make the generator's system call
/// return (EINTR); the generator then sees its stop flag.
extern "C" fn ignore_signal(_signal: libc::c_int) {}

/// Runs the packet-path benchmark described in the module doc.
pub fn run(args: &PacketArgs) -> anyhow::Result<()> {
    let sizes = validate(args)?;
    require_root("`xgate-bench packets` needs root: it creates network namespaces and loads XDP programs")?;
    check_cpus(args)?;
    install_interrupt_handlers();
    set_signal_handler(GENERATOR_STOP_SIGNAL, ignore_signal);
    let _lock = RunLock::acquire()?;
    let topology = Topology::create()?;
    let result = run_cases(args, &sizes, &topology);
    drop(topology);
    let report = result?;
    eprint!("{}", render_table(&report));
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn validate(args: &PacketArgs) -> anyhow::Result<Vec<FrameSize>> {
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 600.0) {
        bail!(
            "--seconds must be more than 0 and at most 600, got {}",
            args.seconds
        );
    }
    if args.repeats == 0 || args.repeats > 100 {
        bail!("--repeats must be 1..=100, got {}", args.repeats);
    }
    if !(1..=MAX_LIVE_BATCH).contains(&args.batch) {
        bail!("--batch must be 1..={MAX_LIVE_BATCH}, got {}", args.batch);
    }
    if args.sizes.is_empty() {
        bail!("--sizes needs at least one frame size");
    }
    let mut sizes = Vec::new();
    for &requested in &args.sizes {
        let size = FrameSize::parse(requested)?;
        if !sizes.contains(&size) {
            sizes.push(size);
        }
    }
    Ok(sizes)
}

/// The generator and the receiver must have a CPU each, both allowed to this process.
fn check_cpus(args: &PacketArgs) -> anyhow::Result<()> {
    if args.generator_cpu == args.receiver_cpu {
        bail!(
            "--generator-cpu and --receiver-cpu are both {}: the AF_XDP busy loop would share its CPU with \
             the generator and measure the scheduler",
            args.generator_cpu
        );
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `allowed`.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) };
    if rc != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    for (flag, cpu) in [
        ("--generator-cpu", args.generator_cpu),
        ("--receiver-cpu", args.receiver_cpu),
    ] {
        // SAFETY: CPU_ISSET only reads the set; cpu is checked against the set's capacity first.
        let usable = cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(cpu, &allowed) };
        if !usable {
            bail!("{flag} {cpu}: that CPU is not available to this process (see `nproc`, `taskset -p $$`)");
        }
    }
    Ok(())
}

/// Pins the calling thread to `cpu`.
fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; `cpu` was checked against CPU_SETSIZE by
    // `check_cpus`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the kernel reads size_of::<cpu_set_t>() bytes of `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        bail!(
            "pinning a thread to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Moves the calling thread (only) into the named network namespace.
fn enter_namespace(name: &str) -> anyhow::Result<()> {
    let path = Path::new("/run/netns").join(name);
    let file = File::open(&path).with_context(|| format!("opening network namespace {}", path.display()))?;
    // SAFETY: `file` is an open nsfs file; setns(CLONE_NEWNET) changes only this thread's network
    // namespace and touches no memory of ours.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "entering network namespace {name}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn interface_index(name: &str) -> anyhow::Result<u32> {
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: c_name is a valid NUL-terminated string; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        bail!("no interface {name} in this namespace");
    }
    Ok(index)
}

/// Serialises `packets` runs: two would fight over the same namespaces.
struct RunLock {
    _file: File,
}

impl RunLock {
    fn acquire() -> anyhow::Result<RunLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .with_context(|| format!("opening {LOCK_PATH}"))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            // SAFETY: flock on a file descriptor we own; it touches no memory.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(RunLock { _file: file });
            }
            check_interrupted()?;
            if Instant::now() >= deadline {
                bail!(
                    "another `xgate-bench packets` has held {LOCK_PATH} for {} s; let it finish",
                    LOCK_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `ip` with `args` (split at spaces; no argument here contains one) to completion; a
/// failure becomes one line with the command and its stderr.
fn ip(args: &str) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .context("running `ip` (is iproute2 installed?)")?;
    if !output.status.success() {
        bail!(
            "`ip {args}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// The two namespaces and the veth between them. Dropping it deletes both namespaces (and with
/// them the veth pair).
struct Topology {
    _private: (),
}

impl Topology {
    fn create() -> anyhow::Result<Topology> {
        // From here on, Drop cleans up whatever part was made.
        let topology = Topology { _private: () };
        topology.remove();
        for namespace in [TX_NAMESPACE, RX_NAMESPACE] {
            ip(&format!("netns add {namespace}")).context(
                "creating the benchmark's network namespaces (needs root and a kernel with network \
                 namespaces)",
            )?;
            ip(&format!("-n {namespace} link set lo up"))?;
            disable_ipv6(namespace)?;
        }
        let (tx_mac, rx_mac) = (format_mac(TX_MAC), format_mac(RX_MAC));
        ip(&format!(
            "link add {TX_INTERFACE} netns {TX_NAMESPACE} mtu {MTU} address {tx_mac} type veth \
             peer name {RX_INTERFACE} netns {RX_NAMESPACE} mtu {MTU} address {rx_mac}"
        ))
        .context("creating the veth pair")?;
        ip(&format!(
            "-n {TX_NAMESPACE} addr add {TX_IP}/24 dev {TX_INTERFACE}"
        ))?;
        ip(&format!("-n {TX_NAMESPACE} link set {TX_INTERFACE} up"))?;
        ip(&format!("-n {RX_NAMESPACE} link set {RX_INTERFACE} up"))?;
        Ok(topology)
    }

    /// Deletes both namespaces if they exist (stale ones from a killed run included).
    fn remove(&self) {
        for namespace in [TX_NAMESPACE, RX_NAMESPACE] {
            if namespace_exists(namespace) {
                if let Err(err) = ip(&format!("netns del {namespace}")) {
                    eprintln!("xgate-bench packets: cleanup: {err:#}");
                }
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Turns IPv6 off in `namespace`, from a short-lived thread inside it (`/proc/sys/net` follows the
/// writing thread's namespace).
fn disable_ipv6(namespace: &'static str) -> anyhow::Result<()> {
    thread::spawn(move || -> anyhow::Result<()> {
        enter_namespace(namespace)?;
        for knob in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
            if Path::new(&path).exists() {
                std::fs::write(&path, "1").with_context(|| format!("writing {path} in {namespace}"))?;
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread disabling IPv6 in {namespace} panicked"))?
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A UDP/IPv4 frame of `len` bytes (no FCS) from the generator's address to the receiver's.
fn udp_frame(len: usize) -> Vec<u8> {
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

fn warmup_for(seconds: f64) -> Duration {
    Duration::from_secs_f64((seconds * 0.25).clamp(0.1, 0.5))
}

/// Every case `repeats` times, interleaved, then the summary.
fn run_cases(args: &PacketArgs, sizes: &[FrameSize], _topology: &Topology) -> anyhow::Result<PacketReport> {
    let measure = Duration::from_secs_f64(args.seconds);
    let warmup = warmup_for(args.seconds);
    let cases: Vec<(FrameSize, ReceiverKind)> = sizes
        .iter()
        .flat_map(|&size| ReceiverKind::ALL.map(|kind| (size, kind)))
        .collect();
    let mut outcomes: Vec<Vec<RunOutcome>> = vec![Vec::new(); cases.len()];
    for repeat in 1..=args.repeats {
        for (case, &(size, kind)) in cases.iter().enumerate() {
            check_interrupted()?;
            let settings = RunSettings {
                size,
                kind,
                warmup,
                measure,
                generator_cpu: args.generator_cpu,
                receiver_cpu: args.receiver_cpu,
                batch: args.batch,
            };
            let outcome = thread::spawn(move || measure_once(&settings))
                .join()
                .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))?
                .with_context(|| format!("{} frames into {}, run {repeat}", size.label(), kind.name()))?;
            eprintln!(
                "run {repeat}/{}: {:>13} {:<8} {:>12} frames/s received ({} generated)",
                args.repeats,
                size.label(),
                kind.name(),
                group_thousands(outcome.received_pps),
                group_thousands(outcome.generated_pps),
            );
            outcomes[case].push(outcome);
        }
    }
    Ok(summarize(args, warmup, &cases, &outcomes))
}

fn summarize(
    args: &PacketArgs,
    warmup: Duration,
    cases: &[(FrameSize, ReceiverKind)],
    outcomes: &[Vec<RunOutcome>],
) -> PacketReport {
    let mut packet_path = Vec::new();
    let mut umem_backing = String::from("unused");
    let mut generator = GeneratorMode::LiveFrames.name();
    let mut zero_copy_available = false;
    for (&(size, kind), runs) in cases.iter().zip(outcomes) {
        let runs_pps: Vec<f64> = runs.iter().map(|run| run.received_pps.round()).collect();
        let generated: Vec<f64> = runs.iter().map(|run| run.generated_pps).collect();
        let sum = |field: fn(&RunOutcome) -> u64| runs.iter().map(field).sum::<u64>();
        if let Some(backing) = runs.iter().find_map(|run| run.umem_backing.clone()) {
            umem_backing = backing;
        }
        if let Some(run) = runs
            .iter()
            .find(|run| run.generator != GeneratorMode::LiveFrames.name())
        {
            generator = run.generator;
        }
        let mode = runs.first().map(|run| run.mode.clone()).unwrap_or_default();
        zero_copy_available |= mode == BindMode::ZeroCopy.name();
        packet_path.push(CaseReport {
            frame_bytes: size.requested,
            sent_bytes: size.sent,
            label: size.label(),
            receiver: kind.name(),
            mode,
            median_pps: median(&runs_pps),
            min_pps: runs_pps.iter().copied().fold(f64::INFINITY, f64::min),
            max_pps: runs_pps.iter().copied().fold(0.0, f64::max),
            runs_pps,
            generated_pps_median: median(&generated).round(),
            received_frames: sum(|run| run.received_frames),
            kernel_rx_dropped: sum(|run| run.kernel_rx_dropped),
            rx_ring_full: sum(|run| run.rx_ring_full),
            fill_ring_empty: sum(|run| run.fill_ring_empty),
            steering_redirected: sum(|run| run.steering_redirected),
        });
    }
    let mut ratios = Vec::new();
    let mut seen = Vec::new();
    for case in &packet_path {
        if seen.contains(&case.frame_bytes) {
            continue;
        }
        seen.push(case.frame_bytes);
        let median_of = |receiver: ReceiverKind| {
            packet_path
                .iter()
                .find(|c| c.frame_bytes == case.frame_bytes && c.receiver == receiver.name())
                .map(|c| c.median_pps)
        };
        if let (Some(drop), Some(af_xdp)) = (median_of(ReceiverKind::XdpDrop), median_of(ReceiverKind::AfXdp))
        {
            let ratio = if drop > 0.0 { af_xdp / drop } else { 0.0 };
            ratios.push(RatioReport {
                frame_bytes: case.frame_bytes,
                af_xdp_over_drop: (ratio * 1000.0).round() / 1000.0,
            });
        }
    }
    PacketReport {
        packet_path,
        ratios,
        setup: SetupReport {
            seconds: args.seconds,
            warmup_seconds: warmup.as_secs_f64(),
            repeats: args.repeats,
            generator_cpu: args.generator_cpu,
            receiver_cpu: args.receiver_cpu,
            link: "veth (xgp-tx -> xgp-rx), MTU 1500",
            zero_copy_available,
            umem_backing,
            generator,
            live_frames_batch: args.batch,
        },
    }
}

/// The median of `values` (mean of the middle two for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// `1234567.8` → `"1,234,568"`.
fn group_thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn render_table(report: &PacketReport) -> String {
    let setup = &report.setup;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\npacket path on {}: generator on CPU {} ({}, batch {}), receiver on CPU {}, {} run(s) × {} s \
         after {} s warm-up",
        setup.link,
        setup.generator_cpu,
        setup.generator,
        setup.live_frames_batch,
        setup.receiver_cpu,
        setup.repeats,
        setup.seconds,
        setup.warmup_seconds
    );
    let _ = writeln!(
        out,
        "{:<13} {:<9} {:<28} {:>12} {:>27} {:>14} {:>11}",
        "frame", "receiver", "mode", "median pps", "min – max pps", "generated pps", "rx_dropped"
    );
    for case in &report.packet_path {
        let mode = match (case.receiver, case.mode.as_str()) {
            ("af_xdp", "copy") => "copy (veth: no zero-copy)".to_string(),
            (_, mode) => mode.to_string(),
        };
        let dropped = if case.receiver == "af_xdp" {
            group_thousands(case.kernel_rx_dropped as f64)
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "{:<13} {:<9} {:<28} {:>12} {:>27} {:>14} {:>11}",
            case.label,
            case.receiver,
            mode,
            group_thousands(case.median_pps),
            format!(
                "{} – {}",
                group_thousands(case.min_pps),
                group_thousands(case.max_pps)
            ),
            group_thousands(case.generated_pps_median),
            dropped
        );
    }
    for ratio in &report.ratios {
        let label = report
            .packet_path
            .iter()
            .find(|c| c.frame_bytes == ratio.frame_bytes)
            .map(|c| c.label.clone())
            .unwrap_or_default();
        let _ = writeln!(out, "AF_XDP / XDP_DROP at {label}: {:.2}", ratio.af_xdp_over_drop);
    }
    let _ = writeln!(out, "AF_XDP UMEM: {}", setup.umem_backing);
    out
}

/// What one run does; sent to the receiver thread.
#[derive(Clone, Copy, Debug)]
struct RunSettings {
    size: FrameSize,
    kind: ReceiverKind,
    warmup: Duration,
    measure: Duration,
    generator_cpu: usize,
    receiver_cpu: usize,
    batch: u32,
}

/// Flags shared between the receiver (who measures) and the generator thread.
#[derive(Default)]
struct GeneratorControl {
    /// Set by the receiver when the run is over.
    stop: AtomicBool,
    /// Set by the generator thread when it has stopped, for whatever reason.
    finished: AtomicBool,
}

/// The generator thread, running. It sends in one BPF_PROG_TEST_RUN call that would last far
/// longer than the run (each call costs a fixed ~25 ms, a gap a measurement must not contain);
/// stopping it sets the stop flag and signals the thread until its call returns.
/// Dropping it stops it too, so every way out of a run (errors and panics included) ends the
/// generator.
struct RunningGenerator {
    control: Arc<GeneratorControl>,
    generator: Arc<FrameGenerator>,
    thread: Option<thread::JoinHandle<anyhow::Result<()>>>,
}

impl RunningGenerator {
    fn start(generator: Arc<FrameGenerator>, frame: Vec<u8>, settings: RunSettings) -> RunningGenerator {
        let control = Arc::new(GeneratorControl::default());
        let thread = {
            let control = Arc::clone(&control);
            let generator = Arc::clone(&generator);
            thread::spawn(move || {
                let result = generate(&generator, &frame, settings, &control.stop);
                control.finished.store(true, Ordering::Release);
                result
            })
        };
        RunningGenerator {
            control,
            generator,
            thread: Some(thread),
        }
    }

    /// Whether the generator thread has ended (on its own, that is an error).
    fn finished(&self) -> bool {
        self.control.finished.load(Ordering::Acquire)
    }

    /// Stops the generator and returns how its thread ended.
    fn stop(mut self) -> anyhow::Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.control.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + GENERATOR_STOP_TIMEOUT;
        // The signal can land just before the thread enters the kernel: repeat until it is out.
        while !self.finished() {
            if Instant::now() >= deadline {
                bail!(
                    "the generator did not stop within {} s",
                    GENERATOR_STOP_TIMEOUT.as_secs()
                );
            }
            // A packet-socket send sees the flag; a live-frames call, inside the kernel, the signal.
            self.generator.interrupt();
            // SAFETY: the thread has not been joined, so its pthread_t is still valid; the signal
            // has a do-nothing handler (installed by `run`), so it only interrupts a system call.
            unsafe { libc::pthread_kill(thread.as_pthread_t(), GENERATOR_STOP_SIGNAL) };
            thread::sleep(Duration::from_millis(2));
        }
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?
    }
}

impl Drop for RunningGenerator {
    fn drop(&mut self) {
        if let Err(err) = self.halt() {
            eprintln!("xgate-bench packets: {err:#}");
        }
    }
}

/// The generator thread's body: in the tx namespace, pinned, sends until `stop` is set (the
/// stopper's signal ends the call in progress) or the process is interrupted.
fn generate(
    generator: &FrameGenerator,
    frame: &[u8],
    settings: RunSettings,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    enter_namespace(TX_NAMESPACE)?;
    pin_current_thread(settings.generator_cpu)?;
    let ifindex = interface_index(TX_INTERFACE)?;
    while !stop.load(Ordering::Acquire) && !interrupted() {
        // Completed (all u32::MAX frames, hours from now) or interrupted: check the flags again.
        let _: SendEnd = generator.send(ifindex, frame, u32::MAX, settings.batch)?;
    }
    Ok(())
}

/// The receiver under test, attached to xgp-rx in the rx namespace.
enum Receiver {
    Drop(DropCounter),
    AfXdp(Box<AfXdpReceiver>),
}

/// xgate's steering program and one AF_XDP socket on queue 0 of xgp-rx.
struct AfXdpReceiver {
    steering: Steering,
    port: XskPort,
    /// Frames userspace has taken off the rx ring so far.
    received: u64,
}

/// A reading of the receiver's counters (and the generator's) at one instant.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    at: Option<Instant>,
    received: u64,
    sent: u64,
    rx_dropped: u64,
    rx_ring_full: u64,
    fill_ring_empty: u64,
    redirected: u64,
}

impl Receiver {
    fn attach(kind: ReceiverKind) -> anyhow::Result<Receiver> {
        match kind {
            ReceiverKind::XdpDrop => Ok(Receiver::Drop(
                DropCounter::attach(RX_INTERFACE).context("attaching the drop program")?,
            )),
            ReceiverKind::AfXdp => {
                let mut steering =
                    Steering::attach(RX_INTERFACE, RX_IP).context("attaching the steering program")?;
                let port = XskPort::open(&PortConfig {
                    interface: RX_INTERFACE.to_string(),
                    queue: 0,
                    frame_size: UMEM_FRAME_SIZE,
                    frames: UMEM_FRAMES,
                    allow_normal_pages: true,
                })
                .context("opening the AF_XDP socket")?;
                steering
                    .register_socket(0, port.fd())
                    .context("registering the AF_XDP socket")?;
                Ok(Receiver::AfXdp(Box::new(AfXdpReceiver {
                    steering,
                    port,
                    received: 0,
                })))
            }
        }
    }

    fn mode(&self) -> String {
        match self {
            Receiver::Drop(_) => "native XDP".to_string(),
            Receiver::AfXdp(af_xdp) => af_xdp.port.mode().name().to_string(),
        }
    }

    fn umem_backing(&self) -> Option<String> {
        match self {
            Receiver::Drop(_) => None,
            Receiver::AfXdp(af_xdp) => Some(match af_xdp.port.backing() {
                xgate_hugepages::Backing::HugePages2M => "2 MiB hugepages".to_string(),
                xgate_hugepages::Backing::NormalPages => match af_xdp.port.hugepage_hint() {
                    Some(hint) => format!("normal 4 KiB pages (no free hugepages; {hint})"),
                    None => "normal 4 KiB pages".to_string(),
                },
            }),
        }
    }

    /// Keeps receiving until `deadline` (or until `until` says so, checked between batches).
    /// The AF_XDP receiver busy-polls its rx ring; the drop program needs no userspace and the
    /// thread sleeps in short steps.
    fn serve(
        &mut self,
        deadline: Instant,
        generator: &RunningGenerator,
        mut until: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<()> {
        loop {
            check_interrupted()?;
            if generator.finished() {
                bail!("the generator stopped early");
            }
            if until(self) || Instant::now() >= deadline {
                return Ok(());
            }
            match self {
                Receiver::Drop(_) => thread::sleep(Duration::from_millis(1)),
                Receiver::AfXdp(af_xdp) => {
                    // A few hundred batches between clock reads.
                    for _ in 0..256 {
                        af_xdp.received += af_xdp.port.discard_rx() as u64;
                    }
                }
            }
        }
    }

    fn received(&self) -> anyhow::Result<u64> {
        match self {
            Receiver::Drop(counter) => Ok(counter.packets()?.packets),
            Receiver::AfXdp(af_xdp) => Ok(af_xdp.received),
        }
    }

    fn snapshot(&self, generator: &FrameGenerator) -> anyhow::Result<Snapshot> {
        let mut snapshot = Snapshot {
            received: self.received()?,
            sent: generator.sent()?.packets,
            at: Some(Instant::now()),
            ..Snapshot::default()
        };
        if let Receiver::AfXdp(af_xdp) = self {
            let kernel = af_xdp.port.kernel_stats()?;
            snapshot.rx_dropped = kernel.rx_dropped;
            snapshot.rx_ring_full = kernel.rx_ring_full;
            snapshot.fill_ring_empty = kernel.rx_fill_ring_empty;
            snapshot.redirected = af_xdp.steering.verdict_stats()?[Verdict::RedirectIpv4 as usize].packets;
        }
        Ok(snapshot)
    }
}

/// One run, on a thread of its own that enters the rx namespace: attach the receiver, start the
/// generator, wait for the first frame, warm up, measure, stop the generator.
fn measure_once(settings: &RunSettings) -> anyhow::Result<RunOutcome> {
    enter_namespace(RX_NAMESPACE)?;
    pin_current_thread(settings.receiver_cpu)?;
    let mut receiver = Receiver::attach(settings.kind)?;
    let generator = Arc::new(FrameGenerator::load().context("loading the generator program")?);
    let running = RunningGenerator::start(Arc::clone(&generator), udp_frame(settings.size.sent), *settings);

    let measured = (|| -> anyhow::Result<(Snapshot, Snapshot)> {
        let first_frame_deadline = Instant::now() + FIRST_FRAME_TIMEOUT;
        receiver.serve(first_frame_deadline, &running, |r| r.received().unwrap_or(0) > 0)?;
        if receiver.received()? == 0 {
            bail!(
                "no frame reached the receiver within {} s of starting the generator ({} sent)",
                FIRST_FRAME_TIMEOUT.as_secs(),
                generator.sent()?.packets
            );
        }
        receiver.serve(Instant::now() + settings.warmup, &running, |_| false)?;
        let start = receiver.snapshot(&generator)?;
        let end_at = start.at.unwrap_or_else(Instant::now) + settings.measure;
        receiver.serve(end_at, &running, |_| false)?;
        let end = receiver.snapshot(&generator)?;
        Ok((start, end))
    })();

    // The generator's own error, if it had one, explains a failed measurement best.
    running.stop().context("generator")?;
    let (start, end) = measured?;

    let elapsed = match (start.at, end.at) {
        (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
        _ => 0.0,
    };
    if elapsed <= 0.0 {
        bail!("empty measurement window");
    }
    let received_frames = end.received - start.received;
    Ok(RunOutcome {
        received_pps: received_frames as f64 / elapsed,
        generated_pps: (end.sent - start.sent) as f64 / elapsed,
        received_frames,
        mode: receiver.mode(),
        kernel_rx_dropped: end.rx_dropped - start.rx_dropped,
        rx_ring_full: end.rx_ring_full - start.rx_ring_full,
        fill_ring_empty: end.fill_ring_empty - start.fill_ring_empty,
        steering_redirected: end.redirected - start.redirected,
        umem_backing: receiver.umem_backing(),
        generator: generator.mode().name(),
    })
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

    #[test]
    fn sizes_follow_the_documented_convention() {
        assert_eq!(FrameSize::parse(64).unwrap().sent, 60);
        assert_eq!(FrameSize::parse(64).unwrap().label(), "64 B");
        assert_eq!(FrameSize::parse(1514).unwrap().sent, 1514);
        assert_eq!(FrameSize::parse(1514).unwrap().label(), "1500 B (MTU)");
        assert_eq!(FrameSize::parse(512).unwrap().label(), "512 B");
        assert!(FrameSize::parse(59).is_err());
        assert!(FrameSize::parse(1515).is_err());
    }

    #[test]
    fn median_and_grouping() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(group_thousands(1_234_567.4), "1,234,567");
        assert_eq!(group_thousands(999.0), "999");
    }
}
