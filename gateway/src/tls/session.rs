//! One connection's TLS record layer: a rustls `ServerConnection` between the TCP socket and
//! the HTTP code, and the plaintext the HTTP code has not read yet.
//!
//! [`TlsSession::pump`] moves bytes as far as they can go: ciphertext the socket holds into
//! rustls, plaintext rustls decrypted into the session's staging buffer (where the HTTP code can
//! peek at it, which rustls's reader cannot offer), and records rustls has to send (handshake
//! flights, alerts, application data) into the socket. Every use of the session through the
//! transport seam pumps first, so a handshake advances whenever the lane looks at the
//! connection, as it does on every segment that arrives.
//!
//! Invariants:
//! - Plaintext is accepted for sending only as far as its records fit in the socket's send
//!   buffer now ([`TlsSession::send_room`]), and is encrypted and queued at once: rustls never
//!   holds application data the socket could not take, so "sent" means "in the socket", as for
//!   plain TCP.
//! - Copies: ciphertext from the socket's buffer into rustls, plaintext from rustls into the
//!   staging buffer and from there into the request slot; on the way out, plaintext into rustls
//!   and records into the socket's buffer. rustls allocates while it holds records (its buffers
//!   are chunk lists); the staging buffer is allocated once per connection.
//! - A failed session (a protocol error, a bad record, an unknown server name refused) sends its
//!   alert and receives nothing more; the lane closes the connection.

use std::{
    io::{self, Read, Write},
    sync::Arc,
};

use rustls::{ServerConfig, ServerConnection};
use smoltcp::socket::tcp;

/// Bytes of plaintext staged for the HTTP code (one full TLS record).
pub const STAGING_BYTES: usize = 16 * 1024;
/// Bytes a record adds to its plaintext at most (header 5, explicit nonce 8 in TLS 1.2 GCM,
/// tag 16, content type 1 in TLS 1.3, rounded up).
const RECORD_OVERHEAD: usize = 32;
/// Plaintext bytes per record.
const RECORD_PLAINTEXT: usize = 16 * 1024;

/// How a session's handshake ended, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// A full handshake, or a resumed one, at this version (`true`: TLS 1.3).
    Done { tls13: bool, resumed: bool },
    /// Failed: a protocol error or alert.
    Failed(FailureKind),
}

/// Why a session failed, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Bytes that are not TLS (garbage, or plaintext HTTP on the TLS port).
    NotTls,
    /// No certificate for the server name asked (`refuse_unknown_names`).
    UnknownName,
    /// No protocol version, cipher suite or group in common.
    NoCommonParameters,
    /// The peer sent an alert (its certificate check failed, say).
    PeerAlert,
    /// Any other protocol error (a bad record, a bad message, a decryption failure).
    Protocol,
}

impl FailureKind {
    pub const ALL: [FailureKind; 5] = [
        FailureKind::NotTls,
        FailureKind::UnknownName,
        FailureKind::NoCommonParameters,
        FailureKind::PeerAlert,
        FailureKind::Protocol,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::NotTls => "not_tls",
            FailureKind::UnknownName => "unknown_name",
            FailureKind::NoCommonParameters => "no_common_parameters",
            FailureKind::PeerAlert => "peer_alert",
            FailureKind::Protocol => "protocol",
        }
    }

    fn of(error: &rustls::Error) -> FailureKind {
        use rustls::{Error, PeerIncompatible, PeerMisbehaved};
        match error {
            Error::InvalidMessage(_) => FailureKind::NotTls,
            Error::AlertReceived(_) => FailureKind::PeerAlert,
            Error::General(text) if text.contains("no server certificate chain resolved") => {
                FailureKind::UnknownName
            }
            Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon
                | PeerIncompatible::NoKxGroupsInCommon
                | PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::SupportedVersionsExtensionRequired,
            ) => FailureKind::NoCommonParameters,
            Error::PeerMisbehaved(PeerMisbehaved::ServerNameMustContainOneHostName) => {
                FailureKind::UnknownName
            }
            _ => FailureKind::Protocol,
        }
    }
}

/// One connection's TLS state (over any [`Transport`]; the lanes' is a TCP socket).
pub struct TlsSession {
    conn: ServerConnection,
    /// Decrypted bytes not yet read by the HTTP code: `staging[start..end]`.
    staging: Box<[u8]>,
    start: usize,
    end: usize,
    /// The peer sent close_notify (or closed TCP): nothing more will arrive.
    peer_done: bool,
    failure: Option<FailureKind>,
    /// The handshake's outcome, until the lane takes it to count it.
    outcome: Option<HandshakeOutcome>,
    /// The end of the handshake has been recorded in `outcome`.
    noted: bool,
    /// When the session was created (lane milliseconds), for the handshake timeout and the
    /// handshake-duration histogram.
    pub started_ms: u64,
    pub started_ns: u64,
}

/// What a session needs of the byte stream under it: a TCP socket, or a test's pipe.
pub trait Transport {
    /// Bytes are waiting to be read.
    fn can_recv(&self) -> bool;
    /// Reads into `buf`; 0 when nothing is waiting.
    fn recv_into(&mut self, buf: &mut [u8]) -> usize;
    /// The peer has closed its side (or the connection is gone) and nothing is left unread.
    fn peer_finished(&self) -> bool;
    /// Queues the first bytes of `bytes` that fit; returns how many.
    fn send_from(&mut self, bytes: &[u8]) -> usize;
    /// Bytes the send buffer has room for now.
    fn send_room(&self) -> usize;
}

impl Transport for tcp::Socket<'_> {
    fn can_recv(&self) -> bool {
        tcp::Socket::can_recv(self)
    }

    fn recv_into(&mut self, buf: &mut [u8]) -> usize {
        self.recv_slice(buf).unwrap_or(0)
    }

    fn peer_finished(&self) -> bool {
        !tcp::Socket::can_recv(self)
            && matches!(
                self.state(),
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
                    | tcp::State::Closed
            )
    }

    fn send_from(&mut self, bytes: &[u8]) -> usize {
        if !self.may_send() {
            return 0;
        }
        self.send_slice(bytes).unwrap_or(0)
    }

    fn send_room(&self) -> usize {
        self.send_capacity() - self.send_queue()
    }
}

/// The transport as rustls's source of ciphertext: `WouldBlock` when nothing is buffered, end
/// of stream only when the peer has closed.
struct Reader<'a, T: Transport + ?Sized>(&'a mut T);

impl<T: Transport + ?Sized> Read for Reader<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.recv_into(buf) {
            0 if self.0.peer_finished() => Ok(0),
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

/// The transport as rustls's sink of records: `WouldBlock` when its buffer is full.
struct Writer<'a, T: Transport + ?Sized>(&'a mut T);

impl<T: Transport + ?Sized> Write for Writer<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.send_from(buf) {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    /// A session for a new connection.
    pub fn new(config: Arc<ServerConfig>, now_ms: u64, now_ns: u64) -> Result<TlsSession, rustls::Error> {
        Ok(TlsSession {
            conn: ServerConnection::new(config)?,
            staging: vec![0; STAGING_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            peer_done: false,
            failure: None,
            outcome: None,
            noted: false,
            started_ms: now_ms,
            started_ns: now_ns,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub fn failure(&self) -> Option<FailureKind> {
        self.failure
    }

    /// The handshake's outcome, once, when it has one.
    pub fn take_outcome(&mut self) -> Option<HandshakeOutcome> {
        self.outcome.take()
    }

    /// Moves bytes as far as they go (see the module docs). Returns whether anything moved.
    pub fn pump(&mut self, socket: &mut (impl Transport + ?Sized)) -> bool {
        let mut moved = self.flush(socket);
        while self.failure.is_none() && self.conn.wants_read() && socket.can_recv() {
            match self.conn.read_tls(&mut Reader(socket)) {
                Ok(0) => {
                    self.peer_done = true;
                    break;
                }
                Ok(_) => moved = true,
                Err(_) => break,
            }
            match self.conn.process_new_packets() {
                Ok(state) => {
                    if state.peer_has_closed() {
                        self.peer_done = true;
                    }
                }
                Err(error) => {
                    let kind = FailureKind::of(&error);
                    self.failure = Some(kind);
                    if !self.noted {
                        self.noted = true;
                        self.outcome = Some(HandshakeOutcome::Failed(kind));
                    }
                }
            }
            self.note_handshake_end();
            self.refill();
            moved |= self.flush(socket);
        }
        if socket.peer_finished() {
            self.peer_done = true;
        }
        self.refill();
        moved
    }

    /// Records the outcome when the handshake has just ended.
    fn note_handshake_end(&mut self) {
        if self.noted || self.failure.is_some() || self.conn.is_handshaking() {
            return;
        }
        self.noted = true;
        self.outcome = Some(HandshakeOutcome::Done {
            tls13: self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
            resumed: matches!(self.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        });
    }

    /// Decrypted bytes from rustls into the staging buffer, as far as it has room.
    fn refill(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.end == self.staging.len() {
            self.staging.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < self.staging.len() {
            match self.conn.reader().read(&mut self.staging[self.end..]) {
                Ok(0) => {
                    self.peer_done = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(_) => break,
            }
        }
    }

    /// Queued records into the socket, as far as it has room. Whether any moved.
    fn flush(&mut self, socket: &mut (impl Transport + ?Sized)) -> bool {
        let mut moved = false;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Writer(socket)) {
                Ok(n) if n > 0 => moved = true,
                _ => break,
            }
        }
        moved
    }

    /// Records are waiting for room in the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Plaintext the socket's free room can take as records now.
    pub fn send_room(&self, socket_room: usize) -> usize {
        if self.conn.is_handshaking() || self.failure.is_some() || self.conn.wants_write() {
            return 0;
        }
        let records = socket_room / (RECORD_PLAINTEXT + RECORD_OVERHEAD) + 1;
        socket_room.saturating_sub(records * RECORD_OVERHEAD)
    }

    /// Encrypts as much of `bytes` as fits now into the socket. Returns how many were taken.
    pub fn send(&mut self, socket: &mut (impl Transport + ?Sized), bytes: &[u8]) -> usize {
        let room = self.send_room(socket.send_room());
        let n = bytes.len().min(room);
        if n == 0 {
            return 0;
        }
        let taken = self.conn.writer().write(&bytes[..n]).unwrap_or(0);
        self.flush(socket);
        taken
    }

    /// Unread plaintext.
    pub fn buffered(&self) -> &[u8] {
        &self.staging[self.start..self.end]
    }

    /// The staging buffer is full: nothing more is decrypted until the HTTP code reads.
    pub fn staging_full(&self) -> bool {
        self.start == 0 && self.end == self.staging.len()
    }

    /// Drops the first `count` unread bytes and decrypts more into the room they leave.
    pub fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.end);
        self.refill();
    }

    /// Nothing more will be received (close_notify, TCP closed, or the session failed).
    pub fn peer_done(&self) -> bool {
        self.peer_done || self.failure.is_some()
    }

    /// Sends close_notify (queued behind any records waiting).
    pub fn close(&mut self, socket: &mut (impl Transport + ?Sized)) {
        if self.failure.is_none() {
            self.conn.send_close_notify();
        }
        self.flush(socket);
    }
}

#[cfg(test)]
mod tests;
