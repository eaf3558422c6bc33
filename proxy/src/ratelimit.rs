//! Rate limits per route: GCRA over a table of theoretical arrival times shared by every lane.
//!
//! A route's limit is a [`RateLimit`]: a rate (requests per second), a burst (requests), and
//! what a request is counted by ([`LimitKey`]: its client's address, or a header's value). Its
//! GCRA ([`Gcra`], the generic cell rate algorithm) keeps one number per key, the theoretical
//! arrival time (TAT): a request at `now` conforms when `max(TAT, now) - now` is at most the
//! tolerance `(burst - 1) × T` (`T = 1 s / rate`), and then moves the TAT to
//! `max(TAT, now) + T`. So `burst` requests pass at once, then one every `T`; a refused request
//! changes nothing and may come back when `TAT - tolerance` has arrived ([`Gcra::check`]). A
//! TAT in the past is the same as no TAT at all, so entries never need clearing.
//!
//! **The table.** [`RateTable`] is a fixed array of `AtomicU64` TATs (a power of two of them,
//! allocated once), indexed by a keyed hash of (route, key bytes). A request updates its entry
//! with a compare-exchange loop: no lock, no allocation, and two lanes admitting requests of
//! the same key at the same moment never admit more than the GCRA allows (a lost race reads
//! the winner's TAT and decides again). The table has no keys, only TATs: two keys whose hashes
//! meet in one entry share one budget (each gets less than its rate when both are busy). With
//! `A` keys active at once (a key stays active for `burst / rate` seconds after its last
//! request) and `N` entries, a key shares its entry with probability about `A / N`: 65,536
//! entries keep that under 2% for up to 1,300 active clients. The hash is SipHash with a key
//! drawn at random when the table is made, so clients cannot pick header values that land on
//! someone else's entry.
//!
//! **Why it lives here.** The GCRA and the table are free of I/O and clocks: time comes in as
//! a parameter (nanoseconds of one monotonic clock that every lane reads), so every rule is
//! tested deterministically, like the rest of this crate. The table must be one for all lanes,
//! since a client's connections spread over lanes (RSS): the gateway crate makes it once at
//! start and gives every lane's [`Gateway`](crate::gateway::Gateway) the same one. It is made of
//! atomics only, so sharing it needs neither a lock nor a thread of its own.
//!
//! Invariants: [`RateTable::admit`] allocates nothing and takes no lock; its entry's TAT only
//! grows while requests are admitted; a refused request leaves the entry as it was.

use std::{
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
};

/// Nanoseconds in a second.
const NS_PER_SECOND: u64 = 1_000_000_000;

/// The largest rate (requests per second) a limit takes: one request per 100 ns.
pub const MAX_RATE: f64 = 10_000_000.0;
/// The largest burst a limit takes.
pub const MAX_BURST: u32 = 1_000_000;

/// GCRA parameters: the emission interval `T` and the tolerance `(burst - 1) × T`, in ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Gcra {
    /// `rate` requests per second with bursts of `burst`; `None` unless `rate` is in
    /// `(0, MAX_RATE]` and `burst` in `1..=MAX_BURST`.
    pub fn new(rate: f64, burst: u32) -> Option<Gcra> {
        if !(rate > 0.0 && rate <= MAX_RATE && (1..=MAX_BURST).contains(&burst)) {
            return None;
        }
        let interval_ns = ((NS_PER_SECOND as f64 / rate).round() as u64).max(1);
        Some(Gcra {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst - 1)),
        })
    }

    /// The emission interval `T` (ns between two requests at the rate).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// A request at `now` against theoretical arrival time `tat` (0: none yet): `Ok` with the
    /// new TAT if it conforms, else `Err` with the nanoseconds until it would.
    pub fn check(&self, tat: u64, now: u64) -> Result<u64, u64> {
        let base = tat.max(now);
        let ahead = base - now;
        if ahead > self.tolerance_ns {
            Err(ahead - self.tolerance_ns)
        } else {
            Ok(base.saturating_add(self.interval_ns))
        }
    }
}

/// The whole seconds a client waits, from the nanoseconds it must: rounded up, at least 1 (the
/// value of `Retry-After`).
pub fn retry_after_seconds(wait_ns: u64) -> u64 {
    wait_ns.div_ceil(NS_PER_SECOND).max(1)
}

/// What a limited route counts a request by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address.
    ClientIp,
    /// The value of this header (lowercase name); a request without it, or with an empty
    /// value, is counted by its client's address.
    Header(Box<str>),
}

/// One route's rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub gcra: Gcra,
    pub key: LimitKey,
}

/// The shared table of TATs (see the module doc). `S` is the keyed hash; tests may fix it.
pub struct RateTable<S = RandomState> {
    tats: Box<[AtomicU64]>,
    mask: usize,
    hasher: S,
}

impl<S> std::fmt::Debug for RateTable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("entries", &self.tats.len())
            .finish()
    }
}

impl RateTable {
    /// The entries a table has unless configured otherwise.
    pub const DEFAULT_ENTRIES: usize = 65_536;

    /// A table of `entries` TATs (rounded up to a power of two, at least 1), hashed with a
    /// random key.
    pub fn new(entries: usize) -> RateTable {
        RateTable::with_hasher(entries, RandomState::new())
    }
}

impl<S: BuildHasher> RateTable<S> {
    /// A table of `entries` TATs (rounded up to a power of two, at least 1) hashed by `hasher`.
    pub fn with_hasher(entries: usize, hasher: S) -> RateTable<S> {
        let entries = entries.max(1).next_power_of_two();
        RateTable {
            tats: (0..entries).map(|_| AtomicU64::new(0)).collect(),
            mask: entries - 1,
            hasher,
        }
    }

    /// Entries in the table.
    pub fn entries(&self) -> usize {
        self.tats.len()
    }

    /// The entry of `key` (with its `kind`, so that a header value and an address with the same
    /// bytes differ) in the scope of one route.
    pub fn entry(&self, scope: u64, kind: u8, key: &[u8]) -> usize {
        (self.hasher.hash_one((scope, kind, key)) as usize) & self.mask
    }

    /// A request at `now` (ns) counted in `entry` under `gcra`: `Ok` if admitted (the entry's
    /// TAT moved on), else `Err` with the nanoseconds until one would be. Lock-free: a
    /// compare-exchange loop that retries only when another lane changed the entry meanwhile.
    pub fn admit(&self, entry: usize, gcra: &Gcra, now: u64) -> Result<(), u64> {
        let tat = &self.tats[entry & self.mask];
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let next = gcra.check(current, now)?;
            // Relaxed is enough: the entry is the only data, and compare-exchange on one atomic
            // sees its latest value, so no update is lost.
            match tat.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests;
