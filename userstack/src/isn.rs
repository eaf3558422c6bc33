//! Initial sequence numbers as RFC 6528 describes them: `ISN = M + F(local, remote, key)`, where
//! `M` is a clock that ticks every 4 µs and `F` is SipHash-2-4 of the connection's 4-tuple under a
//! 128-bit secret key (from the kernel's random source, drawn at start).
//!
//! smoltcp takes its ISNs from one seeded, non-cryptographic generator shared by every socket of
//! an interface, so an observer who sees some ISNs can predict others and aim a blind reset or
//! data at a connection it cannot see. With a keyed hash, the ISNs of different 4-tuples are
//! unrelated for anyone without the key; and for one 4-tuple they grow with the clock, so a new
//! incarnation of a connection starts above the sequence space of the last one (the property the
//! 4 µs clock of RFC 793 gives), which keeps old duplicates out.
//!
//! The TCP server hands the number to the socket just before the socket starts or answers a
//! handshake (`smoltcp::socket::tcp::Socket::set_next_initial_seq`, xgate's patch of smoltcp, see
//! `vendor/README.md`).

use std::net::SocketAddrV4;

use siphasher::sip::SipHasher24;

/// Microseconds per tick of the ISN clock (RFC 793's 4 µs timer).
pub const CLOCK_TICK_US: u64 = 4;

/// The secret of an [`IsnGenerator`]: two 64-bit halves of a SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IsnKey(pub [u64; 2]);

impl std::fmt::Debug for IsnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key in a log would undo what it is for.
        f.write_str("IsnKey(..)")
    }
}

/// Computes keyed initial sequence numbers.
#[derive(Clone, Copy, Debug)]
pub struct IsnGenerator {
    key: IsnKey,
}

impl IsnGenerator {
    pub fn new(key: IsnKey) -> IsnGenerator {
        IsnGenerator { key }
    }

    /// The ISN of a connection from `local` to `remote` at `clock_us` (microseconds on a
    /// monotonic clock).
    pub fn isn(&self, local: SocketAddrV4, remote: SocketAddrV4, clock_us: u64) -> u32 {
        let mut tuple = [0u8; 12];
        tuple[..4].copy_from_slice(&local.ip().octets());
        tuple[4..6].copy_from_slice(&local.port().to_be_bytes());
        tuple[6..10].copy_from_slice(&remote.ip().octets());
        tuple[10..].copy_from_slice(&remote.port().to_be_bytes());
        let [k0, k1] = self.key.0;
        let offset = SipHasher24::new_with_keys(k0, k1).hash(&tuple) as u32;
        ((clock_us / CLOCK_TICK_US) as u32).wrapping_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn at(ip: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(ip), port)
    }

    const LOCAL: [u8; 4] = [10, 77, 0, 2];
    const CLIENT: [u8; 4] = [10, 77, 0, 1];

    #[test]
    fn the_hash_is_sip_hash_2_4() {
        // The reference vector of the SipHash paper: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(
            SipHasher24::new_with_keys(k0, k1).hash(&message),
            0xa129_ca61_49be_45e5
        );
    }

    /// Across restarts (another key), the same 4-tuple at the same clock gets another ISN, and
    /// two 4-tuples' ISNs under one key differ by an amount that tells nothing about a third.
    #[test]
    fn isns_differ_unpredictably_across_keys_and_tuples() {
        let first = IsnGenerator::new(IsnKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]));
        let restarted = IsnGenerator::new(IsnKey([0x1111_2222_3333_4444, 0x5555_6666_7777_8888]));
        let local = at(LOCAL, 80);
        let a = at(CLIENT, 40_000);
        let b = at(CLIENT, 40_001);
        let c = at(CLIENT, 40_002);
        assert_ne!(first.isn(local, a, 0), restarted.isn(local, a, 0));
        // Neighbouring ports: no common step from one to the next (a PRNG-free counter or a
        // linear scheme would show one).
        let step_ab = first.isn(local, b, 0).wrapping_sub(first.isn(local, a, 0));
        let step_bc = first.isn(local, c, 0).wrapping_sub(first.isn(local, b, 0));
        assert_ne!(step_ab, step_bc);
        // Over many tuples, ISNs spread over the whole space: every top nibble shows up.
        let mut nibbles = [false; 16];
        for port in 0..1_000u16 {
            nibbles[(first.isn(local, at(CLIENT, port), 0) >> 28) as usize] = true;
        }
        assert!(nibbles.iter().all(|&seen| seen), "{nibbles:?}");
    }

    /// For one 4-tuple the ISN moves with the 4 µs clock: a later incarnation of the connection
    /// starts later in the sequence space.
    #[test]
    fn for_one_tuple_the_isn_grows_with_the_clock() {
        let isn = IsnGenerator::new(IsnKey([7, 9]));
        let (local, remote) = (at(LOCAL, 80), at(CLIENT, 40_000));
        let start = isn.isn(local, remote, 1_000_000);
        assert_eq!(isn.isn(local, remote, 1_000_003), start, "within one tick");
        assert_eq!(isn.isn(local, remote, 1_000_004), start.wrapping_add(1));
        assert_eq!(isn.isn(local, remote, 5_000_000), start.wrapping_add(1_000_000));
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        let text = format!("{:?}", IsnGenerator::new(IsnKey([42, 43])));
        assert!(!text.contains("42") && !text.contains("43"), "{text}");
    }
}
