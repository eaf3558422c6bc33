//! Request slots and the handles that pass them between the network loop and the HTTP worker.
//!
//! Why the ring sits here: the network loop (AF_XDP rings, smoltcp) must never wait on HTTP work,
//! and HTTP work (parsing, routing, writing responses; later proxying) must never touch the
//! stack's state. So the loop copies a connection's received bytes from its smoltcp socket
//! buffer into that connection's slot and sends the slot's *handle* to the worker over a
//! wait-free rtrb ring; the worker parses the bytes in place, writes the response into the same
//! slot, and sends the handle back over a second ring. No request or response bytes cross a ring;
//! four bytes of handle do.
//!
//! Invariants:
//! - There is exactly one [`SlotHandle`] per slot, created once by [`SlotTable::new`]; handles
//!   are neither `Copy` nor `Clone` and carry the id of the table that made them. Holding the
//!   handle is the only way to reach the slot ([`SlotTable::slot`] takes `&mut SlotHandle` and
//!   refuses a handle of another table), so the slot is never accessed by two threads at once:
//!   ownership moves with the handle through the ring.
//! - Slots are sized at start; nothing here allocates after that.
//! - Each ring can hold every handle, so a push never fails: backpressure is the slot itself
//!   (a connection with a request at the worker reads no more bytes until the handle returns).

use xgate_proxy::Outcome;

use std::{
    cell::UnsafeCell,
    sync::atomic::{AtomicU32, Ordering},
};

/// Source of table ids, so a handle can only open slots of the table that made it.
static NEXT_TABLE_ID: AtomicU32 = AtomicU32::new(0);

/// Bytes of a slot's response buffer; every response of the built-in responder fits.
pub const RESPONSE_CAPACITY: usize = 1024;

/// One connection's request and response bytes.
pub struct Slot {
    pub request: Box<[u8]>,
    pub request_len: usize,
    pub response: Box<[u8]>,
    /// What the worker decided for the bytes in the slot; `None` until it has looked.
    pub verdict: Option<Outcome>,
}

impl Slot {
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

/// The only key to one slot. Moving it moves the right to use the slot.
#[derive(Debug, PartialEq, Eq)]
pub struct SlotHandle {
    table: u32,
    index: u32,
}

impl SlotHandle {
    /// The slot's index (the connection it belongs to).
    pub fn index(&self) -> usize {
        self.index as usize
    }
}

/// All slots of one lane, shared by the loop and the worker.
pub struct SlotTable {
    id: u32,
    slots: Box<[UnsafeCell<Slot>]>,
}

// SAFETY: a slot is reached only through `slot(&mut SlotHandle)`, which checks that the handle
// belongs to this table, and exactly one handle exists per slot (see the module invariants), so no
// two threads ever access the same slot at once.
unsafe impl Sync for SlotTable {}

impl SlotTable {
    /// `count` slots of `request_capacity` request bytes, and their handles.
    pub fn new(count: usize, request_capacity: usize) -> (SlotTable, Vec<SlotHandle>) {
        let slots = (0..count)
            .map(|_| {
                UnsafeCell::new(Slot {
                    request: vec![0; request_capacity].into_boxed_slice(),
                    request_len: 0,
                    response: vec![0; RESPONSE_CAPACITY].into_boxed_slice(),
                    verdict: None,
                })
            })
            .collect();
        let id = NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed);
        let handles = (0..count as u32)
            .map(|index| SlotHandle { table: id, index })
            .collect();
        (SlotTable { id, slots }, handles)
    }

    /// The slot `handle` owns.
    ///
    /// # Panics
    ///
    /// If `handle` was made by another table (a programming error).
    pub fn slot<'a>(&'a self, handle: &'a mut SlotHandle) -> &'a mut Slot {
        assert_eq!(
            handle.table, self.id,
            "slot handle used with a table that did not make it"
        );
        // SAFETY: `handle` is the unique handle of this slot of this table (checked above) and is
        // mutably borrowed for as long as the returned reference lives, so no other reference to
        // the slot can exist.
        unsafe { &mut *self.slots[handle.index()].get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn consume_keeps_pipelined_remainder() {
        let (table, mut handles) = SlotTable::new(1, 64);
        let slot = table.slot(&mut handles[0]);
        slot.request[..10].copy_from_slice(b"abcdefghij");
        slot.request_len = 10;
        slot.consume_request(4);
        assert_eq!(slot.pending_request(), b"efghij");
        slot.consume_request(100);
        assert_eq!(slot.pending_request(), b"");
    }

    #[test]
    #[should_panic(expected = "did not make it")]
    fn a_handle_of_another_table_is_refused() {
        let (first, _first_handles) = SlotTable::new(1, 8);
        let (_second, mut second_handles) = SlotTable::new(1, 8);
        first.slot(&mut second_handles[0]);
    }

    /// Handles travel to a worker thread and back through two rtrb rings many times; every
    /// round trip sees the bytes the other side wrote, in order, and no handle is lost.
    #[test]
    fn handles_round_trip_between_threads_without_loss() {
        const SLOTS: usize = 8;
        const ROUNDS: u32 = 20_000;
        let (table, handles) = SlotTable::new(SLOTS, 16);
        let table = Arc::new(table);
        let (mut to_worker, mut worker_in) = rtrb::RingBuffer::<SlotHandle>::new(SLOTS);
        let (mut worker_out, mut from_worker) = rtrb::RingBuffer::<SlotHandle>::new(SLOTS);
        let worker_table = Arc::clone(&table);
        let worker = std::thread::spawn(move || {
            let mut served = 0u32;
            while served < ROUNDS * SLOTS as u32 {
                if let Ok(mut handle) = worker_in.pop() {
                    let slot = worker_table.slot(&mut handle);
                    let n = u32::from_le_bytes(slot.request[..4].try_into().unwrap());
                    slot.response[..4].copy_from_slice(&(n + 1).to_le_bytes());
                    worker_out.push(handle).expect("ring holds every handle");
                    served += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut expected = [0u32; SLOTS];
        for mut handle in handles {
            let i = handle.index();
            table.slot(&mut handle).request[..4].copy_from_slice(&0u32.to_le_bytes());
            expected[i] = 0;
            to_worker.push(handle).unwrap();
        }
        let mut done = 0;
        while done < ROUNDS * SLOTS as u32 {
            if let Ok(mut handle) = from_worker.pop() {
                let i = handle.index();
                let slot = table.slot(&mut handle);
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
        assert!(expected.iter().all(|&n| n == ROUNDS), "{expected:?}");
    }
}
