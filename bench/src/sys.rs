//! Every call the harness makes into the C library that needs `unsafe` and that the gateway's and
//! the lab's `sys` modules do not already offer (signals to processes, the effective user,
//! network namespaces and interface indexes are theirs), behind safe functions: the clock tick,
//! CPU time, a signal to a thread, file locks, the open-file limit, CPU affinity. The rest of the
//! crate is `unsafe`-free (`unsafe_code` is denied at the workspace level and allowed only here).
//!
//! Invariant: each `unsafe` block states in a `// SAFETY:` comment why it holds; no function here
//! hands out a raw pointer or a buffer the kernel may still write.
#![allow(unsafe_code)]

use std::{fs::File, io, os::fd::AsRawFd, os::unix::thread::JoinHandleExt as _, thread::JoinHandle};

/// Ticks per second of the times in `/proc/stat` (USER_HZ), if the system says.
pub fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as u64)
}

/// Resource usage of `who` (`RUSAGE_SELF`, `RUSAGE_CHILDREN`), or `None` if getrusage fails.
pub fn rusage(who: libc::c_int) -> Option<libc::rusage> {
    // SAFETY: an all-zero rusage is a valid value of the plain-data struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the live, correctly typed struct it is given.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return None;
    }
    Some(usage)
}

/// Sends `signal` to the thread of `thread` (to interrupt a system call it is blocked in).
pub fn signal_thread<T>(thread: &JoinHandle<T>, signal: libc::c_int) {
    // SAFETY: the handle is borrowed, so the thread has been neither joined nor detached and its
    // pthread_t is still valid; pthread_kill touches no memory of ours.
    unsafe { libc::pthread_kill(thread.as_pthread_t(), signal) };
}

/// Takes an exclusive lock on `file` without waiting (flock `LOCK_EX | LOCK_NB`): true if this
/// process now holds it. The lock goes when the file is closed.
pub fn try_lock_exclusive(file: &File) -> bool {
    // SAFETY: flock on a descriptor that stays open for the call; it touches no memory.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The soft and hard limits on open files (`RLIMIT_NOFILE`), or `None` if getrlimit fails.
pub fn open_file_limit() -> Option<libc::rlimit> {
    // SAFETY: an all-zero rlimit is a valid value of the plain-data struct.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes one rlimit into the live, correctly typed struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some(limit)
}

/// Sets the limits on open files (`RLIMIT_NOFILE`).
pub fn set_open_file_limit(limit: &libc::rlimit) -> io::Result<()> {
    // SAFETY: setrlimit reads one rlimit from the live struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A set of CPUs, as the kernel's affinity calls take and give it.
pub struct CpuSet(libc::cpu_set_t);

impl CpuSet {
    /// Whether `cpu` is in the set (CPUs beyond the set's capacity never are).
    pub fn contains(&self, cpu: usize) -> bool {
        // SAFETY: CPU_ISSET only reads the set; cpu is checked against the set's capacity first.
        cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(cpu, &self.0) }
    }
}

/// The CPUs this process may run on (sched_getaffinity).
pub fn allowed_cpus() -> io::Result<CpuSet> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `allowed`.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(CpuSet(allowed))
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the kernel reads size_of::<cpu_set_t>() bytes of `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_on_some_cpu_and_not_beyond_the_set() {
        let allowed = allowed_cpus().unwrap();
        assert!((0..libc::CPU_SETSIZE as usize).any(|cpu| allowed.contains(cpu)));
        assert!(!allowed.contains(libc::CPU_SETSIZE as usize));
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
    }

    #[test]
    fn limits_and_ticks_are_read() {
        assert!(clock_ticks_per_second().is_some());
        assert!(open_file_limit().is_some_and(|limit| limit.rlim_cur > 0));
        assert!(rusage(libc::RUSAGE_SELF).is_some());
    }
}
