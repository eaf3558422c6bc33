//! The port's data path: descriptors move between the four rings and userspace in batches of
//! [`BATCH`], every frame move checked by the ledger. Rx frames go fill ring → rx ring →
//! `rx_ready` → the stack (or another lane) → `rx_recycle` → fill ring; tx frames go free list →
//! the stack writes them → `pending` → tx ring → completion ring → free list.
#![allow(unsafe_code)]

use xdpilone::xdp::XdpDesc;

use super::{
    stamp::{frame_meta, strip_arrival_stamp},
    XskPort, BATCH,
};
use crate::frames::FrameState;

impl XskPort {
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

    /// The XDP program's stamp of the frame [`XskPort::peek_rx`] shows (arrival time,
    /// CLOCK_MONOTONIC ns, and flags), if it stamped it.
    pub fn peek_rx_meta(&mut self) -> Option<xgate_xdp_common::FrameMeta> {
        if self.rx_next == self.rx_ready.len() {
            self.fetch_rx();
        }
        let desc = *self.rx_ready.get(self.rx_next)?;
        frame_meta(self.base, desc.addr)
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

    pub(super) fn refill(&mut self) {
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
