//! `xgate-pass`: an XDP program that passes every frame to the kernel, for the lab's side of a
//! veth pair whose other end sends frames with XDP_TX (the gateway's cookie SYN-ACKs).
//!
//! veth delivers XDP_TX frames to its peer's XDP receive queue and wakes that queue only when
//! the peer has an XDP program; without one they wait until the peer's next ordinary frame. A real
//! NIC needs nothing like it. The object is its own (no maps, no globals), so `ip link set ...
//! xdpdrv obj` can load it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

    #[xdp]
    pub fn xgate_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
