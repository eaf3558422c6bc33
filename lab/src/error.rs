//! The lab's one error type: what went wrong building, using or removing a lab, with enough to
//! act on (the command that failed and what it said, the file or call, the value refused).

/// A lab operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A lab name the lab cannot derive its namespaces' and links' names from.
    #[error("lab name `{0}`: expected 1-40 characters of letters, digits, `-` or `_`")]
    BadName(String),
    /// A program the lab runs (ip, ethtool, sysctl, curl, ...) could not be started.
    #[error("cannot run `{program}`: {cause}{hint}")]
    CannotRun {
        program: String,
        cause: std::io::Error,
        /// How to get the program, if the lab knows.
        hint: &'static str,
    },
    /// A program the lab ran failed; `output` is what it said.
    #[error("`{command}` failed: {output}")]
    Failed { command: String, output: String },
    /// A file or system call.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    /// A request the lab refuses (an out-of-range flood plan, a path it cannot pass on).
    #[error("{0}")]
    Refused(String),
    /// A step of the demo that did not give what it should.
    #[error("{0}")]
    Demo(String),
}

impl LabError {
    /// An `Io` error about `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let what = what.into();
        move |cause| LabError::Io { what, cause }
    }
}
