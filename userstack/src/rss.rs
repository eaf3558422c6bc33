//! Receive-side scaling: which lane owns a TCP flow, computed the way a NIC computes it.
//!
//! A NIC with RSS hashes each received TCP/IPv4 packet with the Toeplitz hash over 12 bytes —
//! source address, destination address, source port, destination port, all big-endian, as they
//! appear in the packet — under a secret key, and looks the low bits of the hash up in an
//! indirection table (`hash % table length`) to choose the receive queue. xgate binds one lane to
//! each queue, so the entry is the lane. [`FlowSteering`] holds a key and a table and answers the
//! same question in software.
//!
//! Why a lane needs it: a connection a client opens to xgate is steered by the NIC before any lane
//! sees it, but for a connection a lane *opens* the lane chooses the local port. The replies come
//! back with the remote end as source and the lane's address and chosen port as destination, so
//! [`FlowSteering::pick_local_port`] tries candidate local ports until the hash of that reply
//! tuple lands on the lane's own entry. Where the NIC's RSS uses the same key and table (read
//! with `ethtool -x`, or set with `ethtool -X`), every reply then arrives on the lane that sent
//! the request. Where the NIC's steering is unknown, configured differently, or absent (veth has
//! no RSS and delivers by other rules), a frame may arrive on another lane; that lane does not
//! know the flow and gives the frame to the owning lane through the lane's hand-off ring, so
//! steering is only ever a matter of speed, never of correctness.
//!
//! Invariants:
//! - Everything here is pure: no I/O, no unsafe, and nothing allocates after construction.
//! - [`toeplitz_hash`] with [`DEFAULT_RSS_KEY`] reproduces the IPv4-with-TCP vectors of the RSS
//!   verification suite (see the tests).
//! - A [`FlowSteering`] table is never empty and its entries are lanes below `u16::MAX`, so
//!   [`FlowSteering::lane_of`] always answers a lane below [`FlowSteering::lanes`].

use crate::wire::TcpFlowKey;

/// The default Toeplitz key of the Microsoft RSS specification, which many NIC drivers program
/// unless told otherwise. 40 bytes: enough for the 36-byte TCP/IPv6 input, and more than the
/// 16 bytes the 12-byte TCP/IPv4 input needs.
#[rustfmt::skip]
pub const DEFAULT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2,
    0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4,
    0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Entries of the table [`FlowSteering::round_robin`] builds (when there are no more lanes than
/// this), a common indirection table size for NICs.
pub const ROUND_ROBIN_TABLE_LEN: usize = 128;

/// Bytes the hash reads for TCP over IPv4: two addresses and two ports.
const TCP_IPV4_INPUT_LEN: usize = 12;

/// The Toeplitz hash of `input` under `key`, as RSS computes it: for every bit of `input`, most
/// significant bit of the first byte first, that is set, the 32 key bits starting at the same bit
/// position are XORed into the result.
///
/// `key` must hold at least `input.len() + 4` bytes (checked in debug builds); in release builds
/// key bytes past its end count as zero, so the function never reads out of bounds or panics.
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    debug_assert!(
        key.len() >= input.len() + 4,
        "a Toeplitz key of {} bytes is too short for {} input bytes",
        key.len(),
        input.len()
    );
    let key_byte = |at: usize| u64::from(key.get(at).copied().unwrap_or(0));
    // Key bits [8i, 8i + 40) while input byte i is hashed: the 32-bit windows of all 8 of its bits.
    let mut key_window = (0..5).fold(0u64, |window, at| (window << 8) | key_byte(at));
    let mut hash = 0u32;
    for (index, &byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= (key_window >> (8 - bit)) as u32;
            }
        }
        key_window = ((key_window << 8) | key_byte(index + 5)) & 0xff_ffff_ffff;
    }
    hash
}

/// The bytes RSS hashes for a TCP/IPv4 packet carrying `flow`.
fn tcp_ipv4_input(flow: &TcpFlowKey) -> [u8; TCP_IPV4_INPUT_LEN] {
    let mut input = [0u8; TCP_IPV4_INPUT_LEN];
    input[0..4].copy_from_slice(&flow.src_ip);
    input[4..8].copy_from_slice(&flow.dst_ip);
    input[8..10].copy_from_slice(&flow.src_port.to_be_bytes());
    input[10..12].copy_from_slice(&flow.dst_port.to_be_bytes());
    input
}

/// Why [`FlowSteering::new`] refused an indirection table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RssTableError {
    #[error("the RSS indirection table is empty: it needs at least one entry")]
    Empty,
    /// Entry `entry` names lane `u16::MAX`: the lane count would not fit a `u16`.
    #[error(
        "RSS indirection table entry {entry} names lane {lane}, above the highest lane {highest}",
        lane = u16::MAX,
        highest = u16::MAX - 1
    )]
    LaneOutOfRange { entry: usize },
}

/// A NIC's RSS configuration for TCP/IPv4 — its key and indirection table — answering which lane
/// receives a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSteering {
    key: [u8; 40],
    /// Entry `hash % len` is the lane of a packet whose hash is `hash`.
    indirection: Box<[u16]>,
}

impl FlowSteering {
    /// Steering with `key` and the indirection table `indirection` (entry `i` is the lane that
    /// receives packets whose hash is `i` modulo the table length). Refused, with the reason, if
    /// the table is empty or names lane `u16::MAX` (the lane count would not fit a `u16`).
    pub fn new(key: [u8; 40], indirection: Vec<u16>) -> Result<FlowSteering, RssTableError> {
        if indirection.is_empty() {
            return Err(RssTableError::Empty);
        }
        if let Some(entry) = indirection.iter().position(|&lane| lane == u16::MAX) {
            return Err(RssTableError::LaneOutOfRange { entry });
        }
        Ok(FlowSteering {
            key,
            indirection: indirection.into_boxed_slice(),
        })
    }

    /// Steering with `key` and the table a NIC driver sets up by default: entry `i` is lane
    /// `i % lanes`, over [`ROUND_ROBIN_TABLE_LEN`] entries (or one entry per lane if there are
    /// more lanes than that).
    ///
    /// # Panics
    /// If `lanes` is 0 or `u16::MAX`.
    pub fn round_robin(key: [u8; 40], lanes: u16) -> FlowSteering {
        assert!(
            (1..u16::MAX).contains(&lanes),
            "round-robin RSS needs 1 to {} lanes, not {lanes}",
            u16::MAX - 1
        );
        let entries = ROUND_ROBIN_TABLE_LEN.max(usize::from(lanes));
        let indirection = (0..entries)
            .map(|entry| (entry % usize::from(lanes)) as u16)
            .collect();
        FlowSteering::new(key, indirection).expect("a non-empty table of lanes below lanes")
    }

    /// The number of lanes the table spreads flows over: its highest entry plus one.
    pub fn lanes(&self) -> u16 {
        self.indirection.iter().copied().max().unwrap_or(0) + 1
    }

    /// The Toeplitz hash the NIC computes for a packet of `flow` (as received: source first).
    pub fn flow_hash(&self, flow: &TcpFlowKey) -> u32 {
        toeplitz_hash(&self.key, &tcp_ipv4_input(flow))
    }

    /// The lane that receives packets of `flow`, given as the received packet carries it (source
    /// address and port first).
    pub fn lane_of(&self, flow: &TcpFlowKey) -> u16 {
        let entry = self.flow_hash(flow) as usize % self.indirection.len();
        self.indirection[entry]
    }

    /// For a connection that `lane` opens from `local_ip` to `remote_ip:remote_port`: the first of
    /// `candidates` as local port such that the replies (source `remote_ip:remote_port`,
    /// destination `local_ip:port`) are steered to `lane`. `None` if no candidate is, for example
    /// when `candidates` is empty or `lane` is in no entry of the table. About one candidate in
    /// [`lanes`](Self::lanes) fits with a round-robin table, so a range of a few dozen ports
    /// practically always holds one.
    pub fn pick_local_port(
        &self,
        lane: u16,
        local_ip: [u8; 4],
        remote_ip: [u8; 4],
        remote_port: u16,
        candidates: impl IntoIterator<Item = u16>,
    ) -> Option<u16> {
        candidates.into_iter().find(|&local_port| {
            let reply = TcpFlowKey {
                src_ip: remote_ip,
                dst_ip: local_ip,
                src_port: remote_port,
                dst_port: local_port,
            };
            self.lane_of(&reply) == lane
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rng::Xorshift;

    /// A random flow.
    fn random_flow(rng: &mut Xorshift) -> TcpFlowKey {
        let bits = rng.next();
        let ports = rng.next();
        TcpFlowKey {
            src_ip: (bits as u32).to_be_bytes(),
            dst_ip: ((bits >> 32) as u32).to_be_bytes(),
            src_port: ports as u16,
            dst_port: (ports >> 16) as u16,
        }
    }

    fn flow(src_ip: [u8; 4], src_port: u16, dst_ip: [u8; 4], dst_port: u16) -> TcpFlowKey {
        TcpFlowKey {
            src_ip,
            dst_ip,
            src_port,
            dst_port,
        }
    }

    /// An IPv4 address and a TCP port.
    type Endpoint = ([u8; 4], u16);

    /// The RSS verification suite's IPv4 vectors, with the packet's source first:
    /// (source, destination, hash over the addresses only, hash with the TCP ports).
    #[rustfmt::skip]
    const VERIFICATION_SUITE: [(Endpoint, Endpoint, u32, u32); 5] = [
        (([66, 9, 149, 187], 2794), ([161, 142, 100, 80], 1766), 0x323e_8fc2, 0x51cc_c178),
        (([199, 92, 111, 2], 14230), ([65, 69, 140, 83], 4739), 0xd718_262a, 0xc626_b0ea),
        (([24, 19, 198, 95], 12898), ([12, 22, 207, 184], 38024), 0xd2d0_a5de, 0x5c2b_394a),
        (([38, 27, 205, 30], 48228), ([209, 142, 163, 6], 2217), 0x8298_9176, 0xafc7_327f),
        (([153, 39, 163, 191], 44251), ([202, 188, 127, 2], 1303), 0x5d18_09c5, 0x10e8_28a2),
    ];

    #[test]
    fn the_verification_suite_vectors_hash_as_specified() {
        let steering = FlowSteering::round_robin(DEFAULT_RSS_KEY, 1);
        for ((src_ip, src_port), (dst_ip, dst_port), addresses_only, with_ports) in VERIFICATION_SUITE {
            let received = flow(src_ip, src_port, dst_ip, dst_port);
            assert_eq!(steering.flow_hash(&received), with_ports, "{received:?}");
            assert_eq!(
                toeplitz_hash(&DEFAULT_RSS_KEY, &tcp_ipv4_input(&received)),
                with_ports
            );
            assert_eq!(
                toeplitz_hash(&DEFAULT_RSS_KEY, &tcp_ipv4_input(&received)[..8]),
                addresses_only,
                "{received:?}"
            );
            // The hash is not symmetric: the other direction hashes differently.
            assert_ne!(steering.flow_hash(&received.reversed()), with_ports);
        }
    }

    #[test]
    fn the_hash_is_linear_in_its_input() {
        // Toeplitz is XOR-linear: h(a ^ b) = h(a) ^ h(b), and h(0) = 0.
        let mut rng = Xorshift(0x1234_5678_9abc_def1);
        assert_eq!(toeplitz_hash(&DEFAULT_RSS_KEY, &[0; 12]), 0);
        for _ in 0..1000 {
            let a = tcp_ipv4_input(&random_flow(&mut rng));
            let b = tcp_ipv4_input(&random_flow(&mut rng));
            let mut both = [0u8; 12];
            for (out, (x, y)) in both.iter_mut().zip(a.iter().zip(&b)) {
                *out = x ^ y;
            }
            assert_eq!(
                toeplitz_hash(&DEFAULT_RSS_KEY, &both),
                toeplitz_hash(&DEFAULT_RSS_KEY, &a) ^ toeplitz_hash(&DEFAULT_RSS_KEY, &b)
            );
        }
        // A single set bit selects the key's 32 bits at that position.
        let mut first_bit = [0u8; 12];
        first_bit[0] = 0x80;
        assert_eq!(toeplitz_hash(&DEFAULT_RSS_KEY, &first_bit), 0x6d5a_56da);
        let mut ninth_bit = [0u8; 12];
        ninth_bit[1] = 0x80;
        assert_eq!(toeplitz_hash(&DEFAULT_RSS_KEY, &ninth_bit), 0x5a56_da25);
    }

    #[test]
    fn tables_must_name_lanes() {
        assert!(FlowSteering::new(DEFAULT_RSS_KEY, Vec::new())
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(FlowSteering::new(DEFAULT_RSS_KEY, vec![0, u16::MAX])
            .unwrap_err()
            .to_string()
            .contains("entry 1"));
        assert_eq!(
            RssTableError::LaneOutOfRange { entry: 1 }.to_string(),
            "RSS indirection table entry 1 names lane 65535, above the highest lane 65534"
        );
        let steering = FlowSteering::new(DEFAULT_RSS_KEY, vec![3, 0, 3]).unwrap();
        assert_eq!(steering.lanes(), 4);
        assert_eq!(FlowSteering::round_robin(DEFAULT_RSS_KEY, 1).lanes(), 1);
        assert_eq!(FlowSteering::round_robin(DEFAULT_RSS_KEY, 6).lanes(), 6);
        // More lanes than the default table has entries: every lane still gets one.
        assert_eq!(FlowSteering::round_robin(DEFAULT_RSS_KEY, 300).lanes(), 300);
    }

    #[test]
    #[should_panic(expected = "round-robin RSS needs")]
    fn round_robin_needs_a_lane() {
        FlowSteering::round_robin(DEFAULT_RSS_KEY, 0);
    }

    #[test]
    fn the_table_entry_is_the_hash_modulo_its_length() {
        let table: Vec<u16> = (0..7).collect();
        let steering = FlowSteering::new(DEFAULT_RSS_KEY, table).unwrap();
        let mut rng = Xorshift(77);
        for _ in 0..1000 {
            let received = random_flow(&mut rng);
            assert_eq!(
                u32::from(steering.lane_of(&received)),
                steering.flow_hash(&received) % 7
            );
        }
    }

    #[test]
    fn round_robin_spreads_flows_evenly_over_two_lanes() {
        let steering = FlowSteering::round_robin(DEFAULT_RSS_KEY, 2);
        let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
        let mut per_lane = [0u32; 2];
        for _ in 0..10_000 {
            per_lane[usize::from(steering.lane_of(&random_flow(&mut rng)))] += 1;
        }
        for count in per_lane {
            assert!((4_500..=5_500).contains(&count), "{per_lane:?}");
        }
    }

    #[test]
    fn picked_local_ports_bring_replies_back_to_the_lane() {
        let local_ip = [10, 0, 0, 2];
        let remote_ip = [10, 0, 0, 9];
        for lanes in 1..=8 {
            let steering = FlowSteering::round_robin(DEFAULT_RSS_KEY, lanes);
            for lane in 0..lanes {
                let port = steering
                    .pick_local_port(lane, local_ip, remote_ip, 8080, 32_768..61_000)
                    .unwrap_or_else(|| panic!("no port for lane {lane} of {lanes}"));
                assert!((32_768..61_000).contains(&port));
                let reply = flow(remote_ip, 8080, local_ip, port);
                assert_eq!(steering.lane_of(&reply), lane);
                // The first fitting candidate: none before it fits.
                let earlier = steering.pick_local_port(lane, local_ip, remote_ip, 8080, 32_768..port);
                assert_eq!(earlier, None);
            }
        }
    }

    #[test]
    fn no_port_when_no_candidate_fits() {
        let steering = FlowSteering::round_robin(DEFAULT_RSS_KEY, 2);
        let (local_ip, remote_ip) = ([192, 168, 1, 1], [192, 168, 1, 2]);
        assert_eq!(steering.pick_local_port(0, local_ip, remote_ip, 80, []), None);
        // Only ports whose replies go to lane 1, offered for lane 0.
        let lane_one_ports: Vec<u16> = (40_000..40_100)
            .filter(|&port| steering.lane_of(&flow(remote_ip, 80, local_ip, port)) == 1)
            .collect();
        assert!(!lane_one_ports.is_empty());
        assert_eq!(
            steering.pick_local_port(0, local_ip, remote_ip, 80, lane_one_ports.iter().copied()),
            None
        );
        assert_eq!(
            steering.pick_local_port(1, local_ip, remote_ip, 80, lane_one_ports.iter().copied()),
            Some(lane_one_ports[0])
        );
        // A lane the table does not name.
        assert_eq!(
            steering.pick_local_port(2, local_ip, remote_ip, 80, 1024..u16::MAX),
            None
        );
    }
}
