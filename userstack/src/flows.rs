//! The flow table of one lane: which connection a TCP segment belongs to, found in O(1) whatever
//! the number of connections.
//!
//! [`FlowTable`] is a fixed-capacity open-addressing hash map from a connection key (see
//! [`crate::wire::TcpFlowKey::connection_key`]) to a connection index, with linear probing and
//! backward-shift deletion.
//!
//! Invariants:
//! - The slot array is allocated once, at construction, with a power-of-two length of at least
//!   twice the most entries the table may hold, so at least half of it is always vacant and
//!   probes stay short. [`FlowTable::insert`], [`FlowTable::get`] and [`FlowTable::remove`]
//!   allocate nothing, do no I/O, and never grow the table: past its most entries it refuses.
//! - Probe runs have no holes: every entry sits in its home slot or after it, with no vacant slot
//!   in between (counting around the end of the array). A lookup therefore stops at the first
//!   vacant slot. There are no tombstones: removing an entry shifts the entries after it back
//!   towards their home slots, so churn never lengthens probes.
//! - The home slot comes from SipHash keyed with a random seed drawn per table
//!   (`std::collections::hash_map::RandomState`), so a peer cannot choose addresses and ports
//!   that collide ahead of time.
//! - Every `u64` key and every `u32` value can be stored; occupancy is kept apart from both.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Why [`FlowTable::insert`] refused an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowTableError {
    /// The table holds [`FlowTable::max_entries`] entries already.
    #[error("the flow table is full")]
    Full,
    /// The key is in the table already, with this value (which is left as it was).
    #[error("the flow is in the table already (value {0})")]
    Exists(u32),
}

/// One slot of the table; 16 bytes, so four share a cache line.
#[derive(Clone, Copy)]
struct Slot {
    key: u64,
    value: u32,
    occupied: bool,
}

const VACANT: Slot = Slot {
    key: 0,
    value: 0,
    occupied: false,
};

/// A lane's connection demultiplexing table: connection key → connection index, fixed capacity.
pub struct FlowTable {
    slots: Box<[Slot]>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: usize,
    len: usize,
    max_entries: usize,
    seed: RandomState,
}

impl FlowTable {
    /// An empty table for up to `entries` connections, with all its memory allocated now:
    /// `max(entries, 1) × 2` slots, rounded up to a power of two.
    ///
    /// # Panics
    /// If that many slots cannot be counted in a `usize`.
    pub fn with_entries(entries: usize) -> FlowTable {
        let slots = entries
            .max(1)
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .unwrap_or_else(|| panic!("a flow table for {entries} entries is too large"));
        FlowTable {
            slots: vec![VACANT; slots].into_boxed_slice(),
            mask: slots - 1,
            len: 0,
            max_entries: entries,
            seed: RandomState::new(),
        }
    }

    /// The slot where `key`'s probe run starts.
    fn home(&self, key: u64) -> usize {
        self.seed.hash_one(key) as usize & self.mask
    }

    /// `Ok(slot)` holding `key`, or `Err(slot)`: the vacant slot that ends its probe run, where
    /// it would be inserted. Terminates because at least half of the slots are vacant.
    fn find(&self, key: u64) -> Result<usize, usize> {
        let mut at = self.home(key);
        loop {
            let slot = &self.slots[at];
            if !slot.occupied {
                return Err(at);
            }
            if slot.key == key {
                return Ok(at);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Enters `key → value`. Refused with [`FlowTableError::Exists`] if `key` is there (checked
    /// first), else with [`FlowTableError::Full`] if the table holds
    /// [`max_entries`](Self::max_entries) entries.
    pub fn insert(&mut self, key: u64, value: u32) -> Result<(), FlowTableError> {
        match self.find(key) {
            Ok(at) => Err(FlowTableError::Exists(self.slots[at].value)),
            Err(_) if self.len == self.max_entries => Err(FlowTableError::Full),
            Err(at) => {
                self.slots[at] = Slot {
                    key,
                    value,
                    occupied: true,
                };
                self.len += 1;
                Ok(())
            }
        }
    }

    /// The value entered for `key`, if it is in the table.
    pub fn get(&self, key: u64) -> Option<u32> {
        self.find(key).ok().map(|at| self.slots[at].value)
    }

    /// Takes `key` out of the table; returns its value if it was there.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let mut hole = self.find(key).ok()?;
        let value = self.slots[hole].value;
        self.len -= 1;
        // Backward shift: walk the rest of the probe run; an entry whose way from its home slot
        // passes the hole moves into it, and its old slot becomes the hole. The run ends at the
        // first vacant slot, which the last hole joins.
        let mut next = (hole + 1) & self.mask;
        while self.slots[next].occupied {
            let home = self.home(self.slots[next].key);
            let home_to_next = next.wrapping_sub(home) & self.mask;
            let home_to_hole = hole.wrapping_sub(home) & self.mask;
            if home_to_hole < home_to_next {
                self.slots[hole] = self.slots[next];
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.slots[hole] = VACANT;
        Some(value)
    }

    /// The number of entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most entries the table holds: the `entries` it was made with.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::test_rng::Xorshift;

    /// Checks the module's invariants: no holes in probe runs, and `len` counts the entries.
    fn assert_invariants(table: &FlowTable) {
        let mut occupied = 0;
        for (at, slot) in table.slots.iter().enumerate() {
            if !slot.occupied {
                continue;
            }
            occupied += 1;
            let mut walk = table.home(slot.key);
            while walk != at {
                assert!(table.slots[walk].occupied, "a hole before the entry in slot {at}");
                walk = (walk + 1) & table.mask;
            }
        }
        assert_eq!(occupied, table.len());
        assert!(table.len() <= table.max_entries());
    }

    #[test]
    fn slots_are_a_power_of_two_at_least_twice_the_entries() {
        for (entries, slots) in [
            (0, 2),
            (1, 2),
            (2, 4),
            (3, 8),
            (4, 8),
            (5, 16),
            (1000, 2048),
            (1024, 2048),
        ] {
            let table = FlowTable::with_entries(entries);
            assert_eq!(table.slots.len(), slots, "{entries} entries");
            assert_eq!(table.max_entries(), entries);
            assert!(table.is_empty());
        }
    }

    #[test]
    #[should_panic(expected = "too large")]
    fn an_uncountable_table_is_refused() {
        FlowTable::with_entries(usize::MAX / 2 + 1);
    }

    #[test]
    fn agrees_with_a_hash_map_under_random_churn() {
        const ENTRIES: usize = 1000;
        let mut table = FlowTable::with_entries(ENTRIES);
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
        for op in 0..200_000u32 {
            // Few distinct keys, so inserts, hits, misses and removals all happen often, and the
            // table is often full. Half the keys are spread over all 64 bits, half are small.
            let draw = rng.next();
            let key = match draw % 1500 {
                small if small < 750 => small,
                large => large.wrapping_mul(0xff51_afd7_ed55_8ccd),
            };
            match rng.next() % 3 {
                0 => {
                    let expected = match model.get(&key) {
                        Some(&value) => Err(FlowTableError::Exists(value)),
                        None if model.len() == ENTRIES => Err(FlowTableError::Full),
                        None => Ok(()),
                    };
                    assert_eq!(table.insert(key, op), expected, "op {op}: insert {key}");
                    if expected.is_ok() {
                        model.insert(key, op);
                    }
                }
                1 => assert_eq!(table.remove(key), model.remove(&key), "op {op}: remove {key}"),
                _ => assert_eq!(table.get(key), model.get(&key).copied(), "op {op}: get {key}"),
            }
            assert_eq!(table.len(), model.len());
            if op % 5_000 == 0 {
                assert_invariants(&table);
            }
        }
        assert_invariants(&table);
        for (key, value) in &model {
            assert_eq!(table.get(*key), Some(*value));
        }
    }

    #[test]
    fn a_full_table_refuses_and_takes_again_after_a_removal() {
        let mut table = FlowTable::with_entries(3);
        for key in 0..3 {
            table.insert(key, key as u32 + 10).unwrap();
        }
        assert_eq!(table.insert(9, 9), Err(FlowTableError::Full));
        assert_eq!(table.get(9), None);
        // A key that is there is reported as such, full or not, and keeps its value.
        assert_eq!(table.insert(1, 5), Err(FlowTableError::Exists(11)));
        assert_eq!(table.get(1), Some(11));
        assert_eq!(table.len(), 3);
        assert_eq!(table.remove(1), Some(11));
        assert_eq!(table.remove(1), None);
        table.insert(9, 9).unwrap();
        assert_eq!(table.get(9), Some(9));
        assert_eq!(table.insert(1, 1), Err(FlowTableError::Full));
        assert_invariants(&table);
    }

    #[test]
    fn a_table_for_no_entries_takes_none() {
        let mut table = FlowTable::with_entries(0);
        assert_eq!(table.insert(7, 7), Err(FlowTableError::Full));
        assert_eq!(table.get(7), None);
        assert_eq!(table.remove(7), None);
        assert!(table.is_empty());
    }

    #[test]
    fn removed_keys_can_be_entered_again_with_new_values() {
        let mut table = FlowTable::with_entries(64);
        for round in 0..100u32 {
            for key in 0..64u64 {
                table.insert(key, round).unwrap();
            }
            assert_eq!(table.len(), 64);
            for key in 0..64u64 {
                assert_eq!(table.remove(key), Some(round));
            }
            assert!(table.is_empty());
        }
        assert!(table.slots.iter().all(|slot| !slot.occupied));
    }

    #[test]
    fn every_key_and_value_can_be_stored() {
        let mut table = FlowTable::with_entries(4);
        let entries = [(0, u32::MAX), (u64::MAX, 0), (1, u32::MAX - 1), (u64::MAX - 1, 1)];
        for (key, value) in entries {
            table.insert(key, value).unwrap();
        }
        for (key, value) in entries {
            assert_eq!(table.get(key), Some(value));
        }
        for (key, value) in entries {
            assert_eq!(table.remove(key), Some(value));
        }
        assert!(table.is_empty());
    }

    #[test]
    fn probe_runs_that_wrap_around_the_end_survive_removals() {
        let mut table = FlowTable::with_entries(8);
        let last = table.mask;
        // Keys at home in the last slot (their runs wrap to the start of the array) and keys at
        // home in slot 0, which the wrapped entries push along.
        let at_home = |table: &FlowTable, slot: usize, count: usize| -> Vec<u64> {
            (0u64..)
                .filter(|&key| table.home(key) == slot)
                .take(count)
                .collect()
        };
        let wrapping = at_home(&table, last, 3);
        let first_slot = at_home(&table, 0, 2);
        for (value, &key) in wrapping.iter().chain(&first_slot).enumerate() {
            table.insert(key, value as u32).unwrap();
        }
        // The last slot and slots 0 to 3 are taken, in insertion order.
        assert_eq!(table.slots[last].key, wrapping[0]);
        assert_eq!(table.slots[0].key, wrapping[1]);
        assert_eq!(table.slots[1].key, wrapping[2]);
        assert_eq!(table.slots[2].key, first_slot[0]);
        assert_eq!(table.slots[3].key, first_slot[1]);
        assert_invariants(&table);
        // Removing the entry in the last slot shifts the wrapped ones back across the end.
        assert_eq!(table.remove(wrapping[0]), Some(0));
        assert_eq!(table.slots[last].key, wrapping[1]);
        assert_eq!(table.slots[0].key, wrapping[2]);
        assert_eq!(table.slots[1].key, first_slot[0]);
        assert_eq!(table.slots[2].key, first_slot[1]);
        assert!(!table.slots[3].occupied);
        assert_invariants(&table);
        // Removing one in slot 0 moves only what may move: slot-0 keys stay at or after home.
        assert_eq!(table.remove(wrapping[2]), Some(2));
        assert_eq!(table.slots[last].key, wrapping[1]);
        assert_eq!(table.slots[0].key, first_slot[0]);
        assert_eq!(table.slots[1].key, first_slot[1]);
        assert_invariants(&table);
        assert_eq!(table.get(wrapping[1]), Some(1));
        assert_eq!(table.get(first_slot[0]), Some(3));
        assert_eq!(table.get(first_slot[1]), Some(4));
        assert_eq!(table.get(wrapping[0]), None);
    }

    #[test]
    fn an_entry_is_not_moved_before_its_home_slot() {
        let mut table = FlowTable::with_entries(8);
        let home_of_first = |slot: usize| (0u64..).find(|&key| table.home(key) == slot).unwrap();
        let (a, b) = (home_of_first(4), home_of_first(5));
        table.insert(a, 1).unwrap();
        table.insert(b, 2).unwrap();
        // `b` is at home in slot 5 and must stay there when slot 4 empties.
        assert_eq!(table.remove(a), Some(1));
        assert!(table.slots[5].occupied && !table.slots[4].occupied);
        assert_eq!(table.get(b), Some(2));
    }

    #[test]
    fn each_table_draws_its_own_seed() {
        let first = FlowTable::with_entries(512);
        let second = FlowTable::with_entries(512);
        assert!((0..64u64).any(|key| first.home(key) != second.home(key)));
    }
}
