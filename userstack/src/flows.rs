//! The flow table of one lane: which connection (socket) a TCP segment belongs to, found in O(1)
//! whatever the number of connections.
//!
//! A fixed-capacity open-addressing hash map from a connection key (see
//! [`crate::wire::TcpFlowKey::connection_key`]) to a connection index, with linear probing and
//! backward-shift deletion.
//!
//! Invariants:
//! - The slot array is allocated once, at construction, with a power-of-two length of at least
//!   twice the most entries it may hold, so at least half of it is always empty and probes stay
//!   short; `insert`, `get` and `remove` allocate nothing.
//! - No tombstones: removing an entry shifts the entries after it back into place, so a lookup
//!   stops at the first empty slot and churn never lengthens probes.
//! - The hash is keyed with a per-table random seed (SipHash through `RandomState`), so a peer
//!   cannot pick addresses and ports that collide ahead of time.

use std::hash::BuildHasher;

const EMPTY: u32 = u32::MAX;

/// Why an insert was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowTableError {
    /// The table holds its most entries already.
    Full,
    /// The key is there, with this value.
    Exists(u32),
}

/// A lane's connection demultiplexing table.
pub struct FlowTable {
    keys: Box<[u64]>,
    /// `EMPTY` marks a free slot.
    values: Box<[u32]>,
    mask: usize,
    len: usize,
    max_entries: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl FlowTable {
    /// A table for up to `entries` connections.
    pub fn with_entries(entries: usize) -> FlowTable {
        let slots = (entries.max(1) * 2).next_power_of_two();
        FlowTable {
            keys: vec![0; slots].into_boxed_slice(),
            values: vec![EMPTY; slots].into_boxed_slice(),
            mask: slots - 1,
            len: 0,
            max_entries: entries,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn home(&self, key: u64) -> usize {
        self.hasher.hash_one(key) as usize & self.mask
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: u64) -> Option<usize> {
        let mut at = self.home(key);
        loop {
            if self.values[at] == EMPTY {
                return None;
            }
            if self.keys[at] == key {
                return Some(at);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Enters `key → value`.
    pub fn insert(&mut self, key: u64, value: u32) -> Result<(), FlowTableError> {
        debug_assert_ne!(value, EMPTY, "u32::MAX is reserved");
        let mut at = self.home(key);
        loop {
            if self.values[at] == EMPTY {
                break;
            }
            if self.keys[at] == key {
                return Err(FlowTableError::Exists(self.values[at]));
            }
            at = (at + 1) & self.mask;
        }
        if self.len == self.max_entries {
            return Err(FlowTableError::Full);
        }
        self.keys[at] = key;
        self.values[at] = value;
        self.len += 1;
        Ok(())
    }

    pub fn get(&self, key: u64) -> Option<u32> {
        self.find(key).map(|at| self.values[at])
    }

    /// Removes `key`; returns its value if it was there.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let mut hole = self.find(key)?;
        let value = self.values[hole];
        self.len -= 1;
        // Backward shift: move each following entry of the probe run into the hole if the hole
        // lies on its way from its home slot; stop at the first empty slot.
        let mut next = (hole + 1) & self.mask;
        while self.values[next] != EMPTY {
            let home = self.home(self.keys[next]);
            // Distance travelled from home, compared cyclically.
            let from_home_to_next = next.wrapping_sub(home) & self.mask;
            let from_home_to_hole = hole.wrapping_sub(home) & self.mask;
            if from_home_to_hole <= from_home_to_next {
                self.keys[hole] = self.keys[next];
                self.values[hole] = self.values[next];
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.values[hole] = EMPTY;
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most entries the table holds.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn agrees_with_a_hash_map_under_random_churn() {
        let mut table = FlowTable::with_entries(1000);
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200_000u32 {
            // Few distinct keys, so inserts, hits and removals all happen often.
            let key = rng.next() % 1500;
            match rng.next() % 3 {
                0 => {
                    let expected = match model.get(&key) {
                        Some(&v) => Err(FlowTableError::Exists(v)),
                        None if model.len() == 1000 => Err(FlowTableError::Full),
                        None => Ok(()),
                    };
                    assert_eq!(table.insert(key, round), expected, "insert {key}");
                    if expected.is_ok() {
                        model.insert(key, round);
                    }
                }
                1 => assert_eq!(table.remove(key), model.remove(&key), "remove {key}"),
                _ => assert_eq!(table.get(key), model.get(&key).copied(), "get {key}"),
            }
            assert_eq!(table.len(), model.len());
        }
        for (key, value) in &model {
            assert_eq!(table.get(*key), Some(*value));
        }
    }

    #[test]
    fn a_full_table_refuses_and_takes_again_after_a_removal() {
        let mut table = FlowTable::with_entries(3);
        for key in 0..3 {
            table.insert(key, key as u32).unwrap();
        }
        assert_eq!(table.insert(9, 9), Err(FlowTableError::Full));
        assert_eq!(table.insert(1, 5), Err(FlowTableError::Exists(1)));
        assert_eq!(table.remove(1), Some(1));
        assert_eq!(table.remove(1), None);
        table.insert(9, 9).unwrap();
        assert_eq!(table.get(9), Some(9));
        assert_eq!(table.max_entries(), 3);
    }

    #[test]
    fn probe_runs_that_wrap_around_the_end_survive_removals() {
        // A tiny table (8 slots) filled to its limit: runs wrap around the end of the array.
        for seed in 1..200u64 {
            let mut table = FlowTable::with_entries(4);
            let mut rng = Rng(seed);
            let keys: Vec<u64> = (0..4).map(|_| rng.next()).collect();
            for (i, key) in keys.iter().enumerate() {
                table.insert(*key, i as u32).unwrap();
            }
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(table.remove(*key), Some(i as u32));
                for (j, other) in keys.iter().enumerate().skip(i + 1) {
                    assert_eq!(table.get(*other), Some(j as u32), "seed {seed}");
                }
            }
            assert!(table.is_empty());
        }
    }
}
