use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 8080))
}

fn spec(weights: &[u32], policy: Policy) -> PoolSpec {
    PoolSpec {
        name: "backend".into(),
        members: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (addr(i as u8 + 1), w))
            .collect(),
        policy,
        health: None,
        passive: Passive::default(),
    }
}

fn hashing() -> Policy {
    Policy::ConsistentHash {
        key: HashKey::ClientIp,
    }
}

fn checks(rise: u32, fall: u32) -> Option<HealthCheck> {
    Some(HealthCheck {
        path: "/healthz".into(),
        interval_ms: 1000,
        timeout_ms: 500,
        rise,
        fall,
    })
}

fn picks(pool: &mut Pool, count: usize) -> Vec<usize> {
    (0..count).map(|_| pool.pick(None, None, 0).unwrap()).collect()
}

fn key(n: u32) -> u64 {
    hash_key(&n.to_be_bytes())
}

/// Marks member `index` unhealthy through active checks (needs `fall == 1`).
fn fail_check(pool: &mut Pool, index: usize) {
    pool.record_check(index, false, 0);
    assert!(!pool.member(index).is_healthy());
}

#[test]
fn smooth_round_robin_sequence() {
    let mut pool = Pool::new(spec(&[5, 1, 1], Policy::RoundRobin)).unwrap();
    let expected = [0, 0, 1, 0, 2, 0, 0];
    assert_eq!(picks(&mut pool, 7), expected);
    assert_eq!(picks(&mut pool, 7), expected, "the cycle repeats");
}

#[test]
fn round_robin_respects_weights() {
    let mut pool = Pool::new(spec(&[3, 2, 1, 1], Policy::RoundRobin)).unwrap();
    let mut counts = [0; 4];
    for i in picks(&mut pool, 7000) {
        counts[i] += 1;
    }
    assert_eq!(counts, [3000, 2000, 1000, 1000]);
}

#[test]
fn round_robin_skips_ineligible_and_excluded() {
    let mut s = spec(&[1, 1, 1], Policy::RoundRobin);
    s.health = checks(1, 1);
    let mut pool = Pool::new(s).unwrap();
    fail_check(&mut pool, 1);
    for _ in 0..10 {
        assert_ne!(pool.pick(None, None, 0), Some(1));
        assert_eq!(pool.pick(None, Some(0), 0), Some(2));
    }
    fail_check(&mut pool, 2);
    assert_eq!(pool.pick(None, Some(0), 0), None);
    assert_eq!(pool.pick(None, None, 0), Some(0));
}

#[test]
fn least_outstanding_prefers_the_idle_member() {
    let mut pool = Pool::new(spec(&[1, 1, 1], Policy::LeastOutstanding)).unwrap();
    pool.begin(0);
    pool.begin(1);
    assert_eq!(pool.pick(None, None, 0), Some(2));
    pool.begin(2);
    pool.begin(2);
    pool.finish(1);
    assert_eq!(pool.pick(None, None, 0), Some(1));
    assert_eq!(pool.pick(None, Some(1), 0), Some(0));
}

#[test]
fn least_outstanding_weighs_load() {
    let mut pool = Pool::new(spec(&[2, 1], Policy::LeastOutstanding)).unwrap();
    pool.begin(0);
    pool.begin(1);
    assert_eq!(pool.pick(None, None, 0), Some(0), "1 of 2 beats 1 of 1");
    pool.begin(0);
    // 2/2 and 1/1 tie: smooth weighted round-robin among the two.
    let tied = picks(&mut pool, 3);
    assert_eq!(tied.iter().filter(|&&i| i == 0).count(), 2);
}

#[test]
fn least_outstanding_ties_follow_weighted_round_robin() {
    let mut pool = Pool::new(spec(&[5, 1, 1], Policy::LeastOutstanding)).unwrap();
    assert_eq!(picks(&mut pool, 7), [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn outstanding_saturates_at_zero() {
    let mut pool = Pool::new(spec(&[1], Policy::RoundRobin)).unwrap();
    pool.finish(0);
    assert_eq!(pool.member(0).outstanding(), 0);
    pool.begin(0);
    pool.begin(0);
    pool.finish(0);
    assert_eq!(pool.member(0).outstanding(), 1);
}

#[test]
fn hash_is_fnv1a_with_a_fixed_finalizer() {
    assert_eq!(fnv1a(FNV_OFFSET_BASIS, b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"foobar"), 0x8594_4171_f739_67e8);
    assert_eq!(hash_key(b"foobar"), avalanche(0x8594_4171_f739_67e8));
    assert_ne!(hash_key(b"10.0.0.1"), hash_key(b"10.0.0.2"));
}

#[test]
fn maglev_same_key_same_member() {
    let mut pool = Pool::with_table_size(spec(&[1, 1, 1, 1], hashing()), 5003).unwrap();
    for n in 0..1000 {
        let first = pool.pick(Some(key(n)), None, 0);
        assert!(first.is_some());
        assert_eq!(pool.pick(Some(key(n)), None, 0), first);
    }
    let again = Pool::with_table_size(spec(&[1, 1, 1, 1], hashing()), 5003).unwrap();
    assert_eq!(pool.table, again.table, "the table is deterministic");
}

#[test]
fn maglev_every_member_owns_an_entry() {
    let weights = [1000, 1, 1000, 1];
    let pool = Pool::with_table_size(spec(&weights, hashing()), 5).unwrap();
    assert!((0..4).all(|i| pool.table.contains(&(i as u16))));
    assert!(!pool.table.contains(&EMPTY_ENTRY));
}

#[test]
fn maglev_distribution_follows_weights() {
    let weights = [1, 2, 3, 4];
    let mut pool = Pool::with_table_size(spec(&weights, hashing()), 5003).unwrap();
    let keys = 100_000;
    let mut counts = [0u32; 4];
    for n in 0..keys {
        counts[pool.pick(Some(key(n)), None, 0).unwrap()] += 1;
    }
    let total_weight: u32 = weights.iter().sum();
    for (i, &w) in weights.iter().enumerate() {
        let expected = f64::from(keys) * f64::from(w) / f64::from(total_weight);
        let off = (f64::from(counts[i]) - expected).abs() / expected;
        assert!(off < 0.10, "member {i}: {} keys, expected {expected}", counts[i]);
    }
}

#[test]
fn maglev_removing_a_member_moves_few_other_keys() {
    let mut before = Pool::with_table_size(spec(&[1; 5], hashing()), 5003).unwrap();
    let mut after_spec = spec(&[1; 5], hashing());
    let removed = after_spec.members.remove(2).0;
    let mut after = Pool::with_table_size(after_spec, 5003).unwrap();
    let (mut others, mut moved) = (0u32, 0u32);
    for n in 0..100_000 {
        let old = before.pick(Some(key(n)), None, 0).unwrap();
        let old = before.member(old).addr;
        let new = after.pick(Some(key(n)), None, 0).unwrap();
        let new = after.member(new).addr;
        assert_ne!(new, removed);
        if old != removed {
            others += 1;
            moved += u32::from(old != new);
        }
    }
    assert!(moved * 20 < others, "{moved} of {others} keys moved");
}

#[test]
fn maglev_skips_unhealthy_members_and_keeps_other_keys() {
    let mut s = spec(&[1; 4], hashing());
    s.health = checks(1, 1);
    let mut pool = Pool::with_table_size(s, 5003).unwrap();
    let before: Vec<usize> = (0..2000)
        .map(|n| pool.pick(Some(key(n)), None, 0).unwrap())
        .collect();
    fail_check(&mut pool, 1);
    let mut moved_to = [0u32; 4];
    for (n, &old) in before.iter().enumerate() {
        let new = pool.pick(Some(key(n as u32)), None, 0).unwrap();
        if old == 1 {
            moved_to[new] += 1;
        } else {
            assert_eq!(new, old, "keys of healthy members stay");
        }
    }
    assert_eq!(moved_to[1], 0);
    assert!(
        moved_to.iter().filter(|&&c| c > 0).count() >= 2,
        "{moved_to:?} spread out"
    );
}

#[test]
fn maglev_exclude_and_no_key() {
    let mut pool = Pool::with_table_size(spec(&[1, 1, 1], hashing()), 101).unwrap();
    for n in 0..200 {
        let first = pool.pick(Some(key(n)), None, 0).unwrap();
        let retry = pool.pick(Some(key(n)), Some(first), 0).unwrap();
        assert_ne!(retry, first);
    }
    assert_eq!(picks(&mut pool, 6), [0, 1, 2, 0, 1, 2], "no key: round-robin");
}

#[test]
fn no_eligible_member_gives_none() {
    for policy in [Policy::RoundRobin, Policy::LeastOutstanding, hashing()] {
        let mut s = spec(&[1, 2], policy);
        s.health = checks(1, 1);
        let mut pool = Pool::with_table_size(s, 101).unwrap();
        fail_check(&mut pool, 0);
        fail_check(&mut pool, 1);
        assert_eq!(pool.healthy_count(), 0);
        assert_eq!(pool.pick(Some(key(7)), None, 0), None);
        assert_eq!(pool.pick(None, None, 0), None);

        let mut single = Pool::with_table_size(spec(&[1], Policy::RoundRobin), 101).unwrap();
        assert_eq!(
            single.pick(Some(key(7)), Some(0), 0),
            None,
            "the only member is excluded"
        );
    }
}

#[test]
fn active_checks_rise_and_fall() {
    let mut s = spec(&[1, 1], Policy::RoundRobin);
    s.health = checks(2, 3);
    let mut pool = Pool::new(s).unwrap();
    assert_eq!(pool.healthy_count(), 2, "members start healthy");

    pool.record_check(0, false, 10);
    pool.record_check(0, false, 20);
    pool.record_check(0, true, 30);
    pool.record_check(0, false, 40);
    pool.record_check(0, false, 50);
    assert!(pool.member(0).is_healthy(), "a success breaks the failure run");
    pool.record_check(0, false, 60);
    assert!(!pool.member(0).is_healthy());
    assert_eq!(pool.member(0).health_changed_at(), 60);
    assert!(!pool.is_eligible(0, 60));
    assert_eq!(pool.pick(None, None, 60), Some(1));

    pool.record_check(0, true, 70);
    pool.record_check(0, false, 80);
    pool.record_check(0, true, 90);
    assert!(!pool.member(0).is_healthy(), "a failure breaks the success run");
    pool.record_check(0, true, 100);
    assert!(pool.member(0).is_healthy());
    assert_eq!(pool.member(0).health_changed_at(), 100);
    assert_eq!(pool.healthy_count(), 2);
}

#[test]
fn checks_are_scheduled_per_member() {
    let mut s = spec(&[1, 1], Policy::RoundRobin);
    s.health = checks(1, 1);
    let mut pool = Pool::new(s).unwrap();
    assert_eq!(pool.next_check_at(), Some(0));
    assert_eq!(pool.next_check_due(5), Some(0));
    assert_eq!(pool.next_check_due(5), Some(1));
    assert_eq!(pool.next_check_due(5), None);
    assert_eq!(pool.next_check_at(), Some(1005));
    assert_eq!(pool.next_check_due(1004), None);
    assert_eq!(pool.next_check_due(1200), Some(0));
    assert_eq!(pool.next_check_due(1300), Some(1));
    assert_eq!(pool.next_check_at(), Some(2200));

    let mut unchecked = Pool::new(spec(&[1], Policy::RoundRobin)).unwrap();
    assert_eq!(unchecked.next_check_due(0), None);
    assert_eq!(unchecked.next_check_at(), None);
    unchecked.record_check(0, false, 0);
    assert!(
        unchecked.member(0).is_healthy(),
        "checks are ignored without active checking"
    );
}

#[test]
fn passive_ejection_and_recovery() {
    let mut s = spec(&[1, 1], Policy::RoundRobin);
    s.passive = Passive {
        max_failures: 3,
        eject_ms: 1000,
    };
    let mut pool = Pool::new(s).unwrap();
    pool.record_response(0, false, 10);
    pool.record_response(0, false, 20);
    pool.record_response(0, true, 30);
    pool.record_response(0, false, 40);
    pool.record_response(0, false, 50);
    assert!(pool.is_eligible(0, 50), "a success resets the count");
    pool.record_response(0, false, 100);
    assert!(!pool.is_eligible(0, 100));
    assert!(pool.member(0).is_ejected(1099));
    assert_eq!(pool.member(0).ejected_until(), 1100);
    assert_eq!(pool.eligible_count(500), 1);
    assert_eq!(pool.healthy_count(), 2, "ejection is not active health");
    for _ in 0..5 {
        assert_eq!(pool.pick(None, None, 500), Some(1));
    }
    pool.record_response(0, false, 600);
    assert_eq!(
        pool.member(0).ejected_until(),
        1100,
        "late failures do not extend it"
    );
    assert!(pool.is_eligible(0, 1100), "back when the time is up");

    // Ejected again with no success in between: twice as long, up to 8 times.
    let mut until = 1100;
    for factor in [2, 4, 8, 8] {
        for _ in 0..3 {
            pool.record_response(0, false, until);
        }
        assert_eq!(pool.member(0).ejected_until(), until + factor * 1000);
        until += factor * 1000;
    }
    pool.record_response(0, true, until);
    for _ in 0..3 {
        pool.record_response(0, false, until);
    }
    assert_eq!(
        pool.member(0).ejected_until(),
        until + 1000,
        "a success resets the doubling"
    );
}

#[test]
fn passive_ejection_off() {
    let mut pool = Pool::new(spec(&[1], Policy::RoundRobin)).unwrap();
    for t in 0..100 {
        pool.record_response(0, false, t);
    }
    assert!(pool.is_eligible(0, 100));
    assert!(!pool.is_eligible(5, 100), "unknown members are not eligible");
}

#[test]
fn spec_validation_names_the_field() {
    let ok = || {
        let mut s = spec(&[1, 1, 1], Policy::RoundRobin);
        s.health = checks(1, 1);
        s
    };
    assert!(Pool::new(ok()).is_ok());
    let error = |change: &dyn Fn(&mut PoolSpec)| {
        let mut s = ok();
        change(&mut s);
        Pool::with_table_size(s, 101).unwrap_err()
    };
    assert_eq!(
        error(&|s| s.members[2].1 = 0),
        "members[2]: weight 0 is not in 1..=1000"
    );
    assert!(error(&|s| s.members[1].1 = 1001).starts_with("members[1]: weight 1001"));
    assert_eq!(
        error(&|s| s.members[2].0 = addr(1)),
        "members[2]: 10.0.0.1:8080 is already members[0]"
    );
    assert!(error(&|s| s.members.clear()).starts_with("members:"));
    assert!(error(&|s| s.name = "".into()).starts_with("name:"));
    let health = |f: fn(&mut HealthCheck)| move |s: &mut PoolSpec| f(s.health.as_mut().unwrap());
    assert!(error(&health(|h| h.rise = 0)).starts_with("health.rise"));
    assert!(error(&health(|h| h.fall = 0)).starts_with("health.fall"));
    assert!(error(&health(|h| h.interval_ms = 0)).starts_with("health.interval_ms"));
    assert!(error(&health(|h| h.timeout_ms = 0)).starts_with("health.timeout_ms"));
    assert!(error(&health(|h| h.timeout_ms = 1001)).starts_with("health.timeout_ms"));
    assert!(error(&health(|h| h.path = "healthz".into())).starts_with("health.path"));
    assert!(error(&|s| s.passive.max_failures = 1).starts_with("passive.eject_ms"));
    assert!(error(&|s| s.policy = Policy::ConsistentHash {
        key: HashKey::Header("X Bad".into())
    })
    .starts_with("policy.key"));
}

#[test]
fn table_size_is_validated_for_hashing_pools() {
    let with = |size| Pool::with_table_size(spec(&[1, 1, 1], hashing()), size);
    assert!(with(100)
        .unwrap_err()
        .starts_with("table_size: 100 is not a prime"));
    assert!(with(2).unwrap_err().starts_with("table_size: 2 is not in 3..="));
    assert!(with(3).is_ok());
    assert_eq!(
        Pool::new(spec(&[1], hashing())).unwrap().table.len(),
        DEFAULT_TABLE_SIZE
    );
    assert!(Pool::with_table_size(spec(&[1], Policy::RoundRobin), 100).is_ok());
    assert!(is_prime(DEFAULT_TABLE_SIZE) && is_prime(5003) && !is_prime(1) && !is_prime(5001));
}

#[test]
fn carry_state_keeps_state_by_address() {
    let mut old_spec = spec(&[1, 1, 1], Policy::RoundRobin);
    old_spec.health = checks(1, 1);
    old_spec.passive = Passive {
        max_failures: 1,
        eject_ms: 1000,
    };
    let mut old = Pool::new(old_spec.clone()).unwrap();
    old.begin(0);
    old.begin(0);
    old.record_check(1, false, 50);
    old.record_response(2, false, 100);
    assert_eq!(old.next_check_due(0), Some(0));

    // The reload drops 10.0.0.1, keeps .2 and .3 (reordered), adds .9, and checks every 500 ms.
    let mut new_spec = old_spec;
    new_spec.members = vec![(addr(3), 1), (addr(9), 1), (addr(2), 1)];
    new_spec.health.as_mut().unwrap().interval_ms = 500;
    new_spec.health.as_mut().unwrap().timeout_ms = 100;
    let mut new = Pool::new(new_spec.clone()).unwrap();
    new.carry_state_from(&old);
    assert!(!new.is_eligible(0, 500), "10.0.0.3 stays ejected");
    assert_eq!(new.member(0).ejected_until(), 1100);
    assert!(new.is_eligible(1, 500), "10.0.0.9 starts fresh");
    assert!(!new.member(2).is_healthy(), "10.0.0.2 stays unhealthy");
    assert_eq!(new.member(2).health_changed_at(), 50);
    assert_eq!(new.index_of(addr(2)), Some(2));
    assert_eq!(new.index_of(addr(1)), None);

    let mut kept = Pool::new(spec(&[1, 1], Policy::RoundRobin)).unwrap();
    kept.carry_state_from(&old);
    assert_eq!(kept.member(0).outstanding(), 2, "outstanding follows 10.0.0.1");
    assert!(
        kept.member(1).is_healthy(),
        "no active checks here: nothing would revive it"
    );

    // A check started at 0 with a 1000 ms interval is next due at 0 + 500 under the new spec.
    let mut rescheduled = Pool::new(new_spec).unwrap();
    rescheduled.members[2].addr = addr(1);
    rescheduled.carry_state_from(&old);
    assert_eq!(rescheduled.member(2).next_check_at, 500);
}

#[test]
fn passive_ejection_never_takes_out_the_last_eligible_member() {
    let mut s = spec(&[1, 1], Policy::RoundRobin);
    s.passive = Passive {
        max_failures: 2,
        eject_ms: 1000,
    };
    let mut pool = Pool::new(s.clone()).unwrap();
    for t in 0..2 {
        pool.record_response(0, false, t);
    }
    assert!(!pool.is_eligible(0, 10), "one of two is ejected");
    for t in 0..10 {
        pool.record_response(1, false, 10 + t);
    }
    assert!(pool.is_eligible(1, 20), "the other, the last one left, stays");
    assert_eq!(pool.pick(None, None, 20), Some(1));

    // A pool of one is never ejected, whatever its failures.
    s.members.truncate(1);
    let mut alone = Pool::new(s).unwrap();
    for t in 0..100 {
        alone.record_response(0, false, t);
    }
    assert!(alone.is_eligible(0, 100));
}
