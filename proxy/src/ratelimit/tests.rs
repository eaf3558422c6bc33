use std::{
    hash::{BuildHasherDefault, DefaultHasher},
    sync::Arc,
};

use super::*;

const MS: u64 = 1_000_000;
/// A start time well after the clock's zero, as a monotonic clock's is.
const T0: u64 = 1_000 * NS_PER_SECOND;

/// A table whose hash is fixed, so entries are the same on every run.
fn fixed_table(entries: usize) -> RateTable<BuildHasherDefault<DefaultHasher>> {
    RateTable::with_hasher(entries, BuildHasherDefault::default())
}

#[test]
fn parameters_are_checked() {
    assert!(Gcra::new(0.0, 1).is_none());
    assert!(Gcra::new(-1.0, 1).is_none());
    assert!(Gcra::new(f64::NAN, 1).is_none());
    assert!(Gcra::new(f64::INFINITY, 1).is_none());
    assert!(Gcra::new(MAX_RATE * 2.0, 1).is_none());
    assert!(Gcra::new(1.0, 0).is_none());
    assert!(Gcra::new(1.0, MAX_BURST + 1).is_none());
    assert_eq!(Gcra::new(50.0, 10).unwrap().interval_ns(), 20 * MS);
    assert_eq!(Gcra::new(MAX_RATE, MAX_BURST).unwrap().interval_ns(), 100);
    assert_eq!(Gcra::new(0.5, 1).unwrap().interval_ns(), 2 * NS_PER_SECOND);
}

#[test]
fn a_burst_passes_at_once_then_one_per_interval() {
    let gcra = Gcra::new(50.0, 10).unwrap();
    let mut tat = 0;
    for i in 0..10 {
        tat = gcra
            .check(tat, T0)
            .unwrap_or_else(|_| panic!("request {i} of the burst"));
    }
    // The 11th at the same instant waits one interval; a refusal leaves the TAT as it was.
    assert_eq!(gcra.check(tat, T0), Err(20 * MS));
    assert_eq!(gcra.check(tat, T0 + 19 * MS), Err(MS));
    let next = gcra.check(tat, T0 + 20 * MS).unwrap();
    assert_eq!(next, tat + 20 * MS);
    assert!(gcra.check(next, T0 + 20 * MS).is_err());
}

/// A client trying every millisecond for 4 s gets the burst plus one request per interval:
/// `burst + elapsed / T`, exactly.
#[test]
fn a_steady_flood_is_admitted_at_the_rate() {
    let gcra = Gcra::new(50.0, 10).unwrap();
    let mut tat = 0;
    let mut admitted = 0u64;
    for k in 0..4_000u64 {
        if let Ok(next) = gcra.check(tat, T0 + k * MS) {
            tat = next;
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10 + 3_999 / 20);
}

#[test]
fn an_idle_key_gets_its_whole_burst_back() {
    let gcra = Gcra::new(10.0, 5).unwrap();
    let table = fixed_table(64);
    let entry = table.entry(1, 0, b"10.0.0.1");
    let admitted = (0..20).filter(|_| table.admit(entry, &gcra, T0).is_ok()).count();
    assert_eq!(admitted, 5);
    // 0.5 s later (the TAT is in the past): the same as a new key.
    let later = T0 + 1_000 * MS;
    let admitted = (0..20)
        .filter(|_| table.admit(entry, &gcra, later).is_ok())
        .count();
    assert_eq!(admitted, 5);
}

#[test]
fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
    assert_eq!(retry_after_seconds(0), 1);
    assert_eq!(retry_after_seconds(1), 1);
    assert_eq!(retry_after_seconds(NS_PER_SECOND), 1);
    assert_eq!(retry_after_seconds(NS_PER_SECOND + 1), 2);
    // One request per 3.33 s: the next comes in 4 s.
    let gcra = Gcra::new(0.3, 1).unwrap();
    let tat = gcra.check(0, T0).unwrap();
    let wait = gcra.check(tat, T0).unwrap_err();
    assert_eq!(retry_after_seconds(wait), 4);
    // At 50/s the wait is one interval: 1 s is the least a header says.
    let gcra = Gcra::new(50.0, 1).unwrap();
    let tat = gcra.check(0, T0).unwrap();
    assert_eq!(retry_after_seconds(gcra.check(tat, T0).unwrap_err()), 1);
}

#[test]
fn keys_and_routes_have_budgets_of_their_own() {
    let gcra = Gcra::new(1.0, 3).unwrap();
    let table = fixed_table(1 << 16);
    let a = table.entry(7, 0, &[10, 0, 0, 1]);
    let b = table.entry(7, 0, &[10, 0, 0, 5]);
    let a_header = table.entry(7, 1, &[10, 0, 0, 1]);
    let a_other_route = table.entry(8, 0, &[10, 0, 0, 1]);
    let entries = [a, b, a_header, a_other_route];
    for (i, x) in entries.iter().enumerate() {
        assert!(
            !entries[..i].contains(x),
            "entries collide in the fixed hash: {entries:?}"
        );
    }
    // a exhausts its budget; the others still have theirs.
    let admitted_a = (0..100).filter(|_| table.admit(a, &gcra, T0).is_ok()).count();
    assert_eq!(admitted_a, 3);
    for other in [b, a_header, a_other_route] {
        let admitted = (0..100).filter(|_| table.admit(other, &gcra, T0).is_ok()).count();
        assert_eq!(admitted, 3, "entry {other}");
    }
    // The same key always lands on the same entry; a table rounds its size up.
    assert_eq!(table.entry(7, 0, &[10, 0, 0, 1]), a);
    assert_eq!(fixed_table(1000).entries(), 1024);
    assert_eq!(fixed_table(0).entries(), 1);
}

/// Keys that meet in one entry share its budget (the documented cost of a table without keys).
#[test]
fn colliding_keys_share_one_budget() {
    let gcra = Gcra::new(1.0, 4).unwrap();
    let table = fixed_table(1);
    let a = table.entry(1, 0, b"a");
    let b = table.entry(1, 0, b"b");
    assert_eq!(a, b);
    let admitted = (0..10)
        .filter(|i| table.admit(if i % 2 == 0 { a } else { b }, &gcra, T0).is_ok())
        .count();
    assert_eq!(admitted, 4);
}

/// Two threads admitting the same key at the same instant never admit more than the burst
/// together, and lose no update: exactly `burst` pass.
#[test]
fn two_threads_on_one_entry_admit_exactly_the_burst() {
    const BURST: u32 = 1_000;
    let gcra = Gcra::new(10.0, BURST).unwrap();
    let table = Arc::new(fixed_table(16));
    let entry = table.entry(1, 0, b"k");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let table = Arc::clone(&table);
            std::thread::spawn(move || {
                (0..20_000)
                    .filter(|_| table.admit(entry, &gcra, T0).is_ok())
                    .count()
            })
        })
        .collect();
    let counts: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(counts.iter().sum::<usize>(), BURST as usize, "{counts:?}");
}

/// Two threads with time moving on: together they stay within `burst + elapsed / T + 1`, and
/// get close to it (neither starves the other into refusing what the rate allows).
#[test]
fn two_threads_with_time_moving_stay_within_the_bound() {
    const STEPS: u64 = 200_000;
    const STEP_NS: u64 = 100;
    let gcra = Gcra::new(100_000.0, 50).unwrap(); // T = 10 µs
    let table = Arc::new(fixed_table(16));
    let entry = table.entry(1, 0, b"k");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let table = Arc::clone(&table);
            std::thread::spawn(move || {
                (0..STEPS)
                    .filter(|j| table.admit(entry, &gcra, T0 + j * STEP_NS).is_ok())
                    .count() as u64
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let bound = 50 + (STEPS - 1) * STEP_NS / gcra.interval_ns() + 1;
    assert!(total <= bound, "{total} admitted, bound {bound}");
    assert!(total >= bound / 2, "{total} admitted, bound {bound}");
}
