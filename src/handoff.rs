//! The rings between lanes, and the per-lane state other threads may read.
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
//! - [`LaneCounters`] are written by their lane only and read by others; each sits on its own
//!   cache lines (64-byte aligned) so one lane's updates never invalidate another lane's line.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use rtrb::{Consumer, Producer, RingBuffer};
use xgate_userstack::{wire::ARP_FRAME_LEN, xsk::LentFrame};

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

/// Defines the lane counters once: the atomics a lane publishes, their plain values, and their
/// names (the keys of the JSON events).
macro_rules! lane_counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// A lane's counters, published by the lane at the end of each loop turn and read by the
        /// main thread (stats and the final report). One cache line group per lane.
        #[repr(align(64))]
        #[derive(Default)]
        pub struct LaneCounters {
            $(pub $name: AtomicU64,)*
        }

        /// A lane's counters as plain numbers.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CounterValues {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl LaneCounters {
            /// Publishes the lane's current values (only the lane calls this).
            pub fn publish(&self, values: &CounterValues) {
                $(self.$name.store(values.$name, Ordering::Relaxed);)*
            }

            pub fn read(&self) -> CounterValues {
                CounterValues {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl CounterValues {
            /// Every counter with its name, in declaration order.
            pub fn named(&self) -> [(&'static str, u64); [$(stringify!($name)),*].len()] {
                [$((stringify!($name), self.$name)),*]
            }
        }
    };
}

lane_counters! {
    /// Frames the lane's stack or rings took.
    rx_frames,
    /// Requests answered (direct answers and proxied responses that completed).
    requests,
    accepted,
    refused,
    /// New SYNs dropped unanswered at the half-open bound (all half-open connections young).
    syn_deferred,
    /// Half-open connections aborted at the bound to make room for a new SYN.
    half_open_evicted,
    handed_out,
    handed_in,
    handoff_dropped,
    heap_allocations,
    /// Connections opened to upstream members (proxying and health checks).
    upstream_connects,
    /// Upstream connects that failed (refused, unreachable, timed out, no socket or port).
    upstream_connect_failures,
    /// Requests moved once to another member after a failed connect.
    upstream_retries,
    /// Upstream responses that could not be framed (then 502, or a reset once begun).
    bad_upstream_responses,
    /// Request bodies with invalid chunked framing or over the size limit.
    bad_bodies,
    /// Client connections reset because their response could not be finished.
    client_resets,
    /// Time limits that fired (header read, body, upstream connect or response).
    timeouts,
    /// Idle keep-alive client connections closed.
    idle_closed,
    /// Exchanges in flight (proxied requests not finished), at the last publish.
    in_flight,
    /// Client connections open, at the last publish; while draining, only those with a request
    /// in progress or response bytes not yet acknowledged.
    open_connections,
    /// Frames the lane's stack sent.
    tx_frames,
    /// Times the stack wanted to send but every tx frame was in flight (backpressure).
    tx_starved,
    /// The lane's UMEM frames by state, at the last sweep: on the fill ring, ...
    umem_fill,
    /// ... received and held by the stack, ...
    umem_in_stack,
    /// ... free to send in, ...
    umem_tx_free,
    /// ... written and waiting for the tx ring, ...
    umem_tx_pending,
    /// ... on the tx ring or in flight, ...
    umem_tx_ring,
    /// ... lent to another lane.
    umem_lent,
    /// Slots in the ring toward the HTTP stage, in use at the last sweep.
    http_ring_used,
    /// Loop turns that found the ring toward the HTTP stage full with requests waiting
    /// (backpressure).
    http_ring_full,
    /// The kernel's counts for the lane's AF_XDP socket (XDP_STATISTICS), at the last sweep:
    /// frames dropped for want of a fill-ring frame or rx-ring slot (rx_dropped), times the rx
    /// ring was full, times the fill ring was empty, and invalid descriptors (rx and tx).
    xsk_rx_dropped,
    xsk_rx_ring_full,
    xsk_fill_ring_empty,
    xsk_invalid_descs,
}

/// Lets other lanes wake a lane that sleeps in `poll(2)`: a flag the lane sets before sleeping
/// and an eventfd it polls beside its AF_XDP socket.
pub struct LaneWake {
    pub sleeping: AtomicBool,
    event: OwnedFd,
}

impl LaneWake {
    pub fn new() -> std::io::Result<LaneWake> {
        // SAFETY: plain eventfd(2) call; the returned fd is checked and then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(LaneWake {
            sleeping: AtomicBool::new(false),
            // SAFETY: fd was just returned by eventfd and is owned by nobody else.
            event: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn event_fd(&self) -> i32 {
        self.event.as_raw_fd()
    }

    /// Wakes the lane if it sleeps. Call after publishing work to its rings.
    pub fn wake_if_sleeping(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to the eventfd this struct owns.
            unsafe { libc::write(self.event.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Empties the eventfd after waking.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from the owned, non-blocking eventfd.
        unsafe { libc::read(self.event.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}
