//! Giving up capabilities once the privileged setup is done: after the XDP program is attached,
//! its maps are open, the AF_XDP sockets are bound and the UMEMs registered, a gateway needs no
//! capability to serve, except — on kernels that check it on every `bpf(2)` call — the one that
//! lets it read and update the maps it already holds.
//!
//! Invariants:
//! - Capabilities are per thread in Linux: [`drop_after_setup`] changes the calling thread's
//!   sets, and must run before any other thread of the process exists (threads inherit their
//!   creator's sets). The runtime calls it before it starts the lanes.
//! - What is kept is measured, not assumed: the caller's probe (a map read) runs with an empty
//!   effective set first; only if the kernel refuses it are the BPF capabilities kept.
//! - The ambient set is cleared and nothing is left inheritable, so nothing xgate might start
//!   gets a capability back.

use std::io;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities that allow `bpf(2)` on kernels that check them for every command (before
/// 6.5 with `kernel.unprivileged_bpf_disabled` set, as Debian sets it).
const BPF_CAPABILITIES: u64 = 1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_SYS_ADMIN;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A thread's capability sets, as bit masks by capability number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// The calling thread's sets (capget(2)).
pub fn current() -> io::Result<CapabilitySets> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads the header and writes two CapData (version 3's size) into the live
    // array; pid 0 is the calling thread.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
    Ok(CapabilitySets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's sets (capset(2)); the kernel refuses any gain.
fn set(sets: CapabilitySets) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |mask: u64| (mask as u32, (mask >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset reads the header and two CapData from live values; pid 0 is the calling
    // thread.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears the ambient set (prctl PR_CAP_AMBIENT_CLEAR_ALL; a no-op where there is none).
fn clear_ambient() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let result = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The names of the capabilities in `mask` that this module deals with, for events and logs.
pub fn names(mask: u64) -> Vec<&'static str> {
    let mut names = Vec::new();
    for (bit, name) in [
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_BPF, "CAP_BPF"),
    ] {
        if mask & 1 << bit != 0 {
            names.push(name);
        }
    }
    if mask & !BPF_CAPABILITIES != 0 {
        names.push("(others)");
    }
    names
}

/// What [`drop_after_setup`] left the thread with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The permitted set before.
    pub held: u64,
    /// The permitted (and effective) set after: empty, or the BPF capabilities the probe needed.
    pub kept: u64,
}

/// Drops every capability of the calling thread but those `still_works` needs: first with none
/// effective; if `still_works` then fails, with the BPF capabilities held back; if it fails even
/// then, the sets are restored and an error says so (the caller keeps running as before).
pub fn drop_after_setup(still_works: impl Fn() -> bool) -> io::Result<Dropped> {
    let before = current()?;
    clear_ambient()?;
    let held = before.permitted;
    let mut kept = 0;
    set(CapabilitySets {
        effective: 0,
        ..before
    })?;
    if !still_works() {
        kept = held & BPF_CAPABILITIES;
        set(CapabilitySets {
            effective: kept,
            ..before
        })?;
        if !still_works() {
            set(before)?;
            return Err(io::Error::other(
                "the maps could not be read even with the BPF capabilities held; all capabilities kept",
            ));
        }
    }
    set(CapabilitySets {
        effective: kept,
        permitted: kept,
        inheritable: 0,
    })?;
    Ok(Dropped { held, kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bpf_capabilities_and_lumps_the_rest() {
        assert_eq!(names(0), Vec::<&str>::new());
        assert_eq!(names(1 << CAP_BPF | 1 << CAP_PERFMON), ["CAP_PERFMON", "CAP_BPF"]);
        assert_eq!(names(1 << 12), ["(others)"]);
    }

    #[test]
    fn the_calling_threads_sets_can_be_read() {
        let sets = current().unwrap();
        // Whatever the test runs as, effective is a subset of permitted.
        assert_eq!(sets.effective & !sets.permitted, 0);
    }
}
