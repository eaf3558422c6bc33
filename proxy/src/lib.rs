//! xgate's HTTP/1.1 layer, free of I/O: it sees bytes a connection received and writes the bytes
//! to send back, so every rule here is tested deterministically without sockets, threads or time.
//! The connection owner (a lane) keeps the buffers and the sockets, and does what the verdicts
//! say.
//!
//! - [`request`] frames a client's request head and enforces the smuggling rules and [`limits`];
//!   [`authority`] is the syntax of its `Host` and of an absolute-form target's authority;
//! - [`chunked`] finds the end of a chunked body and checks its framing, byte by byte if need be;
//! - [`forward`] writes the head sent to an upstream, [`response`] frames the upstream's answer
//!   and writes the head the client gets, [`direct`] writes answers and errors of the gateway's
//!   own;
//! - [`routes`] is the route table, [`upstream`] the pools (member choice, Maglev, health),
//!   [`ratelimit`] the routes' rate limits (GCRA over a table the lanes share);
//! - [`gateway`] puts them together: one verdict per request head (refuse, answer, forward);
//! - [`exchange`] streams a forwarded request to its upstream and the response back, through
//!   the byte streams of [`stream`] (the sockets stay with the owner);
//! - [`responder`] is the fixed responder (`/healthz`) the micro benchmarks measure.
//!
//! Invariants:
//! - Nothing on the request path allocates: headers parse into fixed arrays on the stack and
//!   everything is written into the caller's buffers.
//! - A verdict either needs more bytes (consuming nothing) or concerns exactly the first request
//!   of its input; pipelined bytes after it are left for the next call.
//! - Anything that cannot be framed safely (syntax errors, smuggling patterns, limits) is answered
//!   with an error status and `close`, so a connection never continues in an ambiguous state.
//! - No `unsafe` code.

#![forbid(unsafe_code)]

pub mod authority;
pub mod chunked;
pub mod direct;
pub mod exchange;
mod fields;
pub mod forward;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz_checks;
pub mod gateway;
pub mod limits;
pub mod ratelimit;
pub mod request;
pub mod responder;
pub mod response;
pub mod routes;
pub mod stream;
pub mod upstream;
mod writer;

pub use chunked::{ChunkError, ChunkedDecoder, Feed};
pub use direct::{write_direct, write_error};
pub use exchange::{
    BodyLeft, End, Exchange, ExchangeTimeouts, Expiry, PumpContext, Pumped, RequestFault, ResponsePhase,
    SlotBuffers, UpstreamFault,
};
pub use forward::{write_upstream_head, ForwardOptions};
pub use limits::{Limits, MAX_HEADERS};
pub use request::{frame_request, BodyFraming, Refusal, RequestHead};
pub use responder::{Outcome, Responder, MIN_RESPONSE_BUFFER};
pub use response::{
    frame_response, write_client_head, ClientHeadOptions, ResponseBody, ResponseError, ResponseHead,
};
pub use stream::{Pair, Side, Stream, StreamPair, StreamState};
