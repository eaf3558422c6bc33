//! xgate's HTTP/1.1 layer, free of I/O: it sees bytes a connection received and writes the bytes
//! to send back, so every rule here is tested deterministically without sockets, threads or time.
//! The connection owner (the lane's HTTP worker) keeps the receive buffer, drops the bytes each
//! answered request consumed, sends the response, and closes when told to.
//!
//! - [`limits`] owns the size limits a client's request must fit in;
//! - [`responder`] owns request framing, keep-alive decisions, routing and response bytes.
//!
//! Invariants:
//! - [`Responder::handle`] allocates nothing: headers parse into a fixed array on the stack and
//!   the response is written into the caller's buffer.
//! - It either needs more bytes (consuming nothing) or answers exactly the first request in its
//!   input, saying how many input bytes that request used; pipelined bytes after it are left for
//!   the next call.
//! - Anything it cannot frame safely (syntax errors, smuggling patterns, limits) is answered with
//!   an error status and `close`, so a connection never continues in an ambiguous state.
//! - No `unsafe` code.

#![forbid(unsafe_code)]

pub mod chunked;
pub mod direct;
mod fields;
pub mod forward;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod gateway;
pub mod limits;
pub mod request;
pub mod responder;
pub mod response;
pub mod routes;
pub mod upstream;
mod writer;

pub use chunked::{ChunkError, ChunkedDecoder, Feed};
pub use direct::{write_direct, write_error};
pub use forward::{write_upstream_head, ForwardOptions};
pub use limits::{Limits, MAX_HEADERS};
pub use request::{frame_request, BodyFraming, Refusal, RequestHead};
pub use responder::{Outcome, Responder, MIN_RESPONSE_BUFFER};
pub use response::{
    frame_response, write_client_head, ClientHeadOptions, ResponseBody, ResponseError, ResponseHead,
};
