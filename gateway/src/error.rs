//! The gateway's one error type for starting and running: what stopped `runtime::run`, with the
//! key, interface or call it concerns. Configuration errors have their own type
//! ([`crate::config::ConfigError`]), since they are found before anything starts.

/// Why the gateway could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The lanes do not fit the interface's queues or the cores (the message says how to fix it).
    #[error("{0}")]
    Lanes(String),
    /// Loading or attaching the XDP program, or one of its maps.
    #[error(transparent)]
    Steering(#[from] xgate_xdp::SteeringError),
    /// Opening a lane's AF_XDP socket and UMEM.
    #[error(transparent)]
    Port(#[from] xgate_userstack::xsk::XskError),
    /// The management listener's address cannot be bound.
    #[error(
        "config: key `metrics.listen`: cannot listen on {addr} (in use? another address, or metrics.enabled = false): {cause}"
    )]
    Management {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    /// A system call the runtime needs (eventfd, getrandom, ...).
    #[error("{what}: {cause}")]
    System {
        what: &'static str,
        cause: std::io::Error,
    },
    /// Writing the JSON events to stdout.
    #[error("writing events: {0}")]
    Events(#[from] std::io::Error),
    /// The HTTPS listener's certificates or keys cannot be used (the message names the file).
    #[error("{0}")]
    Tls(String),
    /// A lane's thread panicked (its panic message went to stderr).
    #[error("lane {0} panicked")]
    LanePanicked(usize),
}
