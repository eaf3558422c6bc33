//! The transport seam: how the lane reads and writes the bytes of a connection.
//!
//! Every byte the lane exchanges with a client or an upstream goes through a [`SocketStream`]
//! (one TCP socket seen as the HTTP crate's [`Stream`]) or a [`SocketPair`] (the two ends of a
//! proxied exchange as a [`StreamPair`]); nothing else in the crate calls a socket's
//! `send_slice`, `recv_slice` or `peek_slice`. Plain TCP is the only transport today; a TLS
//! record layer (or HTTP/2 framing) goes here, between the socket and the HTTP code: a stream
//! whose `recv`/`peek` yield plaintext and whose `send` encrypts, with its per-connection state
//! beside the socket. The proxy logic (`xgate_proxy::exchange`) and the lane's client side only
//! see the stream.
//!
//! Invariant: a stream borrows its socket for one call site only; it holds no bytes of its own
//! (plain TCP adds no buffering and no copy beyond the socket's own buffers).

use smoltcp::socket::tcp;
use xgate_proxy::stream::{Side, Stream, StreamPair, StreamState};
use xgate_userstack::tcp_server::{ConnId, TcpServer};

/// One TCP socket as a byte stream (borrowed for `'a`; its buffers live for `'m`).
pub struct SocketStream<'a, 'm> {
    socket: &'a mut tcp::Socket<'m>,
}

impl<'a, 'm> SocketStream<'a, 'm> {
    /// Connection `id` of `server`.
    pub fn of(server: &'a mut TcpServer<'m>, id: ConnId) -> SocketStream<'a, 'm> {
        SocketStream {
            socket: server.socket(id),
        }
    }

    /// The peer closed its sending side and we have not closed ours (CLOSE-WAIT).
    pub fn peer_closed(&self) -> bool {
        self.socket.state() == tcp::State::CloseWait
    }

    /// Closes our sending side (a FIN once the queued bytes are out).
    pub fn close(&mut self) {
        self.socket.close();
    }

    /// Resets the connection (a RST; queued bytes are dropped).
    pub fn abort(&mut self) {
        self.socket.abort();
    }

    /// Drops every byte received so far; returns whether there were any.
    pub fn discard_received(&mut self) -> bool {
        let mut any = false;
        while let Ok(n) = self.socket.recv(|bytes| (bytes.len(), bytes.len())) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }

    /// The peer's IP address, once connected.
    pub fn remote_ip(&self) -> Option<std::net::IpAddr> {
        self.socket.remote_endpoint().map(|endpoint| endpoint.addr.into())
    }

    /// Bytes queued to send and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.socket.send_queue()
    }
}

impl Stream for SocketStream<'_, '_> {
    fn state(&mut self) -> StreamState {
        match self.socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => StreamState::Connecting,
            tcp::State::Established => StreamState::Established,
            tcp::State::Closed | tcp::State::TimeWait => StreamState::Closed,
            _ => StreamState::Closing,
        }
    }

    fn may_send(&mut self) -> bool {
        self.socket.may_send()
    }

    fn send_room(&mut self) -> usize {
        self.socket.send_capacity() - self.socket.send_queue()
    }

    fn send(&mut self, bytes: &[u8]) -> usize {
        if !self.socket.may_send() {
            return 0;
        }
        self.socket.send_slice(bytes).unwrap_or(0)
    }

    fn may_recv(&mut self) -> bool {
        self.socket.may_recv()
    }

    fn can_recv(&mut self) -> bool {
        self.socket.can_recv()
    }

    fn recv_full(&mut self) -> bool {
        self.socket.recv_queue() == self.socket.recv_capacity()
    }

    fn peek(&mut self, buf: &mut [u8]) -> usize {
        self.socket.peek_slice(buf).unwrap_or(0)
    }

    fn consume(&mut self, mut count: usize) {
        while count > 0 {
            match self.socket.recv(|bytes| {
                let n = bytes.len().min(count);
                (n, n)
            }) {
                Ok(0) | Err(_) => break,
                Ok(n) => count -= n,
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.socket.recv_slice(buf).unwrap_or(0)
    }
}

/// The two ends of one proxied exchange, both sockets of one lane's server.
pub struct SocketPair<'a, 'm> {
    pub server: &'a mut TcpServer<'m>,
    pub client: ConnId,
    pub upstream: ConnId,
}

impl<'m> SocketPair<'_, 'm> {
    fn stream(&mut self, side: Side) -> SocketStream<'_, 'm> {
        let id = match side {
            Side::Client => self.client,
            Side::Upstream => self.upstream,
        };
        SocketStream::of(self.server, id)
    }
}

impl StreamPair for SocketPair<'_, '_> {
    fn state(&mut self, side: Side) -> StreamState {
        self.stream(side).state()
    }

    fn may_send(&mut self, side: Side) -> bool {
        self.stream(side).may_send()
    }

    fn send_room(&mut self, side: Side) -> usize {
        self.stream(side).send_room()
    }

    fn send(&mut self, side: Side, bytes: &[u8]) -> usize {
        self.stream(side).send(bytes)
    }

    fn may_recv(&mut self, side: Side) -> bool {
        self.stream(side).may_recv()
    }

    fn can_recv(&mut self, side: Side) -> bool {
        self.stream(side).can_recv()
    }

    fn recv_full(&mut self, side: Side) -> bool {
        self.stream(side).recv_full()
    }

    fn peek(&mut self, side: Side, buf: &mut [u8]) -> usize {
        self.stream(side).peek(buf)
    }

    fn consume(&mut self, side: Side, count: usize) {
        self.stream(side).consume(count)
    }
}
