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

/// `MPOL_DEFAULT` and `MPOL_PREFERRED` (linux/mempolicy.h), and `get_mempolicy`'s flags.
const MPOL_DEFAULT: libc::c_long = 0;
const MPOL_PREFERRED: libc::c_long = 1;
const MPOL_F_NODE: libc::c_long = 1;
const MPOL_F_ADDR: libc::c_long = 2;
/// Bits of the node masks passed to the kernel (one word).
const MASK_BITS: libc::c_ulong = 64;

/// Makes this thread's new memory come from NUMA node `node` while it can (`MPOL_PREFERRED`:
/// other nodes when it has none free), or from anywhere again (`None`, `MPOL_DEFAULT`). Nodes
/// above 63 are not taken (`EINVAL`).
pub(crate) fn prefer_node(node: Option<u32>) -> std::io::Result<()> {
    let (mode, mask) = match node {
        Some(node) if node < MASK_BITS as u32 => (MPOL_PREFERRED, 1u64 << node),
        Some(_) => return Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        None => (MPOL_DEFAULT, 0u64),
    };
    let mask_ptr = if mode == MPOL_DEFAULT {
        std::ptr::null()
    } else {
        &mask as *const u64
    };
    let maxnode = if mode == MPOL_DEFAULT { 0 } else { MASK_BITS + 1 };
    // SAFETY: set_mempolicy reads `MASK_BITS` bits from the live `mask` (or none for
    // MPOL_DEFAULT, given a null mask); it changes only this thread's allocation policy.
    let done = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, mask_ptr, maxnode) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The NUMA node of the page at `address` (which must be mapped and faulted in), if the kernel
/// says.
pub(crate) fn node_of(address: *const u8) -> Option<u32> {
    let mut node: libc::c_int = -1;
    // SAFETY: with MPOL_F_NODE | MPOL_F_ADDR, get_mempolicy writes the node of the page at
    // `address` into the live `node` and reads no mask (null, 0); `address` is only looked up.
    let done = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut node as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_ulong>(),
            0 as libc::c_ulong,
            address,
            MPOL_F_NODE | MPOL_F_ADDR,
        )
    };
    (done == 0 && node >= 0).then_some(node as u32)
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
