//! The lab's calls into the kernel through `libc`, behind safe functions: entering a network
//! namespace and an interface's index there (the flood and the packet benchmark use them). The
//! only module of this crate with `unsafe`; signals go through the gateway's `sys`.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// Moves the calling thread into the network namespace `file` (an open nsfs file).
pub fn enter_network_namespace(file: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: `file` is an open file for the whole call; setns(CLONE_NEWNET) changes only the
    // calling thread's network namespace and touches no memory of ours.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` in the calling thread's network namespace, if it exists.
pub fn interface_index(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the call; if_nametoindex only reads it.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => None,
        index => Some(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_interface_has_an_index_and_nonsense_has_none() {
        assert!(interface_index("lo").is_some());
        assert_eq!(interface_index("no-such-if0"), None);
        assert_eq!(interface_index("bad\0name"), None);
    }
}
