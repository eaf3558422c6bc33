//! The `smoltcp` device over an [`XskPort`]: the stack reads received frames where the kernel put
//! them in the UMEM and writes outgoing frames straight into free UMEM frames.
//!
//! Invariants:
//! - An rx token lends exactly one frame in state `InStack`; when the token goes (consumed or
//!   dropped) the frame is queued for the fill ring. The kernel cannot write it meanwhile (it is
//!   not on the fill ring) and no tx token can hold it (tx tokens take `TxFree` frames only).
//! - A tx token is only handed out when a free tx frame exists; it claims the frame when consumed.
//!   Should the ledger refuse that frame (a bug elsewhere), the token leaves it alone and the
//!   stack's frame is written to a scratch buffer and not sent (counted as `tx_refused`).
//! - No bytes are copied between the UMEM and the stack in either direction.
//!
//! This module builds on [`crate::xsk`] (the port's rings, frames and ledger), never the other
//! way round: the port knows nothing of `smoltcp`. Its `unsafe` is the two slices a token lends
//! into the UMEM, each argued where it is made.
#![allow(unsafe_code)]

use smoltcp::{
    phy::{self, Device, DeviceCapabilities, Medium},
    time::Instant,
};
use xdpilone::xdp::XdpDesc;

use crate::{
    frames::{FrameLedger, FrameState},
    xsk::{TxFrames, XskPort},
};

/// Bytes of Ethernet header in front of the IP packet.
pub const ETHERNET_HEADER: usize = 14;

/// Lends one received frame to the stack.
pub struct XskRxToken<'a> {
    frame: &'a [u8],
    addr: u64,
    recycle: &'a mut Vec<u64>,
}

impl phy::RxToken for XskRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
        // Drop returns the frame.
    }
}

impl Drop for XskRxToken<'_> {
    fn drop(&mut self) {
        // Capacity is the number of rx frames, so this never allocates.
        self.recycle.push(self.addr);
    }
}

/// Lets the stack write one frame into a free UMEM frame.
pub struct XskTxToken<'a> {
    base: std::ptr::NonNull<u8>,
    frame_size: u32,
    ledger: &'a FrameLedger,
    frames: &'a mut TxFrames,
}

impl<'a> XskTxToken<'a> {
    fn new(
        base: std::ptr::NonNull<u8>,
        frame_size: u32,
        ledger: &'a FrameLedger,
        frames: &'a mut TxFrames,
    ) -> XskTxToken<'a> {
        XskTxToken {
            base,
            frame_size,
            ledger,
            frames,
        }
    }
}

impl phy::TxToken for XskTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let len = len.min(self.frame_size as usize);
        // A frame the ledger refuses is left alone (dropped from the free list, not written);
        // if no frame is left, the stack writes into the scratch frame and nothing is sent.
        while let Some(addr) = self.frames.free.pop() {
            if !self
                .ledger
                .transition(addr, FrameState::TxFree, FrameState::TxPending)
            {
                continue;
            }
            // SAFETY: `addr` is the base of a UMEM frame the ledger just moved from TxFree to
            // TxPending, so nothing else (kernel ring, rx token, other tx token) refers to it;
            // `len` fits in the frame (clamped above); the UMEM outlives the token because the
            // token borrows the port.
            let buffer =
                unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr as usize), len) };
            let result = f(buffer);
            self.frames.pending.push(XdpDesc {
                addr,
                len: len as u32,
                options: 0,
            });
            return result;
        }
        self.frames.refused += 1;
        f(&mut self.frames.scratch[..len])
    }
}

impl XskPort {
    /// A tx token, if a tx frame is free (completions are reclaimed first when none is).
    pub fn tx_token(&mut self) -> Option<XskTxToken<'_>> {
        if self.tx.free.is_empty() {
            self.reclaim_tx();
            if self.tx.free.is_empty() {
                self.stats.tx_starved += 1;
                return None;
            }
        }
        Some(XskTxToken::new(
            self.base,
            self.frame_size,
            &self.ledger,
            &mut self.tx,
        ))
    }
}

impl Device for XskPort {
    type RxToken<'a> = XskRxToken<'a>;
    type TxToken<'a> = XskTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.rx_next == self.rx_ready.len() {
            self.fetch_rx();
            if self.rx_ready.is_empty() {
                return None;
            }
        }
        if self.tx.free.is_empty() {
            self.reclaim_tx();
            if self.tx.free.is_empty() {
                // Leave the frame in the rx batch: it is received once a tx frame comes back.
                self.stats.tx_starved += 1;
                return None;
            }
        }
        let desc = self.rx_ready[self.rx_next];
        self.rx_next += 1;
        let offset = desc.addr as usize;
        let len = self.rx_len(desc);
        // SAFETY: the kernel handed `desc` back on the rx ring and the ledger moved its frame from
        // Fill to InStack, so only this token refers to it; [offset, offset + len) lies within
        // that frame (len is clamped to the frame's end) and thus within the UMEM, which outlives
        // the token since the token borrows the port.
        let frame = unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) };
        // fetch_rx took only addresses the ledger knows, so the frame exists.
        let chunk_base = self.ledger.frame_start(desc.addr).unwrap_or(0);
        let XskPort {
            ledger,
            rx_recycle,
            tx,
            base,
            frame_size,
            ..
        } = self;
        Some((
            XskRxToken {
                frame,
                addr: chunk_base,
                recycle: rx_recycle,
            },
            XskTxToken::new(*base, *frame_size, ledger, tx),
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.tx_token()
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // The stack's MTU counts the Ethernet header; the link's does not.
        caps.max_transmission_unit = self.link_mtu as usize + ETHERNET_HEADER;
        caps.max_burst_size = Some(crate::xsk::BATCH);
        if !self.verify_rx_checksums {
            caps.checksum.tcp = phy::Checksum::Tx;
            caps.checksum.udp = phy::Checksum::Tx;
        }
        caps
    }
}

/// Lends one frame that another lane received to the stack: a [`crate::xsk::LentFrame`]'s
/// bytes, read in place in the other lane's UMEM. Replies go out through this lane's own port.
pub struct HandedFrameDevice<'a> {
    frame: Option<&'a [u8]>,
    port: &'a mut XskPort,
}

impl<'a> HandedFrameDevice<'a> {
    pub fn new(frame: &'a [u8], port: &'a mut XskPort) -> HandedFrameDevice<'a> {
        HandedFrameDevice {
            frame: Some(frame),
            port,
        }
    }

    /// Whether the stack took the frame (it does not when no tx frame is free: try again later).
    pub fn consumed(&self) -> bool {
        self.frame.is_none()
    }
}

/// Lends a byte slice to the stack.
pub struct SliceRxToken<'a>(&'a [u8]);

impl phy::RxToken for SliceRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

impl Device for HandedFrameDevice<'_> {
    type RxToken<'b>
        = SliceRxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = XskTxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.frame?;
        let tx = self.port.tx_token()?;
        let frame = self.frame.take()?;
        Some((SliceRxToken(frame), tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.port.tx_token()
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.port.capabilities()
    }
}
