//! Fuzz target: `check_frames` on arbitrary bytes, Ethernet frames given to one lane's TCP server
//! (see `xgate_userstack::fuzz_support`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xgate_userstack::fuzz_support::check_frames(data);
});
