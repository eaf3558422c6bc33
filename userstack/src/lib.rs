//! xgate's userspace packet layer: AF_XDP sockets over a UMEM that xgate owns, the ledger that
//! tracks where every UMEM frame is, and the `smoltcp` device that lends those frames to the
//! TCP/IP stack without copying them.
//!
//! Layers, bottom up (each module states its own invariants):
//! - [`frames`]: the frame ledger. Every UMEM frame is in exactly one place at any time.
//! - [`xsk`]: one AF_XDP socket bound to one rx/tx queue, with its fill, rx, tx and completion
//!   rings, over a hugepage UMEM.
//! - [`device`]: the `smoltcp::phy::Device` over an [`xsk::XskPort`]: rx tokens read the received
//!   frame in place, tx tokens let the stack write straight into a free frame; and the device
//!   over a frame another lane received.
//! - [`wire`]: the little parsing steering needs (a frame's TCP flow and flags, ARP).
//! - [`flows`]: a lane's flow table, connection key → socket in O(1).
//! - [`tcp_server`]: a lane's accepting TCP over smoltcp: sockets in small shards found through
//!   the flow table, listeners kept ready for bursts, egress only where there is work.
//! - [`arena`]: one large zeroed allocation to cut many buffers from, resident only where written
//!   (the sockets' buffers, and the gateway's request slots).
//! - [`rss`]: how a NIC's receive-side scaling assigns flows to queues, for picking the local
//!   ports of connections a lane opens.
//!
//! `unsafe` (denied by the workspace) is allowed only in [`xsk`] and its submodules and in
//! [`device`]: the AF_XDP socket, the UMEM the kernel writes, and the slices of it lent to the
//! stack. Each block states why it holds in a `// SAFETY:` comment.
//!
//! Why xdpilone: it registers memory the caller owns as the UMEM, so xgate maps the UMEM itself
//! (2 MiB hugepages through `xgate-hugepages`, and later per NUMA node) instead of letting the
//! AF_XDP library allocate it; it is pure Rust, so no C libxdp/libbpf is built, and it never loads
//! an XDP program of its own: xgate's aya program owns the XSKMAP.

pub mod arena;
pub mod device;
pub mod flows;
pub mod frames;
/// Test support, not part of the product: built for this crate's own tests and with the
/// `fuzz-support` feature (the `frame` fuzz target, the corpus test).
#[cfg(any(test, feature = "fuzz-support"))]
#[doc(hidden)]
pub mod fuzz_support;
pub mod isn;
pub mod rss;
pub mod tcp_server;
#[cfg(test)]
mod test_rng;
pub mod wire;
pub mod xsk;

pub use device::{XskRxToken, XskTxToken, ETHERNET_HEADER};
pub use frames::{FrameLedger, FrameState};
pub use xsk::{BindMode, KernelStats, PortConfig, PortStats, XskError, XskPort};
