//! Types shared between xgate's XDP program (`xdp/ebpf`) and its userspace loader (`xdp/loader`).
//!
//! Everything here is `#[repr(C)]` or a plain integer so that the eBPF side and the userspace side
//! agree on layout byte for byte. The crate is `no_std` so the eBPF program can use it; the `user`
//! feature adds the `aya::Pod` impls userspace needs to read maps.
#![no_std]

/// Name of the global in the XDP program holding the gateway's IPv4 address.
///
/// The value is the address's four octets as they appear on the wire, reinterpreted as a native
/// `u32` (`u32::from_ne_bytes(addr.octets())`), so the program compares it with packet bytes as is.
pub const GATEWAY_IPV4_GLOBAL: &str = "GATEWAY_IPV4";

/// Name of the XSKMAP (rx queue index → AF_XDP socket).
pub const XSK_MAP: &str = "XSKS";
/// Name of the per-CPU array of [`ActionStats`], indexed by [`Verdict`].
pub const VERDICT_STATS_MAP: &str = "VERDICT_STATS";
/// Entries in the XSKMAP: the most rx queues one interface may have bound.
pub const MAX_QUEUES: u32 = 64;

/// What the XDP program decided for one frame; the index into [`VERDICT_STATS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not addressed to the gateway: the host kernel keeps it (XDP_PASS).
    PassNotOurs = 0,
    /// Too short to parse as Ethernet/ARP/IPv4: left to the kernel (XDP_PASS).
    PassMalformed = 1,
    /// ARP whose target is the gateway address, redirected to the AF_XDP socket.
    RedirectArp = 2,
    /// IPv4 addressed to the gateway, redirected to the AF_XDP socket.
    RedirectIpv4 = 3,
    /// Addressed to the gateway but no AF_XDP socket is bound on this rx queue (XDP_DROP).
    DropNoSocket = 4,
}

impl Verdict {
    /// Number of verdicts (size of [`VERDICT_STATS_MAP`]).
    pub const COUNT: u32 = 5;
    /// Every verdict, in index order.
    pub const ALL: [Verdict; Self::COUNT as usize] = [
        Verdict::PassNotOurs,
        Verdict::PassMalformed,
        Verdict::RedirectArp,
        Verdict::RedirectIpv4,
        Verdict::DropNoSocket,
    ];

    /// Stable snake_case name, used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::PassNotOurs => "pass_not_ours",
            Verdict::PassMalformed => "pass_malformed",
            Verdict::RedirectArp => "redirect_arp",
            Verdict::RedirectIpv4 => "redirect_ipv4",
            Verdict::DropNoSocket => "drop_no_socket",
        }
    }
}

/// Packets and bytes counted for one [`Verdict`] on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionStats {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: ActionStats is #[repr(C)], made of two u64 with no padding, valid for any bit pattern.
unsafe impl aya::Pod for ActionStats {}

/// Name of the benchmark receiver program: counts every frame into [`BENCH_DROP_STATS_MAP`] and
/// drops it (XDP_DROP). It measures the most frames per second the kernel can hand anyone on an
/// interface; it is never attached by the gateway itself.
pub const BENCH_DROP_PROGRAM: &str = "xgate_bench_drop";
/// Name of the per-CPU array of [`ActionStats`] written by `xgate_bench_drop`: one entry, at
/// index 0, counting every frame the program saw on that CPU.
pub const BENCH_DROP_STATS_MAP: &str = "BENCH_DROP_STATS";
/// Entries in [`BENCH_DROP_STATS_MAP`] and [`BENCH_TX_STATS_MAP`].
pub const BENCH_STATS_ENTRIES: u32 = 1;
/// Name of the benchmark generator program: counts every frame into [`BENCH_TX_STATS_MAP`] and
/// returns XDP_TX. Run with BPF_PROG_TEST_RUN in live-frames mode, the kernel transmits each frame
/// out of the interface named as ingress in the run's context.
pub const BENCH_TX_PROGRAM: &str = "xgate_bench_tx";
/// Name of the per-CPU array of [`ActionStats`] written by `xgate_bench_tx`: one entry, at index
/// 0, counting every frame the generator has sent on that CPU (readable while a run is going on).
pub const BENCH_TX_STATS_MAP: &str = "BENCH_TX_STATS";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_indices_match_their_position_and_names_are_unique() {
        for (i, verdict) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*verdict as usize, i);
            for other in &Verdict::ALL[i + 1..] {
                assert_ne!(verdict.name(), other.name());
            }
        }
        assert_eq!(core::mem::size_of::<ActionStats>(), 16);
    }
}
