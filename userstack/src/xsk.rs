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

use std::{ffi::CString, num::NonZeroU32, ptr::NonNull};

use xdpilone::{
    xdp::XdpDesc, DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User,
};
use xgate_hugepages::{Backing, FallbackPolicy, Region};

use crate::frames::{FrameLedger, FrameState};

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
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            interface: String::new(),
            queue: 0,
            frame_size: 4096,
            frames: 4096,
            allow_normal_pages: true,
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

/// A received frame handed to another lane: the lane that owns its flow reads it in place, in
/// the UMEM of the port that received it, and gives it back with [`XskPort::take_back`].
///
/// It is a handle (an address and a length), never a copy of the bytes. While it is out, the
/// frame is `Lent` in its port's ledger: the kernel cannot write it (it is not on the fill ring)
/// and its own port does not touch it.
#[derive(Debug)]
pub struct LentFrame {
    base: NonNull<u8>,
    addr: u64,
    len: u32,
}

// SAFETY: a `LentFrame` is the only reference to its frame while the frame is `Lent` (the ledger
// refuses any other move of it), so moving the handle to another thread moves exclusive read
// access to those bytes; the UMEM pointer itself is never written through.
unsafe impl Send for LentFrame {}

impl LentFrame {
    /// The frame's bytes, in the lending port's UMEM.
    ///
    /// # Safety
    ///
    /// The port that lent the frame must still be alive (its UMEM mapped). xgate guarantees it by
    /// running lanes as scoped threads that borrow ports created before the scope and dropped
    /// after it.
    pub unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the caller guarantees the UMEM is mapped; [addr, addr + len) lies inside one
        // frame (clamped when lent) and the frame stays `Lent`, so nothing writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.addr as usize), self.len as usize) }
    }

    /// When the XDP program saw this frame (CLOCK_MONOTONIC ns), if it stamped it.
    ///
    /// # Safety
    ///
    /// As for [`LentFrame::bytes`]: the lending port must still be alive.
    pub unsafe fn arrival_ns(&self) -> Option<u64> {
        arrival_stamp(self.base, self.addr)
    }
}

/// A received frame as the XDP program sent it, stamp first ([`xgate_xdp_common::FrameMeta`]),
/// turned into the packet alone: the descriptor moves past the stamp, which stays in the UMEM
/// right before the packet for [`arrival_stamp`]. A frame without the stamp is left as it is.
///
/// The caller holds the frame (it just moved to `InStack`), so the kernel does not write it.
fn strip_arrival_stamp(base: NonNull<u8>, desc: XdpDesc, frame_size: u32) -> XdpDesc {
    let stamp_len = xgate_xdp_common::FRAME_META_LEN as u64;
    let room = u64::from(frame_size) - desc.addr % u64::from(frame_size);
    if u64::from(desc.len) < stamp_len || room < stamp_len {
        return desc;
    }
    // SAFETY: [addr, addr + 16) lies inside the frame (checked above), which the caller holds;
    // a u32 is valid for any bit pattern and is read unaligned.
    let magic = unsafe { std::ptr::read_unaligned(base.as_ptr().add(desc.addr as usize) as *const u32) };
    if magic != xgate_xdp_common::FRAME_META_MAGIC {
        return desc;
    }
    XdpDesc {
        addr: desc.addr + stamp_len,
        len: desc.len - stamp_len as u32,
        options: desc.options,
    }
}

/// When the XDP program saw the frame whose packet starts at `addr` in the UMEM at `base`: the
/// CLOCK_MONOTONIC nanoseconds of the stamp right before the packet (see
/// [`strip_arrival_stamp`]), or `None` if the frame carries no stamp.
///
/// The stamp is read only when those 16 bytes are inside the same 2048-byte-aligned chunk as the
/// packet (every frame size is a multiple of 2048).
fn arrival_stamp(base: NonNull<u8>, addr: u64) -> Option<u64> {
    let meta_len = xgate_xdp_common::FRAME_META_LEN as u64;
    if addr % 2048 < meta_len {
        return None;
    }
    // SAFETY: [addr - 16, addr) lies in the same UMEM frame as the packet (checked above), which
    // the caller holds (InStack or Lent), so the kernel does not write it; the bytes are plain
    // integers, valid for any bit pattern, read unaligned.
    let meta = unsafe {
        std::ptr::read_unaligned(
            base.as_ptr().add((addr - meta_len) as usize) as *const xgate_xdp_common::FrameMeta
        )
    };
    (meta.magic == xgate_xdp_common::FRAME_META_MAGIC).then_some(meta.arrival_ns)
}

/// Bytes the kernel keeps in front of every received frame (XDP_PACKET_HEADROOM).
pub const KERNEL_HEADROOM: u32 = 256;

/// The MTU of `interface` in this process's network namespace (SIOCGIFMTU).
fn interface_mtu(interface: &str) -> Result<u32, XskError> {
    let missing = || XskError::NoSuchInterface(interface.to_string());
    if interface.len() >= libc::IFNAMSIZ {
        return Err(missing());
    }
    // SAFETY: plain socket(2) call; the result is checked and then owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(XskError::Socket {
            step: "MTU query",
            interface: interface.to_string(),
            queue: 0,
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(interface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name (the length was checked above and the
    // rest is zero) and writes the MTU into the live `request`.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SIOCGIFMTU,
            &mut request as *mut libc::ifreq,
        )
    };
    if rc != 0 {
        return Err(missing());
    }
    // SAFETY: after a successful SIOCGIFMTU the union holds the MTU.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// Refuses an interface whose MTU would not fit one UMEM frame: such frames would be dropped by
/// the kernel or cut short, silently. Returns the MTU.
fn check_mtu(interface: &str, frame_size: u32) -> Result<u32, XskError> {
    let mtu = interface_mtu(interface)?;
    let largest = frame_size - KERNEL_HEADROOM - xgate_xdp_common::FRAME_META_LEN as u32 - 14;
    if mtu > largest {
        let bigger = if frame_size < 4096 {
            " or use umem.frame_size = 4096"
        } else {
            ""
        };
        return Err(XskError::Config(format!(
            "`{interface}` has MTU {mtu}, but a {frame_size}-byte UMEM frame holds at most {largest} bytes of \
             IP packet: lower it (ip link set {interface} mtu {largest}){bigger}"
        )));
    }
    Ok(mtu)
}

fn errno_text(e: &xdpilone::Errno) -> String {
    format!("{e} (errno {})", e.get_raw().abs())
}

struct Bound {
    umem: Umem,
    fill_completion: DeviceQueue,
    user: User,
    rx: RingRx,
    tx: RingTx,
}

impl XskPort {
    /// Maps the UMEM, creates the socket and binds it to `config.queue` of `config.interface`,
    /// zero-copy if the driver can, else in copy mode.
    pub fn open(config: &PortConfig) -> Result<XskPort, XskError> {
        if config.frame_size != 2048 && config.frame_size != 4096 {
            return Err(XskError::Config(format!(
                "frame_size must be 2048 or 4096, got {}",
                config.frame_size
            )));
        }
        if !config.frames.is_power_of_two() || config.frames < 64 {
            return Err(XskError::Config(format!(
                "umem frames must be a power of two of at least 64, got {}",
                config.frames
            )));
        }
        let c_name = CString::new(config.interface.as_str())
            .map_err(|_| XskError::NoSuchInterface(config.interface.clone()))?;
        let link_mtu = check_mtu(&config.interface, config.frame_size)?;
        let mut info = IfInfo::invalid();
        info.from_name(&c_name)
            .map_err(|_| XskError::NoSuchInterface(config.interface.clone()))?;
        info.set_queue(config.queue);

        let policy = if config.allow_normal_pages {
            FallbackPolicy::AllowNormalPages
        } else {
            FallbackPolicy::Require
        };
        let mut region = Region::allocate(config.frames as usize * config.frame_size as usize, policy)?;
        let area = region.as_non_null_slice();
        let ring_size = config.frames / 2;

        let (bound, mode) = match Self::bind(config, &info, area, ring_size, SocketConfig::XDP_BIND_ZEROCOPY)
        {
            Ok(bound) => (bound, BindMode::ZeroCopy),
            Err(_) => (
                Self::bind(config, &info, area, ring_size, SocketConfig::XDP_BIND_COPY)?,
                BindMode::Copy,
            ),
        };

        let frames = config.frames;
        let rx_frames = ring_size;
        let ledger = FrameLedger::new(frames, config.frame_size, FrameState::TxFree);
        let mut tx_free = Vec::with_capacity((frames - rx_frames) as usize);
        let mut rx_recycle = Vec::with_capacity(rx_frames as usize);
        for index in 0..frames as usize {
            let addr = ledger.frame_base(index);
            if (index as u32) < rx_frames {
                // Rx frames start out "done with": the first refill puts them on the fill ring.
                ledger.assign(index, FrameState::InStack);
                rx_recycle.push(addr);
            } else {
                tx_free.push(addr);
            }
        }
        let Bound {
            umem,
            fill_completion,
            user,
            rx,
            tx,
        } = bound;
        let base = region.as_non_null_slice().cast::<u8>();
        let mut port = XskPort {
            rx,
            tx_ring: tx,
            fill_completion,
            user,
            _umem: umem,
            region,
            ledger,
            base,
            frame_size: config.frame_size,
            link_mtu,
            rx_ready: Vec::with_capacity(BATCH),
            rx_next: 0,
            rx_recycle,
            tx: TxFrames {
                free: tx_free,
                pending: Vec::with_capacity((frames - rx_frames) as usize),
                scratch: vec![0; config.frame_size as usize].into_boxed_slice(),
                refused: 0,
            },
            mode,
            stats: PortStats::default(),
            verify_rx_checksums: true,
        };
        port.refill();
        Ok(port)
    }

    fn bind(
        config: &PortConfig,
        info: &IfInfo,
        area: NonNull<[u8]>,
        ring_size: u32,
        mode_flag: u16,
    ) -> Result<Bound, XskError> {
        let fail = |step: &'static str, e: xdpilone::Errno| {
            let raw = e.get_raw().abs();
            match raw {
                libc::EPERM | libc::EACCES => XskError::Permission(errno_text(&e)),
                libc::EBUSY => XskError::Busy {
                    interface: config.interface.clone(),
                    queue: config.queue,
                    reason: errno_text(&e),
                },
                _ => XskError::Socket {
                    step,
                    interface: config.interface.clone(),
                    queue: config.queue,
                    reason: errno_text(&e),
                },
            }
        };
        let umem_config = UmemConfig {
            fill_size: ring_size,
            complete_size: ring_size,
            frame_size: config.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is the whole mapping of a `Region` that the port keeps alive (and unmaps
        // only after the sockets are closed, by field order); it is page aligned (mapped by mmap)
        // and at least `frames * frame_size` bytes long (rounded up to whole 2 MiB pages). The
        // kernel only ever uses frame addresses xgate hands it, all below `frames * frame_size`.
        let umem = unsafe { Umem::new(umem_config, area) }.map_err(|e| fail("UMEM registration", e))?;
        let socket = Socket::with_shared(info, &umem).map_err(|e| fail("socket", e))?;
        let fill_completion = umem
            .fq_cq(&socket)
            .map_err(|e| fail("fill/completion ring setup", e))?;
        let ring = NonZeroU32::new(ring_size);
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: ring,
                    tx_size: ring,
                    bind_flags: mode_flag | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(|e| fail("rx/tx ring setup", e))?;
        let rx = user.map_rx().map_err(|e| fail("rx ring mmap", e))?;
        let tx = user.map_tx().map_err(|e| fail("tx ring mmap", e))?;
        umem.bind(&user).map_err(|e| fail("bind", e))?;
        Ok(Bound {
            umem,
            fill_completion,
            user,
            rx,
            tx,
        })
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

    /// Moves everything that is waiting to its ring: rx frames the stack released back onto the
    /// fill ring, written tx frames onto the tx ring (kicking the kernel if it asks), and
    /// completed tx frames back to the free list. Call after every stack poll.
    pub fn flush(&mut self) {
        self.refill();
        self.submit_tx();
        self.reclaim_tx();
    }

    /// Frames waiting in the rx ring (not yet read by xgate).
    pub fn rx_available(&self) -> bool {
        self.rx_next < self.rx_ready.len() || self.rx.available() > 0
    }

    /// The next received frame's bytes, without taking it: the frame that the stack's next
    /// `receive` lends. Lets a caller pick the socket shard a frame belongs to before handing it
    /// to the stack (one `poll_ingress_single` per frame). `None` when nothing is waiting.
    pub fn peek_rx(&mut self) -> Option<&[u8]> {
        if self.rx_next == self.rx_ready.len() {
            self.fetch_rx();
        }
        let desc = *self.rx_ready.get(self.rx_next)?;
        let offset = desc.addr as usize;
        let len = self.rx_len(desc);
        // SAFETY: as in `receive`: the frame is InStack and held in `rx_ready`, so the kernel
        // cannot write it; the slice lies within that frame and borrows `self`, so the frame
        // cannot be lent or recycled while the slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) })
    }

    /// When the XDP program saw the frame [`XskPort::peek_rx`] shows (CLOCK_MONOTONIC ns), if it
    /// stamped it.
    pub fn peek_rx_arrival_ns(&mut self) -> Option<u64> {
        if self.rx_next == self.rx_ready.len() {
            self.fetch_rx();
        }
        let desc = *self.rx_ready.get(self.rx_next)?;
        arrival_stamp(self.base, desc.addr)
    }

    /// Takes every frame waiting in the rx ring (one batch) and gives it straight back to the
    /// fill ring without looking at it. Returns how many frames came in. This is the receive
    /// path with no stack behind it: what the packet-path benchmark measures.
    pub fn discard_rx(&mut self) -> usize {
        if self.rx_next == self.rx_ready.len() {
            self.fetch_rx();
        }
        let mut count = 0;
        while self.rx_next < self.rx_ready.len() {
            let addr = self.rx_ready[self.rx_next].addr;
            self.rx_next += 1;
            // fetch_rx took only addresses the ledger knows, so the frame exists.
            let chunk = self.ledger.frame_start(addr).unwrap_or(0);
            // Capacity is the number of rx frames, so this never allocates.
            self.rx_recycle.push(chunk);
            count += 1;
        }
        self.refill();
        count
    }

    /// Takes the next received frame (the one [`XskPort::peek_rx`] shows) out of this port's
    /// hands, to be handed to the lane that owns its flow. `None` when nothing is waiting.
    pub fn lend_rx(&mut self) -> Option<LentFrame> {
        if self.rx_next == self.rx_ready.len() {
            self.fetch_rx();
        }
        let desc = *self.rx_ready.get(self.rx_next)?;
        self.rx_next += 1;
        let chunk = self.ledger.frame_start(desc.addr)?;
        if !self
            .ledger
            .transition(chunk, FrameState::InStack, FrameState::Lent)
        {
            return None;
        }
        Some(LentFrame {
            base: self.base,
            addr: desc.addr,
            len: self.rx_len(desc) as u32,
        })
    }

    /// Takes back a frame this port lent; it goes back to the fill ring with the next flush.
    /// A frame of another port, or one not lent, is refused and counted as a ledger violation.
    pub fn take_back(&mut self, frame: LentFrame) {
        if frame.base != self.base {
            self.ledger.count_violation();
            return;
        }
        let Some(chunk) = self.ledger.frame_start(frame.addr) else {
            self.ledger.count_violation();
            return;
        };
        if self
            .ledger
            .transition(chunk, FrameState::Lent, FrameState::InStack)
        {
            // Capacity is the number of rx frames, so this never allocates.
            self.rx_recycle.push(chunk);
        }
    }

    /// The bytes of a received frame that lie inside its UMEM frame (the kernel's length, cut at
    /// the frame's end so that no slice can reach into the next frame).
    pub(crate) fn rx_len(&self, desc: XdpDesc) -> usize {
        let offset_in_frame = desc.addr as usize % self.frame_size as usize;
        (desc.len as usize).min(self.frame_size as usize - offset_in_frame)
    }

    pub(crate) fn fetch_rx(&mut self) {
        debug_assert_eq!(self.rx_next, self.rx_ready.len());
        self.rx_ready.clear();
        self.rx_next = 0;
        let mut reader = self.rx.receive(BATCH as u32);
        while let Some(desc) = reader.read() {
            if self
                .ledger
                .transition(desc.addr, FrameState::Fill, FrameState::InStack)
            {
                let desc = strip_arrival_stamp(self.base, desc, self.frame_size);
                self.rx_ready.push(desc);
            }
        }
        reader.release();
        self.stats.rx_frames += self.rx_ready.len() as u64;
    }

    fn refill(&mut self) {
        if self.rx_recycle.is_empty() {
            return;
        }
        let mut writer = self.fill_completion.fill(self.rx_recycle.len() as u32);
        let count = (writer.capacity() as usize).min(self.rx_recycle.len());
        let keep = self.rx_recycle.len() - count;
        let ledger = &self.ledger;
        // A frame the ledger refuses (not ours to give) is left out, never put on the ring.
        writer.insert(
            self.rx_recycle[keep..]
                .iter()
                .copied()
                .filter(|&addr| ledger.transition(addr, FrameState::InStack, FrameState::Fill)),
        );
        writer.commit();
        drop(writer);
        self.rx_recycle.truncate(keep);
        if self.fill_completion.needs_wakeup() {
            self.fill_completion.wake();
            self.stats.fill_wakeups += 1;
        }
    }

    fn submit_tx(&mut self) {
        if !self.tx.pending.is_empty() {
            let mut writer = self.tx_ring.transmit(self.tx.pending.len() as u32);
            let count = (writer.capacity() as usize).min(self.tx.pending.len());
            let ledger = &self.ledger;
            let inserted = writer.insert(
                self.tx.pending[..count]
                    .iter()
                    .copied()
                    .filter(|desc| ledger.transition(desc.addr, FrameState::TxPending, FrameState::TxRing)),
            );
            writer.commit();
            drop(writer);
            self.stats.tx_frames += u64::from(inserted);
            self.tx.pending.drain(..count);
        }
        if self.tx_ring.pending() > 0 && self.tx_ring.needs_wakeup() {
            self.tx_ring.wake();
            self.stats.tx_wakeups += 1;
        }
    }

    pub(crate) fn reclaim_tx(&mut self) {
        let mut reader = self.fill_completion.complete(BATCH as u32 * 4);
        while let Some(addr) = reader.read() {
            if self
                .ledger
                .transition(addr, FrameState::TxRing, FrameState::TxFree)
            {
                self.tx.free.push(addr);
                self.stats.tx_completed += 1;
            }
        }
        reader.release();
    }
}

#[cfg(test)]
mod tests {
    use xgate_xdp_common::{FrameMeta, FRAME_META_LEN, FRAME_META_MAGIC};

    use super::*;

    const FRAME: u32 = 4096;

    /// Two UMEM frames in a buffer aligned like the UMEM (to its frame size).
    #[repr(C, align(4096))]
    struct TwoFrames([u8; 2 * FRAME as usize]);

    fn stamp(umem: &mut TwoFrames, at: usize, arrival_ns: u64) {
        let meta = FrameMeta {
            magic: FRAME_META_MAGIC,
            reserved: 0,
            arrival_ns,
        };
        umem.0[at..at + 4].copy_from_slice(&meta.magic.to_ne_bytes());
        umem.0[at + 4..at + 8].copy_from_slice(&meta.reserved.to_ne_bytes());
        umem.0[at + 8..at + 16].copy_from_slice(&meta.arrival_ns.to_ne_bytes());
    }

    fn desc(addr: u64, len: u32) -> XdpDesc {
        XdpDesc {
            addr,
            len,
            options: 0,
        }
    }

    fn ends(d: XdpDesc) -> (u64, u32) {
        (d.addr, d.len)
    }

    #[test]
    fn a_stamped_frame_becomes_its_packet_and_keeps_its_arrival_time() {
        let mut umem = Box::new(TwoFrames([0; 2 * FRAME as usize]));
        // The second frame, past the kernel's headroom: stamp, then a 60-byte packet.
        let at = FRAME as usize + KERNEL_HEADROOM as usize;
        stamp(&mut umem, at, 123_456_789);
        umem.0[at + 16..at + 76].fill(0xab);
        let base = NonNull::new(umem.0.as_mut_ptr()).unwrap();
        let packet = strip_arrival_stamp(base, desc(at as u64, 16 + 60), FRAME);
        assert_eq!(packet.addr, at as u64 + FRAME_META_LEN as u64);
        assert_eq!(packet.len, 60);
        assert_eq!(umem.0[packet.addr as usize], 0xab, "the packet's first byte");
        assert_eq!(arrival_stamp(base, packet.addr), Some(123_456_789));
    }

    #[test]
    fn frames_without_a_whole_stamp_are_left_as_they_are() {
        let mut umem = Box::new(TwoFrames([0; 2 * FRAME as usize]));
        let base = NonNull::new(umem.0.as_mut_ptr()).unwrap();
        // No magic: the frame is the packet, and it has no arrival time.
        let plain = desc(KERNEL_HEADROOM as u64, 60);
        assert_eq!(ends(strip_arrival_stamp(base, plain, FRAME)), ends(plain));
        assert_eq!(arrival_stamp(base, plain.addr), None);
        // Shorter than a stamp.
        stamp(&mut umem, 512, 7);
        let short = desc(512, 8);
        assert_eq!(ends(strip_arrival_stamp(base, short, FRAME)), ends(short));
        // A stamp that would cross into the next frame is not read (its magic is there).
        umem.0[FRAME as usize - 8..FRAME as usize - 4].copy_from_slice(&FRAME_META_MAGIC.to_ne_bytes());
        let at_end = desc(u64::from(FRAME) - 8, 16);
        assert_eq!(ends(strip_arrival_stamp(base, at_end, FRAME)), ends(at_end));
        // A packet at the very start of a 2048-byte chunk has no room for a stamp before it,
        // whatever the bytes before it (the previous frame's) say.
        stamp(&mut umem, FRAME as usize - 16, 9);
        assert_eq!(arrival_stamp(base, u64::from(FRAME)), None);
    }
}
