//! The access log: one JSON line per request on stdout, written by the lane that served it.
//!
//! Off by default (`http.access_log`): formatting a line costs about as much as answering a
//! small request. Lines collect in a per-lane buffer and go out in writes of whole lines of at
//! most [`PIPE_ATOMIC`] bytes, straight to file descriptor 1: the main thread holds Rust's stdout
//! lock for the `ready`/`stats`/`stopped` events, and a write of at most `PIPE_BUF` bytes to a
//! pipe is atomic, so lanes' lines and events never interleave mid-line.
//!
//! Invariant: the buffer never holds more than [`PIPE_ATOMIC`] bytes, so a line is written
//! whole; after start-up nothing here allocates (the buffer is reserved once, lines are formatted
//! into it with `write!`).

use std::{io::Write, net::SocketAddr};

/// The most bytes written at once (Linux's `PIPE_BUF`).
const PIPE_ATOMIC: usize = 4096;

/// One lane's access log.
pub struct AccessLog {
    lane: usize,
    buffer: Vec<u8>,
    /// Route names, by route index (replaced on reload).
    routes: Vec<Box<str>>,
}

impl AccessLog {
    pub fn new(lane: usize, routes: Vec<Box<str>>) -> AccessLog {
        AccessLog {
            lane,
            buffer: Vec::with_capacity(2 * PIPE_ATOMIC),
            routes,
        }
    }

    /// Route names after a reload.
    pub fn set_routes(&mut self, routes: Vec<Box<str>>) {
        self.routes = routes;
    }

    /// Adds a line for one request.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        at_ms: u64,
        client: Option<SocketAddr>,
        route: usize,
        upstream: Option<SocketAddr>,
        status: u16,
        bytes: u64,
        duration_ms: u64,
    ) {
        let start = self.buffer.len();
        let route = self.routes.get(route).map_or("-", |r| r);
        let _ = write!(
            self.buffer,
            "{{\"event\":\"access\",\"lane\":{},\"t_ms\":{at_ms},\"client\":\"",
            self.lane
        );
        match client {
            Some(endpoint) => {
                let _ = write!(self.buffer, "{endpoint}");
            }
            None => self.buffer.push(b'-'),
        }
        let _ = write!(self.buffer, "\",\"route\":\"{route}\",\"upstream\":\"");
        match upstream {
            Some(addr) => {
                let _ = write!(self.buffer, "{addr}");
            }
            None => self.buffer.push(b'-'),
        }
        let _ = writeln!(
            self.buffer,
            "\",\"status\":{status},\"bytes\":{bytes},\"duration_ms\":{duration_ms}}}"
        );
        if self.buffer.len() > PIPE_ATOMIC {
            // Write what came before this line, then keep the line.
            let line = start;
            crate::sys::write_stdout(&self.buffer[..line]);
            self.buffer.drain(..line);
        }
    }

    /// Writes the buffered lines.
    pub fn flush(&mut self) {
        if !self.buffer.is_empty() {
            crate::sys::write_stdout(&self.buffer);
            self.buffer.clear();
        }
    }
}
