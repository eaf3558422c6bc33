//! The receive side of a lane: frames from its own rx ring lent to the stack in place, frames
//! other lanes handed over (read in the lending lane's UMEM, then given back), frames this lane
//! hands on because another lane owns their flow, and the arrival stamps the XDP program wrote.

use smoltcp::time::Instant as SmolInstant;
use xgate_userstack::{
    device::HandedFrameDevice,
    wire::{self, FrameKind},
};

use super::{Lane, RX_BURST};
use crate::{handoff::Handed, sys};

impl Lane<'_> {
    /// Frames this lane lent that their owners have read: back to the fill ring.
    pub(super) fn take_returns(&mut self) -> bool {
        let mut any = false;
        for returns in self.links.returns_in.iter_mut().flatten() {
            while let Ok(frame) = returns.pop() {
                self.port.take_back(frame);
                any = true;
            }
        }
        any
    }

    /// Whether this lane should hand `kind`'s frame on rather than process it: a TCP segment of a
    /// flow it does not know, other than a SYN, while some lane has not looked at it yet.
    pub(super) fn passes_on(&self, kind: &FrameKind, hops: usize) -> bool {
        match kind {
            FrameKind::Tcp(segment) => {
                let opens_a_connection = segment.syn && !segment.ack;
                hops + 1 < self.lanes && !opens_a_connection && !self.server.knows(segment)
            }
            _ => false,
        }
    }

    /// Remembers when a client connection's latest frame arrived (from its XDP stamp).
    pub(super) fn note_arrival(&mut self, kind: &FrameKind, arrival: Option<u64>) {
        let (FrameKind::Tcp(segment), Some(arrival)) = (kind, arrival) else {
            return;
        };
        if let Some(id) = self.server.find(&segment.flow) {
            if let Some(conn) = self.connections.get_mut(id as usize) {
                conn.last_arrival_ns = arrival;
            }
        }
    }

    /// Fault injection (`fault.misroute_every`): whether this owned segment goes astray.
    pub(super) fn misroutes(&mut self, kind: &FrameKind) -> bool {
        if self.fault.misroute_every == 0 {
            return false;
        }
        let FrameKind::Tcp(segment) = kind else {
            return false;
        };
        if segment.syn || !self.server.knows(segment) {
            return false;
        }
        self.fault.owned_segments += 1;
        self.fault
            .owned_segments
            .is_multiple_of(self.fault.misroute_every)
    }

    /// Passes a frame to the next lane; returns it to its origin if that ring is full (the frame
    /// is dropped, counted; TCP sends it again).
    pub(super) fn pass_on(&mut self, handed: Handed) {
        let next = (self.index + 1) % self.lanes;
        let ring = self.links.frames_out[next]
            .as_mut()
            .expect("a ring to every other lane");
        match ring.push(handed) {
            Ok(()) => {
                self.values.handed_out += 1;
                self.to_wake[next] = true;
            }
            Err(rtrb::PushError::Full(handed)) => {
                self.values.handoff_dropped += 1;
                self.give_back(handed);
            }
        }
    }

    /// Sends a handed frame home to the lane whose UMEM holds it.
    pub(super) fn give_back(&mut self, handed: Handed) {
        let origin = usize::from(handed.origin);
        if origin == self.index {
            self.port.take_back(handed.frame);
            return;
        }
        let returned = self.links.returns_out[origin]
            .as_mut()
            .expect("a ring to every other lane")
            .push(handed.frame);
        debug_assert!(returned.is_ok(), "returns ring sized to every rx frame");
        self.to_wake[origin] = true;
    }

    /// Frames other lanes passed to this one, and their ARP copies.
    pub(super) fn receive_handed(&mut self, timestamp: SmolInstant) -> bool {
        let mut any = false;
        for from in 0..self.lanes {
            let mut taken = 0;
            while taken < RX_BURST {
                let Some(handed) = self.links.frames_in[from].as_mut().and_then(|r| r.pop().ok()) else {
                    break;
                };
                taken += 1;
                self.values.handed_in += 1;
                let (bytes, meta) = sys::lent_frame(&handed.frame);
                let kind = with_stamp_flags(wire::classify(bytes), meta);
                let arrival = meta.map(|meta| meta.arrival_ns);
                if self.passes_on(&kind, usize::from(handed.hops)) {
                    self.pass_on(Handed {
                        hops: handed.hops + 1,
                        ..handed
                    });
                    continue;
                }
                let mut device = HandedFrameDevice::new(bytes, self.port);
                self.server.ingress(timestamp, &mut device, &kind);
                if !device.consumed() {
                    // No tx frame was free to answer with: the frame is dropped like a full
                    // NIC queue would drop it (TCP sends it again), and counted.
                    self.values.handoff_dropped += 1;
                }
                self.note_arrival(&kind, arrival);
                self.give_back(handed);
            }
            any |= taken > 0;
        }
        for from in 0..self.lanes {
            let Some(neighbours) = self.links.neighbours_in[from].as_mut() else {
                continue;
            };
            while let Ok(arp) = neighbours.pop() {
                let mut device = HandedFrameDevice::new(&arp, self.port);
                self.server.ingress(timestamp, &mut device, &FrameKind::Arp);
                // Copies are only made of ARP aimed at the gateway's address.
                self.server.neighbours_changed();
                any = true;
            }
        }
        any
    }

    /// Frames from this lane's own rx ring: to the stack here, or on to the next lane.
    pub(super) fn receive_local(&mut self, timestamp: SmolInstant) -> bool {
        let mut taken = 0;
        while taken < RX_BURST {
            let Some(frame) = self.port.peek_rx() else { break };
            let kind = wire::classify(frame);
            // ARP aimed at the gateway's address teaches the stack a neighbour; other ARP on the
            // link (broadcasts about other hosts) teaches it nothing.
            let arp_for_us =
                kind == FrameKind::Arp && wire::arp_target_ip(frame) == Some(self.address.own_ip);
            if self.lanes > 1 && arp_for_us {
                if let Some(copy) = wire::arp_request_as_reply(frame) {
                    for (lane, ring) in self.links.neighbours_out.iter_mut().enumerate() {
                        if let Some(ring) = ring {
                            // A full ring loses one copy: that lane asks by ARP itself.
                            let _ = ring.push(copy);
                            self.to_wake[lane] = true;
                        }
                    }
                }
            }
            taken += 1;
            // `misroutes`: fault injection, as if the NIC had put the frame on the next lane's
            // queue; that lane sees a flow it does not know and passes the frame back here.
            if !self.misroutes(&kind) && !self.passes_on(&kind, 0) {
                let meta = self.port.peek_rx_meta();
                let kind = with_stamp_flags(kind, meta);
                let arrival = meta.map(|meta| meta.arrival_ns);
                if !self.server.ingress(timestamp, self.port, &kind) {
                    // The stack took nothing: no tx frame was free; try again next turn.
                    break;
                }
                self.note_arrival(&kind, arrival);
                self.values.rx_frames += 1;
                if arp_for_us {
                    self.server.neighbours_changed();
                }
                continue;
            }
            let Some(frame) = self.port.lend_rx() else {
                continue;
            };
            self.values.rx_frames += 1;
            self.pass_on(Handed {
                frame,
                origin: self.index as u8,
                hops: 0,
            });
        }
        taken > 0
    }
}

/// `kind` with what the XDP program's stamp says about it: whether the segment may be a SYN
/// cookie's ACK.
fn with_stamp_flags(kind: FrameKind, meta: Option<xgate_xdp_common::FrameMeta>) -> FrameKind {
    match kind {
        FrameKind::Tcp(mut segment) => {
            segment.cookies_active =
                meta.is_some_and(|meta| meta.flags & xgate_xdp_common::FRAME_FLAG_COOKIES_ACTIVE != 0);
            FrameKind::Tcp(segment)
        }
        other => other,
    }
}
