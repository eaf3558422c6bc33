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
//! On this kernel every live-frames call costs a fixed ~25 ms on top of its frames (measured: 8192
//! frames per call gave 0.3 Mpps, 4 Mi frames per call 21 Mpps), so a generator that wants a steady
//! rate makes few, long calls and ends the last one early with a signal to the sending thread
//! ([`SendEnd::Interrupted`]).
//!
//! Invariants:
//! - Each value loads the shared object on its own and loads only its own program, so its maps
//!   (and counters) are private to it and start at zero.
//! - [`DropCounter`] is attached natively or not at all (a generic-mode number would measure the
//!   skb path, not XDP), through a BPF link: dropping it, or the process dying, detaches it.

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

/// `xgate_bench_tx`, loaded (never attached): a frame generator driven by BPF_PROG_TEST_RUN.
pub struct FrameGenerator {
    ebpf: Ebpf,
}

impl FrameGenerator {
    /// Loads and verifies the generator program.
    pub fn load() -> Result<FrameGenerator, SteeringError> {
        Ok(FrameGenerator {
            ebpf: load_only(BENCH_TX_PROGRAM)?,
        })
    }

    /// Every frame sent so far by this generator (all calls, all CPUs), including by a call still
    /// running on another thread.
    pub fn sent(&self) -> Result<ActionStats, SteeringError> {
        summed_counter(&self.ebpf, BENCH_TX_STATS_MAP)
    }

    /// Transmits `frame` `count` times out of interface `ifindex` (rx queue 0), `batch` frames
    /// (1..=[`MAX_LIVE_BATCH`]) per kernel batch, and returns when the kernel has handed them all
    /// to the driver, or early if a signal reaches the calling thread. `ifindex` is looked up in the
    /// calling thread's network namespace. Frames the driver refuses (a full ring on the far side
    /// of a veth, say) are dropped silently: count what arrives at the receiver, not what was sent.
    pub fn send(&self, ifindex: u32, frame: &[u8], count: u32, batch: u32) -> Result<SendEnd, SteeringError> {
        if !(1..=MAX_LIVE_BATCH).contains(&batch) {
            return Err(SteeringError::Other(format!(
                "live-frames batch must be 1..={MAX_LIVE_BATCH}, got {batch}"
            )));
        }
        if count == 0 {
            return Ok(SendEnd::Completed);
        }
        let frame_len = u32::try_from(frame.len())
            .map_err(|_| SteeringError::Other(format!("frame of {} bytes is too long", frame.len())))?;
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
            .ok_or_else(|| SteeringError::Other(format!("program {BENCH_TX_PROGRAM} missing from object")))?
            .try_into()
            .map_err(|e: ProgramError| SteeringError::Other(e.to_string()))?;
        match program.test_run(options) {
            Ok(_) => Ok(SendEnd::Completed),
            Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::EINTR) =>
            {
                Ok(SendEnd::Interrupted)
            }
            Err(e) => Err(SteeringError::Other(format!(
                "live-frames test run out of ifindex {ifindex}: {e} ({e:?}); the interface must be up, \
                 in this thread's network namespace, and for veth its peer needs an XDP program"
            ))),
        }
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
