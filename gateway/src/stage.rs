//! Request slots and the handles that pass them between the network loop and the HTTP worker.
//!
//! Why the ring sits here: the network loop (AF_XDP rings, smoltcp) must never wait on HTTP work,
//! and HTTP work (framing, routing, writing direct answers and the heads of forwarded requests)
//! must never touch the stack's state. So the loop copies a connection's received bytes from its
//! smoltcp socket buffer into that connection's slot and sends the slot's *handle* to the worker
//! over a wait-free rtrb ring; the worker parses the bytes in place, writes the response into the
//! same slot, and sends the handle back over a second ring. No request or response bytes cross a
//! ring; the handle (a pointer to the slot and its index) does.
//!
//! The HTTP side is an [`HttpStage`]: it owns the consumer end of the request ring and the
//! producer end of the response ring, and answers up to [`BATCH`] handles per call. A lane calls
//! it on its own thread between its network steps (on a machine with a core per lane, the loop
//! and a separate HTTP thread would only take turns on that core, paying a context switch per
//! hand-off); the rings are the boundary that would let the stage run on a core of its own.
//! The stage reads the monotonic clock once per batch and gives it to `Gateway::decide`: the
//! routes' rate limits count in one table every lane shares, on that one clock.
//!
//! Invariants:
//! - A [`SlotHandle`] owns its slot (a box made once by [`SlotMemory::slots`], holding that
//!   slot's own disjoint share of the lane's [`SlotMemory`], borrowed mutably); handles are
//!   neither `Copy` nor `Clone`, and holding the handle is the only way to reach the slot
//!   ([`SlotHandle::slot`]), so the slot is never accessed by two threads at once: ownership moves
//!   with the handle through the ring, checked by the compiler rather than by `unsafe` code.
//! - Slots are sized at start; nothing here allocates after that. Their bytes are one
//!   [`Arena`] per lane (a [`SlotMemory`], owned by the lane's `run` and outliving every handle):
//!   one zeroed allocation whose pages become resident only once written, so an idle slot costs
//!   address space, not memory (see `xgate_userstack::arena`).
//! - The response ring is at least as large as the request ring and the stage takes no more
//!   handles than the response ring has room for, so no handle is ever stuck between the two.
//! - A full request ring is backpressure, never a drop: the connection keeps its bytes in its
//!   slot, waits in the lane's ready queue, and reads nothing more from its socket until its
//!   handle is back, so TCP's receive window closes toward the client.

use xgate_proxy::gateway::{Gateway, Verdict};
use xgate_userstack::arena::{Arena, PAGE};

/// Most handles moved through a ring in one chunk.
pub const BATCH: usize = 32;

/// One connection's request and response bytes (its share of a [`SlotMemory`], borrowed for
/// `'m`).
pub struct Slot<'m> {
    pub request: &'m mut [u8],
    pub request_len: usize,
    /// The response the worker wrote (a direct answer, or the head to send upstream), later the
    /// client head of a proxied response.
    pub response: &'m mut [u8],
    /// What the worker decided for the bytes in the slot; `None` until it has looked.
    pub verdict: Option<Verdict>,
    /// The client's address (for `X-Forwarded-For` and hashing), set by the lane.
    pub client_ip: std::net::IpAddr,
    /// The connection is over TLS (`X-Forwarded-Proto`, redirects, HSTS), set by the lane.
    pub https: bool,
}

impl Slot<'_> {
    /// The received bytes not yet answered.
    #[cfg(test)]
    pub fn pending_request(&self) -> &[u8] {
        &self.request[..self.request_len]
    }

    /// Drops the first `consumed` request bytes, keeping any pipelined remainder at the front.
    pub fn consume_request(&mut self, consumed: usize) {
        let consumed = consumed.min(self.request_len);
        self.request.copy_within(consumed..self.request_len, 0);
        self.request_len -= consumed;
    }
}

/// The only key to one slot, and its owner. Moving it moves the right to use the slot.
pub struct SlotHandle<'m> {
    index: u32,
    slot: Box<Slot<'m>>,
}

impl<'m> SlotHandle<'m> {
    /// The slot's index (the connection it belongs to).
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// The slot this handle owns.
    pub fn slot(&mut self) -> &mut Slot<'m> {
        &mut self.slot
    }
}

impl std::fmt::Debug for SlotHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotHandle").field("index", &self.index).finish()
    }
}

/// The request and response bytes of a lane's slots, in one [`Arena`]: each slot's request
/// buffer, then its response buffer, every slot starting on a page (so a short request and a
/// short answer touch a page each).
pub struct SlotMemory {
    arena: Arena,
    count: usize,
    request_capacity: usize,
    response_capacity: usize,
}

impl SlotMemory {
    /// Bytes for `count` slots of `request_capacity` request bytes and `response_capacity`
    /// response bytes.
    pub fn new(count: usize, request_capacity: usize, response_capacity: usize) -> SlotMemory {
        let stride = Self::stride(request_capacity, response_capacity);
        SlotMemory {
            arena: Arena::zeroed(count * stride),
            count,
            request_capacity,
            response_capacity,
        }
    }

    /// Bytes from one slot's start to the next's: its buffers, rounded up to whole pages.
    fn stride(request_capacity: usize, response_capacity: usize) -> usize {
        (request_capacity + response_capacity).next_multiple_of(PAGE)
    }

    /// Bytes of address space the slots take (resident only where they have been written).
    pub fn reserved(&self) -> usize {
        self.arena.len()
    }

    /// The slots, as their handles (handle `i` has index `i`).
    pub fn slots(&mut self) -> Vec<SlotHandle<'_>> {
        let (request, response) = (self.request_capacity, self.response_capacity);
        let stride = Self::stride(request, response);
        let mut chunks = self.arena.bytes().chunks_exact_mut(stride.max(1));
        (0..self.count as u32)
            .map(|index| {
                // Slots of no bytes come as no chunks: empty buffers then.
                let chunk = chunks.next().unwrap_or_default();
                let (request_bytes, rest) = chunk.split_at_mut(request.min(chunk.len()));
                let response_len = response.min(rest.len());
                let response_bytes = &mut rest[..response_len];
                SlotHandle {
                    index,
                    slot: Box::new(Slot {
                        request: request_bytes,
                        request_len: 0,
                        response: response_bytes,
                        verdict: None,
                        client_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
                        https: false,
                    }),
                }
            })
            .collect()
    }
}

/// The HTTP stage: takes slot handles from the request ring, answers the request at the front
/// of each slot, and sends the handles back over the response ring. Owns no socket and no
/// packet memory.
pub struct HttpStage<'m> {
    requests: rtrb::Consumer<SlotHandle<'m>>,
    responses: rtrb::Producer<SlotHandle<'m>>,
    gateway: Gateway,
}

impl<'m> HttpStage<'m> {
    pub fn new(
        requests: rtrb::Consumer<SlotHandle<'m>>,
        responses: rtrb::Producer<SlotHandle<'m>>,
        gateway: Gateway,
    ) -> HttpStage<'m> {
        HttpStage {
            requests,
            responses,
            gateway,
        }
    }

    /// Routes with `gateway` from the next request on (a reload).
    pub fn set_gateway(&mut self, gateway: Gateway) {
        self.gateway = gateway;
    }

    /// Answers up to [`BATCH`] waiting requests; returns how many.
    pub fn run_batch(&mut self) -> usize {
        let count = self.requests.slots().min(self.responses.slots()).min(BATCH);
        if count == 0 {
            return 0;
        }
        let chunk = self.requests.read_chunk(count).expect("slots counted above");
        let out = self
            .responses
            .write_chunk_uninit(count)
            .expect("room counted above");
        let gateway = &self.gateway;
        // One clock for the batch (rate limits; the same clock in every lane).
        let now_ns = crate::sys::monotonic_ns();
        out.fill_from_iter(chunk.into_iter().map(|mut handle| {
            let slot = handle.slot();
            slot.verdict = Some(gateway.decide_from(
                &slot.request[..slot.request_len],
                xgate_proxy::gateway::Client {
                    ip: slot.client_ip,
                    https: slot.https,
                },
                now_ns,
                slot.response,
            ));
            handle
        }));
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_keeps_pipelined_remainder() {
        let mut memory = SlotMemory::new(1, 64, 16);
        let mut handles = memory.slots();
        let slot = handles[0].slot();
        slot.request[..10].copy_from_slice(b"abcdefghij");
        slot.request_len = 10;
        slot.consume_request(4);
        assert_eq!(slot.pending_request(), b"efghij");
        slot.consume_request(100);
        assert_eq!(slot.pending_request(), b"");
    }

    #[test]
    fn slots_have_their_capacities_and_start_on_pages() {
        let mut memory = SlotMemory::new(3, 16 * 1024, 17 * 1024);
        assert_eq!(memory.reserved(), 3 * 36 * 1024);
        for mut handle in memory.slots() {
            let slot = handle.slot();
            assert_eq!(slot.request.len(), 16 * 1024);
            assert_eq!(slot.response.len(), 17 * 1024);
            assert_eq!(slot.request.as_ptr() as usize % PAGE, 0);
        }
    }

    #[test]
    fn each_handle_owns_a_slot_of_its_own() {
        let mut memory = SlotMemory::new(4, 8, 8);
        let mut handles = memory.slots();
        for (i, handle) in handles.iter_mut().enumerate() {
            assert_eq!(handle.index(), i);
            handle.slot().request[0] = i as u8;
        }
        for (i, handle) in handles.iter_mut().enumerate() {
            assert_eq!(
                handle.slot().request[0],
                i as u8,
                "slot {i} shared with another handle"
            );
        }
    }

    /// Handles travel to a worker thread and back through two rtrb rings many times; every
    /// round trip sees the bytes the other side wrote, in order, and no handle is lost.
    #[test]
    fn handles_round_trip_between_threads_without_loss() {
        const SLOTS: usize = 8;
        const ROUNDS: u32 = 20_000;
        let mut memory = SlotMemory::new(SLOTS, 16, 16);
        let handles = memory.slots();
        let (mut to_worker, mut worker_in) = rtrb::RingBuffer::<SlotHandle>::new(SLOTS);
        let (mut worker_out, mut from_worker) = rtrb::RingBuffer::<SlotHandle>::new(SLOTS);
        let mut expected = [0u32; SLOTS];
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let mut served = 0u32;
                while served < ROUNDS * SLOTS as u32 {
                    if let Ok(mut handle) = worker_in.pop() {
                        let slot = handle.slot();
                        let n = u32::from_le_bytes(slot.request[..4].try_into().unwrap());
                        slot.response[..4].copy_from_slice(&(n + 1).to_le_bytes());
                        worker_out.push(handle).expect("ring holds every handle");
                        served += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            });
            for mut handle in handles {
                let i = handle.index();
                handle.slot().request[..4].copy_from_slice(&0u32.to_le_bytes());
                expected[i] = 0;
                to_worker.push(handle).unwrap();
            }
            let mut done = 0;
            while done < ROUNDS * SLOTS as u32 {
                if let Ok(mut handle) = from_worker.pop() {
                    let i = handle.index();
                    let slot = handle.slot();
                    let answer = u32::from_le_bytes(slot.response[..4].try_into().unwrap());
                    assert_eq!(answer, expected[i] + 1, "slot {i} saw a stale response");
                    expected[i] = answer;
                    slot.request[..4].copy_from_slice(&answer.to_le_bytes());
                    done += 1;
                    if answer < ROUNDS {
                        to_worker.push(handle).unwrap();
                    }
                } else {
                    std::thread::yield_now();
                }
            }
            worker.join().unwrap();
        });
        assert!(expected.iter().all(|&n| n == ROUNDS), "{expected:?}");
    }

    /// The lane's way of using a ring: chunks of up to BATCH, as many as there is room for, and
    /// what does not fit waits (backpressure) instead of being dropped. Two threads, a small
    /// ring so that it is full most of the time, a million items: all arrive, in order.
    #[test]
    fn batched_hand_off_with_a_full_ring_loses_nothing_and_keeps_order() {
        const ITEMS: u64 = 1_000_000;
        let (mut producer, mut consumer) = rtrb::RingBuffer::<u64>::new(8);
        let reader = std::thread::spawn(move || {
            let mut expected = 0u64;
            let mut chunks = 0u64;
            while expected < ITEMS {
                let n = consumer.slots().min(BATCH);
                if n == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                let chunk = consumer.read_chunk(n).unwrap();
                for item in chunk {
                    assert_eq!(item, expected, "out of order or lost");
                    expected += 1;
                }
                chunks += 1;
            }
            chunks
        });
        let mut next = 0u64;
        let mut waited = 0u64;
        while next < ITEMS {
            let room = producer.slots().min(BATCH).min((ITEMS - next) as usize);
            if room == 0 {
                // Full: the items stay with the producer (the lane's ready queue) until there is room.
                waited += 1;
                std::hint::spin_loop();
                continue;
            }
            let chunk = producer.write_chunk_uninit(room).unwrap();
            let written = chunk.fill_from_iter(next..);
            assert_eq!(written, room);
            next += written as u64;
        }
        let chunks = reader.join().unwrap();
        assert!(chunks < ITEMS, "items crossed in batches, not one by one");
        assert!(waited > 0, "the ring was full at times (backpressure exercised)");
    }

    /// The HTTP stage answers what the ring brings, in ring order, never taking more handles
    /// than the response ring has room for; handles that wait for room are served later.
    #[test]
    fn http_stage_serves_in_order_and_respects_the_response_ring() {
        const SLOTS: usize = 40;
        let mut memory = SlotMemory::new(SLOTS, 256, 512);
        let handles = memory.slots();
        let (mut to_stage, stage_in) = rtrb::RingBuffer::<SlotHandle>::new(SLOTS);
        let (stage_out, mut from_stage) = rtrb::RingBuffer::<SlotHandle>::new(8);
        let mut stage = HttpStage::new(
            stage_in,
            stage_out,
            Gateway::new(
                &crate::routing::Routing::build(&[], &[]).unwrap().routes,
                &[],
                xgate_proxy::Limits::default(),
                "10.0.0.1:80",
                256,
            ),
        );
        for (i, mut handle) in handles.into_iter().enumerate() {
            let slot = handle.slot();
            let path = if i % 2 == 0 { "/healthz" } else { "/nope" };
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            slot.request[..request.len()].copy_from_slice(request.as_bytes());
            slot.request_len = request.len();
            to_stage.push(handle).unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < SLOTS {
            let served = stage.run_batch();
            assert!(served <= 8, "took {served} handles with room for 8 responses");
            while let Ok(mut handle) = from_stage.pop() {
                let index = handle.index();
                let status = match handle.slot().verdict {
                    Some(Verdict::Respond { status, .. }) => status,
                    other => panic!("slot {index}: {other:?}"),
                };
                assert_eq!(status, if index % 2 == 0 { 200 } else { 404 });
                seen.push(index);
            }
        }
        assert_eq!(seen, (0..SLOTS).collect::<Vec<_>>());
    }
}
