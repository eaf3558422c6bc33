//! Fuzz target: `check_chunked` on arbitrary bytes (see `xgate_proxy::fuzz_checks`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xgate_proxy::fuzz_checks::check_chunked(data);
});
