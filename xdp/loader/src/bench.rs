//! The two benchmark programs of xgate's XDP object, for `xgate-bench packets`; the gateway never
//! uses this module.
//!
//! - [`DropCounter`]: `xgate_bench_drop` attached natively to an interface. It counts every frame
//!   (per CPU) and drops it: the rate at which the interface hands frames to XDP at all, the
//!   ceiling for the AF_XDP path on the same interface.
//! - [`FrameGenerator`]: `xgate_bench_tx` (XDP_TX), run by the kernel through BPF_PROG_TEST_RUN in
//!   live-frames mode: each call transmits one frame `count` times out of the interface given as
//!   the run's ingress, in batches, with no socket or skb in the way. The program counts what it
//!   sends, so the count can be read while a call is still going on.
//!
//! Every live-frames call costs a fixed ~25 ms on top of its frames (measured: 8192 frames per
//! call gave 0.3 Mpps, 4 Mi frames per call 21 Mpps), so a generator that wants a steady rate
//! makes few, long calls and ends the last one early with [`FrameGenerator::interrupt`] and a
//! signal to the sending thread ([`SendEnd::Interrupted`]).
//!
//! Some kernels refuse live-frames runs (this lab's answers EPERM). The generator then sends the
//! same frames through an AF_PACKET socket bound to the interface, with the qdisc bypassed and
//! `sendmmsg` batches: slower (every frame becomes an skb), counted in userspace, and said by
//! [`FrameGenerator::mode`] so that a report can name it.
//!
//! Invariants:
//! - Each value loads the shared object on its own and loads only its own program, so its maps
//!   (and counters) are private to it and start at zero.
//! - [`DropCounter`] is attached natively or not at all (a generic-mode number would measure the
//!   skb path, not XDP), through a BPF link: dropping it, or the process dying, detaches it.
//!
//! The packet socket's calls into the kernel are this module's `unsafe` (allowed here, denied
//! by the workspace).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aya::{
    maps::PerCpuArray,
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
    sys::SyscallError,
    Ebpf, EbpfLoader,
};
use xgate_xdp_common::{
    ActionStats, BENCH_DROP_PROGRAM, BENCH_DROP_STATS_MAP, BENCH_TX_PROGRAM, BENCH_TX_STATS_MAP,
};

use crate::{load_error, program_error, SteeringError, PROGRAM};

/// Most frames the kernel takes per live-frames batch (TEST_XDP_MAX_BATCH).
pub const MAX_LIVE_BATCH: u32 = 256;

/// Loads the whole object (maps included) and then only the program `name`.
fn load_only(name: &str) -> Result<Ebpf, SteeringError> {
    let mut ebpf = EbpfLoader::new().load(PROGRAM).map_err(load_error)?;
    xdp_program(&mut ebpf, name)?
        .load()
        .map_err(|e| program_error(e, "(not attached)"))?;
    Ok(ebpf)
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, SteeringError> {
    ebpf.program_mut(name)
        .ok_or_else(|| SteeringError::Other(format!("program {name} missing from object")))?
        .try_into()
        .map_err(|e: ProgramError| SteeringError::Other(e.to_string()))
}

/// `xgate_bench_drop`, loaded and (unless made by [`DropCounter::load`]) attached to one
/// interface in native mode. Dropping it detaches the program.
pub struct DropCounter {
    ebpf: Ebpf,
    interface: Option<String>,
}

impl DropCounter {
    /// Loads the drop program and attaches it natively to `interface` (in this thread's network
    /// namespace). Fails, rather than falling back to generic mode, if the driver refuses.
    pub fn attach(interface: &str) -> Result<DropCounter, SteeringError> {
        let mut counter = DropCounter::load()?;
        xdp_program(&mut counter.ebpf, BENCH_DROP_PROGRAM)?
            .attach(interface, XdpMode::Driver)
            .map_err(|e| program_error(e, interface))?;
        counter.interface = Some(interface.to_string());
        Ok(counter)
    }

    /// Loads and verifies the drop program without attaching it (for [`DropCounter::run_on_frame`]).
    pub fn load() -> Result<DropCounter, SteeringError> {
        Ok(DropCounter {
            ebpf: load_only(BENCH_DROP_PROGRAM)?,
            interface: None,
        })
    }

    /// The interface the program is attached to, if any.
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    /// Runs the program once on `frame` in the kernel (BPF_PROG_TEST_RUN) and returns its XDP
    /// action. The counters move as for a real frame.
    pub fn run_on_frame(&mut self, frame: &[u8]) -> Result<u32, SteeringError> {
        let options = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        };
        xdp_program(&mut self.ebpf, BENCH_DROP_PROGRAM)?
            .test_run(options)
            .map(|result| result.return_value)
            .map_err(|e| SteeringError::Other(format!("test run: {e}")))
    }

    /// Every frame the program has seen (and dropped) so far, summed over all CPUs.
    pub fn packets(&self) -> Result<ActionStats, SteeringError> {
        summed_counter(&self.ebpf, BENCH_DROP_STATS_MAP)
    }
}

/// Entry 0 of the per-CPU [`ActionStats`] array `name`, summed over all CPUs.
fn summed_counter(ebpf: &Ebpf, name: &str) -> Result<ActionStats, SteeringError> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| SteeringError::Other(format!("map {name} missing")))?;
    let stats =
        PerCpuArray::<_, ActionStats>::try_from(map).map_err(|e| SteeringError::Other(e.to_string()))?;
    let per_cpu = stats
        .get(&0, 0)
        .map_err(|e| SteeringError::Other(e.to_string()))?;
    Ok(per_cpu
        .iter()
        .fold(ActionStats::default(), |total, cpu| ActionStats {
            packets: total.packets + cpu.packets,
            bytes: total.bytes + cpu.bytes,
        }))
}

/// How a [`FrameGenerator::send`] call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendEnd {
    /// Every requested frame was sent.
    Completed,
    /// A signal reached the sending thread first (EINTR); part of the frames were sent, as
    /// [`FrameGenerator::sent`] tells.
    Interrupted,
}

/// The kernel's `struct xdp_md` as BPF_PROG_TEST_RUN takes it in `ctx_in`: six native-endian
/// u32 (data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex).
fn xdp_md_bytes(frame_len: u32, ingress_ifindex: u32, rx_queue_index: u32) -> [u8; 24] {
    // The kernel insists on data = 0, data_meta = 0, data_end = the frame's length and
    // egress_ifindex = 0.
    let fields = [0, frame_len, 0, ingress_ifindex, rx_queue_index, 0u32];
    let mut bytes = [0u8; 24];
    for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    bytes
}

/// How a [`FrameGenerator`] puts frames on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratorMode {
    /// `xgate_bench_tx` through BPF_PROG_TEST_RUN in live-frames mode (XDP_TX, no skb).
    LiveFrames,
    /// An AF_PACKET socket with the qdisc bypassed, in `sendmmsg` batches: the kernel refused
    /// live-frames runs.
    PacketSocket,
}

impl GeneratorMode {
    pub fn name(self) -> &'static str {
        match self {
            GeneratorMode::LiveFrames => "xdp live frames",
            GeneratorMode::PacketSocket => "af_packet sendmmsg (live frames refused by the kernel)",
        }
    }
}

/// A frame generator: `xgate_bench_tx` driven by BPF_PROG_TEST_RUN in live-frames mode, or,
/// where the kernel refuses that, an AF_PACKET socket (see the module docs).
pub struct FrameGenerator {
    ebpf: Ebpf,
    /// The kernel refused a live-frames run: every send goes through a packet socket.
    live_refused: AtomicBool,
    /// Set by [`FrameGenerator::interrupt`], taken by the send it ends.
    interrupted: AtomicBool,
    /// Frames and bytes the packet-socket path sent (the program counts the live ones).
    socket_packets: AtomicU64,
    socket_bytes: AtomicU64,
}

impl FrameGenerator {
    /// Loads and verifies the generator program.
    pub fn load() -> Result<FrameGenerator, SteeringError> {
        Ok(FrameGenerator {
            ebpf: load_only(BENCH_TX_PROGRAM)?,
            live_refused: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            socket_packets: AtomicU64::new(0),
            socket_bytes: AtomicU64::new(0),
        })
    }

    /// How the last send put its frames on the wire (live frames until the kernel refuses them).
    pub fn mode(&self) -> GeneratorMode {
        if self.live_refused.load(Ordering::Relaxed) {
            GeneratorMode::PacketSocket
        } else {
            GeneratorMode::LiveFrames
        }
    }

    /// Every frame sent so far by this generator (all calls, all CPUs), including by a call still
    /// running on another thread.
    pub fn sent(&self) -> Result<ActionStats, SteeringError> {
        let live = summed_counter(&self.ebpf, BENCH_TX_STATS_MAP)?;
        Ok(ActionStats {
            packets: live.packets + self.socket_packets.load(Ordering::Relaxed),
            bytes: live.bytes + self.socket_bytes.load(Ordering::Relaxed),
        })
    }

    /// Ends the send in progress (or the next one) early. A live-frames call is inside the
    /// kernel: the caller also signals the sending thread, which makes the call return EINTR.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Release);
    }

    /// Transmits `frame` `count` times out of interface `ifindex` (rx queue 0), `batch` frames
    /// (1..=[`MAX_LIVE_BATCH`]) per kernel batch, and returns when the kernel has handed them all
    /// to the driver, or early after [`FrameGenerator::interrupt`] or a signal to the calling
    /// thread. `ifindex` is looked up in the calling thread's network namespace. Frames the driver
    /// refuses (a full ring on the far side of a veth, say) are dropped silently: count what
    /// arrives at the receiver, not what was sent.
    pub fn send(&self, ifindex: u32, frame: &[u8], count: u32, batch: u32) -> Result<SendEnd, SteeringError> {
        if !(1..=MAX_LIVE_BATCH).contains(&batch) {
            return Err(SteeringError::Other(format!(
                "live-frames batch must be 1..={MAX_LIVE_BATCH}, got {batch}"
            )));
        }
        if count == 0 {
            return Ok(SendEnd::Completed);
        }
        if self.interrupted.swap(false, Ordering::AcqRel) {
            return Ok(SendEnd::Interrupted);
        }
        if self.live_refused.load(Ordering::Relaxed) {
            return self.send_on_packet_socket(ifindex, frame, count, batch);
        }
        match self.send_live(ifindex, frame, count, batch) {
            Err(LiveSendError::Refused) => {
                self.live_refused.store(true, Ordering::Relaxed);
                self.send_on_packet_socket(ifindex, frame, count, batch)
            }
            Err(LiveSendError::Failed(e)) => Err(e),
            Ok(SendEnd::Interrupted) => {
                self.interrupted.store(false, Ordering::Release);
                Ok(SendEnd::Interrupted)
            }
            Ok(end) => Ok(end),
        }
    }

    fn send_live(
        &self,
        ifindex: u32,
        frame: &[u8],
        count: u32,
        batch: u32,
    ) -> Result<SendEnd, LiveSendError> {
        let frame_len = u32::try_from(frame.len()).map_err(|_| {
            LiveSendError::Failed(SteeringError::Other(format!(
                "frame of {} bytes is too long",
                frame.len()
            )))
        })?;
        let context = xdp_md_bytes(frame_len, ifindex, 0);
        let options = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&context),
            repeat: count,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..TestRunOptions::new()
        };
        let program: &Xdp = self
            .ebpf
            .program(BENCH_TX_PROGRAM)
            .ok_or_else(|| {
                LiveSendError::Failed(SteeringError::Other(format!(
                    "program {BENCH_TX_PROGRAM} missing from object"
                )))
            })?
            .try_into()
            .map_err(|e: ProgramError| LiveSendError::Failed(SteeringError::Other(e.to_string())))?;
        match program.test_run(options) {
            Ok(_) => Ok(SendEnd::Completed),
            Err(ProgramError::SyscallError(SyscallError { io_error, .. })) => match io_error.raw_os_error() {
                Some(libc::EINTR) => Ok(SendEnd::Interrupted),
                Some(libc::EPERM) | Some(libc::EOPNOTSUPP) => Err(LiveSendError::Refused),
                _ => Err(LiveSendError::Failed(live_error(ifindex, &io_error))),
            },
            Err(e) => Err(LiveSendError::Failed(live_error(ifindex, &e))),
        }
    }

    /// The fallback: `count` copies of `frame` through an AF_PACKET socket bound to `ifindex`,
    /// `batch` per `sendmmsg`, the qdisc bypassed (as live frames bypass it).
    fn send_on_packet_socket(
        &self,
        ifindex: u32,
        frame: &[u8],
        count: u32,
        batch: u32,
    ) -> Result<SendEnd, SteeringError> {
        let socket = PacketSocket::bind(ifindex)?;
        let copies = vec![frame; batch as usize];
        let mut left = count;
        while left > 0 {
            if self.interrupted.swap(false, Ordering::AcqRel) {
                return Ok(SendEnd::Interrupted);
            }
            let now = left.min(batch) as usize;
            let sent = match socket.send_batch(&copies[..now]) {
                Ok(sent) => sent as u32,
                Err(error) if error.raw_os_error() == Some(libc::EINTR) => return Ok(SendEnd::Interrupted),
                Err(error) => {
                    return Err(SteeringError::Other(format!(
                        "sendmmsg on a packet socket bound to ifindex {ifindex}: {error}"
                    )))
                }
            };
            left -= sent;
            self.socket_packets.fetch_add(u64::from(sent), Ordering::Relaxed);
            self.socket_bytes
                .fetch_add(u64::from(sent) * frame.len() as u64, Ordering::Relaxed);
        }
        Ok(SendEnd::Completed)
    }
}

/// Why a live-frames run did not happen.
enum LiveSendError {
    /// The kernel does not allow live-frames runs (EPERM, EOPNOTSUPP).
    Refused,
    Failed(SteeringError),
}

fn live_error(ifindex: u32, error: &dyn std::fmt::Debug) -> SteeringError {
    SteeringError::Other(format!(
        "live-frames test run out of ifindex {ifindex}: {error:?}; the interface must be up, in this \
         thread's network namespace, and for veth its peer needs an XDP program"
    ))
}

/// An AF_PACKET raw socket bound to one interface for sending whole Ethernet frames, the qdisc
/// bypassed, up to [`MAX_LIVE_BATCH`] frames per system call (`sendmmsg`). Protocol 0: it
/// receives nothing. Closed on drop. The generator's fallback, and the lab's SYN flood.
pub struct PacketSocket {
    fd: libc::c_int,
}

impl PacketSocket {
    /// Opens the socket on interface `ifindex` of the calling thread's network namespace.
    pub fn bind(ifindex: u32) -> Result<PacketSocket, SteeringError> {
        let fail = |what: &str| {
            SteeringError::Other(format!(
                "packet socket on ifindex {ifindex}: {what}: {}",
                std::io::Error::last_os_error()
            ))
        };
        // SAFETY: plain socket(2); the result is checked and then owned by the value.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(fail("socket"));
        }
        let socket = PacketSocket { fd };
        // SAFETY: an all-zero sockaddr_ll is valid; family and ifindex are set below.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = i32::try_from(ifindex).map_err(|_| fail("ifindex out of range"))?;
        // SAFETY: `address` is a valid sockaddr_ll and its size is passed with it.
        let bound = unsafe {
            libc::bind(
                fd,
                &address as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(fail("bind"));
        }
        let one: libc::c_int = 1;
        // SAFETY: PACKET_QDISC_BYPASS takes an int; the pointer and size describe `one`.
        let set = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            return Err(fail("PACKET_QDISC_BYPASS"));
        }
        Ok(socket)
    }

    /// Sends `frames` (the first [`MAX_LIVE_BATCH`] of them) with one `sendmmsg` and returns how
    /// many the kernel took. A full device queue (ENOBUFS, EAGAIN) is 0 sent, not an error: those
    /// frames are dropped, as a full veth ring drops live frames.
    pub fn send_batch(&self, frames: &[&[u8]]) -> std::io::Result<usize> {
        const EMPTY_IOV: libc::iovec = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let count = frames.len().min(MAX_LIVE_BATCH as usize);
        let mut iovs = [EMPTY_IOV; MAX_LIVE_BATCH as usize];
        // SAFETY: an all-zero mmsghdr is valid (no name, no control data, no iovec).
        let mut messages: [libc::mmsghdr; MAX_LIVE_BATCH as usize] = unsafe { std::mem::zeroed() };
        for ((iov, message), frame) in iovs.iter_mut().zip(messages.iter_mut()).zip(frames) {
            *iov = libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            };
            message.msg_hdr.msg_iov = iov;
            message.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `count` messages each point at one iovec of `iovs`, which points at a
        // frame borrowed for this call; the kernel only reads them and writes `msg_len`.
        let sent = unsafe { libc::sendmmsg(self.fd, messages.as_mut_ptr(), count as libc::c_uint, 0) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ENOBUFS) | Some(libc::EAGAIN) => Ok(0),
            _ => Err(error),
        }
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: the value owns `fd`, which nothing else closes.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_md_layout_matches_the_kernel() {
        let bytes = xdp_md_bytes(60, 7, 0);
        let field = |i: usize| u32::from_ne_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!((field(0), field(1), field(2)), (0, 60, 0));
        assert_eq!((field(3), field(4), field(5)), (7, 0, 0));
    }
}
