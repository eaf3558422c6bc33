//! The kernel calls this crate makes itself through `libc` (the mappings are `memmap2`'s), and
//! for its tests the few they need, behind safe functions. The rest of the crate is
//! `unsafe`-free (`unsafe_code` is denied at the workspace level and allowed only here).
#![allow(unsafe_code)]

use memmap2::MmapMut;

/// Locks the pages of `map` in memory (`mlock`), if the process is allowed to. A failure (no
/// CAP_IPC_LOCK, RLIMIT_MEMLOCK too low) only means the pages stay swappable, so it is ignored.
pub(crate) fn lock_if_allowed(map: &MmapMut) {
    // SAFETY: `map` is a live mapping of exactly `map.len()` bytes starting at `map.as_ptr()`,
    // borrowed for the call; mlock only pins its pages and does not touch their contents. A
    // failure (no CAP_IPC_LOCK, RLIMIT_MEMLOCK too low) only means the pages stay swappable,
    // so its result is deliberately ignored.
    let _ = unsafe { libc::mlock(map.as_ptr().cast(), map.len()) };
}

/// Whether the process runs as root (effective uid 0).
#[cfg(test)]
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Takes an exclusive `flock` on `file`, blocking until it is ours; returns flock's result
/// (0, or -1 with errno set).
#[cfg(test)]
pub(crate) fn flock_exclusive(file: &std::fs::File) -> libc::c_int {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor `file` owns and keeps open for the call; LOCK_EX blocks
    // until the lock is ours.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }
}

/// The whole of `region` as bytes, through [`crate::Region::as_non_null_slice`].
#[cfg(test)]
pub(crate) fn region_bytes(region: &mut crate::Region) -> &mut [u8] {
    // SAFETY: the slice covers exactly the region's mapping, which is readable and writable
    // and outlives the slice (both end with the caller's borrow of `region`).
    unsafe { region.as_non_null_slice().as_mut() }
}
