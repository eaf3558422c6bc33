//! xgate's XDP program: steers the gateway's frames into AF_XDP sockets.
//!
//! Built for `bpfel-unknown-none` by `xdp/loader/build.rs`; on the host this file compiles to an
//! empty binary so that workspace-wide tooling still works.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Atomic adds on shared map entries: core's atomic types offer no read-modify-write on this
// target, the intrinsic compiles to the BPF atomic add instruction.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod program;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
