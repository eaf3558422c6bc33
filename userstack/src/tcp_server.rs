//! The accepting side of TCP for one lane: smoltcp sockets in small shards, found per frame in
//! O(1), with listeners kept ready for bursts of connects.
//!
//! smoltcp's `Interface` hands an incoming segment to the first socket of a `SocketSet` that
//! accepts it, scanning the set, and its egress poll visits every socket of the set. With one set
//! of 10,000 sockets that is 10,000 checks per packet. [`TcpServer`] keeps smoltcp unchanged and
//! works around it:
//! - Sockets live in shards of [`SHARD_SIZE`] (one `SocketSet` each). A [`FlowTable`] maps each
//!   connection (remote address, remote port, local port) to its socket, so a frame goes to its
//!   one shard with `poll_ingress_single`: the stack scans at most `SHARD_SIZE` sockets.
//! - Egress is polled only for shards that have work (a frame came in, the application wrote) or
//!   whose earliest timer (retransmission, keep-alive, time-out) is due.
//! - Each shard with a free socket keeps exactly one of them listening (its *designated
//!   listener*). A SYN of an unknown flow goes to a shard that has one; right after the stack has
//!   taken the SYN, the flow is entered in the table and another free socket of that shard
//!   listens. So every free socket of the lane can take a connect, however many arrive at once:
//!   the limit of a burst is the number of free sockets. A SYN that finds none, with no half-open
//!   connection to make room, is dropped unanswered and counted, as a kernel drops a SYN when its
//!   listen backlog is full: the client sends it again (after 1 s, 3 s, 7 s, ...) and is served
//!   once a connection has ended, so a burst larger than the pool is slowed, not failed. With
//!   `ServerConfig::reset_when_full` it is answered with a RST instead (the client sees
//!   "connection refused" at once).
//! - Half-open connections (accepted, handshake not complete) are kept within
//!   `ServerConfig::max_half_open`, counted as they are accepted and as their sockets are seen
//!   to leave SYN-RECEIVED. A SYN that finds the bound reached (or no free socket while
//!   half-open connections hold some) evicts the oldest half-open connection (a RST to its
//!   peer) if that one has waited [`EVICTABLE_AFTER`], and is accepted in its place if a
//!   listener is free, as a SYN cache does under a flood; otherwise (all are younger, a burst
//!   of real connects with last ACKs in flight, or the evicted socket is not free yet) the SYN
//!   is dropped unanswered and its client sends it again. A SYN that finds every socket held by
//!   established connections is dropped the same way (or refused with a RST, see above).
//! - Segments of unknown flows that are not SYNs, ARP and ICMP go to an empty socket set: the
//!   stack answers what needs answering (RST, ARP reply, echo reply) and keeps nothing.
//! - Connections the lane opens itself (to upstream servers) use a second group of sockets, in
//!   shards of their own that never listen: [`TcpServer::connect`] takes a free one, enters its
//!   flow (remote address and port, the chosen local port) in the same flow table, and from then
//!   on its segments are found and polled exactly like an accepted connection's. Free outbound
//!   sockets are reused oldest first, and only once their shard's egress has run since they were
//!   freed: the last segment of their previous connection (the ACK of the peer's FIN, a RST)
//!   goes out before the socket forgets that connection.
//!
//! Socket memory: every socket's receive and transmit buffers are cut from one [`SocketMemory`]
//! per server, a single zeroed allocation (an [`Arena`], see [`crate::arena`]) that the
//! server's owner makes and lends to it (`TcpServer<'m>` borrows it for `'m`; the sockets hold
//! disjoint `&'m mut [u8]` chunks as smoltcp `SocketBuffer`s). Allocated one by one, thousands of
//! 16 KiB buffers were largely resident from the start (a lane of the default configuration:
//! 415 MB before its first client); from one fresh mapping, a buffer's pages become resident
//! only when the stack first writes them, so an idle or never-used socket costs address space,
//! not memory. How much of a buffer a connection touches follows smoltcp's ring buffers:
//! - the transmit buffer starts again at its first byte whenever it is empty, so a connection
//!   whose answers are sent before the next is queued keeps to the first pages (one for short
//!   answers);
//! - the receive buffer does not: each read moves its start on and it wraps only at its end, so
//!   a connection that receives more than the buffer's size in its life (a keep-alive client of
//!   many requests, an upstream connection carrying many responses) has touched all of it. A
//!   socket's next connection starts at the front again, on pages already resident.
//!
//! Pages once written stay resident (nothing gives them back), so after load a server holds
//! about what its busiest moment touched.
//!
//! Invariants:
//! - A socket is in exactly one role: free (closed, in its shard's free list or, for outbound
//!   sockets, the outbound free list), the designated listener of its shard, or connected (its
//!   flow in the table). Outbound sockets are never listeners. At most one listener per shard,
//!   so the stack can only give a SYN to the socket the table is about to name.
//! - A connected socket goes back to free only through [`TcpServer::settle`], which the
//!   application calls when it holds no state that could leak into the socket's next connection.
//! - A socket listens only once the RST of its last connection's abort has gone out (listening
//!   forgets the peer the RST is for), or once the shard's egress ran and could not send it.
//!   Until that egress it waits in the free list, and the shard may then have a free socket but
//!   no listener.
//! - Nothing allocates after [`TcpServer::new`]: shards, table, queues and buffers are sized there
//!   (the buffers' memory before it, by [`SocketMemory::new`]).
//!
//! The server, its roles and its outbound connections are here; the rest is split by what it
//! does: `ingress` (a frame to its flow's shard, new flows to a listener), `half_open` (the SYN
//! cache's accounting and eviction), `listeners` (a socket's way between listening, connected
//! and free) and `egress` (egress polls and timers).

mod cookies;
mod egress;
mod half_open;
mod ingress;
mod listeners;

use std::collections::VecDeque;

use smoltcp::{
    iface::{Interface, SocketHandle, SocketSet, SocketStorage},
    socket::tcp,
    time::{Duration, Instant},
    wire::IpEndpoint,
};

use std::net::SocketAddrV4;

use smoltcp::wire::TcpSeqNumber;

pub use self::cookies::{cookie_syn_ack, CookieKey, COOKIE_SYN_ACK_LEN};
use self::{cookies::SynCookies, half_open::HalfOpenEntry};
use crate::isn::{IsnGenerator, IsnKey};
use crate::{arena::Arena, flows::FlowTable, wire::TcpSegmentInfo};
pub use xgate_xdp_common::syncookie::SynCookieMode;

/// Sockets per shard: the most sockets smoltcp looks at for one frame (ingress) and for one
/// egress poll.
pub const SHARD_SIZE: usize = 16;

/// How often shards' timer deadlines are brought up to date: xgate's timer tick. Computing a
/// shard's deadline visits each of its sockets, and with 10,000 connections nearly every shard
/// has sent something within a tick, so the tick sets the cost: at 1 ms it held the 10,000-
/// connection rate to 57% of the 100-connection rate in the benchmark suite, at 5 ms to about 75%.
/// Timers fire up to one tick late, like a kernel's (Linux: 4 ms at HZ=250); smoltcp's shortest
/// timers (delayed ACK, minimum retransmission timeout) are 10 ms.
pub const TIMER_GRANULARITY: Duration = Duration::from_millis(5);

/// How long a half-open connection must have waited before a new SYN may evict it (at the
/// half-open bound, or with no free socket). Younger ones may be a burst of real connects whose last ACKs are
/// in flight; a SYN that finds only those is dropped unanswered (its client sends it again in a
/// second), as a kernel drops SYNs when its SYN queue is full.
pub const EVICTABLE_AFTER: Duration = Duration::from_millis(100);

/// The flow-table key of a connection to `remote` from `local_port`: the key its segments carry
/// (see [`crate::wire::TcpFlowKey::connection_key`]), remote end first.
fn outbound_key(remote: std::net::SocketAddrV4, local_port: u16) -> u64 {
    (u64::from(u32::from(*remote.ip())) << 32) | (u64::from(remote.port()) << 16) | u64::from(local_port)
}

/// Index of a connection (and its socket) in a [`TcpServer`].
pub type ConnId = u32;

/// How a [`TcpServer`] is sized and how its sockets behave.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The TCP port every socket listens on.
    pub listen_port: u16,
    /// A second port connections are accepted on (HTTPS beside HTTP, say): a shard's listener
    /// listens on the first and turns to this one for a SYN that asks for it.
    pub extra_listen_port: Option<u16>,
    /// Sockets: the most concurrent connections (and the largest burst of connects).
    pub sockets: usize,
    /// Bytes of each socket's receive buffer (the most the peer may send ahead).
    pub rx_buffer: usize,
    /// Bytes of each socket's transmit buffer.
    pub tx_buffer: usize,
    /// Keep-alive probe interval on idle connections.
    pub keep_alive: Option<Duration>,
    /// Silence after which a connection with something outstanding is aborted.
    pub timeout: Option<Duration>,
    /// Sockets for connections this server opens ([`TcpServer::connect`]); they never listen.
    pub outbound_sockets: usize,
    /// Accepted connections whose handshake has not completed, at most (0: no bound beyond the
    /// sockets). See [`TcpServer`]'s module doc.
    pub max_half_open: usize,
    /// A SYN that finds every socket taken is answered with a RST (instead of dropped for the
    /// client to send again).
    pub reset_when_full: bool,
    /// The secret of the keyed initial sequence numbers (see [`crate::isn`]): draw it from the
    /// kernel's random source.
    pub isn_key: IsnKey,
    /// When SYNs are answered with SYN cookies (see `cookies`): under pressure (a SYN the
    /// half-open bound would leave unanswered), always, or never.
    pub syn_cookies: SynCookieMode,
    /// The cookies' secret: the XDP program's, so that either may answer a SYN and this server
    /// takes up the ACK.
    pub cookie_key: CookieKey,
    /// CLOCK_MONOTONIC in nanoseconds: the clock cookies carry (the XDP program's).
    pub monotonic_ns: fn() -> u64,
}

/// Why [`TcpServer::connect`] opened nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Every outbound socket is in use.
    #[error("every outbound socket is in use")]
    NoFreeSocket,
    /// The local port is zero, the listen port, or already used toward that remote end.
    #[error("the local port is zero, the listen port, or already used toward that remote end")]
    PortInUse,
    /// The stack refused the endpoints (for example an unspecified remote address).
    #[error("the TCP stack refused the connection's endpoints")]
    Refused,
}

/// What [`TcpServer::settle`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The connection is still open: the socket keeps serving it.
    Open,
    /// The connection is over; its socket is free again (or listening) for a new one.
    Closed,
}

/// Counters of one server.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerStats {
    /// Connections whose SYN a listener took.
    pub accepted: u64,
    /// SYNs of new flows refused with a RST: the listen port is closed (draining), or every socket
    /// was taken and `reset_when_full` is set.
    pub refused: u64,
    /// SYNs of new flows dropped unanswered because every socket was taken by established
    /// connections: the client sends its SYN again.
    pub syn_dropped_full: u64,
    /// Connections opened with [`TcpServer::connect`].
    pub connects: u64,
    /// Aborts whose RST the shard's egress could not send before the socket had to listen
    /// again (its peer had no link-layer address, as a spoofed source has none).
    pub rst_dropped: u64,
    /// Half-open connections aborted to make room for a new SYN (the bound was reached).
    pub half_open_evicted: u64,
    /// New SYNs dropped unanswered for want of room (the half-open bound reached by connections
    /// all younger than [`EVICTABLE_AFTER`], or every socket taken while half-open connections
    /// hold some): the client sends its SYN again.
    pub syn_deferred: u64,
    /// SYNs this server answered with a SYN cookie.
    pub syn_cookies_sent: u64,
    /// SYNs that were to be answered with a cookie but were no well-formed SYN (bad checksum).
    pub syn_cookies_unanswered: u64,
    /// Connections taken up from a valid cookie's ACK (sent by this server or the XDP program).
    pub syn_cookies_accepted: u64,
    /// ACKs of unknown flows dropped while cookies were in use: no valid cookie's.
    pub syn_cookies_rejected: u64,
    /// Valid cookie ACKs dropped because no socket was free (the client sends them again).
    pub syn_cookies_no_socket: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Free,
    Listening,
    Connected { key: u64 },
}

struct Conn {
    handle: SocketHandle,
    shard: u32,
    role: Role,
    /// Already in the woken queue.
    woken: bool,
    /// An outbound socket (opened by `connect`, never listening).
    outbound: bool,
    /// Counted in [`TcpServer::half_open`]: accepted, handshake not yet seen to complete.
    half_open: bool,
    /// Accepts on this socket so far (tells a stale entry of the half-open order from a live one).
    generation: u32,
    /// For a free outbound socket: its shard's egress pass count when it was freed (it may be
    /// reused once the count has moved on).
    freed_at_pass: u32,
}

struct Shard<'m> {
    sockets: SocketSet<'m>,
    listener: Option<ConnId>,
    free: Vec<ConnId>,
    /// Connected sockets (for a sweep after a timer fired).
    members: Vec<ConnId>,
    /// Frames came in or the application wrote: poll egress.
    dirty: bool,
    /// Already in the dirty list.
    listed: bool,
    /// The stack's next deadline for this shard.
    poll_at: Option<Instant>,
    /// Egress ran since `poll_at` was computed (it is in the stale list).
    timer_stale: bool,
    /// Egress polls of this shard that sent everything its sockets had (wrapping).
    egress_passes: u32,
}

/// The receive and transmit buffers of every socket of one [`TcpServer`], in one [`Arena`]
/// (see the module doc): made by the server's owner, lent to the server for its lifetime.
pub struct SocketMemory {
    arena: Arena,
    sockets: usize,
    rx_buffer: usize,
    tx_buffer: usize,
}

impl SocketMemory {
    /// Buffers for the sockets (inbound and outbound) of a server made with `config`.
    pub fn new(config: &ServerConfig) -> SocketMemory {
        let sockets = config.sockets + config.outbound_sockets;
        SocketMemory {
            arena: Arena::zeroed(sockets * (config.rx_buffer + config.tx_buffer)),
            sockets,
            rx_buffer: config.rx_buffer,
            tx_buffer: config.tx_buffer,
        }
    }

    /// Bytes of address space the buffers take (resident only where sockets have written).
    pub fn reserved(&self) -> usize {
        self.arena.len()
    }

    /// One `(receive, transmit)` pair of buffers per socket, socket 0 first (none at all when
    /// the buffers have no bytes).
    fn buffers(&mut self) -> impl Iterator<Item = (&mut [u8], &mut [u8])> {
        let rx = self.rx_buffer;
        let stride = (rx + self.tx_buffer).max(1);
        self.arena
            .bytes()
            .chunks_exact_mut(stride)
            .map(move |chunk| chunk.split_at_mut(rx))
    }

    /// Whether these are the buffers of a server made with `config`.
    fn fits(&self, config: &ServerConfig) -> bool {
        self.sockets == config.sockets + config.outbound_sockets
            && self.rx_buffer == config.rx_buffer
            && self.tx_buffer == config.tx_buffer
    }
}

/// One lane's accepting TCP: the interface, the socket shards and the flow table. Its sockets'
/// buffers are borrowed from a [`SocketMemory`] for `'m`.
pub struct TcpServer<'m> {
    iface: Interface,
    shards: Vec<Shard<'m>>,
    conns: Vec<Conn>,
    flows: FlowTable,
    /// Shards with a designated listener.
    listening: VecDeque<u32>,
    /// Sockets for nothing: unknown non-SYN segments, ARP, ICMP.
    stray: SocketSet<'m>,
    /// Shards to poll for egress.
    dirty: Vec<u32>,
    /// Shards whose egress ran out of rounds this turn (kept to reuse its capacity).
    dirty_again: Vec<u32>,
    /// Connections the application should look at.
    woken: VecDeque<ConnId>,
    /// The earliest timer of any shard (a sweep of shard deadlines runs only once it is due).
    next_timer: Option<Instant>,
    /// Shards whose deadline came: their connections are checked after egress.
    fired: Vec<u32>,
    /// Shards whose deadline must be computed again at the next tick.
    stale_timers: Vec<u32>,
    /// When deadlines were last computed.
    timer_tick: Instant,
    listen_port: u16,
    extra_listen_port: Option<u16>,
    /// Free outbound sockets, oldest freed first.
    outbound_free: VecDeque<ConnId>,
    /// [`TcpServer::stop_listening`] was called: free sockets no longer listen.
    listen_port_closed: bool,
    /// Outbound sockets with a connection.
    outbound_connected: usize,
    /// The half-open bound (0: none), the connections counted against it, and the order they
    /// were accepted in (entries of connections that left the state are skipped when met).
    max_half_open: usize,
    half_open: usize,
    half_open_order: VecDeque<HalfOpenEntry>,
    reset_when_full: bool,
    /// Keyed initial sequence numbers for accepted and opened connections.
    isn: IsnGenerator,
    /// The latest time the server was given (ingress, egress): the ISN clock of a connect.
    now: Instant,
    cookies: SynCookies,
    stats: ServerStats,
}

impl<'m> TcpServer<'m> {
    /// A server over `iface` with `config.sockets` sockets, all free sockets listening in their
    /// shards, their buffers in `memory`.
    ///
    /// Panics if `memory` was not made for `config` ([`SocketMemory::new`]).
    pub fn new(iface: Interface, config: &ServerConfig, memory: &'m mut SocketMemory) -> TcpServer<'m> {
        assert!(
            memory.fits(config),
            "socket memory made for another server configuration"
        );
        let mut buffers = memory.buffers();
        let inbound_shards = config.sockets.div_ceil(SHARD_SIZE).max(1);
        let shard_count = inbound_shards + config.outbound_sockets.div_ceil(SHARD_SIZE);
        let total_sockets = config.sockets + config.outbound_sockets;
        let mut shards: Vec<Shard<'m>> = (0..shard_count)
            .map(|_| Shard {
                sockets: SocketSet::new(Vec::<SocketStorage<'m>>::with_capacity(SHARD_SIZE)),
                listener: None,
                free: Vec::with_capacity(SHARD_SIZE),
                members: Vec::with_capacity(SHARD_SIZE),
                dirty: false,
                listed: false,
                poll_at: None,
                timer_stale: false,
                egress_passes: 0,
            })
            .collect();
        let mut conns = Vec::with_capacity(total_sockets);
        for id in 0..total_sockets {
            // Buffers of no bytes come as no chunks: empty slices then.
            let (rx, tx) = buffers.next().unwrap_or_default();
            let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
            socket.set_nagle_enabled(false);
            socket.set_keep_alive(config.keep_alive);
            socket.set_timeout(config.timeout);
            let outbound = id >= config.sockets;
            let shard = if outbound {
                inbound_shards + (id - config.sockets) / SHARD_SIZE
            } else {
                id / SHARD_SIZE
            };
            conns.push(Conn {
                handle: shards[shard].sockets.add(socket),
                shard: shard as u32,
                role: Role::Free,
                woken: false,
                outbound,
                half_open: false,
                generation: 0,
                freed_at_pass: 0,
            });
        }
        let mut server = TcpServer {
            iface,
            shards,
            conns,
            flows: FlowTable::with_entries(total_sockets),
            listening: VecDeque::with_capacity(shard_count),
            stray: SocketSet::new(Vec::<SocketStorage<'m>>::new()),
            dirty: Vec::with_capacity(shard_count),
            dirty_again: Vec::with_capacity(shard_count),
            woken: VecDeque::with_capacity(total_sockets),
            next_timer: None,
            stale_timers: Vec::with_capacity(shard_count),
            fired: Vec::with_capacity(shard_count),
            timer_tick: Instant::ZERO,
            listen_port: config.listen_port,
            extra_listen_port: config.extra_listen_port,
            outbound_free: VecDeque::with_capacity(config.outbound_sockets),
            listen_port_closed: false,
            outbound_connected: 0,
            max_half_open: config.max_half_open,
            half_open: 0,
            half_open_order: VecDeque::with_capacity(config.sockets.max(1)),
            reset_when_full: config.reset_when_full,
            isn: IsnGenerator::new(config.isn_key),
            now: Instant::ZERO,
            cookies: SynCookies::new(
                config.syn_cookies,
                config.cookie_key,
                config.monotonic_ns,
                config.rx_buffer,
            ),
            stats: ServerStats::default(),
        };
        for id in (0..total_sockets as ConnId).rev() {
            server.make_free(id);
        }
        // A socket that never connected has nothing left to send: free to connect at once.
        for conn in server.conns.iter_mut().filter(|conn| conn.outbound) {
            conn.freed_at_pass = conn.freed_at_pass.wrapping_sub(1);
        }
        server
    }

    /// The interface (for its address, neighbours and timers).
    pub fn iface(&mut self) -> &mut Interface {
        &mut self.iface
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Sockets with a connection (handshake begun and not yet settled closed).
    pub fn connected(&self) -> usize {
        self.flows.len()
    }

    /// Accepted connections (handshake begun and not yet settled closed).
    pub fn inbound_connected(&self) -> usize {
        self.flows.len() - self.outbound_connected
    }

    /// Whether `id` has a connection (accepted or opened, not yet settled closed).
    pub fn is_connected(&self, id: ConnId) -> bool {
        matches!(self.conns[id as usize].role, Role::Connected { .. })
    }

    /// Whether `segment` belongs to a connection of this server.
    pub fn knows(&self, segment: &TcpSegmentInfo) -> bool {
        self.flows.get(segment.flow.connection_key()).is_some()
    }

    /// The connection a segment with `flow` (as received) belongs to, if any.
    pub fn find(&self, flow: &crate::wire::TcpFlowKey) -> Option<ConnId> {
        self.flows.get(flow.connection_key())
    }

    /// Aborts connection `id`: its socket sends a RST with the next egress and is settled (and
    /// reused) like any closed connection.
    pub fn abort(&mut self, id: ConnId) {
        self.socket(id).abort();
        self.note_half_open_left(id);
        self.wake(id);
        self.touch(id);
    }

    /// The socket of connection `id`.
    pub fn socket(&mut self, id: ConnId) -> &mut tcp::Socket<'m> {
        let conn = &self.conns[id as usize];
        self.shards[conn.shard as usize]
            .sockets
            .get_mut::<tcp::Socket>(conn.handle)
    }

    /// Notes that the application wrote to or read from `id`'s socket: its shard polls egress.
    pub fn touch(&mut self, id: ConnId) {
        let shard = self.conns[id as usize].shard;
        self.mark_dirty(shard);
    }

    /// The next connection the stack did something for (a frame, a timer, an accept).
    pub fn next_woken(&mut self) -> Option<ConnId> {
        let id = self.woken.pop_front()?;
        self.conns[id as usize].woken = false;
        Some(id)
    }

    /// Asks the application to look at `id` again (it had to leave work for later).
    pub fn wake(&mut self, id: ConnId) {
        let conn = &mut self.conns[id as usize];
        if !conn.woken && matches!(conn.role, Role::Connected { .. }) {
            conn.woken = true;
            self.woken.push_back(id);
        }
    }

    /// Whether a connection from local port `local_port` to `remote` would collide with one this
    /// server holds (or with the listen port).
    pub fn port_in_use(&self, remote: std::net::SocketAddrV4, local_port: u16) -> bool {
        local_port == 0
            || self.is_listen_port(local_port)
            || self.flows.get(outbound_key(remote, local_port)).is_some()
    }

    /// Whether connections are accepted on `port`.
    pub fn is_listen_port(&self, port: u16) -> bool {
        port == self.listen_port || self.extra_listen_port == Some(port)
    }

    /// Opens a connection from `local_port` to `remote` on a free outbound socket: the SYN goes
    /// out with the next egress, and the connection is woken when the handshake ends (or
    /// fails). The caller chooses the port (see [`crate::rss::FlowSteering::pick_local_port`]).
    pub fn connect(
        &mut self,
        remote: std::net::SocketAddrV4,
        local_port: u16,
    ) -> Result<ConnId, ConnectError> {
        if self.port_in_use(remote, local_port) {
            return Err(ConnectError::PortInUse);
        }
        let id = self.take_outbound_free().ok_or(ConnectError::NoFreeSocket)?;
        let conn = &self.conns[id as usize];
        let shard_index = conn.shard;
        let socket = self.shards[shard_index as usize]
            .sockets
            .get_mut::<tcp::Socket>(conn.handle);
        let endpoint = IpEndpoint::new(smoltcp::wire::IpAddress::Ipv4(*remote.ip()), remote.port());
        let local_ip = self.iface.ipv4_addr().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let isn = self.isn.isn(
            SocketAddrV4::new(local_ip, local_port),
            remote,
            self.now.total_micros().max(0) as u64,
        );
        socket.set_next_initial_seq(Some(TcpSeqNumber(isn as i32)));
        if socket
            .connect(self.iface.context(), endpoint, local_port)
            .is_err()
        {
            self.outbound_free.push_front(id);
            return Err(ConnectError::Refused);
        }
        let key = outbound_key(remote, local_port);
        if self.flows.insert(key, id).is_err() {
            // Cannot happen: the table holds as many entries as there are sockets.
            self.socket(id).abort();
            self.outbound_free.push_front(id);
            return Err(ConnectError::NoFreeSocket);
        }
        self.stats.connects += 1;
        self.outbound_connected += 1;
        self.conns[id as usize].role = Role::Connected { key };
        self.shards[shard_index as usize].members.push(id);
        self.mark_dirty(shard_index);
        Ok(id)
    }

    /// Answer a SYN that finds every socket taken with a RST (`true`) or drop it (`false`).
    pub fn set_reset_when_full(&mut self, reset: bool) {
        self.reset_when_full = reset;
    }

    /// Free outbound sockets (some may wait for their shard's egress before they can connect).
    pub fn outbound_free(&self) -> usize {
        self.outbound_free.len()
    }

    /// Whether [`TcpServer::connect`] would find a socket now.
    pub fn can_connect(&self) -> bool {
        self.outbound_free
            .front()
            .is_some_and(|&id| self.outbound_ready(id))
    }

    /// Whether free outbound socket `id` may connect: its shard's egress ran since it was freed,
    /// so the last segment of its previous connection went out.
    fn outbound_ready(&self, id: ConnId) -> bool {
        let conn = &self.conns[id as usize];
        self.shards[conn.shard as usize].egress_passes != conn.freed_at_pass
    }

    /// The oldest free outbound socket, if it may connect (see [`TcpServer::can_connect`]).
    fn take_outbound_free(&mut self) -> Option<ConnId> {
        let &id = self.outbound_free.front()?;
        if !self.outbound_ready(id) {
            return None;
        }
        self.outbound_free.pop_front()
    }

    /// Checks `id` after the application has served it: a connection whose socket is closed (or
    /// fell back to listening after a reset handshake) leaves the table and its socket is free
    /// again. TIME-WAIT counts as closed: a pool of sockets held 10 s in TIME-WAIT would refuse
    /// new clients, and a late duplicate would have to match the old 4-tuple and window.
    pub fn settle(&mut self, id: ConnId) -> Settled {
        let Role::Connected { key } = self.conns[id as usize].role else {
            return Settled::Closed;
        };
        self.note_half_open_left(id);
        let state = self.socket(id).state();
        if matches!(
            state,
            tcp::State::Closed | tcp::State::TimeWait | tcp::State::Listen
        ) {
            self.flows.remove(key);
            if self.conns[id as usize].outbound {
                self.outbound_connected -= 1;
            }
            let shard = &mut self.shards[self.conns[id as usize].shard as usize];
            if let Some(at) = shard.members.iter().position(|&m| m == id) {
                shard.members.swap_remove(at);
            }
            self.make_free(id);
            return Settled::Closed;
        }
        Settled::Open
    }

    fn mark_dirty(&mut self, shard: u32) {
        let entry = &mut self.shards[shard as usize];
        entry.dirty = true;
        if !entry.listed {
            entry.listed = true;
            self.dirty.push(shard);
        }
    }

    /// Stops taking new connections: every listener is closed (a SYN is then answered with a
    /// RST), and free sockets no longer listen. Connections already open are not touched.
    pub fn stop_listening(&mut self) {
        while let Some(shard) = self.listening.pop_front() {
            if let Some(listener) = self.shards[shard as usize].listener.take() {
                self.socket(listener).abort();
                self.conns[listener as usize].role = Role::Free;
                self.shards[shard as usize].free.push(listener);
            }
        }
        self.listen_port_closed = true;
    }

    /// Aborts every connection (peers get a RST with the next egress).
    pub fn abort_all(&mut self) {
        for id in 0..self.conns.len() as ConnId {
            self.socket(id).abort();
        }
        for shard in 0..self.shards.len() as u32 {
            self.mark_dirty(shard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz_support::{server, MemoryDevice};

    fn config(sockets: usize, outbound_sockets: usize, rx_buffer: usize, tx_buffer: usize) -> ServerConfig {
        ServerConfig {
            listen_port: 80,
            extra_listen_port: None,
            sockets,
            rx_buffer,
            tx_buffer,
            keep_alive: None,
            timeout: None,
            outbound_sockets,
            max_half_open: 0,
            reset_when_full: false,
            isn_key: crate::isn::IsnKey([1, 2]),
            syn_cookies: SynCookieMode::Auto,
            cookie_key: CookieKey([3, 4]),
            monotonic_ns: || 1 << 40,
        }
    }

    #[test]
    fn every_socket_gets_buffers_of_its_own_of_the_configured_sizes() {
        let config = config(20, 5, 3000, 1000);
        let mut memory = SocketMemory::new(&config);
        assert_eq!(memory.reserved(), 25 * 4000);
        let mut server = server(&config, &mut MemoryDevice::new(), &mut memory);
        for id in 0..25 {
            let socket = server.socket(id);
            assert_eq!(socket.recv_capacity(), 3000, "socket {id}");
            assert_eq!(socket.send_capacity(), 1000, "socket {id}");
        }
    }

    #[test]
    fn buffers_are_disjoint() {
        let config = config(3, 1, 8, 4);
        let mut memory = SocketMemory::new(&config);
        for (i, (rx, tx)) in memory.buffers().enumerate() {
            assert_eq!((rx.len(), tx.len()), (8, 4));
            rx.fill(2 * i as u8 + 1);
            tx.fill(2 * i as u8 + 2);
        }
        let expected: Vec<u8> = (0..4u8)
            .flat_map(|i| [2 * i + 1; 8].into_iter().chain([2 * i + 2; 4]))
            .collect();
        assert_eq!(memory.arena.bytes(), expected);
    }

    #[test]
    #[should_panic(expected = "socket memory made for another server configuration")]
    fn memory_for_another_configuration_is_refused() {
        let mut memory = SocketMemory::new(&config(4, 0, 1024, 1024));
        server(&config(8, 0, 1024, 1024), &mut MemoryDevice::new(), &mut memory);
    }
}
