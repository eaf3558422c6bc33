//! Opening a port: the UMEM is mapped (2 MiB hugepages, or normal pages where the config
//! allows), registered with the kernel, and the socket is bound to its queue, zero-copy if the
//! driver can, else in copy mode. The interface's MTU must fit one UMEM frame.
#![allow(unsafe_code)]

use std::{ffi::CString, num::NonZeroU32, ptr::NonNull};

use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};
use xgate_hugepages::{FallbackPolicy, Region};

use super::{
    errno_text, BindMode, PortConfig, PortStats, TxFrames, XskError, XskPort, BATCH, KERNEL_HEADROOM,
};
use crate::frames::{FrameLedger, FrameState};

/// The MTU of `interface` in this process's network namespace (SIOCGIFMTU).
pub fn interface_mtu(interface: &str) -> Result<u32, XskError> {
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

/// The largest IP packet (an interface's MTU) a `frame_size`-byte UMEM frame holds: the frame
/// less the kernel's headroom, the XDP program's arrival stamp and the Ethernet header.
pub fn largest_mtu(frame_size: u32) -> u32 {
    frame_size.saturating_sub(KERNEL_HEADROOM + xgate_xdp_common::FRAME_META_LEN as u32 + 14)
}

/// Refuses an interface whose MTU would not fit one UMEM frame: such frames would be dropped by
/// the kernel or cut short, silently. Returns the MTU.
fn check_mtu(interface: &str, frame_size: u32) -> Result<u32, XskError> {
    let mtu = interface_mtu(interface)?;
    let largest = largest_mtu(frame_size);
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
        let mut region = Region::allocate_on(
            config.frames as usize * config.frame_size as usize,
            policy,
            config.numa_node,
        )?;
        let area = region.as_non_null_slice();
        let ring_size = config.frames / 2;

        // Zero-copy where the driver offers it; copy mode otherwise, keeping the driver's answer.
        let (bound, mode, zero_copy_refusal) =
            match Self::bind(config, &info, area, ring_size, SocketConfig::XDP_BIND_ZEROCOPY) {
                Ok(bound) => (bound, BindMode::ZeroCopy, None),
                Err(refusal) => (
                    Self::bind(config, &info, area, ring_size, SocketConfig::XDP_BIND_COPY)?,
                    BindMode::Copy,
                    Some(refusal.to_string()),
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
            zero_copy_refusal,
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
}
