//! The frame ledger: where each UMEM frame is.
//!
//! Invariant: every frame of the UMEM is in exactly one [`FrameState`] at any time, and it moves
//! only along the transitions the AF_XDP rings allow:
//!
//! ```text
//! rx frames:  Fill (fill ring → kernel → rx ring) ──read──▶ InStack ──recycle──▶ Fill
//!                                                 InStack ──lend──▶ Lent ──take back──▶ InStack
//! tx frames:  TxFree ──write──▶ TxPending ──submit──▶ TxRing ──completion──▶ TxFree
//! ```
//!
//! A transition from any other state is a violation: the kernel handed back an address xgate did
//! not give it, or the same frame was about to be queued twice. A violation is refused: the ledger
//! leaves the frame where it was, counts the violation, and the caller does not put the frame on
//! any ring. Debug and release builds behave the same; tests assert the counter stays zero.
//!
//! Note the ledger tracks ownership, not every ring: `Fill` covers both the fill ring and the rx
//! ring (the kernel owns the frame either way), and `TxRing` covers the tx ring, the kernel's
//! transmit path and the completion ring.
//!
//! The ledger uses `Cell`s so that an rx token and a tx token of the same device can both update
//! it while they are alive at once; it is owned by one lane and never shared between threads.

use std::cell::Cell;

/// Where a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameState {
    /// Given to the kernel through the fill ring, waiting for a packet.
    Fill = 0,
    /// Filled by the kernel and read from the rx ring, lent to the stack (an rx token holds it),
    /// or waiting to be recycled into the fill ring.
    InStack = 1,
    /// Free for the stack to write an outgoing frame into.
    TxFree = 2,
    /// Written by the stack, waiting to be put on the tx ring.
    TxPending = 3,
    /// On the tx ring or in flight in the kernel, until the completion ring returns it.
    TxRing = 4,
    /// A received frame handed to another lane (the flow's owner), until that lane gives it back.
    Lent = 5,
}

impl FrameState {
    /// Number of states.
    pub const COUNT: usize = 6;
    /// All states in discriminant order.
    pub const ALL: [FrameState; Self::COUNT] = [
        FrameState::Fill,
        FrameState::InStack,
        FrameState::TxFree,
        FrameState::TxPending,
        FrameState::TxRing,
        FrameState::Lent,
    ];
}

/// The state of every frame, indexed by frame number (UMEM offset / frame size).
pub struct FrameLedger {
    states: Box<[Cell<FrameState>]>,
    frame_shift: u32,
    violations: Cell<u64>,
}

impl FrameLedger {
    /// A ledger for `frames` frames of `frame_size` bytes (a power of two), all in `initial`.
    pub fn new(frames: u32, frame_size: u32, initial: FrameState) -> FrameLedger {
        assert!(frame_size.is_power_of_two(), "frame size must be a power of two");
        FrameLedger {
            states: (0..frames).map(|_| Cell::new(initial)).collect(),
            frame_shift: frame_size.trailing_zeros(),
            violations: Cell::new(0),
        }
    }

    /// Number of frames tracked.
    pub fn frames(&self) -> u32 {
        self.states.len() as u32
    }

    /// The frame number holding UMEM address `addr` (any byte inside the frame).
    pub fn frame_of(&self, addr: u64) -> Option<usize> {
        let index = (addr >> self.frame_shift) as usize;
        (index < self.states.len()).then_some(index)
    }

    /// The UMEM address where frame `index` starts.
    pub fn frame_base(&self, index: usize) -> u64 {
        (index as u64) << self.frame_shift
    }

    /// The UMEM address where the frame holding `addr` starts.
    pub fn frame_start(&self, addr: u64) -> Option<u64> {
        self.frame_of(addr).map(|index| self.frame_base(index))
    }

    /// Current state of the frame holding `addr`.
    pub fn state_of(&self, addr: u64) -> Option<FrameState> {
        self.frame_of(addr).map(|i| self.states[i].get())
    }

    /// Sets the frame holding `addr` to `to`, if it is in `from`. Returns whether it moved; when it
    /// did not, the violation is counted and the caller must leave the frame alone.
    pub fn transition(&self, addr: u64, from: FrameState, to: FrameState) -> bool {
        let ok = match self.frame_of(addr) {
            Some(index) if self.states[index].get() == from => {
                self.states[index].set(to);
                true
            }
            _ => false,
        };
        if !ok {
            self.violations.set(self.violations.get() + 1);
        }
        ok
    }

    /// Counts a refused move that did not go through [`FrameLedger::transition`] (a frame handed
    /// back to a port that does not own it).
    pub fn count_violation(&self) {
        self.violations.set(self.violations.get() + 1);
    }

    /// Number of refused transitions since start (always 0 in a correct program).
    pub fn violations(&self) -> u64 {
        self.violations.get()
    }

    /// How many frames are in each state, in [`FrameState::ALL`] order.
    pub fn census(&self) -> [usize; FrameState::COUNT] {
        let mut counts = [0; FrameState::COUNT];
        for state in self.states.iter() {
            counts[state.get() as usize] += 1;
        }
        counts
    }

    /// Puts frame `index` into `state` regardless of where it was: used only while building the
    /// initial partition, before any frame has been handed to the kernel.
    pub(crate) fn assign(&self, index: usize, state: FrameState) {
        self.states[index].set(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_frames_and_back() {
        let ledger = FrameLedger::new(8, 4096, FrameState::TxFree);
        assert_eq!(ledger.frame_of(0), Some(0));
        assert_eq!(ledger.frame_of(4095), Some(0));
        assert_eq!(ledger.frame_of(4096 + 256), Some(1));
        assert_eq!(ledger.frame_of(8 * 4096), None);
        assert_eq!(ledger.frame_base(3), 3 * 4096);
    }

    #[test]
    fn legal_transitions_move_frames_and_census_follows() {
        let ledger = FrameLedger::new(4, 2048, FrameState::TxFree);
        assert!(ledger.transition(2048, FrameState::TxFree, FrameState::TxPending));
        assert!(ledger.transition(2048, FrameState::TxPending, FrameState::TxRing));
        assert_eq!(ledger.census(), [0, 0, 3, 0, 1, 0]);
        assert!(ledger.transition(2048, FrameState::TxRing, FrameState::TxFree));
        assert_eq!(ledger.census(), [0, 0, 4, 0, 0, 0]);
        assert_eq!(ledger.violations(), 0);
    }

    #[test]
    fn a_double_queue_is_refused_and_counted() {
        let ledger = FrameLedger::new(4, 2048, FrameState::TxFree);
        assert!(ledger.transition(0, FrameState::TxFree, FrameState::TxRing));
        assert!(!ledger.transition(0, FrameState::TxFree, FrameState::TxRing));
        assert!(!ledger.transition(1 << 20, FrameState::TxFree, FrameState::TxRing));
        assert_eq!(ledger.violations(), 2);
        assert_eq!(ledger.census(), [0, 0, 3, 0, 1, 0]);
    }
}
