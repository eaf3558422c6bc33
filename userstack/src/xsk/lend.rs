//! Lending a received frame to another lane (the one that owns its flow) and taking it back:
//! a handle into this port's UMEM, never a copy.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use super::{stamp::frame_meta, XskPort};
use crate::frames::FrameState;

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

    /// The XDP program's stamp of this frame (arrival time, CLOCK_MONOTONIC ns, and flags), if
    /// it stamped it.
    ///
    /// # Safety
    ///
    /// As for [`LentFrame::bytes`]: the lending port must still be alive.
    pub unsafe fn meta(&self) -> Option<xgate_xdp_common::FrameMeta> {
        frame_meta(self.base, self.addr)
    }
}

impl XskPort {
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
}
