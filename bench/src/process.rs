//! Process-wide concerns shared by the `xgate-bench` subcommands: the root check, and the
//! SIGINT/SIGTERM flag that makes every long loop stop and unwind (so that guards remove
//! namespaces, labs and scratch files).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;

/// Set by SIGINT or SIGTERM once [`install_interrupt_handlers`] has run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs `handler` for `signal`, without SA_RESTART: a blocking system call in progress
/// returns EINTR, so the caller's loop sees its flag.
pub fn set_signal_handler(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: an all-zero sigaction is a valid value; the handlers given here are
    // async-signal-safe (an atomic store, or nothing), and sigaction only reads the struct it is
    // given, which lives across the call.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// From now on Ctrl-C and SIGTERM set the interrupted flag instead of killing the process.
pub fn install_interrupt_handlers() {
    set_signal_handler(libc::SIGINT, note_interrupt);
    set_signal_handler(libc::SIGTERM, note_interrupt);
}

/// Whether SIGINT or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error once SIGINT or SIGTERM has arrived, so that `?` unwinds.
pub fn check_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Fails with `why` unless this process runs as root.
pub fn require_root(why: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{why}");
    }
    Ok(())
}
