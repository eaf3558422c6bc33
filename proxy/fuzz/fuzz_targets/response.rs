//! Fuzz target: `check_response` on arbitrary bytes (see `xgate_proxy::fuzz_checks`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xgate_proxy::fuzz_checks::check_response(data);
});
