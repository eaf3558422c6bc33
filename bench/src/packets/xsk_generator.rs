//! The AF_XDP generator: the frame written into every tx frame of an AF_XDP socket bound to
//! xgp-tx (queue 0), and the tx ring kept full until the run stops.
//!
//! Where the kernel refuses live-frames test runs, this is the fastest sender this machine
//! offers: no `sendmmsg` per batch and no socket layer per frame as with AF_PACKET, only the
//! driver's copy of each descriptor into an skb (veth has copy mode only; a NIC's zero-copy mode
//! would hand the frame itself). Each wake-up (`sendto`) makes the kernel transmit up to its
//! per-call budget, so the loop wakes after every batch it queues.
//!
//! Invariants:
//! - The frame is written into a tx frame as it is taken from the free list (a 60 to 1514 byte
//!   copy in userspace, the same for every frame size the receiver sees).
//! - The count it publishes is the socket's completed tx frames: what the kernel took off the
//!   ring and handed to the driver (frames the far side's ring refuses are counted by veth as
//!   drops, not here), as the live-frames program counts what it sends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use smoltcp::phy::TxToken;
use xgate_userstack::xsk::{BindMode, PortConfig, XskPort};

use crate::process::interrupted;

use super::{TX_INTERFACE, UMEM_FRAMES, UMEM_FRAME_SIZE};

/// Frames queued between two flushes (each flush wakes the kernel).
const BURST: usize = 64;

/// Sends `frame` out of xgp-tx (in the calling thread's namespace) until `stop` is set or the
/// process is interrupted, publishing the frames completed so far in `sent`; `on_bound` learns
/// the socket's bind mode before the first frame.
pub(super) fn send_until(
    frame: &[u8],
    sent: &AtomicU64,
    stop: &AtomicBool,
    on_bound: impl FnOnce(BindMode),
) -> anyhow::Result<()> {
    let mut port = XskPort::open(&PortConfig {
        interface: TX_INTERFACE.to_string(),
        queue: 0,
        frame_size: UMEM_FRAME_SIZE,
        frames: UMEM_FRAMES,
        allow_normal_pages: true,
        numa_node: None,
    })
    .context("opening the generator's AF_XDP socket on xgp-tx")?;
    on_bound(port.mode());
    while !stop.load(Ordering::Acquire) && !interrupted() {
        for _ in 0..BURST {
            let Some(token) = port.tx_token() else {
                break;
            };
            token.consume(frame.len(), |buffer| buffer.copy_from_slice(frame));
        }
        port.flush();
        sent.store(port.stats().tx_completed, Ordering::Release);
    }
    Ok(())
}
