//! The loader's own call into the kernel through `libc` outside the map and packet-socket
//! modules (`flows`, `bench`, which allow `unsafe` for theirs), behind a safe function.
#![allow(unsafe_code)]

use std::ffi::CStr;

/// The index of the network interface `name` in this thread's network namespace, 0 if there is
/// none (if_nametoindex).
pub(crate) fn interface_index(name: &CStr) -> u32 {
    // SAFETY: `name` is a valid NUL-terminated string; if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}
