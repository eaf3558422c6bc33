//! Upstream pools: which member takes a request, how many requests each member has in flight,
//! and whether each member is fit to take one. The caller does all I/O (connecting, health
//! probes) and passes the time in as milliseconds; a [`Pool`] only keeps the books.
//!
//! Choosing a member ([`Pool::pick`]) follows the pool's [`Policy`]:
//! - [`Policy::RoundRobin`]: smooth weighted round-robin. Each pick adds every eligible member's
//!   weight to its running credit, takes the member with the most credit (lowest index on a
//!   tie) and takes the eligible total off it. Weights 5, 1, 1 give `a a b a c a a`: the heavy
//!   member's turns are spread out instead of bunched.
//! - [`Policy::LeastOutstanding`]: the eligible member with the fewest requests in flight
//!   relative to its weight (`outstanding_a * weight_b < outstanding_b * weight_a`); members
//!   tied on that ratio share the turn by smooth weighted round-robin, so an idle pool behaves
//!   like [`Policy::RoundRobin`].
//! - [`Policy::ConsistentHash`]: Maglev hashing, so one key keeps landing on one member.
//!
//! Why Maglev rather than a hash ring: a lookup is one table index (`table[key % size]`), with
//! no binary search over ring points; each member owns a share of the table within a fraction
//! of a percent of its weight, where a ring needs hundreds of virtual nodes per member to get
//! close; and when a member leaves, the keys it owned move while almost every other key stays
//! put. The table costs 2 bytes per entry (128 KiB for the default 65,537 entries) and is built
//! once, when the pool is created from its configuration. When a key's member is not eligible,
//! the lookup walks forward through the table to the next eligible member, so that member's
//! keys spread over the others instead of all landing on one.
//!
//! A member is eligible when it is healthy by active checks, not ejected by passive failure
//! counting, and not the member excluded for a retry:
//! - active checks ([`HealthCheck`]): the pool says which member's probe is due
//!   ([`Pool::next_check_due`]), the caller probes it and reports [`Pool::record_check`];
//!   `fall` consecutive failures make a healthy member unhealthy, `rise` consecutive successes
//!   make an unhealthy member healthy again;
//! - passive ejection ([`Passive`]): [`Pool::record_response`] counts consecutive failed
//!   responses (5xx, refused or reset connections); `max_failures` of them eject the member for
//!   `eject_ms`, doubled on each ejection with no success in between, up to 8 × `eject_ms`. When the
//!   time is up the member is eligible again, whatever the active checks last said about it.
//!   Passive ejection never takes out the last eligible member (a pool of one is never ejected):
//!   with nowhere else to go, its own answers are better than a 503 for every request.
//!
//! Invariants:
//! - every member starts healthy, not ejected, with nothing outstanding;
//! - a [`Pool`] only exists for a valid [`PoolSpec`] (see [`Pool::new`]);
//! - [`Pool::pick`], [`Pool::begin`], [`Pool::finish`], [`Pool::record_check`],
//!   [`Pool::record_response`] and [`Pool::next_check_due`] allocate nothing and take time
//!   linear in the member count at most (the Maglev walk is bounded by the table size and only
//!   starts when some member is eligible);
//! - outstanding counts saturate and never go below zero;
//! - every member owns at least one Maglev table entry, so the walk always finds an eligible
//!   member when there is one.

use std::{collections::HashMap, net::SocketAddr};

/// Maglev table size used by [`Pool::new`]: a prime well above any sensible member count.
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

/// Largest Maglev table size [`Pool::with_table_size`] accepts.
pub const MAX_TABLE_SIZE: usize = 1 << 22;

/// Largest member weight; weights are in `1..=MAX_WEIGHT`.
pub const MAX_WEIGHT: u32 = 1000;

/// Most members a pool may have (Maglev table entries are 16-bit member indices).
pub const MAX_MEMBERS: usize = u16::MAX as usize;

/// Largest ejection-time doubling, as a shift: ejections from the fourth in a row on last
/// 8 × `eject_ms`.
const MAX_EJECT_SHIFT: u32 = 3;

/// Marks a Maglev table entry not filled yet (never a member index, as members ≤ `MAX_MEMBERS`).
const EMPTY_ENTRY: u16 = u16::MAX;

/// Active health checking of every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path the probe requests, starting with `/`.
    pub path: Box<str>,
    /// Time between the starts of two probes of one member; > 0.
    pub interval_ms: u64,
    /// Time after which the caller counts a probe as failed; in `1..=interval_ms`.
    pub timeout_ms: u64,
    /// Consecutive successes that make an unhealthy member healthy; ≥ 1.
    pub rise: u32,
    /// Consecutive failures that make a healthy member unhealthy; ≥ 1.
    pub fall: u32,
}

/// Passive ejection of members whose real responses keep failing. The default is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passive {
    /// Consecutive failed responses that eject a member; 0 turns ejection off.
    pub max_failures: u32,
    /// How long the first ejection lasts; > 0 when ejection is on.
    pub eject_ms: u64,
}

/// What a consistent-hash pool hashes to pick a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address bytes.
    ClientIp,
    /// The value of this request header (its name as configured, matched case-insensitively).
    Header(Box<str>),
}

/// How a pool picks a member for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Smooth weighted round-robin.
    RoundRobin,
    /// Fewest outstanding requests relative to weight; ties by smooth weighted round-robin.
    LeastOutstanding,
    /// Maglev hashing of `key`; round-robin for requests without a key.
    ConsistentHash {
        /// What the caller hashes with [`hash_key`].
        key: HashKey,
    },
}

/// A pool's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Name for logs, metrics and routes.
    pub name: Box<str>,
    /// Member addresses and weights (`1..=MAX_WEIGHT`), no address twice.
    pub members: Vec<(SocketAddr, u32)>,
    /// How members are picked.
    pub policy: Policy,
    /// Active health checks; `None` leaves every member healthy.
    pub health: Option<HealthCheck>,
    /// Passive ejection.
    pub passive: Passive,
}

/// One upstream member and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Where the member listens.
    pub addr: SocketAddr,
    /// Its weight, in `1..=MAX_WEIGHT`.
    pub weight: u32,
    healthy: bool,
    check_successes: u32,
    check_failures: u32,
    health_changed_at: u64,
    next_check_at: u64,
    response_failures: u32,
    ejected_until: u64,
    ejections: u32,
    outstanding: u32,
    round_robin_credit: i64,
}

impl Member {
    fn new(addr: SocketAddr, weight: u32) -> Member {
        Member {
            addr,
            weight,
            healthy: true,
            check_successes: 0,
            check_failures: 0,
            health_changed_at: 0,
            next_check_at: 0,
            response_failures: 0,
            ejected_until: 0,
            ejections: 0,
            outstanding: 0,
            round_robin_credit: 0,
        }
    }

    /// Whether active checks last judged the member healthy (true without active checks).
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// When active checks last changed the member's health (0 if never).
    pub fn health_changed_at(&self) -> u64 {
        self.health_changed_at
    }

    /// Whether passive ejection keeps the member out at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until
    }

    /// When the member's current or last ejection ends (0 if never ejected).
    pub fn ejected_until(&self) -> u64 {
        self.ejected_until
    }

    /// Requests in flight to the member.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    fn is_eligible(&self, now_ms: u64) -> bool {
        self.healthy && !self.is_ejected(now_ms)
    }
}

/// An upstream pool: its members, their state, and the Maglev table when hashing.
#[derive(Clone, Debug)]
pub struct Pool {
    spec: PoolSpec,
    members: Vec<Member>,
    /// Member index per entry; empty unless the policy is [`Policy::ConsistentHash`].
    table: Box<[u16]>,
}

impl Pool {
    /// A pool for `spec`, with a [`DEFAULT_TABLE_SIZE`] Maglev table when hashing. Errors name
    /// the offending field, e.g. `members[2]: weight 0 is not in 1..=1000`.
    pub fn new(spec: PoolSpec) -> Result<Pool, String> {
        Pool::with_table_size(spec, DEFAULT_TABLE_SIZE)
    }

    /// Like [`Pool::new`] with a Maglev table of `table_size` entries: a prime, at least the
    /// member count and at most [`MAX_TABLE_SIZE`]. About 100 entries per member keeps each
    /// member's share within about 1% of its weight. Ignored unless the policy hashes.
    pub fn with_table_size(spec: PoolSpec, table_size: usize) -> Result<Pool, String> {
        validate(&spec)?;
        let table = match spec.policy {
            Policy::ConsistentHash { .. } => {
                if !(spec.members.len()..=MAX_TABLE_SIZE).contains(&table_size) {
                    return Err(format!(
                        "table_size: {table_size} is not in {}..={MAX_TABLE_SIZE}",
                        spec.members.len()
                    ));
                }
                if !is_prime(table_size) {
                    return Err(format!("table_size: {table_size} is not a prime"));
                }
                maglev_table(&spec.members, table_size)
            }
            _ => Box::default(),
        };
        let members = spec
            .members
            .iter()
            .map(|&(addr, weight)| Member::new(addr, weight))
            .collect();
        Ok(Pool { spec, members, table })
    }

    /// The configuration the pool was built from.
    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    /// All members, in configuration order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member number `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    /// The index of the member at `addr`, if any (to carry an index across a reload).
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.members.iter().position(|m| m.addr == addr)
    }

    /// Whether member `index` exists, is healthy and is not ejected at `now_ms`.
    pub fn is_eligible(&self, index: usize, now_ms: u64) -> bool {
        self.members.get(index).is_some_and(|m| m.is_eligible(now_ms))
    }

    /// Members active checks judge healthy (ejection aside).
    pub fn healthy_count(&self) -> usize {
        self.members.iter().filter(|m| m.healthy).count()
    }

    /// Members eligible at `now_ms`: healthy and not ejected.
    pub fn eligible_count(&self, now_ms: u64) -> usize {
        self.members.iter().filter(|m| m.is_eligible(now_ms)).count()
    }

    /// Picks an eligible member other than `exclude` (the member a retry must avoid), or `None`
    /// when there is none (the caller answers 503). `key_hash` is [`hash_key`] of the request's
    /// key for [`Policy::ConsistentHash`] (ignored by other policies; without it, hashing pools
    /// fall back to round-robin). Allocation-free.
    pub fn pick(&mut self, key_hash: Option<u64>, exclude: Option<usize>, now_ms: u64) -> Option<usize> {
        match (&self.spec.policy, key_hash) {
            (Policy::ConsistentHash { .. }, Some(hash)) => self.pick_maglev(hash, exclude, now_ms),
            (Policy::LeastOutstanding, _) => self.pick_least_outstanding(exclude, now_ms),
            _ => self.pick_round_robin(|i, m| Some(i) != exclude && m.is_eligible(now_ms)),
        }
    }

    /// Smooth weighted round-robin among the members `take` accepts.
    fn pick_round_robin(&mut self, mut take: impl FnMut(usize, &Member) -> bool) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, member) in self.members.iter_mut().enumerate() {
            if !take(i, member) {
                continue;
            }
            member.round_robin_credit += i64::from(member.weight);
            total += i64::from(member.weight);
            if best.is_none_or(|(_, credit)| member.round_robin_credit > credit) {
                best = Some((i, member.round_robin_credit));
            }
        }
        let (chosen, _) = best?;
        self.members[chosen].round_robin_credit -= total;
        Some(chosen)
    }

    fn pick_least_outstanding(&mut self, exclude: Option<usize>, now_ms: u64) -> Option<usize> {
        let take = |i: usize, m: &Member| Some(i) != exclude && m.is_eligible(now_ms);
        let load = |m: &Member| (u64::from(m.outstanding), u64::from(m.weight));
        let (least_out, least_weight) = self
            .members
            .iter()
            .enumerate()
            .filter(|&(i, m)| take(i, m))
            .map(|(_, m)| load(m))
            .reduce(|best, (out, weight)| {
                if out * best.1 < best.0 * weight {
                    (out, weight)
                } else {
                    best
                }
            })?;
        self.pick_round_robin(|i, m| {
            let (out, weight) = load(m);
            take(i, m) && out * least_weight == least_out * weight
        })
    }

    fn pick_maglev(&self, hash: u64, exclude: Option<usize>, now_ms: u64) -> Option<usize> {
        let take = |i: usize| Some(i) != exclude && self.members[i].is_eligible(now_ms);
        if !(0..self.members.len()).any(take) {
            return None;
        }
        let start = (hash % self.table.len() as u64) as usize;
        let (before, after) = self.table.split_at(start);
        after
            .iter()
            .chain(before)
            .map(|&entry| usize::from(entry))
            .find(|&i| take(i))
    }

    /// Notes a request sent to member `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of range (likewise for the other recording functions).
    pub fn begin(&mut self, index: usize) {
        let member = &mut self.members[index];
        member.outstanding = member.outstanding.saturating_add(1);
    }

    /// Notes a request to member `index` finished (any outcome); never goes below zero.
    pub fn finish(&mut self, index: usize) {
        let member = &mut self.members[index];
        member.outstanding = member.outstanding.saturating_sub(1);
    }

    /// Returns a member whose active check is due at `now_ms` (the most overdue first) and
    /// schedules its next check `interval_ms` later; `None` when none is due or the pool has no
    /// active checks. Every member's first check is due at once. Call until `None`.
    pub fn next_check_due(&mut self, now_ms: u64) -> Option<usize> {
        let interval = self.spec.health.as_ref()?.interval_ms;
        let (index, member) = self
            .members
            .iter_mut()
            .enumerate()
            .filter(|(_, m)| m.next_check_at <= now_ms)
            .min_by_key(|(_, m)| m.next_check_at)?;
        member.next_check_at = now_ms.saturating_add(interval);
        Some(index)
    }

    /// When the next active check falls due (for the caller's timer); `None` without checks.
    pub fn next_check_at(&self) -> Option<u64> {
        self.spec.health.as_ref()?;
        self.members.iter().map(|m| m.next_check_at).min()
    }

    /// Records the outcome of an active check of member `index` finished at `now_ms` (a probe
    /// that timed out is `ok == false`). Ignored when the pool has no active checks.
    pub fn record_check(&mut self, index: usize, ok: bool, now_ms: u64) {
        let Some(health) = &self.spec.health else {
            return;
        };
        let member = &mut self.members[index];
        if ok {
            member.check_failures = 0;
            member.check_successes = member.check_successes.saturating_add(1);
            if !member.healthy && member.check_successes >= health.rise {
                member.healthy = true;
                member.health_changed_at = now_ms;
            }
        } else {
            member.check_successes = 0;
            member.check_failures = member.check_failures.saturating_add(1);
            if member.healthy && member.check_failures >= health.fall {
                member.healthy = false;
                member.health_changed_at = now_ms;
            }
        }
    }

    /// Records the outcome of a real request to member `index` at `now_ms`: `ok == false` for a
    /// 5xx, a refused connection or a reset. Failures while ejected are ignored (they are late
    /// answers to requests sent before); a success clears the failure count and the ejection
    /// doubling. Ignored when passive ejection is off. The last eligible member is not ejected.
    pub fn record_response(&mut self, index: usize, ok: bool, now_ms: u64) {
        let passive = self.spec.passive;
        let member = &mut self.members[index];
        if passive.max_failures == 0 || member.is_ejected(now_ms) {
            return;
        }
        if ok {
            member.response_failures = 0;
            member.ejections = 0;
            return;
        }
        member.response_failures = member.response_failures.saturating_add(1);
        if member.response_failures < passive.max_failures {
            return;
        }
        if self.eligible_count(now_ms) <= 1 {
            // The last eligible member stays: without it every request would be a 503 at once,
            // which is worse than its own failures (a burst that overflowed its listen backlog,
            // a moment of 5xx). Its count starts over.
            self.members[index].response_failures = 0;
            return;
        }
        let member = &mut self.members[index];
        let shift = member.ejections.min(MAX_EJECT_SHIFT);
        member.ejected_until = now_ms.saturating_add(passive.eject_ms.saturating_mul(1 << shift));
        member.ejections = member.ejections.saturating_add(1);
        member.response_failures = 0;
    }

    /// On a configuration reload, gives members whose address was in `old` that member's
    /// state: outstanding count always; active-check health and schedule when this pool has
    /// active checks (the next check keeps its last start time, with this pool's interval);
    /// passive failures and ejection when this pool ejects. Round-robin credit starts afresh.
    pub fn carry_state_from(&mut self, old: &Pool) {
        let old_index: HashMap<SocketAddr, usize> =
            old.members.iter().enumerate().map(|(i, m)| (m.addr, i)).collect();
        let new_interval = self.spec.health.as_ref().map(|h| h.interval_ms);
        let old_interval = old.spec.health.as_ref().map(|h| h.interval_ms);
        let passive_on = self.spec.passive.max_failures > 0;
        for member in &mut self.members {
            let Some(&i) = old_index.get(&member.addr) else {
                continue;
            };
            let previous = &old.members[i];
            member.outstanding = previous.outstanding;
            if let Some(new_interval) = new_interval {
                member.healthy = previous.healthy;
                member.check_successes = previous.check_successes;
                member.check_failures = previous.check_failures;
                member.health_changed_at = previous.health_changed_at;
                if let (Some(old_interval), true) = (old_interval, previous.next_check_at > 0) {
                    let last_start = previous.next_check_at.saturating_sub(old_interval);
                    member.next_check_at = last_start.saturating_add(new_interval);
                }
            }
            if passive_on {
                member.response_failures = previous.response_failures;
                member.ejected_until = previous.ejected_until;
                member.ejections = previous.ejections;
            }
        }
    }
}

/// Checks a spec; errors name the offending field.
fn validate(spec: &PoolSpec) -> Result<(), String> {
    if spec.name.is_empty() {
        return Err("name: must not be empty".into());
    }
    if spec.members.is_empty() {
        return Err("members: a pool needs at least one member".into());
    }
    if spec.members.len() > MAX_MEMBERS {
        return Err(format!(
            "members: {} members is more than {MAX_MEMBERS}",
            spec.members.len()
        ));
    }
    let mut seen = HashMap::with_capacity(spec.members.len());
    for (i, &(addr, weight)) in spec.members.iter().enumerate() {
        if !(1..=MAX_WEIGHT).contains(&weight) {
            return Err(format!(
                "members[{i}]: weight {weight} is not in 1..={MAX_WEIGHT}"
            ));
        }
        if let Some(first) = seen.insert(addr, i) {
            return Err(format!("members[{i}]: {addr} is already members[{first}]"));
        }
    }
    if let Some(health) = &spec.health {
        if !health.path.starts_with('/') {
            return Err(format!("health.path: {:?} must start with '/'", health.path));
        }
        if health
            .path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "health.path: {:?} must not contain whitespace or control bytes",
                health.path
            ));
        }
        if health.interval_ms == 0 {
            return Err("health.interval_ms: must be > 0".into());
        }
        if !(1..=health.interval_ms).contains(&health.timeout_ms) {
            return Err(format!(
                "health.timeout_ms: {} is not in 1..=interval_ms ({})",
                health.timeout_ms, health.interval_ms
            ));
        }
        if health.rise == 0 {
            return Err("health.rise: must be >= 1".into());
        }
        if health.fall == 0 {
            return Err("health.fall: must be >= 1".into());
        }
    }
    if spec.passive.max_failures > 0 && spec.passive.eject_ms == 0 {
        return Err("passive.eject_ms: must be > 0 when passive.max_failures > 0".into());
    }
    if let Policy::ConsistentHash {
        key: HashKey::Header(name),
    } = &spec.policy
    {
        let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!(
                "policy.key: header name {name:?} is not a valid field name"
            ));
        }
    }
    Ok(())
}

/// Builds a Maglev lookup table of `size` (prime, ≥ member count) entries. Each member walks
/// its own permutation of the table (`offset + j * skip`, from hashes of its address, so the
/// same member lands on the same entries whatever else is in the pool) and claims the next
/// free entry when it has a turn. Turns are proportional to weight: each round a member earns
/// its weight in credit and takes a turn per `max_weight` credit; every member's credit starts
/// so that it takes a turn in the first round, giving it at least one entry.
fn maglev_table(members: &[(SocketAddr, u32)], size: usize) -> Box<[u16]> {
    let modulus = size as u64;
    let permutations: Vec<(u64, u64)> = members
        .iter()
        .map(|(addr, _)| {
            // Address then port, in network order: 6 bytes for IPv4, 18 for IPv6.
            let mut bytes = [0u8; 18];
            let ip_len = match addr.ip() {
                std::net::IpAddr::V4(ip) => {
                    bytes[..4].copy_from_slice(&ip.octets());
                    4
                }
                std::net::IpAddr::V6(ip) => {
                    bytes[..16].copy_from_slice(&ip.octets());
                    16
                }
            };
            bytes[ip_len..ip_len + 2].copy_from_slice(&addr.port().to_be_bytes());
            let bytes = &bytes[..ip_len + 2];
            let offset = avalanche(fnv1a(OFFSET_SEED, bytes)) % modulus;
            let skip = avalanche(fnv1a(SKIP_SEED, bytes)) % (modulus - 1) + 1;
            (offset, skip)
        })
        .collect();
    let max_weight = members.iter().map(|&(_, w)| w).max().unwrap_or(1);
    let mut credit: Vec<u32> = members.iter().map(|&(_, w)| max_weight - w).collect();
    let mut next = vec![0u64; members.len()];
    let mut table = vec![EMPTY_ENTRY; size];
    let mut filled = 0;
    while filled < size {
        for (i, &(_, weight)) in members.iter().enumerate() {
            credit[i] += weight;
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            let (offset, skip) = permutations[i];
            loop {
                let entry = ((offset + next[i] * skip) % modulus) as usize;
                next[i] += 1;
                if table[entry] == EMPTY_ENTRY {
                    table[entry] = i as u16;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                break;
            }
        }
    }
    table.into_boxed_slice()
}

/// Whether `n` is prime (trial division; table sizes are small).
fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d))
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Seeds for a member's Maglev offset and skip (distinct from the key hash's basis).
const OFFSET_SEED: u64 = FNV_OFFSET_BASIS ^ 0x6f66_6673_6574;
const SKIP_SEED: u64 = FNV_OFFSET_BASIS ^ 0x736b_6970;

/// The stable 64-bit hash of a consistent-hash key (client IP bytes, or a header value):
/// FNV-1a 64 followed by an avalanche mix so every bit of the key moves the low bits. Fixed
/// seed: the same bytes hash the same in every process and version.
pub fn hash_key(bytes: &[u8]) -> u64 {
    avalanche(fnv1a(FNV_OFFSET_BASIS, bytes))
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(seed, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// A 64-bit finalizer (xor-shift-multiply) spreading each input bit over all output bits.
fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests;
