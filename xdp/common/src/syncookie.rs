//! SYN cookies: the initial sequence number of a SYN-ACK the gateway sends without keeping any
//! state, from which the client's ACK alone proves the handshake and says the client's MSS.
//!
//! One definition for both sides: the XDP program answers SYNs with cookies (at driver level,
//! before a lane sees them) and the lanes check the ACKs and answer SYNs of their own under
//! pressure; both call [`make`] and [`check`] here, under one key.
//!
//! A cookie for the client's SYN with sequence number `isn`, at counter `t` (CLOCK_MONOTONIC
//! nanoseconds >> [`COUNTER_SHIFT`], about 69 s a step) and MSS index `m` (into [`MSS_TABLE`]):
//!
//! ```text
//! cookie = H1 + ((t mod 4) << 30 | m << 28 | H2 mod 2^28)      (mod 2^32)
//! H1 = SipHash-2-4(key; client ip, server ip, ports, isn)        (low 32 bits)
//! H2 = SipHash-2-4(key; client ip, server ip, ports, isn, t, m)
//! ```
//!
//! The ACK of it carries `ack = cookie + 1` and `seq = isn + 1`. [`check`] subtracts `H1`, reads
//! `t mod 4` and `m`, and accepts when the counter is the current one or the one before (a cookie
//! lives 69 to 137 s) and the 28 bits of `H2` match. So:
//! - without the key, a valid cookie for a 4-tuple and ISN is a 1 in 2^28 guess (the kernel's
//!   cookies have 24 bits of such a tag), and the whole 32-bit number, counter and MSS bits too,
//!   is hidden under `H1`: cookies are as unpredictable as the keyed ISNs of `userstack::isn`;
//! - the MSS comes back as one of four values, the largest at most the client's (536 when the
//!   SYN offered none): [`MSS_TABLE`] holds the sizes clients send most;
//! - window scaling, SACK and timestamps are not offered in a cookie SYN-ACK (without TCP
//!   timestamps a cookie has no room for them), so a cookie connection runs unscaled windows
//!   (at most 64 KiB in flight each way). Cookies are sent only under pressure (see
//!   [`SynCookieMode`]), where a SYN would otherwise be dropped.
//!
//! Everything here is `#[inline(always)]` integer arithmetic, for the eBPF verifier.

/// Name of the XDP program's global holding its [`SynCookieConfig`]. Set by the loader before
/// load.
pub const SYN_COOKIES_GLOBAL: &str = "SYN_COOKIES";
/// Name of the array (one `u64`) where the XDP program keeps when it last answered a SYN with a
/// cookie (CLOCK_MONOTONIC ns, at most once a millisecond written).
pub const COOKIE_ACTIVITY_MAP: &str = "COOKIE_ACTIVITY";

/// The MSS values a cookie can carry (2 bits): the largest at most the client's is encoded.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// CLOCK_MONOTONIC nanoseconds are shifted right by this to give the cookie counter (a step of
/// 68.7 s).
pub const COUNTER_SHIFT: u32 = 36;
/// How long after a cookie was last sent an ACK of a flow nobody knows is taken for a cookie ACK
/// (and dropped if it is not a valid one), rather than answered with a RST: the life of the
/// oldest cookie still accepted.
pub const COOKIE_ACTIVE_NS: u64 = 2 << COUNTER_SHIFT;

/// When SYNs are answered with cookies.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SynCookieMode {
    /// Never: a SYN the shield or a lane cannot take is dropped (the client sends it again).
    Never = 0,
    /// Under pressure: a SYN the XDP program's budget for strangers would drop, and a SYN a lane
    /// would defer at its half-open bound, is answered with a cookie instead.
    #[default]
    Auto = 1,
    /// Every SYN to the listening port is answered with a cookie (no half-open state at all).
    Always = 2,
}

impl SynCookieMode {
    pub const fn from_u32(value: u32) -> SynCookieMode {
        match value {
            1 => SynCookieMode::Auto,
            2 => SynCookieMode::Always,
            _ => SynCookieMode::Never,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            SynCookieMode::Never => "never",
            SynCookieMode::Auto => "auto",
            SynCookieMode::Always => "always",
        }
    }
}

/// The XDP program's cookie settings ([`SYN_COOKIES_GLOBAL`]).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct SynCookieConfig {
    /// The SipHash key (from the kernel's random source at start; shared with the lanes).
    pub key: [u64; 2],
    /// [`SynCookieMode`] as `u32`.
    pub mode: u32,
    /// The MSS the cookie SYN-ACK offers the client (the link MTU less 40).
    pub mss: u16,
    /// The receive window the cookie SYN-ACK offers (at most a socket's receive buffer).
    pub window: u16,
    /// The gateway's MAC: only a SYN addressed to it is answered, from it.
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}

impl core::fmt::Debug for SynCookieConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The key stays out of logs: it is what makes cookies unforgeable.
        f.debug_struct("SynCookieConfig")
            .field("mode", &SynCookieMode::from_u32(self.mode))
            .field("mss", &self.mss)
            .field("window", &self.window)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

/// The connection a cookie is for, as the client's SYN names it (host-order values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieTuple {
    pub client_ip: u32,
    pub client_port: u16,
    pub server_ip: u32,
    pub server_port: u16,
}

/// SipHash-2-4 of the `8 * N`-byte message whose little-endian 8-byte words are `words`.
#[inline(always)]
pub fn siphash24<const N: usize>(key: [u64; 2], words: [u64; N]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    for word in words {
        v[3] ^= word;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= word;
    }
    let last = ((8 * N) as u64) << 56;
    v[3] ^= last;
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// The index into [`MSS_TABLE`] of the largest MSS at most `client_mss` (0 when the SYN offered
/// none or less than the smallest).
#[inline(always)]
pub fn mss_index(client_mss: Option<u16>) -> u32 {
    let Some(mss) = client_mss else { return 0 };
    if mss >= MSS_TABLE[3] {
        3
    } else if mss >= MSS_TABLE[2] {
        2
    } else if mss >= MSS_TABLE[1] {
        1
    } else {
        0
    }
}

/// The cookie counter at CLOCK_MONOTONIC `now_ns`.
#[inline(always)]
pub const fn counter(now_ns: u64) -> u64 {
    now_ns >> COUNTER_SHIFT
}

#[inline(always)]
fn tuple_words(tuple: &CookieTuple, client_isn: u32) -> [u64; 2] {
    [
        (u64::from(tuple.client_ip) << 32) | u64::from(tuple.server_ip),
        (u64::from(tuple.client_port) << 48) | (u64::from(tuple.server_port) << 32) | u64::from(client_isn),
    ]
}

#[inline(always)]
fn tag(key: [u64; 2], words: [u64; 2], counter: u64, mss_index: u32) -> u32 {
    (siphash24(key, [words[0], words[1], (counter << 2) | u64::from(mss_index)]) as u32) & 0x0fff_ffff
}

/// The cookie (the SYN-ACK's sequence number) for the client SYN of `tuple` with sequence
/// number `client_isn`, carrying MSS index `mss_index` (see [`mss_index`]), at `now_ns`.
#[inline(always)]
pub fn make(key: [u64; 2], tuple: &CookieTuple, client_isn: u32, mss_index: u32, now_ns: u64) -> u32 {
    let words = tuple_words(tuple, client_isn);
    let hidden = siphash24(key, words) as u32;
    let t = counter(now_ns);
    let mss_index = mss_index & 3;
    let plain = (((t & 3) as u32) << 30) | (mss_index << 28) | tag(key, words, t, mss_index);
    hidden.wrapping_add(plain)
}

/// Whether `cookie` (the client's ACK number less one) is one [`make`] gave for `tuple` and
/// `client_isn` (the ACK's sequence number less one) no more than one counter step before
/// `now_ns`: the MSS it carries if so.
#[inline(always)]
pub fn check(key: [u64; 2], tuple: &CookieTuple, client_isn: u32, cookie: u32, now_ns: u64) -> Option<u16> {
    let words = tuple_words(tuple, client_isn);
    let plain = cookie.wrapping_sub(siphash24(key, words) as u32);
    let now = counter(now_ns);
    let age = now.wrapping_sub(u64::from(plain >> 30)) & 3;
    if age > 1 {
        return None;
    }
    let t = now.wrapping_sub(age);
    let mss_index = (plain >> 28) & 3;
    if plain & 0x0fff_ffff != tag(key, words, t, mss_index) {
        return None;
    }
    Some(MSS_TABLE[mss_index as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u64; 2] = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
    const TUPLE: CookieTuple = CookieTuple {
        client_ip: 0x0a4d_0001,
        client_port: 40_000,
        server_ip: 0x0a4d_0002,
        server_port: 80,
    };
    const STEP: u64 = 1 << COUNTER_SHIFT;

    #[test]
    fn siphash_matches_the_reference_vector_and_another_implementation() {
        // The SipHash paper's vector for key 00..0f and the 8-byte message 00..07.
        assert_eq!(siphash24(KEY, [0x0706_0504_0302_0100]), 0x93f5_f579_9a93_2462);
        let mut words = [0u64; 3];
        for round in 0..100u64 {
            words[(round % 3) as usize] = round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let key = [round, !round];
            let mut bytes = [0u8; 24];
            for (chunk, word) in bytes.chunks_mut(8).zip(words) {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            let reference = siphasher::sip::SipHasher24::new_with_keys(key[0], key[1]).hash(&bytes);
            assert_eq!(siphash24(key, words), reference);
        }
    }

    #[test]
    fn a_cookie_checks_and_gives_back_its_mss() {
        for (index, &mss) in MSS_TABLE.iter().enumerate() {
            let now = 5 * STEP + 123;
            let cookie = make(KEY, &TUPLE, 0xdead_beef, index as u32, now);
            assert_eq!(check(KEY, &TUPLE, 0xdead_beef, cookie, now), Some(mss));
        }
    }

    #[test]
    fn a_cookie_lives_one_counter_step_more() {
        let made = 7 * STEP + STEP - 1;
        let cookie = make(KEY, &TUPLE, 1, 3, made);
        assert_eq!(check(KEY, &TUPLE, 1, cookie, made + 1), Some(1460), "next step");
        assert_eq!(
            check(KEY, &TUPLE, 1, cookie, made + STEP),
            Some(1460),
            "still the next"
        );
        assert_eq!(
            check(KEY, &TUPLE, 1, cookie, made + STEP + 1),
            None,
            "two steps on"
        );
        assert_eq!(
            check(KEY, &TUPLE, 1, cookie, made - STEP),
            None,
            "from the future"
        );
    }

    #[test]
    fn a_cookie_is_bound_to_its_tuple_isn_and_key() {
        let now = 3 * STEP;
        let cookie = make(KEY, &TUPLE, 99, 2, now);
        let other_port = CookieTuple {
            client_port: 40_001,
            ..TUPLE
        };
        let other_ip = CookieTuple {
            client_ip: 0x0a4d_0003,
            ..TUPLE
        };
        assert_eq!(check(KEY, &other_port, 99, cookie, now), None);
        assert_eq!(check(KEY, &other_ip, 99, cookie, now), None);
        assert_eq!(check(KEY, &TUPLE, 100, cookie, now), None);
        assert_eq!(check([1, 2], &TUPLE, 99, cookie, now), None);
        for flip in 0..32 {
            assert_eq!(
                check(KEY, &TUPLE, 99, cookie ^ (1 << flip), now),
                None,
                "bit {flip}"
            );
        }
    }

    #[test]
    fn guesses_almost_never_pass() {
        // A blind attacker's ACK numbers: 200,000 guesses, each a 1 in 2^28 chance.
        let now = 9 * STEP;
        let passed = (0..200_000u32)
            .filter(|&guess| check(KEY, &TUPLE, 5, guess.wrapping_mul(2_654_435_761), now).is_some())
            .count();
        assert!(passed <= 1, "{passed} guesses passed");
    }

    #[test]
    fn cookies_spread_over_the_whole_sequence_space() {
        // The counter and MSS bits are hidden: every top nibble shows up for one counter and MSS.
        let mut nibbles = [false; 16];
        for port in 0..2_000u16 {
            let tuple = CookieTuple {
                client_port: port,
                ..TUPLE
            };
            nibbles[(make(KEY, &tuple, 7, 3, STEP) >> 28) as usize] = true;
        }
        assert!(nibbles.iter().all(|&seen| seen), "{nibbles:?}");
    }

    #[test]
    fn mss_index_takes_the_largest_entry_not_above_the_clients() {
        assert_eq!(mss_index(None), 0);
        assert_eq!(mss_index(Some(100)), 0);
        assert_eq!(mss_index(Some(1300)), 1);
        assert_eq!(mss_index(Some(1439)), 1);
        assert_eq!(mss_index(Some(1460)), 3);
        assert_eq!(mss_index(Some(9000)), 3);
    }
}
