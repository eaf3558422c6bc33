//! The lab's calls into the kernel through `libc`, behind safe functions: entering a network
//! namespace, an interface's index, signals. The only module of this crate with `unsafe`.
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

/// Sends `signal` to process `pid`; a pid that is not positive is ignored.
pub fn signal(pid: i32, signal: i32) {
    if pid > 0 {
        // SAFETY: kill(2) with a positive pid and a signal number has no memory effects.
        unsafe { libc::kill(pid, signal) };
    }
}
