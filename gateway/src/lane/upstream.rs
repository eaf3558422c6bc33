//! The upstream side of a lane: its pools (member choice and health, from the proxy crate), its
//! upstream connections on the lane's own stack and who holds each, the idle keep-alive lists
//! (kept as long as recent demand needs them, see `demand`), the queues of requests waiting for a
//! connection, the local ports it connects from, and the health probes.
//!
//! A request that finds no connection at once waits in its pool's queue (FIFO) rather than
//! fail: when the pool is at its share of `max_in_flight`, or when every upstream socket of the
//! lane is taken (or was freed too recently to have sent its last segment). It is served when a
//! connection of the pool ends or a socket frees, and answered 503 once it has waited
//! `queue_timeout_ms` or when the queue is full.
//!
//! Invariants:
//! - An upstream connection belongs to exactly one owner: a client exchange, the idle list of
//!   its member, a health probe, or nobody (closing or free).
//! - A pool's requests in flight ([`Upstreams::at_in_flight_limit`]) are its members' outstanding
//!   counts (exchanges holding one of its connections); they never exceed the lane's share of
//!   `max_in_flight`.
//! - A queue entry is live while its connection's exchange is waiting (`Exchange::is_waiting`);
//!   entries of exchanges that ended are skipped when met.
//! - Nothing here allocates per request: pools, idle lists, queues and the connection table are
//!   sized at start (and on reload).

use std::{
    collections::VecDeque,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
};

use smoltcp::socket::tcp;
use xgate_proxy::{gateway::health_request, upstream::Pool};
use xgate_userstack::tcp_server::{ConnId, ConnectError, TcpServer};

use super::{
    demand::PeakDemand,
    proxy::{exchange_timeouts, BAD_GATEWAY, UNAVAILABLE},
    Lane,
};
use crate::{
    routing::{PoolLimits, Routing},
    transport::SocketStream,
};
use xgate_proxy::stream::Stream;

/// Who holds an upstream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// Free (its socket is closed and settled).
    Free,
    /// Closing: settled once the socket has closed.
    Closing,
    /// In its member's idle list.
    Idle { since_ms: u64 },
    /// Carrying the exchange of this client connection.
    Client(ConnId),
    /// A health check of its member.
    Probe { deadline_ms: u64, sent: bool },
}

/// An upstream connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct UpstreamConn {
    pub owner: Owner,
    pub pool: u16,
    pub member: u16,
    pub addr: SocketAddr,
    /// Requests sent over this connection.
    pub requests: u32,
    /// Opened for an exchange, handshake not over yet (counted in `Upstreams::connecting`).
    pub connecting: bool,
}

/// A lane's upstream side: pools (member choice and health), connections and idle lists.
pub(super) struct Upstreams {
    /// Connection id of the first outbound socket.
    pub first: ConnId,
    pub conns: Vec<UpstreamConn>,
    pub pools: Vec<Pool>,
    pub limits: Vec<PoolLimits>,
    /// Idle connections per pool and member (stacks: the most recently used is reused first).
    pub idle: Vec<Vec<Vec<ConnId>>>,
    /// Recent peak of busy connections per pool and member (sizes the idle lists).
    pub demand: Vec<Vec<PeakDemand>>,
    /// The lane's share of each pool's `max_in_flight`.
    pub max_in_flight: Vec<u32>,
    /// Client connections waiting for a connection to each pool, oldest first, with the
    /// ticket of their entry.
    pub waiting: Vec<VecDeque<Waiter>>,
    /// The next queue ticket.
    next_ticket: u32,
    /// Handshakes in progress per pool and member (within `max_connecting`).
    pub connecting: Vec<Vec<u32>>,
    /// Lanes (to share `max_in_flight`).
    lanes: usize,
    /// Client connections of the lane (no queue needs more room).
    clients: usize,
    /// Local ports this lane opens connections from, and the next to try.
    pub ports: std::ops::Range<u16>,
    pub next_port: u16,
    /// Steering that brings replies back to this lane (with more than one lane).
    pub steering: Option<xgate_userstack::rss::FlowSteering>,
}

impl Upstreams {
    /// Pools built from `routing`, `outbound` connections starting at id `first`, local ports
    /// from `ports`.
    pub fn new(
        routing: &Routing,
        first: ConnId,
        outbound: usize,
        ports: std::ops::Range<u16>,
        steering: Option<xgate_userstack::rss::FlowSteering>,
        lanes: usize,
        clients: usize,
    ) -> Upstreams {
        let unset = UpstreamConn {
            owner: Owner::Free,
            pool: 0,
            member: 0,
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            requests: 0,
            connecting: false,
        };
        let mut upstreams = Upstreams {
            first,
            conns: vec![unset; outbound],
            pools: Vec::new(),
            limits: Vec::new(),
            idle: Vec::new(),
            demand: Vec::new(),
            max_in_flight: Vec::new(),
            waiting: Vec::new(),
            next_ticket: 0,
            connecting: Vec::new(),
            lanes,
            clients,
            next_port: ports.start,
            ports,
            steering,
        };
        upstreams.install(routing);
        upstreams
    }

    /// Installs the pools of `routing`, keeping the state (health, ejections, outstanding
    /// requests) of members that stay. Idle lists are rebuilt empty: the caller closes the
    /// connections that were idle. In-flight counts are those of the members that stay; the
    /// queues are rebuilt empty (the caller has answered the waiting requests).
    fn install(&mut self, routing: &Routing) {
        let sockets = self.conns.len();
        let pools: Vec<Pool> = routing
            .pools
            .iter()
            .map(|spec| {
                let mut pool = Pool::new(spec.clone()).expect("validated when the config was loaded");
                if let Some(old) = self.pools.iter().find(|old| old.spec().name == spec.name) {
                    pool.carry_state_from(old);
                }
                pool
            })
            .collect();
        self.idle = routing
            .pools
            .iter()
            .zip(&routing.pool_limits)
            .map(|(spec, limits)| {
                (0..spec.members.len())
                    .map(|_| Vec::with_capacity(limits.max_idle.min(sockets)))
                    .collect()
            })
            .collect();
        self.demand = routing
            .pools
            .iter()
            .map(|spec| vec![PeakDemand::default(); spec.members.len()])
            .collect();
        self.max_in_flight = routing
            .pool_limits
            .iter()
            .map(|limits| limits.lane_in_flight(self.lanes))
            .collect();
        self.waiting = routing
            .pool_limits
            .iter()
            .map(|limits| VecDeque::with_capacity((limits.max_queued as usize).min(self.clients)))
            .collect();
        self.pools = pools;
        // Handshakes in progress keep counting against the members that stay.
        self.connecting = self
            .pools
            .iter()
            .map(|pool| vec![0; pool.members().len()])
            .collect();
        for i in 0..self.conns.len() {
            let conn = self.conns[i];
            if !conn.connecting {
                continue;
            }
            match self.member_now(conn.pool, conn.member, conn.addr) {
                Some((pool, member)) => {
                    self.connecting[pool][member] += 1;
                    self.conns[i].pool = pool as u16;
                    self.conns[i].member = member as u16;
                }
                None => self.conns[i].connecting = false,
            }
        }
        self.limits = routing.pool_limits.clone();
    }

    /// Whether pool `pool` has its share of `max_in_flight` requests in flight on this lane (its
    /// members' outstanding requests: exchanges holding one of its connections).
    pub(super) fn at_in_flight_limit(&self, pool: usize) -> bool {
        let limit = self.max_in_flight[pool];
        limit != u32::MAX
            && self.pools[pool]
                .members()
                .iter()
                .map(|m| m.outstanding())
                .sum::<u32>()
                >= limit
    }

    pub(super) fn conn(&mut self, id: ConnId) -> &mut UpstreamConn {
        &mut self.conns[(id - self.first) as usize]
    }

    /// The pool and member index of `addr` in pool `pool` now (members may have moved after a
    /// reload), if it is still there.
    pub(super) fn member_now(&self, pool: u16, member: u16, addr: SocketAddr) -> Option<(usize, usize)> {
        let pool = usize::from(pool);
        let p = self.pools.get(pool)?;
        if p.members().get(usize::from(member)).map(|m| m.addr) == Some(addr) {
            return Some((pool, usize::from(member)));
        }
        p.members().iter().position(|m| m.addr == addr).map(|m| (pool, m))
    }

    /// A local port for a connection to `remote` that no connection of `server` uses (and,
    /// with steering, whose replies come back to `lane`).
    fn local_port(&mut self, server: &TcpServer<'_>, remote: SocketAddrV4, lane: u16) -> Option<u16> {
        let span = self.ports.end - self.ports.start;
        let mut tried = 0u16;
        let mut fallback = None;
        while tried < span {
            let port = self.next_port;
            self.next_port = if port + 1 >= self.ports.end {
                self.ports.start
            } else {
                port + 1
            };
            tried += 1;
            if server.port_in_use(remote, port) {
                continue;
            }
            let Some(steering) = &self.steering else {
                return Some(port);
            };
            let steered = steering.pick_local_port(lane, [0; 4], remote.ip().octets(), remote.port(), [port]);
            if steered.is_some() {
                return Some(port);
            }
            fallback.get_or_insert(port);
            // About one port in `lanes` is steered home; give up on steering after a few dozen.
            if tried > 64 {
                return fallback;
            }
        }
        fallback
    }
}

/// What opening an upstream connection gave.
enum Opened {
    /// A connection, its SYN on the way.
    Connecting(ConnId),
    /// No local port to connect from (or an address family the stack does not speak yet).
    NoPort,
    /// Every upstream socket is taken (or freed too recently): wait for one.
    NoSocket,
    /// The stack refused the connect's endpoints.
    Refused,
}

/// An entry of a pool's queue: client connection `index`, whose exchange waits with `ticket`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Waiter {
    index: ConnId,
    ticket: u32,
}

/// What [`Lane::assign_upstream`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Assigned {
    /// The exchange has a connection.
    Yes,
    /// The exchange waits in its pool's queue.
    Waiting,
    /// The exchange was failed (answered or reset).
    Failed,
}

impl Lane<'_> {
    /// Opens a connection to `addr` from a free local port, steered home when it can be. The
    /// userspace stack speaks IPv4 only so far (the configuration refuses IPv6 members), so an
    /// IPv6 address has no port to come from.
    fn open_upstream(&mut self, addr: SocketAddr) -> Opened {
        let SocketAddr::V4(remote) = addr else {
            return Opened::NoPort;
        };
        let Some(port) = self.upstreams.local_port(&self.server, remote, self.index as u16) else {
            return Opened::NoPort;
        };
        match self.server.connect(remote, port) {
            Ok(id) => Opened::Connecting(id),
            Err(ConnectError::NoFreeSocket) => Opened::NoSocket,
            // `local_port` chose a port the server does not use: a refusal is the stack's.
            Err(ConnectError::PortInUse | ConnectError::Refused) => Opened::Refused,
        }
    }

    /// Picks a member and gives the exchange a connection to it (idle or new), or queues the
    /// exchange when its pool is at its in-flight share or no socket is free. On failure the
    /// client gets `no_member` when no member is eligible (503 for a new request, the first
    /// failure's status for a retry that finds no other member), 503 when the queue is full,
    /// 502 when the stack refuses the connect. `exclude`: the member a retry leaves out, unless
    /// it is the pool's only one (the retry then goes to it again, once).
    pub(super) fn assign_upstream(
        &mut self,
        index: usize,
        exclude: Option<usize>,
        no_member: u16,
    ) -> Assigned {
        let now = self.now_ms;
        let forward = *self.connections[index]
            .proxy
            .as_ref()
            .expect("an exchange")
            .exchange
            .forward();
        let pool_index = forward.pool;
        if pool_index >= self.upstreams.pools.len() {
            // A reload removed the pool while this request waited for a retry.
            self.fail_exchange(index, no_member);
            return Assigned::Failed;
        }
        if self.upstreams.at_in_flight_limit(pool_index) {
            return self.wait_for_upstream(index, pool_index);
        }
        let pool = &mut self.upstreams.pools[pool_index];
        let exclude = exclude.filter(|_| pool.members().len() > 1);
        let Some(member) = pool.pick(forward.hash, exclude, now) else {
            self.fail_exchange(index, no_member);
            return Assigned::Failed;
        };
        let addr = pool.members()[member].addr;
        // An idle connection, checked alive first.
        while let Some(id) = self.upstreams.idle[pool_index][member].pop() {
            let socket = self.server.socket(id);
            if socket.state() == tcp::State::Established && !socket.can_recv() {
                self.adopt(index, id, member, true);
                return Assigned::Yes;
            }
            self.close_upstream(id, true);
        }
        if self.upstreams.connecting[pool_index][member] >= self.upstreams.limits[pool_index].max_connecting {
            // Enough handshakes to this member are under way: wait for one of them.
            return self.wait_for_upstream(index, pool_index);
        }
        match self.open_upstream(addr) {
            Opened::NoPort => {
                self.fail_exchange(index, BAD_GATEWAY);
                Assigned::Failed
            }
            Opened::NoSocket => {
                // Room comes sooner from an idle connection nobody is about to use.
                self.retire_one_idle();
                self.wait_for_upstream(index, pool_index)
            }
            Opened::Connecting(id) => {
                *self.upstreams.conn(id) = UpstreamConn {
                    owner: Owner::Free,
                    pool: pool_index as u16,
                    member: member as u16,
                    addr,
                    requests: 0,
                    connecting: true,
                };
                self.upstreams.connecting[pool_index][member] += 1;
                self.adopt(index, id, member, false);
                Assigned::Yes
            }
            Opened::Refused => {
                self.values.upstream_connect_failures += 1;
                self.fail_exchange(index, BAD_GATEWAY);
                Assigned::Failed
            }
        }
    }

    /// Whether queue entry `waiter` is live: its connection's exchange still waits under the
    /// entry's ticket (not served meanwhile, ended, or queued again under a newer one).
    fn is_live(&self, waiter: Waiter) -> bool {
        self.connections[waiter.index as usize]
            .proxy
            .is_some_and(|p| p.exchange.is_waiting() && p.ticket == waiter.ticket)
    }

    /// Queues the exchange of client `index` for a connection to pool `pool` (503 at once when
    /// the queue is full).
    fn wait_for_upstream(&mut self, index: usize, pool: usize) -> Assigned {
        let waiting = self.connections[index]
            .proxy
            .is_some_and(|p| p.exchange.is_waiting());
        if waiting {
            // Already queued (woken, and still no room): it keeps its place.
            return Assigned::Waiting;
        }
        let max_queued = self.upstreams.limits[pool].max_queued as usize;
        // Live entries are at most one per client connection; stale ones are dropped when the
        // queue reaches that size, so it never grows past the room it was given.
        if self.upstreams.waiting[pool].len() >= max_queued.min(self.upstreams.clients) {
            let mut queue = std::mem::take(&mut self.upstreams.waiting[pool]);
            queue.retain(|&waiter| self.is_live(waiter));
            self.upstreams.waiting[pool] = queue;
        }
        if self.upstreams.waiting[pool].len() >= max_queued {
            self.values.upstream_queue_full += 1;
            self.fail_exchange(index, UNAVAILABLE);
            return Assigned::Failed;
        }
        let ticket = self.upstreams.next_ticket;
        self.upstreams.next_ticket = ticket.wrapping_add(1);
        self.upstreams.waiting[pool].push_back(Waiter {
            index: index as ConnId,
            ticket,
        });
        let timeout = self.upstreams.limits[pool].queue_timeout_ms;
        let proxied = self.connections[index].proxy.as_mut().expect("an exchange");
        proxied.ticket = ticket;
        proxied.exchange.wait(self.now_ms, timeout);
        self.values.upstream_queued += 1;
        Assigned::Waiting
    }

    /// Serves the queues: each pool's oldest waiting exchanges get a connection while the pool
    /// is under its in-flight share and a connection can be had (idle, or a free socket).
    pub(super) fn serve_waiting(&mut self) {
        for pool in 0..self.upstreams.waiting.len() {
            while let Some(&waiter) = self.upstreams.waiting[pool].front() {
                if !self.is_live(waiter) {
                    self.upstreams.waiting[pool].pop_front();
                    continue;
                }
                let has_idle = self.upstreams.idle[pool].iter().any(|list| !list.is_empty());
                if self.upstreams.at_in_flight_limit(pool) || !(has_idle || self.server.can_connect()) {
                    break;
                }
                self.upstreams.waiting[pool].pop_front();
                self.pump(waiter.index as usize);
                if self.is_live(waiter) {
                    // Still no connection for it (the member picked has none idle and enough
                    // handshakes under way, or no socket is free): it keeps its place, and the
                    // queue waits.
                    self.upstreams.waiting[pool].push_front(waiter);
                    break;
                }
            }
        }
    }

    /// Closes the idle connection that has waited longest, to free its socket for a new
    /// connection elsewhere (every socket is taken).
    fn retire_one_idle(&mut self) {
        let oldest = self
            .upstreams
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, conn)| match conn.owner {
                Owner::Idle { since_ms } => Some((since_ms, i)),
                _ => None,
            })
            .min();
        if let Some((_, i)) = oldest {
            self.retire_idle(self.upstreams.first + i as ConnId);
        }
    }

    /// Gives upstream connection `id` to the exchange of client `index`.
    fn adopt(&mut self, index: usize, id: ConnId, member: usize, reused: bool) {
        let now = self.now_ms;
        let timeouts = exchange_timeouts(&self.proxying.timeouts);
        let conn = self.upstreams.conn(id);
        conn.owner = Owner::Client(index as ConnId);
        conn.requests += 1;
        let pool = usize::from(conn.pool);
        self.upstreams.pools[pool].begin(member);
        let busy = self.upstreams.pools[pool].members()[member].outstanding();
        self.upstreams.demand[pool][member].note(busy, now);
        let proxied = self.connections[index].proxy.as_mut().expect("an exchange");
        proxied.upstream = Some(id);
        proxied.exchange.assigned(member as u16, reused, now, &timeouts);
        self.server.touch(id);
    }

    /// Releases an exchange's upstream connection `upstream`: back to the idle list when
    /// `reusable` and recent demand wants it there, else closed (a FIN; a RST when not
    /// `reusable`). Its member's outstanding request and its pool's in-flight count end either
    /// way.
    pub(super) fn drop_upstream_of(&mut self, upstream: Option<ConnId>, reusable: bool) {
        let Some(id) = upstream else { return };
        self.handshake_over(id);
        let conn = *self.upstreams.conn(id);
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            self.upstreams.pools[pool].finish(member);
            let limits = &self.upstreams.limits[pool];
            let under_limit =
                limits.max_requests_per_connection == 0 || conn.requests < limits.max_requests_per_connection;
            let busy = self.upstreams.pools[pool].members()[member].outstanding();
            let wanted = self.upstreams.demand[pool][member].idle_wanted(busy, limits.max_idle);
            // A request waiting for this pool takes the connection through the idle list.
            let waiters = !self.upstreams.waiting[pool].is_empty();
            let idle = &mut self.upstreams.idle[pool][member];
            let room = idle.len() < wanted || (waiters && idle.len() < limits.max_idle);
            if reusable && under_limit && room && !self.draining {
                idle.push(id);
                let now = self.now_ms;
                let conn = self.upstreams.conn(id);
                conn.owner = Owner::Idle { since_ms: now };
                conn.pool = pool as u16;
                conn.member = member as u16;
                return;
            }
            // A healthy connection over its limits is closed politely.
            self.close_upstream(id, !reusable);
            return;
        }
        self.close_upstream(id, true);
    }

    /// Takes idle connection `id` out of its member's idle list and closes it: politely when it
    /// is still a clean connection (open, or closed by the upstream with nothing unread), with a
    /// reset when the upstream sent bytes nobody asked for.
    pub(super) fn retire_idle(&mut self, id: ConnId) {
        let conn = *self.upstreams.conn(id);
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            let idle = &mut self.upstreams.idle[pool][member];
            if let Some(at) = idle.iter().position(|&i| i == id) {
                idle.swap_remove(at);
            }
        }
        self.close_idle(id);
    }

    /// Closes idle connection `id`, already out of its idle list: politely when it is still a
    /// clean connection, with a reset when the upstream sent bytes nobody asked for.
    fn close_idle(&mut self, id: ConnId) {
        let socket = self.server.socket(id);
        let clean =
            matches!(socket.state(), tcp::State::Established | tcp::State::CloseWait) && !socket.can_recv();
        self.close_upstream(id, !clean);
    }

    /// Closes upstream connection `id` (a FIN, or a RST when `abort`); its socket is settled
    /// once closed.
    pub(super) fn close_upstream(&mut self, id: ConnId, abort: bool) {
        self.handshake_over(id);
        let socket = self.server.socket(id);
        if abort {
            socket.abort();
        } else {
            socket.close();
        }
        self.upstreams.conn(id).owner = Owner::Closing;
        self.server.touch(id);
        self.settle_upstream(id);
    }

    pub(super) fn settle_upstream(&mut self, id: ConnId) {
        if self.server.settle(id) == xgate_userstack::tcp_server::Settled::Closed {
            self.upstreams.conn(id).owner = Owner::Free;
        }
    }

    /// The handshake of upstream connection `id` is over (established, failed, or the
    /// connection is given up): it no longer counts against its member's `max_connecting`.
    fn handshake_over(&mut self, id: ConnId) {
        let conn = *self.upstreams.conn(id);
        if !conn.connecting {
            return;
        }
        self.upstreams.conn(id).connecting = false;
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            let count = &mut self.upstreams.connecting[pool][member];
            *count = count.saturating_sub(1);
        }
    }

    /// Something happened on upstream connection `id`: serve its owner.
    pub(super) fn service_upstream(&mut self, id: ConnId) {
        if self.upstreams.conn(id).connecting
            && !matches!(
                self.server.socket(id).state(),
                tcp::State::SynSent | tcp::State::SynReceived
            )
        {
            self.handshake_over(id);
        }
        match self.upstreams.conn(id).owner {
            Owner::Client(client) => self.pump(client as usize),
            Owner::Idle { .. } => {
                // An idle connection that the upstream closed, or that sent bytes nobody asked
                // for, is of no more use.
                let socket = self.server.socket(id);
                if socket.state() != tcp::State::Established || socket.can_recv() {
                    self.retire_idle(id);
                }
            }
            Owner::Probe { .. } => self.pump_probe(id),
            Owner::Closing | Owner::Free => self.settle_upstream(id),
        }
    }

    /// Opens a health-check connection for every member whose check is due.
    pub(super) fn start_probes(&mut self) {
        let now = self.now_ms;
        for pool in 0..self.upstreams.pools.len() {
            while let Some(member) = self.upstreams.pools[pool].next_check_due(now) {
                let addr = self.upstreams.pools[pool].members()[member].addr;
                let timeout = self.upstreams.pools[pool]
                    .spec()
                    .health
                    .as_ref()
                    .map_or(1_000, |h| h.timeout_ms);
                let id = match self.open_upstream(addr) {
                    Opened::Connecting(id) => id,
                    // The lane's own shortage says nothing of the member: the check waits for
                    // its next turn.
                    Opened::NoSocket => continue,
                    Opened::NoPort | Opened::Refused => {
                        self.upstreams.pools[pool].record_check(member, false, now);
                        continue;
                    }
                };
                *self.upstreams.conn(id) = UpstreamConn {
                    owner: Owner::Probe {
                        deadline_ms: now + timeout,
                        sent: false,
                    },
                    pool: pool as u16,
                    member: member as u16,
                    addr,
                    requests: 1,
                    connecting: false,
                };
            }
        }
    }

    /// Drives a health check: send `GET path`, read the status line, close.
    fn pump_probe(&mut self, id: ConnId) {
        let Owner::Probe { deadline_ms, sent } = self.upstreams.conn(id).owner else {
            return;
        };
        let conn = *self.upstreams.conn(id);
        let socket = self.server.socket(id);
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => return,
            tcp::State::Established | tcp::State::CloseWait => {}
            _ if socket.can_recv() => {}
            _ => {
                self.probe_done(id, false);
                return;
            }
        }
        if !sent {
            // The pool may have gone with a reload while the probe connected.
            let path = self
                .upstreams
                .pools
                .get(usize::from(conn.pool))
                .and_then(|pool| pool.spec().health.as_ref())
                .map_or("/", |h| &h.path);
            let mut request = [0u8; 512];
            let len = health_request(path, conn.addr, &mut request);
            let mut stream = SocketStream::of(&mut self.server, id);
            if stream.send_room() < len {
                return;
            }
            stream.send(&request[..len]);
            self.upstreams.conn(id).owner = Owner::Probe {
                deadline_ms,
                sent: true,
            };
            self.server.touch(id);
            return;
        }
        let mut head = [0u8; 16];
        let mut stream = SocketStream::of(&mut self.server, id);
        let n = stream.peek(&mut head);
        let closed = !stream.may_recv();
        if n >= 12 {
            let ok = head.starts_with(b"HTTP/1.") && matches!(head[9], b'2' | b'3');
            self.probe_done(id, ok);
        } else if closed {
            self.probe_done(id, false);
        }
    }

    pub(super) fn probe_done(&mut self, id: ConnId, ok: bool) {
        let now = self.now_ms;
        let conn = *self.upstreams.conn(id);
        if let Some((pool, member)) = self.upstreams.member_now(conn.pool, conn.member, conn.addr) {
            self.upstreams.pools[pool].record_check(member, ok, now);
        }
        self.close_upstream(id, true);
    }

    /// Installs a new routing (a reload): the HTTP stage routes with it from its next request;
    /// exchanges in flight finish with the members they have; idle connections to members
    /// that left are closed.
    pub(super) fn apply_routing(&mut self, routing: &Routing) {
        // Waiting requests are served by the pools they were routed to, or answered.
        self.serve_waiting();
        for pool in 0..self.upstreams.waiting.len() {
            while let Some(waiter) = self.upstreams.waiting[pool].pop_front() {
                if self.is_live(waiter) {
                    self.fail_exchange(waiter.index as usize, UNAVAILABLE);
                }
            }
        }
        for pool in 0..self.upstreams.idle.len() {
            for member in 0..self.upstreams.idle[pool].len() {
                while let Some(id) = self.upstreams.idle[pool][member].pop() {
                    self.close_upstream(id, false);
                }
            }
        }
        self.upstreams.install(routing);
    }

    /// Closes idle connections beyond what each member's recent demand wants (the oldest
    /// first), once the demand has fallen.
    fn trim_idle(&mut self) {
        let now = self.now_ms;
        for pool in 0..self.upstreams.idle.len() {
            for member in 0..self.upstreams.idle[pool].len() {
                self.upstreams.demand[pool][member].roll(now);
                let busy = self.upstreams.pools[pool].members()[member].outstanding();
                let max_idle = self.upstreams.limits[pool].max_idle;
                let wanted = self.upstreams.demand[pool][member].idle_wanted(busy, max_idle);
                let surplus = self.upstreams.idle[pool][member].len().saturating_sub(wanted);
                // The list is a stack: the oldest idle connections are at the bottom. Bring them
                // to the top and close them from there (O(list) however many go).
                self.upstreams.idle[pool][member].rotate_left(surplus);
                for _ in 0..surplus {
                    let id = self.upstreams.idle[pool][member].pop().expect("counted above");
                    self.values.upstream_idle_trimmed += 1;
                    self.close_idle(id);
                }
            }
        }
    }

    /// The upstream side's timers: idle connections past their time or beyond recent demand
    /// (or all, while draining), health probes past their deadline, closing connections to
    /// settle, requests waiting in the queues.
    pub(super) fn sweep_upstreams(&mut self) {
        self.trim_idle();
        let now = self.now_ms;
        for i in 0..self.upstreams.conns.len() {
            let id = self.upstreams.first + i as ConnId;
            match self.upstreams.conns[i].owner {
                Owner::Idle { since_ms } => {
                    let pool = usize::from(self.upstreams.conns[i].pool);
                    let limit = self.upstreams.limits.get(pool).map_or(0, |l| l.idle_timeout_ms);
                    if now >= since_ms + limit || self.draining {
                        self.retire_idle(id);
                    }
                }
                Owner::Probe { deadline_ms, .. } if now >= deadline_ms => {
                    self.probe_done(id, false);
                }
                Owner::Closing => self.settle_upstream(id),
                _ => {}
            }
        }
    }
}
