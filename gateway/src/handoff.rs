//! The rings between lanes, and the wake-up a lane sleeps on.
//!
//! Lanes share no mutable state on the data path. What crosses between them goes through
//! wait-free single-producer single-consumer rtrb rings, one per ordered pair of lanes:
//! - **frames**: a received frame of a flow this lane does not know, as a [`Handed`] frame handle
//!   (an address in the receiving lane's UMEM and a length; never a copy of the bytes). The
//!   lane that took a connection's SYN owns the connection; a NIC's RSS (or the lab switch's flow
//!   hash) sends every later frame of the flow to the same queue, so frames only need handing
//!   over when the steering changes under a flow (a peer that rehashes after a timeout, a NIC
//!   reconfigured). A lane that does not know the flow passes the frame to the next lane; the
//!   last lane asked answers it as a stray (RST);
//! - **returns**: the same handle going back once the owner's stack has read the frame, so the
//!   lane that received it can put the frame back on its fill ring;
//! - **neighbours**: a 42-byte copy of an ARP frame, so that every lane's stack learns the
//!   addresses of its peers (control path, rare; the one copy this module makes).
//!
//! Invariants:
//! - A returns ring holds as many handles as the lending lane has rx frames, and a frame is lent
//!   at most once at a time, so a return never finds its ring full.
//! - A full frames ring is a drop of that one frame, counted (`handoff_dropped`): the frame
//!   carries no data xgate has acknowledged, so the peer's TCP sends it again. Nothing else
//!   waits on a full frames ring.

use std::sync::atomic::{AtomicBool, Ordering};

use rtrb::{Consumer, Producer, RingBuffer};
use xgate_userstack::{wire::ARP_FRAME_LEN, xsk::LentFrame};

use crate::sys::EventFd;

/// Frames one lane may have in flight toward another.
pub const FRAME_RING: usize = 1024;
/// ARP copies in flight toward one lane.
pub const NEIGHBOUR_RING: usize = 64;

/// A frame on its way between lanes.
pub struct Handed {
    pub frame: LentFrame,
    /// The lane whose UMEM holds the frame (it gets the frame back).
    pub origin: u8,
    /// Lanes that have already looked for the frame's flow.
    pub hops: u8,
}

/// One lane's ends of every ring it shares with the other lanes (indexed by the other lane).
pub struct LaneLinks {
    /// Frames this lane passes to lane `i`.
    pub frames_out: Vec<Option<Producer<Handed>>>,
    /// Frames lane `i` passes to this lane.
    pub frames_in: Vec<Option<Consumer<Handed>>>,
    /// Lane `i`'s frames, read, going back to lane `i`.
    pub returns_out: Vec<Option<Producer<LentFrame>>>,
    /// This lane's frames coming back from lane `i`.
    pub returns_in: Vec<Option<Consumer<LentFrame>>>,
    pub neighbours_out: Vec<Option<Producer<[u8; ARP_FRAME_LEN]>>>,
    pub neighbours_in: Vec<Option<Consumer<[u8; ARP_FRAME_LEN]>>>,
}

impl LaneLinks {
    /// Whether another lane left work for this one.
    pub fn has_input(&self) -> bool {
        self.frames_in.iter().flatten().any(|c| !c.is_empty())
            || self.returns_in.iter().flatten().any(|c| !c.is_empty())
            || self.neighbours_in.iter().flatten().any(|c| !c.is_empty())
    }
}

/// Builds the rings for `lanes` lanes, each with `rx_frames` rx frames (the size of the returns
/// rings toward it).
pub fn link_lanes(lanes: usize, rx_frames: usize) -> Vec<LaneLinks> {
    let mut links: Vec<LaneLinks> = (0..lanes)
        .map(|_| LaneLinks {
            frames_out: (0..lanes).map(|_| None).collect(),
            frames_in: (0..lanes).map(|_| None).collect(),
            returns_out: (0..lanes).map(|_| None).collect(),
            returns_in: (0..lanes).map(|_| None).collect(),
            neighbours_out: (0..lanes).map(|_| None).collect(),
            neighbours_in: (0..lanes).map(|_| None).collect(),
        })
        .collect();
    for from in 0..lanes {
        for to in 0..lanes {
            if from == to {
                continue;
            }
            let (producer, consumer) = RingBuffer::new(FRAME_RING);
            links[from].frames_out[to] = Some(producer);
            links[to].frames_in[from] = Some(consumer);
            // Lane `to` returns lane `from`'s frames.
            let (producer, consumer) = RingBuffer::new(rx_frames);
            links[to].returns_out[from] = Some(producer);
            links[from].returns_in[to] = Some(consumer);
            let (producer, consumer) = RingBuffer::new(NEIGHBOUR_RING);
            links[from].neighbours_out[to] = Some(producer);
            links[to].neighbours_in[from] = Some(consumer);
        }
    }
    links
}

/// Lets other lanes wake a lane that sleeps in `poll(2)`: a flag the lane sets before sleeping
/// and an eventfd it polls beside its AF_XDP socket.
pub struct LaneWake {
    pub sleeping: AtomicBool,
    event: EventFd,
}

impl LaneWake {
    pub fn new() -> std::io::Result<LaneWake> {
        Ok(LaneWake {
            sleeping: AtomicBool::new(false),
            event: EventFd::new()?,
        })
    }

    pub fn event_fd(&self) -> std::os::fd::RawFd {
        self.event.raw_fd()
    }

    /// Wakes the lane if it sleeps. Call after publishing work to its rings.
    pub fn wake_if_sleeping(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.event.signal();
        }
    }

    /// Empties the eventfd after waking.
    pub fn drain(&self) {
        self.event.drain();
    }
}
