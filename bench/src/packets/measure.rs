//! One measured run: attach the receiver (XDP_DROP, or the steering program and an AF_XDP
//! socket) in the rx namespace, run the generator thread in the tx namespace, wait for the first
//! frame, warm up, count, stop the generator.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use xgate_userstack::xsk::{BindMode, PortConfig, XskPort};
use xgate_xdp::{
    bench::{DropCounter, FrameGenerator, GeneratorMode, SendEnd},
    Steering, XdpVerdict,
};

use crate::{
    process::{check_interrupted, interrupted},
    sys,
};

use super::{
    frame::udp_frame,
    topology::{enter_namespace, interface_index, pin_current_thread},
    xsk_generator, FrameSize, GeneratorChoice, ReceiverKind, FIRST_FRAME_TIMEOUT, GENERATOR_STOP_SIGNAL,
    GENERATOR_STOP_TIMEOUT, RX_INTERFACE, RX_IP, RX_NAMESPACE, TX_INTERFACE, TX_NAMESPACE, UMEM_FRAMES,
    UMEM_FRAME_SIZE,
};

/// What one run measured, over its measurement window.
#[derive(Clone, Debug, Default)]
pub(super) struct RunOutcome {
    pub(super) received_pps: f64,
    pub(super) generated_pps: f64,
    pub(super) received_frames: u64,
    /// "native XDP", or the AF_XDP bind mode.
    pub(super) mode: String,
    pub(super) kernel_rx_dropped: u64,
    pub(super) rx_ring_full: u64,
    pub(super) fill_ring_empty: u64,
    pub(super) steering_redirected: u64,
    /// The AF_XDP UMEM's backing, for af_xdp runs.
    pub(super) umem_backing: Option<String>,
    /// How the generator sent ([`GeneratorMode::name`] or [`af_xdp_generator_name`]).
    pub(super) generator: &'static str,
}

/// What one run does; sent to the receiver thread.
#[derive(Clone, Copy, Debug)]
pub(super) struct RunSettings {
    pub(super) size: FrameSize,
    pub(super) kind: ReceiverKind,
    pub(super) warmup: Duration,
    pub(super) measure: Duration,
    pub(super) generator_cpu: usize,
    pub(super) receiver_cpu: usize,
    pub(super) batch: u32,
    pub(super) generator: GeneratorChoice,
}

/// Flags shared between the receiver (who measures) and the generator thread.
#[derive(Default)]
struct GeneratorControl {
    /// Set by the receiver when the run is over.
    stop: AtomicBool,
    /// Set by the generator thread when it has stopped, for whatever reason.
    finished: AtomicBool,
    /// Frames the AF_XDP generator has sent (the live-frames and packet-socket paths count in
    /// the [`FrameGenerator`]).
    af_xdp_sent: AtomicU64,
    /// How the generator thread ended up sending, once it has decided.
    mode: OnceLock<&'static str>,
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
                let result = generate(&generator, &frame, settings, &control);
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

    /// Every frame sent so far, whichever way the generator sends.
    fn sent(&self) -> anyhow::Result<u64> {
        Ok(self.generator.sent()?.packets + self.control.af_xdp_sent.load(Ordering::Acquire))
    }

    /// How the generator sends (before its thread has decided: live frames, its first try).
    fn mode(&self) -> &'static str {
        self.control
            .mode
            .get()
            .copied()
            .unwrap_or(GeneratorMode::LiveFrames.name())
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
            // The signal has a do-nothing handler (installed by `run`), so it only interrupts a
            // system call.
            sys::signal_thread(&thread, GENERATOR_STOP_SIGNAL);
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
/// stopper's signal ends a live-frames call in progress) or the process is interrupted.
///
/// `auto` sends one frame to learn whether the kernel allows live-frames runs: if it does, they
/// are the fastest generator; if not, the AF_XDP socket is (see [`xsk_generator`]).
fn generate(
    generator: &FrameGenerator,
    frame: &[u8],
    settings: RunSettings,
    control: &GeneratorControl,
) -> anyhow::Result<()> {
    enter_namespace(TX_NAMESPACE)?;
    pin_current_thread(settings.generator_cpu)?;
    let ifindex = interface_index(TX_INTERFACE)?;
    let af_xdp = match settings.generator {
        GeneratorChoice::AfXdp => Some(false),
        GeneratorChoice::LiveFrames => None,
        GeneratorChoice::Auto => {
            let _: SendEnd = generator.send(ifindex, frame, 1, 1)?;
            (generator.mode() != GeneratorMode::LiveFrames).then_some(true)
        }
    };
    if let Some(live_refused) = af_xdp {
        return xsk_generator::send_until(frame, &control.af_xdp_sent, &control.stop, |mode| {
            let _ = control.mode.set(af_xdp_generator_name(mode, live_refused));
        });
    }
    while !control.stop.load(Ordering::Acquire) && !interrupted() {
        // Completed (all u32::MAX frames, hours from now) or interrupted: check the flags again.
        let _: SendEnd = generator.send(ifindex, frame, u32::MAX, settings.batch)?;
        let _ = control.mode.set(generator.mode().name());
    }
    Ok(())
}

/// The report's name of the AF_XDP generator, by its bind mode and whether `auto` chose it
/// because the kernel refused live frames.
pub(super) fn af_xdp_generator_name(mode: BindMode, live_refused: bool) -> &'static str {
    match (mode, live_refused) {
        (BindMode::Copy, false) => "af_xdp tx, copy mode",
        (BindMode::Copy, true) => "af_xdp tx, copy mode (live frames refused by the kernel)",
        (BindMode::ZeroCopy, false) => "af_xdp tx, zero-copy",
        (BindMode::ZeroCopy, true) => "af_xdp tx, zero-copy (live frames refused by the kernel)",
    }
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
                    numa_node: None,
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

    fn snapshot(&self, generator: &RunningGenerator) -> anyhow::Result<Snapshot> {
        let mut snapshot = Snapshot {
            received: self.received()?,
            sent: generator.sent()?,
            at: Some(Instant::now()),
            ..Snapshot::default()
        };
        if let Receiver::AfXdp(af_xdp) = self {
            let kernel = af_xdp.port.kernel_stats()?;
            snapshot.rx_dropped = kernel.rx_dropped;
            snapshot.rx_ring_full = kernel.rx_ring_full;
            snapshot.fill_ring_empty = kernel.rx_fill_ring_empty;
            snapshot.redirected = af_xdp.steering.verdict_stats()?[XdpVerdict::RedirectIpv4 as usize].packets;
        }
        Ok(snapshot)
    }
}

/// One run, on a thread of its own that enters the rx namespace: attach the receiver, start the
/// generator, wait for the first frame, warm up, measure, stop the generator.
pub(super) fn measure_once(settings: &RunSettings) -> anyhow::Result<RunOutcome> {
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
                running.sent()?
            );
        }
        receiver.serve(Instant::now() + settings.warmup, &running, |_| false)?;
        let start = receiver.snapshot(&running)?;
        let end_at = start.at.unwrap_or_else(Instant::now) + settings.measure;
        receiver.serve(end_at, &running, |_| false)?;
        let end = receiver.snapshot(&running)?;
        Ok((start, end))
    })();

    let generator_mode = running.mode();
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
        generator: generator_mode,
    })
}
