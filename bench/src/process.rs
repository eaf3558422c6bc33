//! Process-wide concerns shared by the `xgate-bench` subcommands: the root check, and the
//! SIGINT/SIGTERM flag that makes every long loop stop and unwind (so that guards remove
//! namespaces, labs and scratch files).

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;

use xgate_gateway::sys;

/// Set by SIGINT or SIGTERM once [`install_interrupt_handlers`] has run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on Ctrl-C and SIGTERM set the interrupted flag instead of killing the process.
pub fn install_interrupt_handlers() {
    sys::on_signals(&[libc::SIGINT, libc::SIGTERM], note_interrupt);
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
    if !sys::is_root() {
        bail!("{why}");
    }
    Ok(())
}
