//! The generator's stack: one smoltcp interface over the AF_XDP port, sockets in shards reached
//! by destination port, and each connection's state; connecting, receiving, transmitting,
//! sending requests and reading responses.

use std::{collections::VecDeque, net::SocketAddrV4, time::Instant};

use smoltcp::{
    iface::{Interface, SocketHandle, SocketSet},
    socket::tcp,
    time::Instant as StackInstant,
    wire::IpAddress,
};
use xgate_userstack::xsk::XskPort;

use super::{
    response::{self, Progress, ResponseReader},
    Errors, HEAD_WINDOW, RX_BUFFER, RX_BURST, TX_BUFFER,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    Connecting,
    Idle,
    Waiting,
    Failed,
}

/// One client connection.
pub(super) struct Conn {
    pub(super) handle: SocketHandle,
    pub(super) shard: u32,
    pub(super) local_port: u16,
    pub(super) state: ConnState,
    /// When the outstanding request was sent (closed loop) or due (open loop), ns since start.
    pub(super) started_ns: u64,
    /// The next request this connection owns (open loop).
    pub(super) next_request: u64,
    /// Index into the request mix.
    pub(super) mix: usize,
    pub(super) reader: ResponseReader,
}

/// Per-shard bookkeeping: the sockets and when the stack next needs to look at them.
pub(super) struct Shard {
    pub(super) sockets: SocketSet<'static>,
    /// Work is pending now (frames came in, requests were written).
    pub(super) dirty: bool,
    /// The stack's own deadline for this shard (retransmit, delayed ACK), if any.
    pub(super) poll_at: Option<StackInstant>,
}

/// The TCP destination port of an Ethernet/IPv4 frame, if it is one.
fn tcp_destination_port(frame: &[u8]) -> Option<u16> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 6 {
        return None;
    }
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let ports = frame.get(14 + header_len..14 + header_len + 4)?;
    Some(u16::from_be_bytes([ports[2], ports[3]]))
}

fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[12..14] == [0x08, 0x06]
}

/// The generator's stack: interface, sockets in shards, and the connections over them.
pub(super) struct Generator {
    pub(super) port: XskPort,
    pub(super) iface: Interface,
    pub(super) shards: Vec<Shard>,
    pub(super) conns: Vec<Conn>,
    /// Local port → connection index (`u32::MAX`: none).
    pub(super) port_owner: Vec<u32>,
    pub(super) base_port: u16,
    /// Ports no connection holds, oldest released first (reconnects take from the front).
    pub(super) free_ports: VecDeque<u16>,
    /// Connections a received frame was for, this turn (indices; may repeat).
    pub(super) woken: Vec<u32>,
    /// An ARP frame arrived: every connection may have work.
    pub(super) wake_all: bool,
    /// Connections to reopen after this turn's transmit (their reset goes out first).
    pub(super) reconnects: Vec<u32>,
    pub(super) requests: Vec<Vec<u8>>,
    pub(super) target: SocketAddrV4,
    pub(super) epoch: Instant,
    pub(super) scratch: Box<[u8]>,
    pub(super) errors: Errors,
    /// Connection attempts the server refused (RST to our SYN); retried while time allows.
    pub(super) refused: u64,
    pub(super) response_bytes: usize,
}

impl Generator {
    pub(super) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn stack_now(&self) -> StackInstant {
        StackInstant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    pub(super) fn new_socket() -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket
    }

    /// Starts connection `index` from `local_port` (which no connection holds).
    pub(super) fn connect(&mut self, index: usize, local_port: u16) {
        let conn = &mut self.conns[index];
        self.port_owner[usize::from(local_port)] = index as u32;
        conn.local_port = local_port;
        let shard = &mut self.shards[conn.shard as usize];
        let socket = shard.sockets.get_mut::<tcp::Socket>(conn.handle);
        socket.abort();
        let remote = (IpAddress::Ipv4(*self.target.ip()), self.target.port());
        match socket.connect(self.iface.context(), remote, local_port) {
            Ok(()) => {
                conn.state = ConnState::Connecting;
                conn.reader.reset();
                shard.dirty = true;
            }
            Err(_) => {
                conn.state = ConnState::Failed;
                self.errors.connect += 1;
            }
        }
    }

    /// Resets connection `index` (an RST goes out with the next transmit); its port stays held
    /// until [`Generator::reconnect`] so that stray segments still reach its shard.
    pub(super) fn abort(&mut self, index: usize) {
        let conn = &self.conns[index];
        let shard = &mut self.shards[conn.shard as usize];
        shard.sockets.get_mut::<tcp::Socket>(conn.handle).abort();
        shard.dirty = true;
    }

    /// Reopens connection `index` from the longest-free port, releasing its old one.
    pub(super) fn reconnect(&mut self, index: usize) {
        let old = self.conns[index].local_port;
        if self.port_owner[usize::from(old)] == index as u32 {
            self.port_owner[usize::from(old)] = u32::MAX;
            self.free_ports.push_back(old);
        }
        match self.free_ports.pop_front() {
            Some(port) => self.connect(index, port),
            None => {
                self.conns[index].state = ConnState::Failed;
                self.errors.connect += 1;
            }
        }
    }

    /// Hands received frames to their shards, one frame at a time.
    pub(super) fn receive(&mut self) -> usize {
        let mut handled = 0;
        while handled < RX_BURST {
            let Some(frame) = self.port.peek_rx() else { break };
            let arp = is_arp(frame);
            let owner = tcp_destination_port(frame)
                .map(|port| self.port_owner[usize::from(port)])
                .filter(|&owner| owner != u32::MAX);
            let shard = owner.map_or(0, |owner| self.conns[owner as usize].shard as usize);
            if let Some(owner) = owner {
                // Capacity is RX_BURST, and at most RX_BURST frames are handled per call.
                if self.woken.len() < self.woken.capacity() {
                    self.woken.push(owner);
                } else {
                    self.wake_all = true;
                }
            }
            let now = self.stack_now();
            self.iface
                .poll_ingress_single(now, &mut self.port, &mut self.shards[shard].sockets);
            self.shards[shard].dirty = true;
            if arp {
                // A new neighbour lets every shard's waiting sockets send.
                for shard in &mut self.shards {
                    shard.dirty = true;
                }
                self.wake_all = true;
            }
            handled += 1;
        }
        handled
    }

    /// Polls egress for every shard with work or a due timer, and records its next deadline.
    pub(super) fn transmit(&mut self) {
        let now = self.stack_now();
        for index in 0..self.shards.len() {
            let shard = &mut self.shards[index];
            let due = shard.poll_at.is_some_and(|at| at <= now);
            if !shard.dirty && !due {
                continue;
            }
            for _ in 0..4 {
                if let smoltcp::iface::PollResult::None =
                    self.iface.poll_egress(now, &mut self.port, &mut shard.sockets)
                {
                    break;
                }
            }
            shard.dirty = false;
            shard.poll_at = self.iface.poll_at(now, &shard.sockets);
        }
        self.port.flush();
    }

    /// Sends connection `index`'s next request if it is idle. `due_ns` is the latency origin.
    pub(super) fn send_request(&mut self, index: usize, due_ns: u64) -> bool {
        let conn = &mut self.conns[index];
        if conn.state != ConnState::Idle {
            return false;
        }
        let shard = &mut self.shards[conn.shard as usize];
        let socket = shard.sockets.get_mut::<tcp::Socket>(conn.handle);
        let request = &self.requests[conn.mix];
        if socket.send_capacity() - socket.send_queue() < request.len() {
            return false;
        }
        if socket.send_slice(request) != Ok(request.len()) {
            return false;
        }
        conn.mix = (conn.mix + 1) % self.requests.len();
        conn.state = ConnState::Waiting;
        conn.started_ns = due_ns;
        shard.dirty = true;
        true
    }

    /// Reads what connection `index` has received. Returns `Some((latency origin, status))` when a
    /// response completed.
    pub(super) fn read_response(&mut self, index: usize) -> Option<(u64, u16)> {
        let conn = &mut self.conns[index];
        let socket = self.shards[conn.shard as usize]
            .sockets
            .get_mut::<tcp::Socket>(conn.handle);
        match conn.state {
            ConnState::Connecting => {
                match socket.state() {
                    tcp::State::Established => conn.state = ConnState::Idle,
                    tcp::State::Closed | tcp::State::TimeWait | tcp::State::CloseWait => {
                        conn.state = ConnState::Failed;
                        self.refused += 1;
                    }
                    _ => {}
                }
                return None;
            }
            ConnState::Failed => return None,
            ConnState::Idle | ConnState::Waiting => {}
        }
        let mut done = None;
        loop {
            let window = if conn.reader.in_body() {
                // Body bytes need not be looked at: take them where they lie.
                let mut result = Ok(Progress::NeedMore { consumed: 0 });
                let _ = socket.recv(|bytes| {
                    result = conn.reader.feed(bytes, HEAD_WINDOW);
                    let consumed = consumed_by(&result);
                    (consumed, ())
                });
                result
            } else {
                let copied = socket.peek_slice(&mut self.scratch).unwrap_or(0);
                if copied == 0 {
                    break;
                }
                let result = conn
                    .reader
                    .feed(&self.scratch[..copied], HEAD_WINDOW.min(RX_BUFFER));
                let consumed = consumed_by(&result);
                discard(socket, consumed);
                result
            };
            match window {
                Ok(Progress::NeedMore { consumed: 0 }) => break,
                Ok(Progress::NeedMore { .. }) => continue,
                Ok(Progress::Done {
                    consumed: _,
                    status,
                    close,
                }) => {
                    if conn.state != ConnState::Waiting {
                        // A response nobody asked for.
                        self.errors.bad_response += 1;
                        conn.state = ConnState::Failed;
                        socket.abort();
                        return None;
                    }
                    conn.state = ConnState::Idle;
                    done = Some((conn.started_ns, status));
                    if self.response_bytes == 0 {
                        self.response_bytes = conn.reader.last_response_bytes();
                    }
                    if close {
                        conn.state = ConnState::Failed;
                        socket.close();
                    }
                    break;
                }
                Err(_) => {
                    self.errors.bad_response += 1;
                    conn.state = ConnState::Failed;
                    socket.abort();
                    return None;
                }
            }
        }
        // The server is done sending (FIN or RST) and no response completed: whatever is left
        // can never become one.
        let peer_done = !matches!(
            socket.state(),
            tcp::State::Established | tcp::State::FinWait1 | tcp::State::FinWait2
        );
        if done.is_none() && peer_done && conn.state != ConnState::Failed {
            self.errors.closed_by_server += 1;
            conn.state = ConnState::Failed;
        }
        done
    }
}

/// Bytes a framing step took from what it was offered (none on an error).
fn consumed_by(result: &Result<Progress, response::FramingError>) -> usize {
    match result {
        Ok(Progress::NeedMore { consumed } | Progress::Done { consumed, .. }) => *consumed,
        Err(_) => 0,
    }
}

/// Drops `count` received bytes from the socket (they were already looked at).
fn discard(socket: &mut tcp::Socket, mut count: usize) {
    while count > 0 {
        let taken = socket
            .recv(|bytes| {
                let take = bytes.len().min(count);
                (take, take)
            })
            .unwrap_or(0);
        if taken == 0 {
            break;
        }
        count -= taken;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ports_are_found_in_ipv4_frames_only() {
        let mut frame = vec![0u8; 60];
        frame[12] = 0x08;
        frame[14] = 0x45;
        frame[23] = 6;
        frame[34..38].copy_from_slice(&[0x00, 0x50, 0x4e, 0x20]);
        assert_eq!(tcp_destination_port(&frame), Some(20_000));
        frame[14] = 0x46; // options: the TCP header moves by four bytes
        frame[38..42].copy_from_slice(&[0x00, 0x50, 0x4e, 0x21]);
        assert_eq!(tcp_destination_port(&frame), Some(20_001));
        frame[23] = 17;
        assert_eq!(tcp_destination_port(&frame), None);
        assert_eq!(tcp_destination_port(&frame[..20]), None);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(is_arp(&arp));
        assert_eq!(tcp_destination_port(&arp), None);
    }
}
