//! The transport seam: one byte stream (a TCP connection) as the HTTP layer sees it, and the two
//! ends of a proxied exchange.
//!
//! The methods mirror what the lane uses of a smoltcp TCP socket, with the same meanings, so an
//! implementation over a socket is one line per method:
//! - [`Stream::may_send`] is smoltcp's `may_send` (ESTABLISHED or CLOSE-WAIT), and
//!   [`Stream::send`] queues nothing (returns 0) when it is false;
//! - [`Stream::may_recv`] is smoltcp's `may_recv`: the peer has not closed, or bytes are still
//!   buffered;
//! - [`Stream::peek`] copies buffered bytes whatever the state (smoltcp's `peek_slice`), and
//!   [`Stream::consume`] drops bytes already peeked.
//!
//! `MemoryStream` (tests, or the `testing` feature) is an in-memory stream whose peer the test
//! plays by hand.

/// Where a connection is, as the HTTP layer needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// The handshake has not ended (SYN sent or received).
    Connecting,
    /// Open both ways.
    Established,
    /// Any other state where the connection still exists: FIN exchanged one way, etc.
    Closing,
    /// Closed (or reset) or in TIME-WAIT: gone.
    Closed,
}

/// One byte stream.
pub trait Stream {
    /// Where the connection is.
    fn state(&mut self) -> StreamState;
    /// The local side may still send (smoltcp `may_send`: ESTABLISHED or CLOSE-WAIT).
    fn may_send(&mut self) -> bool;
    /// Bytes the send buffer has room for now (send capacity minus send queue).
    fn send_room(&mut self) -> usize;
    /// Queues the first bytes of `bytes` that fit; returns how many (0 when it may not send).
    fn send(&mut self, bytes: &[u8]) -> usize;
    /// Bytes may still be received, or are buffered (smoltcp `may_recv`).
    fn may_recv(&mut self) -> bool;
    /// Bytes are buffered unread.
    fn can_recv(&mut self) -> bool;
    /// The receive buffer is full (its queue is its capacity).
    fn recv_full(&mut self) -> bool;
    /// Copies the first unread bytes into `buf`; consumes none. Returns how many.
    fn peek(&mut self, buf: &mut [u8]) -> usize;
    /// Drops the first `count` unread bytes (already peeked).
    fn consume(&mut self, count: usize);
    /// Reads the first unread bytes into `buf`; returns how many.
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = self.peek(buf);
        self.consume(n);
        n
    }
}

/// Which end of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client's connection to the gateway.
    Client,
    /// The gateway's connection to the upstream member.
    Upstream,
}

/// The two ends of one exchange: [`Stream`]'s methods with the end they concern first. Both
/// ends may live in one socket set, which can lend only one socket at a time, so the owner
/// answers one call at a time rather than handing out two streams.
pub trait StreamPair {
    /// [`Stream::state`] of `side`.
    fn state(&mut self, side: Side) -> StreamState;
    /// [`Stream::may_send`] of `side`.
    fn may_send(&mut self, side: Side) -> bool;
    /// [`Stream::send_room`] of `side`.
    fn send_room(&mut self, side: Side) -> usize;
    /// [`Stream::send`] on `side`.
    fn send(&mut self, side: Side, bytes: &[u8]) -> usize;
    /// [`Stream::may_recv`] of `side`.
    fn may_recv(&mut self, side: Side) -> bool;
    /// [`Stream::can_recv`] of `side`.
    fn can_recv(&mut self, side: Side) -> bool;
    /// [`Stream::recv_full`] of `side`.
    fn recv_full(&mut self, side: Side) -> bool;
    /// [`Stream::peek`] on `side`.
    fn peek(&mut self, side: Side, buf: &mut [u8]) -> usize;
    /// [`Stream::consume`] on `side`.
    fn consume(&mut self, side: Side, count: usize);
}

/// Two separate streams as a [`StreamPair`].
#[derive(Debug)]
pub struct Pair<'a, C: Stream, U: Stream> {
    pub client: &'a mut C,
    pub upstream: &'a mut U,
}

impl<'a, C: Stream, U: Stream> Pair<'a, C, U> {
    /// The pair of `client` and `upstream`.
    pub fn new(client: &'a mut C, upstream: &'a mut U) -> Pair<'a, C, U> {
        Pair { client, upstream }
    }

    fn side(&mut self, side: Side) -> &mut dyn Stream {
        match side {
            Side::Client => self.client,
            Side::Upstream => self.upstream,
        }
    }
}

impl<C: Stream, U: Stream> StreamPair for Pair<'_, C, U> {
    fn state(&mut self, side: Side) -> StreamState {
        self.side(side).state()
    }

    fn may_send(&mut self, side: Side) -> bool {
        self.side(side).may_send()
    }

    fn send_room(&mut self, side: Side) -> usize {
        self.side(side).send_room()
    }

    fn send(&mut self, side: Side, bytes: &[u8]) -> usize {
        self.side(side).send(bytes)
    }

    fn may_recv(&mut self, side: Side) -> bool {
        self.side(side).may_recv()
    }

    fn can_recv(&mut self, side: Side) -> bool {
        self.side(side).can_recv()
    }

    fn recv_full(&mut self, side: Side) -> bool {
        self.side(side).recv_full()
    }

    fn peek(&mut self, side: Side, buf: &mut [u8]) -> usize {
        self.side(side).peek(buf)
    }

    fn consume(&mut self, side: Side, count: usize) {
        self.side(side).consume(count)
    }
}

#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryStream;

#[cfg(any(test, feature = "testing"))]
mod memory {
    use std::collections::VecDeque;

    use super::{Stream, StreamState};

    /// An in-memory [`Stream`] for tests; the test plays the peer.
    ///
    /// - What the local side sends is kept in [`sent`](MemoryStream::sent) and occupies send
    ///   room until the peer takes it ([`take_sent`](MemoryStream::take_sent)) or acknowledges
    ///   it ([`drain_sent`](MemoryStream::drain_sent)).
    /// - What the peer sends ([`deliver`](MemoryStream::deliver)) waits in a receive buffer of
    ///   fixed capacity.
    /// - [`peer_close`](MemoryStream::peer_close) is the peer's FIN: an established stream
    ///   becomes [`Closing`](StreamState::Closing) (CLOSE-WAIT: it may still send, and receive
    ///   what is buffered). A stream set to `Closing` by hand without a peer FIN is one the local
    ///   side closed (FIN-WAIT: it may receive, not send).
    /// - [`reset`](MemoryStream::reset) is a RST: closed, buffered bytes dropped.
    #[derive(Clone, Debug)]
    pub struct MemoryStream {
        state: StreamState,
        send_capacity: usize,
        /// Bytes sent and not yet taken by the test.
        sent: Vec<u8>,
        /// Bytes sent that still occupy send room.
        queued: usize,
        recv_capacity: usize,
        inbox: VecDeque<u8>,
        peer_fin: bool,
    }

    impl MemoryStream {
        /// An established stream with these buffer sizes.
        pub fn new(send_capacity: usize, recv_capacity: usize) -> MemoryStream {
            MemoryStream {
                state: StreamState::Established,
                send_capacity,
                sent: Vec::new(),
                queued: 0,
                recv_capacity,
                inbox: VecDeque::new(),
                peer_fin: false,
            }
        }

        /// A stream still in its handshake.
        pub fn connecting(send_capacity: usize, recv_capacity: usize) -> MemoryStream {
            let mut stream = MemoryStream::new(send_capacity, recv_capacity);
            stream.state = StreamState::Connecting;
            stream
        }

        /// Sets the state as is (buffers and FIN unchanged).
        pub fn set_state(&mut self, state: StreamState) {
            self.state = state;
        }

        /// The peer sends `bytes`: as many as the receive buffer has room for are buffered;
        /// returns how many.
        pub fn deliver(&mut self, bytes: &[u8]) -> usize {
            let n = bytes
                .len()
                .min(self.recv_capacity.saturating_sub(self.inbox.len()));
            self.inbox.extend(&bytes[..n]);
            n
        }

        /// The peer's FIN: it sends nothing more.
        pub fn peer_close(&mut self) {
            self.peer_fin = true;
            if self.state == StreamState::Established {
                self.state = StreamState::Closing;
            }
        }

        /// A RST: closed, buffered bytes dropped.
        pub fn reset(&mut self) {
            self.state = StreamState::Closed;
            self.inbox.clear();
            self.peer_fin = true;
        }

        /// Everything sent since the last [`take_sent`](MemoryStream::take_sent).
        pub fn sent(&self) -> &[u8] {
            &self.sent
        }

        /// The peer reads everything sent: returns it and frees all send room.
        pub fn take_sent(&mut self) -> Vec<u8> {
            self.queued = 0;
            std::mem::take(&mut self.sent)
        }

        /// The peer acknowledges `count` more of the sent bytes, freeing their room
        /// ([`sent`](MemoryStream::sent) still shows them).
        pub fn drain_sent(&mut self, count: usize) {
            self.queued -= count.min(self.queued);
        }

        /// Bytes the peer sent that are still unread.
        pub fn unread(&self) -> usize {
            self.inbox.len()
        }
    }

    impl Stream for MemoryStream {
        fn state(&mut self) -> StreamState {
            self.state
        }

        fn may_send(&mut self) -> bool {
            match self.state {
                StreamState::Established => true,
                // CLOSE-WAIT: the peer closed, this side may still send.
                StreamState::Closing => self.peer_fin,
                _ => false,
            }
        }

        fn send_room(&mut self) -> usize {
            self.send_capacity - self.queued
        }

        fn send(&mut self, bytes: &[u8]) -> usize {
            if !self.may_send() {
                return 0;
            }
            let n = bytes.len().min(self.send_room());
            self.sent.extend_from_slice(&bytes[..n]);
            self.queued += n;
            n
        }

        fn may_recv(&mut self) -> bool {
            let open =
                matches!(self.state, StreamState::Established | StreamState::Closing) && !self.peer_fin;
            open || !self.inbox.is_empty()
        }

        fn can_recv(&mut self) -> bool {
            !self.inbox.is_empty()
        }

        fn recv_full(&mut self) -> bool {
            self.inbox.len() >= self.recv_capacity
        }

        fn peek(&mut self, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.inbox.len());
            for (to, from) in buf.iter_mut().zip(self.inbox.iter()) {
                *to = *from;
            }
            n
        }

        fn consume(&mut self, count: usize) {
            let n = count.min(self.inbox.len());
            self.inbox.drain(..n);
        }
    }
}
