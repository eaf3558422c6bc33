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
//!   generator: live frames, or AF_XDP tx         receiver: xgate_bench_drop, or xgate_steer +
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
//!   program). A thread in the tx namespace pinned to `--generator-cpu` (default 1) sends, in the
//!   fastest way the kernel allows (`--generator auto`):
//!   - live frames: `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` runs an XDP_TX program
//!     on the frame in a loop, and the kernel transmits every copy out of xgp-tx with no skb. One
//!     call lasts longer than the run and is stopped by a signal (each call costs a fixed ~25 ms
//!     on this kernel, a pause no measurement window may contain); the program counts what it
//!     sends.
//!   - where the kernel refuses live frames (this lab's answers EPERM): an AF_XDP socket on
//!     xgp-tx queue 0 whose tx ring is kept full ([`xsk_generator`]); its completions are the
//!     generated count. On this machine it sends about a third more than the AF_PACKET
//!     `sendmmsg` fallback that `--generator live-frames` keeps (961k against 712k frames/s at
//!     64 B), and it is still the bound of the XDP_DROP case: the report says so when received
//!     equals generated.
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
//!
//! This module holds the options, the constants of the topology and the frames, and the run of
//! every case; the namespaces and veth, the frames, one measured run, and the summary each have a
//! module of their own.

mod frame;
mod measure;
mod summary;
mod topology;
mod xsk_generator;

use std::{net::Ipv4Addr, thread, time::Duration};

use anyhow::{bail, Context};
use clap::Args;
use xgate_xdp::bench::MAX_LIVE_BATCH;

use crate::{
    process::{check_interrupted, install_interrupt_handlers, require_root},
    sys,
};

use self::{
    measure::{measure_once, RunOutcome, RunSettings},
    summary::{group_thousands, render_table, summarize, PacketReport},
    topology::{RunLock, Topology},
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
    /// How frames are sent: `auto` uses live-frames test runs where the kernel allows them and
    /// an AF_XDP socket on xgp-tx where it does not.
    #[arg(long, value_enum, default_value_t = GeneratorChoice::Auto)]
    pub generator: GeneratorChoice,
}

/// The generator a run uses (`--generator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GeneratorChoice {
    /// Live frames if the kernel allows them, else AF_XDP.
    Auto,
    /// An AF_XDP socket's tx ring on xgp-tx.
    AfXdp,
    /// `BPF_PROG_TEST_RUN` live frames, falling back to an AF_PACKET socket where the kernel
    /// refuses them.
    LiveFrames,
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

/// The handler of [`GENERATOR_STOP_SIGNAL`]: its only job is to make the generator's system call
/// return (EINTR); the generator then sees its stop flag.
extern "C" fn ignore_signal(_signal: libc::c_int) {}

/// Runs the packet-path benchmark described in the module doc.
pub fn run(args: &PacketArgs) -> anyhow::Result<()> {
    let sizes = validate(args)?;
    require_root("`xgate-bench packets` needs root: it creates network namespaces and loads XDP programs")?;
    check_cpus(args)?;
    install_interrupt_handlers();
    xgate_gateway::sys::on_signals(&[GENERATOR_STOP_SIGNAL], ignore_signal);
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
    let allowed = sys::allowed_cpus().context("sched_getaffinity")?;
    for (flag, cpu) in [
        ("--generator-cpu", args.generator_cpu),
        ("--receiver-cpu", args.receiver_cpu),
    ] {
        if !allowed.contains(cpu) {
            bail!("{flag} {cpu}: that CPU is not available to this process (see `nproc`, `taskset -p $$`)");
        }
    }
    Ok(())
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
                generator: args.generator,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
