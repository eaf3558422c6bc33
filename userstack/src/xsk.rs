//! One AF_XDP socket bound to one rx/tx queue of one interface, over a UMEM that xgate owns.
//!
//! Invariants:
//! - The UMEM is split at open: the first `ring_size` frames are rx frames (they circulate between
//!   the fill ring, the rx ring and the stack), the rest are tx frames (free list, tx ring,
//!   completion ring). Rings are at least as large as the frames that can be on them, so a
//!   recycle or a submit never finds its ring full for good.
//! - Every frame move goes through the [`FrameLedger`] (see `frames`), so a lost or doubled frame
//!   is caught where it happens.
//! - Nothing on the data path allocates: the free lists and batches are sized at open.
//! - Fields drop in declaration order: rings and sockets close before the UMEM memory is unmapped.
//!
//! The port lives here (its config, errors, counters and fields); the rest of it is split by
//! what it does: `open` maps the UMEM and binds the socket, `rings` moves descriptors
//! between the rings and userspace, `lend` hands a received frame to another lane, and
//! `stamp` reads the arrival stamp the XDP program puts in front of each packet. The
//! `smoltcp` device over a port is in [`crate::device`], which builds on this module.
#![allow(unsafe_code)]

mod lend;
mod open;
mod rings;
mod stamp;

use std::ptr::NonNull;

use xdpilone::{xdp::XdpDesc, DeviceQueue, RingRx, RingTx, Umem, User};
use xgate_hugepages::{Backing, Region};

pub use self::lend::LentFrame;
pub use self::open::{interface_mtu, largest_mtu};
use crate::frames::FrameLedger;

/// Most descriptors moved between a ring and userspace in one go.
pub const BATCH: usize = 64;

/// What an [`XskPort`] is opened on and how big it is.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Interface name, e.g. `xg-gw`.
    pub interface: String,
    /// The rx/tx queue of that interface this socket binds to.
    pub queue: u32,
    /// Bytes per UMEM frame: 2048 or 4096.
    pub frame_size: u32,
    /// Frames in the UMEM (a power of two, at least 64): half for rx, half for tx.
    pub frames: u32,
    /// Whether to run on normal pages when no 2 MiB hugepages are free.
    pub allow_normal_pages: bool,
    /// The NUMA node the UMEM's pages should come from (the node of the core the port's lane
    /// runs on); `None`: wherever the kernel puts them.
    pub numa_node: Option<u32>,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            interface: String::new(),
            queue: 0,
            frame_size: 4096,
            frames: 4096,
            allow_normal_pages: true,
            numa_node: None,
        }
    }
}

/// How the socket is bound: zero-copy (the NIC DMAs into the UMEM) or copy mode (the kernel
/// copies between its buffers and the UMEM; the only mode veth offers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    ZeroCopy,
    Copy,
}

impl BindMode {
    pub fn name(self) -> &'static str {
        match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        }
    }
}

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("invalid AF_XDP port config: {0}")]
    Config(String),
    #[error(transparent)]
    Memory(#[from] xgate_hugepages::Error),
    #[error("no network interface named `{0}` in this network namespace")]
    NoSuchInterface(String),
    #[error("creating an AF_XDP socket was refused ({0}): xgate needs root (CAP_NET_RAW, CAP_NET_ADMIN, CAP_IPC_LOCK)")]
    Permission(String),
    #[error("queue {queue} of `{interface}` is already bound by another AF_XDP socket ({reason}); stop the other xgate first")]
    Busy {
        interface: String,
        queue: u32,
        reason: String,
    },
    #[error("AF_XDP {step} failed on `{interface}` queue {queue}: {reason}")]
    Socket {
        step: &'static str,
        interface: String,
        queue: u32,
        reason: String,
    },
}

/// Counters of one port. Plain integers: a port lives on one lane.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub tx_completed: u64,
    pub tx_wakeups: u64,
    pub fill_wakeups: u64,
    /// Times the stack wanted to send but every tx frame was in flight.
    pub tx_starved: u64,
    /// Frames the stack wrote that were not sent because the ledger refused their UMEM frame.
    pub tx_refused: u64,
}

/// Per-socket counters kept by the kernel (XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty: u64,
}

/// An AF_XDP socket with its four rings and the UMEM frames they carry.
pub struct XskPort {
    rx: RingRx,
    tx_ring: RingTx,
    fill_completion: DeviceQueue,
    user: User,
    _umem: Umem,
    region: Region,
    pub(crate) ledger: FrameLedger,
    pub(crate) base: NonNull<u8>,
    pub(crate) frame_size: u32,
    /// The interface's MTU (IP bytes per frame), which the stack must not exceed.
    pub(crate) link_mtu: u32,
    /// Descriptors read from the rx ring and not yet lent to the stack: `rx_ready[rx_next..]`.
    pub(crate) rx_ready: Vec<XdpDesc>,
    pub(crate) rx_next: usize,
    /// Rx frames the stack is done with, waiting to go back on the fill ring.
    pub(crate) rx_recycle: Vec<u64>,
    /// The tx frames userspace holds: free, or written and waiting for the tx ring.
    pub(crate) tx: TxFrames,
    mode: BindMode,
    /// Why the zero-copy bind was refused, when the port fell back to copy mode.
    zero_copy_refusal: Option<String>,
    pub(crate) stats: PortStats,
    /// Whether the stack checks TCP/UDP checksums of received frames (see
    /// [`XskPort::trust_rx_checksums`]).
    pub(crate) verify_rx_checksums: bool,
}

// SAFETY: the port is the only owner of its UMEM mapping and rings (the raw pointers inside are
// into memory it maps and unmaps itself), and nothing in it is shared with another thread
// except through `LentFrame`, whose rules are stated there; so moving the whole port to
// another thread (a lane taking it by `&mut`) moves exclusive use of all of it.
unsafe impl Send for XskPort {}

/// The tx frames held by userspace, apart from the rest of the port so that a tx token can
/// borrow them while an rx token borrows the rx side.
pub(crate) struct TxFrames {
    /// Tx frames free to write into (frame base addresses).
    pub(crate) free: Vec<u64>,
    /// Tx frames written by the stack, waiting for the tx ring.
    pub(crate) pending: Vec<XdpDesc>,
    /// Where a tx token writes if its frame is refused by the ledger (never sent).
    pub(crate) scratch: Box<[u8]>,
    /// Frames written to `scratch` (not sent).
    pub(crate) refused: u64,
}

/// Bytes the kernel keeps in front of every received frame (XDP_PACKET_HEADROOM).
pub const KERNEL_HEADROOM: u32 = 256;

fn errno_text(e: &xdpilone::Errno) -> String {
    format!("{e} (errno {})", e.get_raw().abs())
}

impl XskPort {
    /// Why the zero-copy bind, tried first, was refused (`None` when the port is zero-copy):
    /// the driver's answer, for the ready event and the doctor's advice.
    pub fn zero_copy_refusal(&self) -> Option<&str> {
        self.zero_copy_refusal.as_deref()
    }

    /// The socket's file descriptor, for the XSKMAP and for `poll`.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the fd is owned by `self.user`'s socket and stays open while `self` lives,
        // which the returned borrow's lifetime guarantees.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.user.as_raw_fd()) }
    }

    /// Stops the stack from checking TCP/UDP checksums of received frames. A kernel sending
    /// over veth with checksum offload on leaves a partial checksum in the frame (the "hardware"
    /// would finish it), which the stack would reject. Only for links that cannot corrupt frames
    /// (veth) and peers whose offload cannot be changed; the gateway itself never calls it.
    pub fn trust_rx_checksums(&mut self) {
        self.verify_rx_checksums = false;
    }

    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Whether the UMEM sits on 2 MiB hugepages.
    pub fn backing(&self) -> Backing {
        self.region.backing()
    }

    /// The NUMA node the UMEM's first page is on, if the kernel says.
    pub fn umem_node(&self) -> Option<u32> {
        self.region.node()
    }

    /// The command that would have given this port hugepages, if it runs without them.
    pub fn hugepage_hint(&self) -> Option<String> {
        self.region.fallback_hint()
    }

    pub fn stats(&self) -> PortStats {
        PortStats {
            tx_refused: self.tx.refused,
            ..self.stats
        }
    }

    /// The kernel's own counters for this socket: frames it dropped because the rx ring was full
    /// or the fill ring empty, and descriptors it found invalid.
    pub fn kernel_stats(&self) -> Result<KernelStats, XskError> {
        let raw = self.user.statistics_v2().map_err(|e| XskError::Socket {
            step: "statistics",
            interface: String::new(),
            queue: 0,
            reason: errno_text(&e),
        })?;
        Ok(KernelStats {
            rx_dropped: raw.rx_dropped,
            rx_invalid_descs: raw.rx_invalid_descs,
            tx_invalid_descs: raw.tx_invalid_descs,
            rx_ring_full: raw.rx_ring_full,
            rx_fill_ring_empty: raw.rx_fill_ring_empty_descs,
        })
    }

    pub fn ledger(&self) -> &FrameLedger {
        &self.ledger
    }
}
