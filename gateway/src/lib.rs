//! xgate's data plane, laid out along the path a frame takes:
//!
//! - [`runtime`] starts the lanes (one XDP program for the interface, then per lane a queue, an
//!   AF_XDP port on its own UMEM, a pinned thread), links them with rings, and stops them;
//! - `lane` is one lane's loop: receive (frames lent to the userspace TCP stack in place), the
//!   client side of each connection, its proxying half (`lane::proxy`: upstream connections on
//!   the same stack, driving the HTTP crate's sans-I/O proxy exchange), and transmit;
//! - [`transport`] is the seam between a client connection's socket and the HTTP code: every
//!   byte the lane reads from or writes to a client passes through it (where a TLS session or
//!   HTTP/2 framing goes);
//! - [`handoff`] holds the rings between lanes (frames a lane does not own, handed to the one
//!   that does), and [`counters`] the per-lane counters other threads read;
//! - [`stage`] is the HTTP stage: request slots, the handles that move them between the lane and
//!   its HTTP worker over wait-free rings, and the worker that frames and routes each request;
//! - [`config`] and [`routing`] are the configuration file and its routes and upstream pools;
//! - [`reaper`] walks the XDP flow table and has lanes abort dead flows;
//! - [`metrics`], [`management`], [`access_log`] and [`logging`] are what operators see;
//! - [`sys`] is the one module that calls the kernel through `libc` (clocks, eventfd, poll,
//!   signals, the counting allocator): every `unsafe` block of this crate is there.
//!
//! Invariants: lanes share no mutable state on the data path; after start-up, serving a request
//! allocates nothing; the hot path takes no lock.

pub mod access_log;
pub mod config;
pub mod counters;
pub mod doctor;
pub mod error;
pub mod handoff;
mod lane;
pub mod logging;
pub mod management;
pub mod metrics;
pub mod reaper;
pub mod routing;
pub mod runtime;
pub mod stage;
pub mod sys;
pub mod tls;
pub mod transport;

pub use config::Config;
pub use error::RunError;

/// The unit tests count allocations as the binary does (it installs the same allocator).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: sys::alloc::CountingAllocator = sys::alloc::CountingAllocator;
