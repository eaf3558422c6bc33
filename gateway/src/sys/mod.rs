//! Every call this crate makes into the kernel through `libc`, and the other `unsafe` it needs,
//! behind safe functions: clocks, randomness, the eventfd that wakes a sleeping lane, `poll(2)`,
//! writes to stdout, signals, and reading a frame another lane lent. The rest of the crate is
//! `unsafe`-free (`unsafe_code` is denied at the workspace level and allowed only here).
//!
//! Invariant: each `unsafe` block states in a `// SAFETY:` comment why it holds; no function
//! here hands out a raw pointer or a borrowed buffer that outlives its call, except
//! [`lent_frame`], whose argument is spelled out there.
#![allow(unsafe_code)]

pub mod alloc;
pub mod capabilities;
pub mod ethtool;
pub mod netdev;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use xgate_userstack::xsk::LentFrame;

/// CLOCK_MONOTONIC in nanoseconds: the clock of the XDP program's arrival stamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live `ts`; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// 64 random bits from the kernel (getrandom(2)).
pub fn random_u64() -> std::io::Result<u64> {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most `seed.len()` bytes into the live buffer it is given.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n != seed.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(seed))
}

/// Writes `bytes` to file descriptor 1, retrying short writes; errors (a closed stdout) drop
/// the bytes. Unbuffered and lock-free, unlike `std::io::stdout()`.
pub fn write_stdout(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live, initialised buffer of `bytes.len()` bytes for the call;
        // write(2) only reads it.
        let n = unsafe { libc::write(1, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// A non-blocking eventfd: one thread signals, another polls it and drains it.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> std::io::Result<EventFd> {
        // SAFETY: plain eventfd(2) call; the returned fd is checked and then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EventFd {
            // SAFETY: fd was just returned by eventfd and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the eventfd readable (adds one to its counter).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd this struct owns.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Empties the eventfd's counter.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from the owned, non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

/// Sleeps in `poll(2)` until one of `fds` is readable or `timeout_ms` passed.
pub fn poll_readable<const N: usize>(fds: [RawFd; N], timeout_ms: i32) {
    let mut polled = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `polled` is a valid array of N pollfd for the duration of the call.
    unsafe { libc::poll(polled.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
}

/// The bytes of a frame another lane lent this one, and the XDP program's stamp of it (arrival
/// time and flags) if it stamped it.
///
/// Holds because the runtime creates every lane's port (and so its UMEM) before the lanes'
/// thread scope and drops them after it (`runtime::run`), and a lent frame stays `Lent` in its
/// port's ledger until it is given back, so nothing writes it while it is read here.
pub fn lent_frame(frame: &LentFrame) -> (&[u8], Option<xgate_xdp_common::FrameMeta>) {
    // SAFETY: the lending port outlives every lane thread (see above), so its UMEM is mapped
    // while `frame` can be borrowed.
    let bytes = unsafe { frame.bytes() };
    // SAFETY: as for `bytes`.
    let meta = unsafe { frame.meta() };
    (bytes, meta)
}

/// Whether the process runs with effective user id 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to process `pid` (positive).
pub fn send_signal(pid: i32, signal: i32) -> std::io::Result<()> {
    if pid <= 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) with a positive pid and a signal number has no memory effects.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Installs `handler` for each of `signals`. The handler must be async-signal-safe (an atomic
/// store, say).
pub fn on_signals(signals: &[i32], handler: extern "C" fn(i32)) {
    for &signal in signals {
        // SAFETY: installs a handler with an otherwise zeroed sigaction; the struct lives across
        // the call, and the caller promises the handler is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn an_eventfd_becomes_readable_when_signalled_and_drains() {
        let event = EventFd::new().unwrap();
        let started = std::time::Instant::now();
        event.signal();
        poll_readable([event.raw_fd()], 5_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
        event.drain();
        let started = std::time::Instant::now();
        poll_readable([event.raw_fd()], 50);
        assert!(started.elapsed() >= std::time::Duration::from_millis(40));
    }

    #[test]
    fn signalling_nonsense_pids_is_refused() {
        assert!(send_signal(0, libc::SIGHUP).is_err());
        assert!(send_signal(-1, libc::SIGHUP).is_err());
    }
}
