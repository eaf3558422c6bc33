//! The transport seam: how the lane reads and writes the bytes of a connection.
//!
//! Every byte the lane exchanges with a client or an upstream goes through a [`SocketStream`]
//! (one TCP socket seen as the HTTP crate's [`Stream`]) or a [`SocketPair`] (the two ends of a
//! proxied exchange as a [`StreamPair`]); nothing else in the crate calls a socket's
//! `send_slice`, `recv_slice` or `peek_slice`. Two transports: plain TCP, and TLS, whose record
//! layer ([`TlsSession`], kept per connection beside the socket) sits between the socket and
//! the HTTP code: its stream's `recv`/`peek` yield plaintext and its `send` encrypts. The proxy
//! logic (`xgate_proxy::exchange`) and the lane's client side only see the stream.
//!
//! Invariants: a stream borrows its socket (and its session) for one call site only; a plain
//! stream holds no bytes of its own (no buffering and no copy beyond the socket's own
//! buffers); a TLS stream pumps its session when it is made, so a handshake advances whenever
//! the lane looks at the connection.

use smoltcp::socket::tcp;
use xgate_proxy::stream::{Side, Stream, StreamPair, StreamState};
use xgate_userstack::tcp_server::{ConnId, TcpServer};

use crate::tls::session::TlsSession;

/// One TCP socket as a byte stream (borrowed for `'a`; its buffers live for `'m`), through its
/// TLS session when it has one.
pub struct SocketStream<'a, 'm> {
    socket: &'a mut tcp::Socket<'m>,
    tls: Option<&'a mut TlsSession>,
    /// The TLS pump moved bytes when the stream was made.
    pumped: bool,
}

impl<'a, 'm> SocketStream<'a, 'm> {
    /// Connection `id` of `server`, plain TCP.
    pub fn of(server: &'a mut TcpServer<'m>, id: ConnId) -> SocketStream<'a, 'm> {
        SocketStream {
            socket: server.socket(id),
            tls: None,
            pumped: false,
        }
    }

    /// Connection `id` of `server` through `tls` when it is given (the session is pumped first).
    pub fn with_tls(
        server: &'a mut TcpServer<'m>,
        id: ConnId,
        tls: Option<&'a mut TlsSession>,
    ) -> SocketStream<'a, 'm> {
        let socket = server.socket(id);
        let mut tls = tls;
        let pumped = tls.as_deref_mut().is_some_and(|session| session.pump(socket));
        SocketStream { socket, tls, pumped }
    }

    /// The TLS session moved bytes (a handshake flight, an alert) when the stream was made.
    pub fn pumped(&self) -> bool {
        self.pumped
    }

    /// The TLS session, if the connection has one.
    pub fn tls(&mut self) -> Option<&mut TlsSession> {
        self.tls.as_deref_mut()
    }

    /// The peer closed its sending side (CLOSE-WAIT, or a TLS close_notify) and we have not
    /// closed ours.
    pub fn peer_closed(&self) -> bool {
        self.socket.state() == tcp::State::CloseWait
            || self
                .tls
                .as_deref()
                .is_some_and(|tls| tls.peer_done() && tls.buffered().is_empty() && self.socket.may_send())
    }

    /// Closes our sending side (a TLS close_notify, then a FIN once the queued bytes are out).
    pub fn close(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.close(self.socket);
        }
        self.socket.close();
    }

    /// Resets the connection (a RST; queued bytes are dropped).
    pub fn abort(&mut self) {
        self.socket.abort();
    }

    /// Drops every byte received so far; returns whether there were any.
    pub fn discard_received(&mut self) -> bool {
        if let Some(tls) = self.tls.as_deref_mut() {
            let mut any = false;
            while !tls.buffered().is_empty() {
                any = true;
                tls.consume(tls.buffered().len());
                tls.pump(self.socket);
            }
            if tls.failure().is_none() {
                return any;
            }
            // A failed session reads nothing more: what the peer still sends is dropped as
            // it comes, as for a plain connection that is closing.
        }
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

    /// Bytes queued to send and not yet acknowledged (a TLS record still waiting for room
    /// counts as one).
    pub fn unacknowledged(&self) -> usize {
        self.socket.send_queue() + usize::from(self.tls.as_deref().is_some_and(TlsSession::wants_write))
    }
}

impl Stream for SocketStream<'_, '_> {
    fn state(&mut self) -> StreamState {
        if let Some(tls) = self.tls.as_deref() {
            if tls.failure().is_some() {
                return StreamState::Closing;
            }
            if tls.is_handshaking() && self.socket.state() == tcp::State::Established {
                return StreamState::Connecting;
            }
        }
        match self.socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => StreamState::Connecting,
            tcp::State::Established => StreamState::Established,
            tcp::State::Closed | tcp::State::TimeWait => StreamState::Closed,
            _ => StreamState::Closing,
        }
    }

    fn may_send(&mut self) -> bool {
        match self.tls.as_deref() {
            Some(tls) => self.socket.may_send() && !tls.is_handshaking() && tls.failure().is_none(),
            None => self.socket.may_send(),
        }
    }

    fn send_room(&mut self) -> usize {
        let room = self.socket.send_capacity() - self.socket.send_queue();
        match self.tls.as_deref() {
            Some(tls) => tls.send_room(room),
            None => room,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> usize {
        if !self.socket.may_send() {
            return 0;
        }
        match self.tls.as_deref_mut() {
            Some(tls) => tls.send(self.socket, bytes),
            None => self.socket.send_slice(bytes).unwrap_or(0),
        }
    }

    fn may_recv(&mut self) -> bool {
        match self.tls.as_deref() {
            Some(tls) => !tls.buffered().is_empty() || (!tls.peer_done() && self.socket.may_recv()),
            None => self.socket.may_recv(),
        }
    }

    fn can_recv(&mut self) -> bool {
        match self.tls.as_deref() {
            Some(tls) => !tls.buffered().is_empty(),
            None => self.socket.can_recv(),
        }
    }

    fn recv_full(&mut self) -> bool {
        match self.tls.as_deref() {
            Some(tls) => tls.staging_full(),
            None => self.socket.recv_queue() == self.socket.recv_capacity(),
        }
    }

    fn peek(&mut self, buf: &mut [u8]) -> usize {
        match self.tls.as_deref() {
            Some(tls) => {
                let plain = tls.buffered();
                let n = plain.len().min(buf.len());
                buf[..n].copy_from_slice(&plain[..n]);
                n
            }
            None => self.socket.peek_slice(buf).unwrap_or(0),
        }
    }

    fn consume(&mut self, mut count: usize) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.consume(count);
            // The room it left may let more ciphertext in.
            tls.pump(self.socket);
            return;
        }
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
        if self.tls.is_some() {
            let n = self.peek(buf);
            self.consume(n);
            return n;
        }
        self.socket.recv_slice(buf).unwrap_or(0)
    }
}

/// The two ends of one proxied exchange, both sockets of one lane's server; the client's
/// through its TLS session when it has one.
pub struct SocketPair<'a, 'm> {
    pub server: &'a mut TcpServer<'m>,
    pub client: ConnId,
    pub client_tls: Option<&'a mut TlsSession>,
    pub upstream: ConnId,
}

impl<'m> SocketPair<'_, 'm> {
    fn stream(&mut self, side: Side) -> SocketStream<'_, 'm> {
        match side {
            Side::Client => SocketStream::with_tls(self.server, self.client, self.client_tls.as_deref_mut()),
            Side::Upstream => SocketStream::of(self.server, self.upstream),
        }
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
