//! Size limits on what a client may send, enforced by request framing ([`crate::request`]).
//!
//! Invariants:
//! - `max_headers` never exceeds [`MAX_HEADERS`], the length of the fixed header array the
//!   responder parses into on the stack (the responder clamps it to `1..=MAX_HEADERS`);
//! - every limit is decided from bytes already received: a request that has passed a limit is
//!   refused at once, without waiting for the rest of it;
//! - a connection's receive buffer needs at most `max_header_bytes + max_body` bytes for any
//!   request the responder accepts.

/// Most header fields a request may have (the size of the on-stack header array).
pub const MAX_HEADERS: usize = 64;

/// Size limits applied to every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the request line (method, target, version, without CRLF) before 414.
    pub max_request_line: usize,
    /// Bytes of the whole head (request line and headers, with the blank line) before 431.
    pub max_header_bytes: usize,
    /// Header fields before 431; at most [`MAX_HEADERS`].
    pub max_headers: usize,
    /// Bytes of a request body before 413.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_headers: MAX_HEADERS,
            max_body: 1024 * 1024,
        }
    }
}
